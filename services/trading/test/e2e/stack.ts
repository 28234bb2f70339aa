import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  liveProcesses,
  type ManagedProcess,
  type RedisServer,
  runOk,
  spawnManaged,
  startRedisServer,
  waitFor,
} from '@astra/test-support';
import { createScratchDatabase } from '../../../../packages/outbox/test/support.ts';
import { testEnv } from '../process.ts';
import { createTestDatabase, type TestDatabase } from '../support.ts';
import { HttpClient } from './http.ts';

/**
 * The system as a user runs it, for black-box tests: a fresh database, a throwaway redis-server on a
 * free loopback port, and the service, relay and CLI started as separate OS processes with the same
 * entry points as `npm start`, `npm runOk relay` and `npm runOk cli`. Tests talk to it only through HTTP,
 * SQL and Redis.
 */

export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const SERVICE_MAIN = 'services/trading/src/main.ts';
const RELAY_MAIN = 'services/trading/src/relay-main.ts';
const CLI_MAIN = 'services/trading/src/cli.ts';
const REPORTING_MAIN = 'services/reporting/src/main.ts';

const START_TIMEOUT_MS = 30_000;

export interface ServiceHandle {
  process: ManagedProcess;
  port: number;
  /** Where its /metrics is served (METRICS_PORT), apart from the API. */
  metricsPort: number;
}

export interface RelayHandle {
  process: ManagedProcess;
  metricsPort: number;
}

export interface ReportingHandle {
  process: ManagedProcess;
  /** The HTTP port it picked (REPORTING_PORT=0), read from its log. */
  port: number;
  /** Its metrics port (REPORTING_METRICS_PORT=0), read from its log. */
  metricsPort: number;
  /** Its consumer's name in the group. */
  consumer: string;
}

type Listening = Omit<ReportingHandle, 'process'>;

/** The ports and consumer name from a reporting process's 'listening' log line, once it is there. */
function reportingListening(managed: ManagedProcess): Listening | undefined {
  for (const line of managed.logTail(200).split('\n')) {
    if (!line.includes('reporting service listening')) continue;
    const { address, metricsPort, consumer } = JSON.parse(line) as {
      address?: string;
      metricsPort?: number;
      consumer?: string;
    };
    if (address !== undefined && metricsPort !== undefined && consumer !== undefined)
      return { port: Number(new URL(address).port), metricsPort, consumer };
  }
  return undefined;
}

export interface StackOptions {
  /** Name used in the work directory. */
  label?: string;
  /** Redis with an fsynced append-only file, for tests that kill Redis and count every entry after. */
  durableRedis?: boolean;
  /** Environment for every service and relay process (e.g. RELAY_POLL_INTERVAL_MS). */
  env?: Record<string, string>;
}

export class Stack {
  private readonly processes = new Set<ManagedProcess>();
  private started = 0;
  private closed = false;
  /** Processes that exited without being asked to: a crash of the system under test. */
  readonly crashes: string[] = [];
  /** A small client for health checks; tests bring their own for load. */
  private readonly probe = new Map<number, HttpClient>();
  /** The reporting service's own database, made on the first startReporting(). */
  private reportingDb: Promise<{ url: string; dropDatabase(): Promise<void> }> | undefined;

  private constructor(
    readonly db: TestDatabase,
    readonly redis: RedisServer,
    readonly workDir: string,
    private readonly extraEnv: Record<string, string>,
  ) {}

  /** Records a process that exited on its own, with the end of its output. */
  private watch(managed: ManagedProcess): void {
    void managed.exited.then((exit) => {
      if (!managed.killed && !this.closed) {
        this.crashes.push(
          `${managed.name} (pid ${managed.pid}) exited on its own (${exit.signal ?? `code ${exit.code}`}):\n${managed.logTail(12)}`,
        );
      }
    });
  }

  static async create(options: StackOptions = {}): Promise<Stack> {
    const workDir = mkdtempSync(join(tmpdir(), `astra-${options.label ?? 'e2e'}-`));
    // An empty database: the service migrates it at start, as `npm start` does on a fresh machine.
    const db = await createTestDatabase({ migrated: false });
    try {
      let stack: Stack | undefined;
      const redis = await startRedisServer({
        dir: workDir,
        // fsync always: an acknowledged write survives a SIGKILL of the server.
        appendOnly: options.durableRedis ?? false,
        logPath: join(workDir, 'redis.log'),
        // Each restart's process: a Redis that dies without being killed is a crash like any other.
        onSpawn: (managed) => stack?.watch(managed),
      });
      stack = new Stack(db, redis, workDir, options.env ?? {});
      // The first start came before the stack.
      stack.watch(redis.process);
      return stack;
    } catch (error) {
      await db.drop();
      rmSync(workDir, { recursive: true, force: true });
      throw error;
    }
  }

  /** The environment of a service or relay process: ours, never the caller's config variables. */
  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return testEnv({
      DATABASE_URL: this.db.url,
      REDIS_URL: this.redis.url,
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      ...this.extraEnv,
      ...extra,
    });
  }

  private spawnNode(kind: string, main: string, env: NodeJS.ProcessEnv): ManagedProcess {
    this.started++;
    const managed = spawnManaged(`${kind}-${this.started}`, process.execPath, ['--import', 'tsx', main], {
      cwd: REPO_ROOT,
      env,
      logPath: join(this.workDir, `${kind}-${this.started}.log`),
    });
    this.processes.add(managed);
    this.watch(managed);
    return managed;
  }

  private client(port: number): HttpClient {
    let client = this.probe.get(port);
    if (client === undefined) {
      client = new HttpClient(port, { maxSockets: 2, defaultTimeoutMs: 2000 });
      this.probe.set(port, client);
    }
    return client;
  }

  private async waitHealthy(managed: ManagedProcess, port: number, healthy: (body: string) => boolean) {
    await waitFor(
      `${managed.name} on port ${port}`,
      async () => {
        if (!managed.running) throw new Error(`${managed.name} exited:\n${managed.logTail()}`);
        const response = await this.client(port).send({ method: 'GET', path: '/healthz' });
        return response.status === 200 && healthy(response.body);
      },
      START_TIMEOUT_MS,
    ).catch(async (error: unknown) => {
      await managed.kill('SIGKILL');
      throw new Error(
        `${error instanceof Error ? error.message : String(error)}\n--- ${managed.name} log ---\n${managed.logTail()}`,
      );
    });
  }

  /**
   * Starts the service (`npm start`'s entry point) and waits until it answers /healthz. `relay: false`
   * sets RELAY_ENABLED=false. `port` lets a restarted service come back where its clients expect it.
   */
  async startService(
    options: { relay: boolean; port?: number; env?: Record<string, string> } = { relay: true },
  ): Promise<ServiceHandle> {
    const port = options.port ?? (await freePort());
    const metricsPort = await freePort();
    const managed = this.spawnNode(
      'service',
      SERVICE_MAIN,
      this.env({
        PORT: String(port),
        RELAY_ENABLED: String(options.relay),
        METRICS_PORT: String(metricsPort),
        ...options.env,
      }),
    );
    await this.waitHealthy(managed, port, () => true);
    return { process: managed, port, metricsPort };
  }

  /** Starts a standalone relay (`npm runOk relay`'s entry point) and waits until its loop runs. */
  async startRelay(env: Record<string, string> = {}): Promise<RelayHandle> {
    const metricsPort = await freePort();
    const managed = this.spawnNode(
      'relay',
      RELAY_MAIN,
      this.env({ METRICS_PORT: String(metricsPort), ...env }),
    );
    await this.waitHealthy(
      managed,
      metricsPort,
      (body) => (JSON.parse(body) as { relay?: unknown }).relay === true,
    );
    return { process: managed, metricsPort };
  }

  /** The reporting database's URL: created empty on first use; each reporting process migrates it. */
  async reportingDatabaseUrl(): Promise<string> {
    this.reportingDb ??= createScratchDatabase('astra_reporting_test');
    return (await this.reportingDb).url;
  }

  /**
   * Starts a reporting service (`npm runOk reporting`'s entry point) on this stack's Redis and databases,
   * with REPORTING_PORT=0 and REPORTING_METRICS_PORT=0 as several on one host runOk, and waits until it serves /healthz.
   */
  async startReporting(env: Record<string, string> = {}): Promise<ReportingHandle> {
    const managed = this.spawnNode(
      'reporting',
      REPORTING_MAIN,
      this.env({
        REPORTING_DATABASE_URL: await this.reportingDatabaseUrl(),
        TRADING_DATABASE_URL: this.db.url,
        REPORTING_PORT: '0',
        REPORTING_METRICS_PORT: '0',
        DB_POOL_SIZE: '4',
        // Its ports are read from the 'listening' line, logged at info.
        LOG_LEVEL: 'info',
        ...env,
      }),
    );
    let listening: Listening | undefined;
    await waitFor(
      `${managed.name} listening`,
      () => {
        if (!managed.running) throw new Error(`${managed.name} exited:\n${managed.logTail()}`);
        listening = reportingListening(managed);
        return listening !== undefined;
      },
      START_TIMEOUT_MS,
    ).catch(async (error: unknown) => {
      await managed.kill('SIGKILL');
      throw error;
    });
    const ready = listening as Listening;
    await this.waitHealthy(managed, ready.port, () => true);
    return { process: managed, ...ready };
  }

  /** Runs the CLI (`npm runOk cli -- ...`) against this stack's database; returns its stdout. */
  cli(args: string[]): Promise<string> {
    return runOk(process.execPath, ['--import', 'tsx', CLI_MAIN, ...args], {
      cwd: REPO_ROOT,
      env: this.env(),
      timeoutMs: 60_000,
    });
  }

  /** Creates an API key with the CLI (`keys create`), which prints it as its last line. */
  async createKey(owner: { account: string } | { admin: true }): Promise<string> {
    const args = 'account' in owner ? ['--account', owner.account] : ['--admin'];
    const output = await this.cli(['keys', 'create', ...args]);
    const key = output.trim().split('\n').at(-1)?.trim();
    if (key === undefined || !/^astra_[A-Za-z0-9_-]+$/.test(key)) throw new Error(`no key in: ${output}`);
    return key;
  }

  /** Output tails of every process started, for failure messages. */
  logTails(lines = 15): string {
    return [...this.processes]
      .map((managed) => `--- ${managed.name} (pid ${managed.pid}) ---\n${managed.logTail(lines)}`)
      .join('\n');
  }

  /**
   * Kills every process of the stack and Redis, drops the database and removes the work directory
   * (kept with its logs when `keepLogs`). Safe to call after any failure, and more than once.
   */
  async close(options: { keepLogs?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const client of this.probe.values()) client.close();
    this.probe.clear();
    await Promise.all([...this.processes].map((managed) => managed.kill('SIGKILL')));
    await this.redis.kill();
    await this.db.drop();
    await (await this.reportingDb?.catch(() => undefined))?.dropDatabase();
    if (!options.keepLogs) rmSync(this.workDir, { recursive: true, force: true });
  }
}

/** For after() hooks: whatever a test left running, by any path, is killed here. */
export async function killLeftovers(): Promise<void> {
  await Promise.all(liveProcesses().map((managed) => managed.kill('SIGKILL')));
}
