/**
 * wrk (Debian's package) drives POST /v1/trades: BUY-only, so nothing is refused, spread over many
 * accounts and symbols by a Lua script that also reports exact percentiles as one JSON line.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileAsync } from './infra.ts';

export const SYMBOLS = [
  'AAPL',
  'MSFT',
  'NVDA',
  'AMZN',
  'GOOG',
  'META',
  'TSLA',
  'JPM',
  'V',
  'UNH',
  'XOM',
  'JNJ',
  'WMT',
  'MA',
  'PG',
  'HD',
  'CVX',
  'ABBV',
  'KO',
  'PEP',
  'COST',
  'AVGO',
  'MRK',
  'ADBE',
  'CRM',
  'NFLX',
  'AMD',
  'INTC',
  'CSCO',
  'ORCL',
  'NKE',
  'DIS',
  'BA',
  'CAT',
  'IBM',
  'GS',
  'MS',
  'QCOM',
  'TXN',
  'SBUX',
  'MCD',
  'T',
  'VZ',
  'PFE',
  'LLY',
  'UPS',
  'RTX',
  'HON',
  'AMGN',
  'BKNG',
];

export interface WrkRun {
  requestsPerSecond: number;
  requests: number;
  /** Non-2xx answers plus socket errors. */
  errors: number;
  latencyMs: { p50: number; p90: number; p95: number; p99: number; max: number };
  seconds: number;
}

function script(apiKey: string, accounts: number): string {
  const symbols = SYMBOLS.map((symbol) => `"${symbol}"`).join(',');
  return `
local symbols = {${symbols}}
local counter = 0
local threads = {}
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
  non2xx = 0
end
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer ${apiKey}" }
function request()
  local account = math.random(1, ${accounts})
  local symbol = symbols[math.random(1, #symbols)]
  local cents = math.random(1000, 50000)
  local body = string.format('{"accountId":"acct-%d","symbol":"%s","side":"BUY","quantity":"%d","price":"%d.%02d"}',
    account, symbol, math.random(1, 100), math.floor(cents / 100), cents % 100)
  return wrk.format("POST", "/v1/trades", headers, body)
end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + (thread:get("non2xx") or 0) end
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"durationUs":%d,"errors":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, bad + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency.max))
end
`;
}

export function parseWrk(output: string): WrkRun {
  const line = /WRKJSON (\{.*\})/.exec(output)?.[1];
  if (line === undefined) throw new Error(`could not read wrk's output:\n${output.slice(-1500)}`);
  const raw = JSON.parse(line) as Record<string, number>;
  const us = (key: string) => (raw[key] ?? Number.NaN) / 1000;
  const seconds = (raw.durationUs ?? Number.NaN) / 1e6;
  const requests = raw.requests ?? 0;
  return {
    requestsPerSecond: requests / seconds,
    requests,
    errors: raw.errors ?? 0,
    latencyMs: { p50: us('p50'), p90: us('p90'), p95: us('p95'), p99: us('p99'), max: us('max') },
    seconds,
  };
}

export interface WrkOptions {
  url: string;
  apiKey: string;
  accounts: number;
  seconds: number;
  connections: number;
  threads: number;
}

export async function runWrk(options: WrkOptions): Promise<WrkRun> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-wrk-'));
  const file = join(dir, 'trades.lua');
  writeFileSync(file, script(options.apiKey, options.accounts));
  try {
    const { stdout } = await execFileAsync(
      'wrk',
      [
        '-t',
        String(options.threads),
        '-c',
        String(options.connections),
        '-d',
        `${options.seconds}s`,
        '--timeout',
        '5s',
        '-s',
        file,
        options.url,
      ],
      { timeout: (options.seconds + 60) * 1000, maxBuffer: 16 * 1024 * 1024 },
    );
    return parseWrk(stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
