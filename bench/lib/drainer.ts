/** The benchmark's side of a drainer process (bench/workers/drainer.ts). */

import { fileURLToPath } from 'node:url';
import { type ManagedProcess, TimeoutError } from '@astra/test-support';
import type { DrainerConfig, DrainerMessage, Phases } from '../workers/drainer.ts';
import { spawnNode, withTimeout } from './infra.ts';
import type { RelayTrace } from './relay.ts';

const DRAINER = fileURLToPath(new URL('../workers/drainer.ts', import.meta.url));

export class Drainer {
  done = 0;
  deferred = 0;
  phases: Phases | null = null;
  /** A stamping reporting consumer's applied events: event id -> epoch ms when its apply committed. */
  readonly applied = new Map<string, number>();
  error: string | undefined;

  private constructor(readonly child: ManagedProcess) {
    child.child.on('message', (message: DrainerMessage) => {
      if (message.type === 'progress') {
        this.done = message.done;
        this.phases = message.phases;
        this.deferred = message.deferred;
      } else if (message.type === 'applied') {
        for (const [eventId, at] of message.stamps) this.applied.set(eventId, at);
      } else if (message.type === 'error') {
        this.error ??= message.message;
      }
    });
  }

  /** Spawns a drainer and waits until it is connected and ready to go. */
  static async start(name: string, config: DrainerConfig, nodeArgs: string[] = []): Promise<Drainer> {
    const child = spawnNode(name, DRAINER, [JSON.stringify(config)], { ipc: true, nodeArgs });
    const drainer = new Drainer(child);
    const ready = new Promise<void>((resolve, reject) => {
      child.child.on('message', (message: DrainerMessage) => {
        if (message.type === 'ready') resolve();
        if (message.type === 'error') reject(new Error(`${name}: ${message.message}`));
      });
      void child.exited.then((exit) =>
        reject(new Error(`${name} exited (${exit.signal ?? exit.code}) before ready: ${child.logTail()}`)),
      );
    });
    try {
      await withTimeout(ready, 60_000, `${name} start`);
    } catch (error) {
      void child.kill();
      throw error;
    }
    return drainer;
  }

  get pid(): number {
    return this.child.pid;
  }

  go(): void {
    this.child.child.send({ type: 'go' });
  }

  /** A traced relay's stamps and loop delay since the last call (config `trace: true`). */
  async trace(): Promise<RelayTrace> {
    const reply = new Promise<RelayTrace>((resolve) => {
      const onMessage = (message: DrainerMessage) => {
        if (message.type !== 'trace') return;
        this.child.child.off('message', onMessage);
        resolve(message.trace);
      };
      this.child.child.on('message', onMessage);
    });
    this.child.child.send({ type: 'trace' });
    return withTimeout(reply, 10_000, `${this.child.name} trace`);
  }

  /** Throws when the drainer reported an error or died. */
  check(): void {
    if (this.error !== undefined) throw new Error(`${this.child.name}: ${this.error}`);
    if (!this.child.running) throw new Error(`${this.child.name} exited: ${this.child.logTail()}`);
  }

  async stop(): Promise<void> {
    if (!this.child.running) return;
    try {
      this.child.child.send({ type: 'stop' });
      await withTimeout(this.child.exited, 8000, `${this.child.name} stop`);
    } catch (error) {
      if (!(error instanceof TimeoutError) && this.child.running) throw error;
      await this.child.kill();
    }
  }
}
