import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

/**
 * Child processes of the tests and the benchmark: each runs in its own process group (so a signal
 * reaches anything it forks), writes its output to a log file or to memory, and is tracked so that
 * none outlives the process that started it, whatever way that ends.
 */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

// Output kept in memory per stream when there is no log file: a chatty benchmark child runs for minutes.
const KEPT_OUTPUT_CHARS = 1_000_000;

const live = new Set<ManagedProcess>();

// Last resort for a process that exits without running its cleanup (an uncaught error, a
// process.exit): SIGKILL every group still running. 'exit' handlers must be synchronous.
process.on('exit', () => {
  for (const managed of live) managed.signalGroup('SIGKILL');
});

export class ManagedProcess {
  readonly exited: Promise<Exit>;
  private exit: Exit | undefined;
  /** Whether we asked it to stop: any other exit is a crash. */
  private stopRequested = false;
  private stdoutText = '';
  private stderrText = '';

  constructor(
    readonly name: string,
    /** The node child; the benchmark talks to its node children over its IPC channel. */
    readonly child: ChildProcess,
    /** Where its output goes; undefined when it is kept in memory (`stdout`, `stderr`). */
    readonly logPath: string | undefined,
  ) {
    live.add(this);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdoutText = (this.stdoutText + chunk).slice(-KEPT_OUTPUT_CHARS);
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderrText = (this.stderrText + chunk).slice(-KEPT_OUTPUT_CHARS);
    });
    this.exited = new Promise((resolve) => {
      // 'close' comes after the output pipes are drained, so `stdout` is complete by then.
      child.once('close', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolve(this.exit);
      });
      // A spawn failure (command missing) emits 'error' and no 'exit'.
      child.once('error', (error) => {
        this.stderrText += `\n${error.message}`;
        this.exit = { code: null, signal: null };
        live.delete(this);
        resolve(this.exit);
      });
    });
  }

  /** -1 when the spawn failed. */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  get killed(): boolean {
    return this.stopRequested;
  }

  /** What it printed on stdout so far (in-memory output only). */
  get stdout(): string {
    return this.stdoutText;
  }

  /** What it printed on stderr so far (in-memory output only). */
  get stderr(): string {
    return this.stderrText;
  }

  /** Both streams, for failure messages. */
  get output(): string {
    if (this.logPath !== undefined) return this.logTail(Number.POSITIVE_INFINITY);
    return `--- stdout\n${this.stdoutText}\n--- stderr\n${this.stderrText}`;
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

  /** Waits for the exit; after `timeoutMs` kills the process and rejects with its output. */
  async exitWithin(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        void this.kill('SIGKILL');
        reject(new Error(`${this.name} did not exit within ${timeoutMs} ms\n${this.output}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves with the first match of `pattern` in stdout; rejects on timeout or an earlier exit. */
  async waitForStdout(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.stdoutText);
      if (match !== null) return match;
      if (!this.running) throw new Error(`${this.name} exited before printing ${pattern}\n${this.output}`);
      if (Date.now() > deadline) {
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${this.name} to print ${pattern}\n${this.output}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** The last `lines` lines of the process's output, for failure messages. */
  logTail(lines = 30): string {
    let text: string;
    if (this.logPath === undefined) text = `${this.stdoutText}\n${this.stderrText}`;
    else {
      try {
        text = readFileSync(this.logPath, 'utf8');
      } catch {
        return '(no log)';
      }
    }
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }
}

export interface SpawnOptions {
  /** @defaultValue the parent's environment */
  env?: NodeJS.ProcessEnv;
  /** @defaultValue the parent's working directory */
  cwd?: string;
  /** Append both streams to this file. @defaultValue none: output is kept in memory */
  logPath?: string;
  /** Open an IPC channel (node children that report progress). @defaultValue false */
  ipc?: boolean;
}

export function spawnManaged(
  name: string,
  command: string,
  args: string[],
  options: SpawnOptions = {},
): ManagedProcess {
  const log = options.logPath === undefined ? undefined : openSync(options.logPath, 'a');
  try {
    const output = log ?? 'pipe';
    const child = spawn(command, args, {
      cwd: options.cwd ?? process.cwd(),
      env: options.env ?? process.env,
      stdio: options.ipc ? ['ignore', output, output, 'ipc'] : ['ignore', output, output],
      detached: true,
    });
    return new ManagedProcess(name, child, options.logPath);
  } finally {
    if (log !== undefined) closeSync(log);
  }
}

/** Every tracked process still running: cleanup code kills these whatever else failed. */
export function liveProcesses(): ManagedProcess[] {
  return [...live];
}

export interface RunResult extends Exit {
  stdout: string;
  stderr: string;
  /** Both streams, for assertion messages. */
  output: string;
}

/** Runs a command to completion; after `timeoutMs` (default 60 s) kills it and rejects. */
export async function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const { timeoutMs = 60_000, ...spawnOptions } = options;
  const child = spawnManaged(command, command, args, spawnOptions);
  const exit = await child.exitWithin(timeoutMs);
  return { ...exit, stdout: child.stdout, stderr: child.stderr, output: child.output };
}

/** Like `run`, returning stdout; fails on a non-zero exit. */
export async function runOk(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.signal ?? result.code}: ${result.stderr.trim()}`,
    );
  }
  return result.stdout;
}
