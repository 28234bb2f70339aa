import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root: processes run from there, as a newcomer would run them. */
export const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const MAIN = 'services/trading/src/main.ts';

/** Variables the service reads: a test sets the ones it means, the rest come from no one. */
const CONFIG_VARIABLES = [
  'DATABASE_URL',
  'REDIS_URL',
  'REDIS_CLUSTER_NODES',
  'HOST',
  'PORT',
  'LOG_LEVEL',
  'DB_POOL_SIZE',
  'BODY_LIMIT_BYTES',
  'EVENT_SOURCE',
  'RELAY_ENABLED',
  'RELAY_BATCH_SIZE',
  'RELAY_POLL_INTERVAL_MS',
  'RELAY_MAX_ATTEMPTS',
  'RELAY_DEDUPE_WINDOW_SECONDS',
  'RELAY_STREAM_MAXLEN',
  'OUTBOX_RETENTION_HOURS',
  'OUTBOX_DELETE_PUBLISHED',
  'METRICS_PORT',
  'METRICS_HOST',
  'IDEMPOTENCY_KEY_TTL_HOURS',
  'DOCS_ENABLED',
  'DEMO_KEY',
  'NODE_ENV',
  'RATE_LIMIT_PER_KEY',
  'RATE_LIMIT_PER_ADDRESS',
  'RATE_LIMIT_WINDOW_MS',
  'DB_STATEMENT_TIMEOUT_MS',
  'DB_LOCK_TIMEOUT_MS',
  'DB_CONNECT_TIMEOUT_MS',
  'HTTP_REQUEST_TIMEOUT_MS',
  'SHUTDOWN_TIMEOUT_MS',
  'ACCESS_LOG',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
];

export function testEnv(overrides: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of CONFIG_VARIABLES) delete env[name];
  // node --test marks its children; the service must not think it is a test runner.
  delete env.NODE_TEST_CONTEXT;
  return { ...env, ...overrides };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child process whose output is collected, with waits that always end. */
export class Spawned {
  stdout = '';
  stderr = '';
  readonly exit: Promise<Exit>;
  private readonly child: ChildProcess;

  constructor(command: string, args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exit = new Promise((resolve, reject) => {
      this.child.once('error', reject);
      this.child.once('close', (code, signal) => resolve({ code, signal }));
    });
  }

  get output(): string {
    return `--- stdout\n${this.stdout}\n--- stderr\n${this.stderr}`;
  }

  /** Resolves with the first match of `pattern` in stdout; rejects on timeout or early exit. */
  async waitForStdout(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exit.then(() => {
      exited = true;
    });
    for (;;) {
      const match = pattern.exec(this.stdout);
      if (match !== null) return match;
      if (exited) throw new Error(`process exited before printing ${pattern}\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Waits for the exit; after `timeoutMs` kills the process and rejects. */
  async exited(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`process did not exit within ${timeoutMs} ms\n${this.output}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exit, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Cleanup for `after`: ends this process if it still runs. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exit.catch(() => {});
    }
  }
}

/** Runs a command to completion (bounded by `timeoutMs`). */
export async function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<Exit & { stdout: string; stderr: string; output: string }> {
  const child = new Spawned(command, args, env);
  const exit = await child.exited(timeoutMs);
  return { ...exit, stdout: child.stdout, stderr: child.stderr, output: child.output };
}

/** `npm` as the user would type it; the test runner's node is first on PATH. */
export const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
