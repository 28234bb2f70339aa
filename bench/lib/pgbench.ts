/** pgbench, the database's own load generator: the limits the contenders are compared with. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_URL, execFileAsync } from './infra.ts';

/**
 * SQL for a new UUIDv7, what newEventId() and newTradeId() return, for the SQL that stands in for the
 * service (pgbench scripts, the drain backlog): PostgreSQL 15 has no uuidv7(). A random UUID with its
 * first 48 bits replaced by the Unix time in milliseconds and its version nibble set to 7 (bits 52 and
 * 53, counted from the low bit of each byte, turn version 4's 0100 into 0111); the variant bits stay.
 */
export const UUID_V7_SQL = `encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
  placing substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
  52, 1), 53, 1), 'hex')::uuid`;

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
