/** pgbench, the database's own load generator: the limits the contenders are compared with. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_URL, execFileAsync } from './infra.ts';

export interface PgbenchRun {
  tps: number;
  transactions: number;
  latencyMs: number;
  seconds: number;
}

export interface PgbenchOptions {
  clients: number;
  threads: number;
  /** Run for this long, or ... */
  seconds?: number;
  /** ... this many transactions per client. */
  transactionsPerClient?: number;
}

export function parsePgbench(output: string): PgbenchRun {
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(output)?.[1]);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(output)?.[1]);
  const latencyMs = Number(/latency average = ([\d.]+) ms/.exec(output)?.[1]);
  if (!Number.isFinite(tps) || !Number.isFinite(transactions)) {
    throw new Error(`could not read pgbench's output:\n${output.slice(-1500)}`);
  }
  return { tps, transactions, latencyMs, seconds: transactions / tps };
}

export async function runPgbench(
  database: string,
  script: string,
  options: PgbenchOptions,
): Promise<PgbenchRun> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-pgbench-'));
  const file = join(dir, 'script.sql');
  writeFileSync(file, script);
  const server = new URL(ADMIN_URL);
  const length =
    options.seconds !== undefined
      ? ['-T', String(options.seconds)]
      : ['-t', String(options.transactionsPerClient ?? 1)];
  const args = [
    '-n',
    '-h',
    server.hostname,
    '-p',
    server.port || '5432',
    '-U',
    decodeURIComponent(server.username || 'postgres'),
    '-M',
    'prepared',
    '-c',
    String(options.clients),
    '-j',
    String(options.threads),
    ...length,
    '-f',
    file,
    database,
  ];
  try {
    const limit = ((options.seconds ?? 300) + 120) * 1000;
    const { stdout, stderr } = await execFileAsync('pgbench', args, {
      timeout: limit,
      maxBuffer: 16 * 1024 * 1024,
    });
    return parsePgbench(`${stdout}\n${stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
