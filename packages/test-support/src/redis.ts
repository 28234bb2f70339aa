import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ManagedProcess, runOk, spawnManaged } from './processes.ts';
import { freePort, TimeoutError, waitFor } from './wait.ts';

export interface RedisServerOptions {
  /** @defaultValue a free loopback port */
  port?: number;
  /**
   * An append-only file fsynced on every write, so an acknowledged write survives a SIGKILL.
   * @defaultValue false: nothing is written to disk, a restarted server comes back empty
   */
  appendOnly?: boolean;
  /**
   * The server's directory (RDB, AOF, cluster nodes files), kept across restarts and never removed.
   * @defaultValue an empty directory per start, removed when that server exits: a replica writes
   * the RDB it receives there, and a server started beside one would load it
   */
  dir?: string;
  /** A config file, read before the arguments (a Sentinel needs one it may rewrite). @defaultValue none */
  configFile?: string;
  /** More redis-server arguments, after ours: `--replicaof`, `--sentinel`, `--loglevel`... @defaultValue none */
  args?: string[];
  /** Append the server's output to this file. @defaultValue output kept in memory */
  logPath?: string;
  /** How long a start may take until PING answers PONG (loading a large dataset takes longer). @defaultValue 30000 */
  readyTimeoutMs?: number;
  /** Called with each process as it is spawned, before it is ready (to watch for crashes). @defaultValue none */
  onSpawn?: (process: ManagedProcess) => void;
}

/**
 * A throwaway redis-server on loopback, never the shared one, that a test may kill and restart on the
 * same port. Every test, chaos run and benchmark starts its servers here, so they all run alike.
 */
export class RedisServer {
  private current: ManagedProcess | undefined;

  /** Use startRedisServer. */
  constructor(
    readonly port: number,
    private readonly options: RedisServerOptions,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** The process of the latest start. */
  get process(): ManagedProcess {
    if (this.current === undefined) throw new Error(`redis-server on port ${this.port} was never started`);
    return this.current;
  }

  get running(): boolean {
    return this.current?.running ?? false;
  }

  /** Starts it again on the same port with the same options (after `kill`), and waits until it answers PING. */
  async restart(): Promise<void> {
    if (this.running) throw new Error(`redis-server on port ${this.port} is running already`);
    const { options } = this;
    const dir = options.dir ?? mkdtempSync(join(tmpdir(), `redis-${this.port}-`));
    const args = [
      ...(options.configFile === undefined ? [] : [options.configFile]),
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      ...(options.appendOnly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
      '--dir',
      dir,
      ...(options.args ?? []),
    ];
    const started = spawnManaged(`redis-${this.port}`, 'redis-server', args, {
      cwd: dir,
      ...(options.logPath === undefined ? {} : { logPath: options.logPath }),
    });
    if (options.dir === undefined)
      void started.exited.then(() => rmSync(dir, { recursive: true, force: true }));
    this.current = started;
    options.onSpawn?.(started);
    const timeoutMs = options.readyTimeoutMs ?? 30_000;
    let state: 'ready' | 'exited';
    try {
      // redis-cli fails while the port is closed and prints an error such as LOADING while the server loads.
      state = await waitFor(
        `redis-server on port ${this.port} to answer PING`,
        async () => (!started.running ? 'exited' : (await this.cli(['PING'])) === 'PONG' ? 'ready' : false),
        timeoutMs,
      );
    } catch (error) {
      await started.kill('SIGKILL');
      if (!(error instanceof TimeoutError)) throw error;
      throw new TimeoutError(`${error.message}\n${started.logTail()}`, { cause: error });
    }
    if (state === 'exited')
      throw new Error(`redis-server on port ${this.port} exited:\n${started.logTail()}`);
  }

  /** Sends a signal that does not end the server: SIGSTOP freezes it, SIGCONT thaws it. */
  signal(signal: 'SIGSTOP' | 'SIGCONT'): void {
    if (!this.running) throw new Error(`redis-server on port ${this.port} is not running`);
    this.current?.signalGroup(signal);
  }

  /** Stops the server (SIGKILL by default: an outage, not a shutdown that saves) and waits for its exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.current?.kill(signal);
  }

  /** Runs redis-cli against this server and returns its trimmed output. */
  async cli(args: string[]): Promise<string> {
    return (await runOk('redis-cli', ['-p', String(this.port), ...args], { timeoutMs: 5000 })).trim();
  }
}

/** Starts a throwaway redis-server (see RedisServerOptions) and waits until it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const server = new RedisServer(options.port ?? (await freePort()), options);
  await server.restart();
  return server;
}
