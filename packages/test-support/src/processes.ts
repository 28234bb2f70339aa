import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

/**
 * Child processes of the tests: each runs in its own process group (so a signal reaches
 * anything it forks), writes its output to a log file, and is tracked so that none outlives the test
 * process, whatever way that ends.
 */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<ManagedProcess>();

// Last resort for a test process that exits without running its cleanup (an uncaught error, a
// process.exit): SIGKILL every group still running. 'exit' handlers must be synchronous.
process.on('exit', () => {
  for (const managed of live) managed.signalGroup('SIGKILL');
});

export class ManagedProcess {
  readonly exited: Promise<Exit>;
  private exit: Exit | undefined;
  /** Whether we asked it to stop: any other exit is a crash. */
  private stopRequested = false;

  constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    readonly logPath: string,
  ) {
    live.add(this);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolve(this.exit);
      });
      // A spawn failure (command missing) emits 'error' and no 'exit'.
      child.once('error', () => {
        this.exit = { code: null, signal: null };
        live.delete(this);
        resolve(this.exit);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  get killed(): boolean {
    return this.stopRequested;
  }

  signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined || this.exit !== undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // Already gone.
    }
  }

  /**
   * Sends `signal` to the process group and waits for the exit. A process that ignores a gentler
   * signal for `graceMs` gets SIGKILL.
   */
  async kill(signal: NodeJS.Signals = 'SIGKILL', graceMs = 10_000): Promise<Exit> {
    this.stopRequested = true;
    this.signalGroup(signal);
    if (signal !== 'SIGKILL') {
      const timer = setTimeout(() => this.signalGroup('SIGKILL'), graceMs);
      try {
        return await this.exited;
      } finally {
        clearTimeout(timer);
      }
    }
    return this.exited;
  }

  /** The last `lines` lines of the process's output, for failure messages. */
  logTail(lines = 30): string {
    try {
      const text = readFileSync(this.logPath, 'utf8').trimEnd().split('\n');
      return text.slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

export interface SpawnOptions {
  env: NodeJS.ProcessEnv;
  cwd: string;
  logPath: string;
}

export function spawnManaged(name: string, command: string, args: string[], options: SpawnOptions) {
  const log = openSync(options.logPath, 'a');
  try {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', log, log],
      detached: true,
    });
    return new ManagedProcess(name, child, options.logPath);
  } finally {
    closeSync(log);
  }
}

/** Every tracked process still running: cleanup code kills these whatever else failed. */
export function liveProcesses(): ManagedProcess[] {
  return [...live];
}

/** Runs a command to completion (bounded) and returns its stdout; fails on a non-zero exit. */
export async function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<string> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const timeoutMs = options.timeoutMs ?? 60_000;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
    });
    if (code !== 0) {
      throw new Error(
        `${command} ${args.join(' ')} exited ${code ?? signal}${signal === 'SIGKILL' ? ` (timeout ${timeoutMs} ms?)` : ''}: ${stderr.trim()}`,
      );
    }
    return stdout;
  } finally {
    clearTimeout(timer);
  }
}
