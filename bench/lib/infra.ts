/**
 * What every scenario stands on: throwaway databases and Redis servers, child processes that are
 * always reaped, timeouts, and /proc sampling. Nothing here touches the shared services beyond
 * creating and dropping its own databases.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import {
  liveProcesses,
  type ManagedProcess,
  spawnManaged,
  startRedisServer,
  TimeoutError,
  waitFor,
} from '@astra/test-support';
import { createClient } from '@redis/client';
import pg from 'pg';

export const execFileAsync = promisify(execFile);

/** The shared PostgreSQL server; only used to create and drop the benchmark's own databases. */
export const ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** Milliseconds on a monotonic clock shared by everything in this process. */
export const now = () => performance.now();

export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TimeoutError(`${what}: no result within ${Math.round(ms / 1000)} s`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------
// Child processes

export interface ChildOptions {
  /** Added to the benchmark's own environment. */
  env?: Record<string, string>;
  /** Open an IPC channel (for node children that report progress). */
  ipc?: boolean;
  cwd?: string;
  /** Flags for node itself (spawnNode), e.g. PROFILED_NODE_ARGS. */
  nodeArgs?: string[];
}

/** A child process, output kept in memory, that is killed when the benchmark ends whatever way it ends. */
export function spawnChild(
  name: string,
  command: string,
  args: string[],
  options: ChildOptions = {},
): ManagedProcess {
  return spawnManaged(name, command, args, {
    env: { ...process.env, ...options.env },
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.ipc === undefined ? {} : { ipc: options.ipc }),
  });
}

/** A TypeScript entry point run by node with tsx, as one process (so its pid is the one to sample). */
export function spawnNode(
  name: string,
  file: string,
  args: string[],
  options: ChildOptions = {},
): ManagedProcess {
  const nodeArgs = options.nodeArgs ?? [];
  return spawnChild(name, process.execPath, [...nodeArgs, '--import', 'tsx', file, ...args], options);
}

export async function stopAllChildren(): Promise<void> {
  await Promise.all(liveProcesses().map((child) => child.kill('SIGTERM', 3000)));
}

// ---------------------------------------------------------------------------------------------------
// Databases

const databases = new Set<string>();
const OWNER = `bench_${process.pid}_`;

export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  return withClient(ADMIN_URL, work);
}

/**
 * Flushes the shared server's dirty buffers now, so the next contender does not run into a checkpoint
 * that the previous one's writes made due (slow commits while it lasts).
 */
export async function checkpoint(): Promise<void> {
  await withAdmin((client) => client.query('CHECKPOINT'));
}

/** Creates an empty database (or a copy of `template`) with a random name; dropped at the end. */
export async function createDatabase(label: string, template?: string): Promise<string> {
  const name = `${OWNER}${label}_${randomBytes(4).toString('hex')}`;
  databases.add(name);
  await withAdmin(async (client) => {
    const from =
      template === undefined ? '' : ` TEMPLATE ${pg.escapeIdentifier(template)} STRATEGY FILE_COPY`;
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}${from}`);
  });
  return name;
}

export async function dropDatabase(name: string): Promise<void> {
  await withAdmin((client) =>
    client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  );
  databases.delete(name);
}

export async function dropAllDatabases(): Promise<void> {
  for (const name of [...databases]) await dropDatabase(name).catch(() => {});
}

/** Drops databases left by benchmark runs whose process is gone (killed with SIGKILL, say). */
export async function dropStaleDatabases(): Promise<string[]> {
  return withAdmin(async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname ~ '^bench_[0-9]+_'",
    );
    const dropped: string[] = [];
    for (const { datname } of rows) {
      const pid = Number(/^bench_(\d+)_/.exec(datname)?.[1]);
      if (pid === process.pid || processAlive(pid)) continue;
      await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(datname)} WITH (FORCE)`);
      dropped.push(datname);
    }
    return dropped;
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs `work` on a database of its own, dropped afterwards whatever happens. */
export async function withDatabase<T>(
  label: string,
  work: (name: string) => Promise<T>,
  template?: string,
): Promise<T> {
  const name = await createDatabase(label, template);
  try {
    return await work(name);
  } finally {
    await dropDatabase(name).catch(() => {});
  }
}

export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench' });
  client.on('error', () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------------
// Redis

/** What the benchmark asks of its own Redis connection. */
export interface RedisClient {
  xLen(key: string): Promise<number>;
  sendCommand(args: string[]): Promise<unknown>;
  destroy(): void;
}

export interface ThrowawayRedis {
  port: number;
  url: string;
  child: ManagedProcess;
  client: RedisClient;
  /** Kills the server (an outage); `restart` brings a fresh one up on the same port. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A redis-server of our own on a free loopback port, never the shared one; with `replicaOf`, a
 * replica of that (throwaway) server's port.
 */
export async function startRedis(options: { replicaOf?: number } = {}): Promise<ThrowawayRedis> {
  const replica =
    options.replicaOf === undefined ? [] : ['--replicaof', '127.0.0.1', String(options.replicaOf)];
  const server = await startRedisServer({
    args: ['--loglevel', 'warning', ...replica],
    readyTimeoutMs: 10_000,
  });
  const client = createClient({ url: server.url, socket: { reconnectStrategy: 200 } });
  client.on('error', () => {});
  await client.connect();
  return {
    port: server.port,
    url: server.url,
    get child() {
      return server.process;
    },
    client,
    kill: () => server.kill(),
    restart: () => server.restart(),
    async close() {
      client.destroy();
      await server.kill('SIGTERM');
    },
  };
}

export async function withRedis<T>(work: (redis: ThrowawayRedis) => Promise<T>): Promise<T> {
  const redis = await startRedis();
  try {
    return await work(redis);
  } finally {
    await redis.close().catch(() => {});
  }
}

/** A field of `INFO replication`, e.g. 'connected_slaves' or 'master_link_status'. */
export async function replicationField(client: RedisClient, field: string): Promise<string | undefined> {
  const info = String(await client.sendCommand(['INFO', 'replication']));
  return new RegExp(`^${field}:(\\S*)`, 'm').exec(info)?.[1];
}

/** A throwaway primary and one replica of it, in sync before `work` starts; both stopped after. */
export async function withReplicatedRedis<T>(
  work: (primary: ThrowawayRedis, replica: ThrowawayRedis) => Promise<T>,
): Promise<T> {
  return withRedis(async (primary) => {
    const replica = await startRedis({ replicaOf: primary.port });
    try {
      await waitFor(
        `replica ${replica.port} of ${primary.port} in sync`,
        async () =>
          (await replicationField(replica.client, 'master_link_status')) === 'up' &&
          (await replicationField(primary.client, 'connected_slaves')) === '1',
        10_000,
      );
      return await work(primary, replica);
    } finally {
      await replica.close().catch(() => {});
    }
  });
}

export async function streamLength(client: RedisClient, streams: readonly string[]): Promise<number> {
  const lengths = await Promise.all(streams.map((stream) => client.xLen(stream)));
  return lengths.reduce((total, length) => total + length, 0);
}

/**
 * A consumer group's entries on one stream not yet acknowledged (`lag` + `pending`), from an XINFO
 * GROUPS reply as this client returns it (one object per group); null when the group is not there or
 * Redis cannot tell its lag.
 */
export function backlogOfGroup(reply: unknown, group: string): number | null {
  if (!Array.isArray(reply)) return null;
  const info = reply.find(
    (item): item is Record<string, unknown> =>
      typeof item === 'object' && item !== null && (item as { name?: unknown }).name === group,
  );
  if (info === undefined || typeof info.lag !== 'number' || typeof info.pending !== 'number') return null;
  return info.lag + info.pending;
}

/** The group's unacknowledged entries over all the streams; null until the group exists on each. */
export async function groupBacklog(
  client: RedisClient,
  streams: readonly string[],
  group: string,
): Promise<number | null> {
  let total = 0;
  for (const stream of streams) {
    const reply = await client.sendCommand(['XINFO', 'GROUPS', stream]).catch(() => null);
    const backlog = backlogOfGroup(reply, group);
    if (backlog === null) return null;
    total += backlog;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------------
// /proc sampling

/** Resident memory of a process in MiB, or null when it is gone. */
export function rssMiB(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
    return kb === undefined ? null : Number(kb) / 1024;
  } catch {
    return null;
  }
}

const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) a process has used, or null when it is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name.
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/**
 * CPU seconds used by the live processes with this command name (e.g. every 'postgres' process: the
 * server's background processes and all backends). A process that ends takes its seconds with it.
 */
export function cpuSecondsOfCommand(command: string): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const name = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (name === command) total += cpuSeconds(Number(entry)) ?? 0;
    } catch {
      // It ended while we looked.
    }
  }
  return total;
}

/** Machine-wide busy CPU seconds (all cores), from /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  const total = ticks.reduce((sum, value) => sum + value, 0);
  return (total - idle) / TICKS_PER_SECOND;
}

/**
 * Pressure stall totals (Linux PSI: microseconds in which some task waited for a CPU, or for IO), or
 * null where the kernel does not report them. The bench's own load counts too: CPU stalls are expected
 * on two saturated cores, while IO stalls well beyond the commits' own flushes point to a slow disk.
 */
export function pressureTotals(): { cpu: number; io: number } | null {
  try {
    const some = (kind: string) =>
      Number(/some .*total=(\d+)/.exec(readFileSync(`/proc/pressure/${kind}`, 'utf8'))?.[1] ?? Number.NaN);
    const totals = { cpu: some('cpu'), io: some('io') };
    return Number.isFinite(totals.cpu) && Number.isFinite(totals.io) ? totals : null;
  } catch {
    return null;
  }
}

/** Samples the RSS of some processes until stopped; keeps the peak and the series per process. */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  readonly series = new Map<string, { t: number; mib: number }[]>();
  private readonly started = now();

  constructor(
    private readonly pids: Record<string, number>,
    everyMs = 200,
  ) {
    for (const name of Object.keys(pids)) this.series.set(name, []);
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  private sample(): void {
    const t = (now() - this.started) / 1000;
    for (const [name, pid] of Object.entries(this.pids)) {
      const mib = rssMiB(pid);
      if (mib !== null) this.series.get(name)?.push({ t, mib });
    }
  }

  /** Peak RSS of `name` between two times (seconds since the sampler started). */
  peak(name: string, from = 0, to = Number.POSITIVE_INFINITY): number | null {
    const points = (this.series.get(name) ?? []).filter((p) => p.t >= from && p.t <= to);
    return points.length === 0 ? null : Math.max(...points.map((p) => p.mib));
  }

  elapsed(): number {
    return (now() - this.started) / 1000;
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }
}

/** CPU used by processes over a window, as a share of one core (1.0 = one core busy). */
export class CpuWindow {
  private readonly start = now();
  private readonly before: Map<string, number | null>;
  private readonly machineBefore = machineBusySeconds();

  constructor(private readonly pids: Record<string, number[]>) {
    this.before = new Map(Object.entries(pids).map(([name, list]) => [name, sumCpu(list)]));
  }

  finish(): { cores: Record<string, number | null>; machineCores: number } {
    const seconds = (now() - this.start) / 1000;
    const cores: Record<string, number | null> = {};
    for (const [name, list] of Object.entries(this.pids)) {
      const before = this.before.get(name);
      const after = sumCpu(list);
      cores[name] =
        before === null || before === undefined || after === null ? null : (after - before) / seconds;
    }
    return { cores, machineCores: (machineBusySeconds() - this.machineBefore) / seconds };
  }
}

function sumCpu(pids: number[]): number | null {
  let total = 0;
  for (const pid of pids) {
    const cpu = cpuSeconds(pid);
    if (cpu === null) return null;
    total += cpu;
  }
  return total;
}

/** The PostgreSQL backend pids serving one database (to sample their CPU). */
export async function backendPids(database: string, applicationName?: string): Promise<number[]> {
  return withAdmin(async (client) => {
    const { rows } = await client.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND ($2::text IS NULL OR application_name = $2)`,
      [database, applicationName ?? null],
    );
    return rows.map((row) => row.pid);
  });
}

// ---------------------------------------------------------------------------------------------------
// The end

let cleaning: Promise<void> | undefined;

/** Stops every child and drops every database this run created. Safe to call more than once. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAllChildren().catch(() => {});
    await dropAllDatabases().catch(() => {});
  })();
  return cleaning;
}

/** Cleans up on Ctrl-C, SIGTERM and on a crash; on a plain exit at least no child outlives us. */
export function installCleanupHandlers(): void {
  const bail = (signal: string) => {
    process.stderr.write(`\nbench: ${signal}, cleaning up\n`);
    const hard = setTimeout(() => process.exit(130), 20_000);
    hard.unref();
    void cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', () => bail('SIGINT'));
  process.on('SIGTERM', () => bail('SIGTERM'));
  // A stray rejection must not end the run without its cleanup.
  process.on('unhandledRejection', (error) => {
    process.stderr.write(
      `bench: unhandled rejection: ${error instanceof Error ? error.stack : String(error)}\n`,
    );
    bail('unhandled rejection');
  });
  // Children still running when the process exits are killed by @astra/test-support.
}

export function randomToken(bytes = 24): string {
  return randomBytes(bytes).toString('base64url');
}
