import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { toPublishable } from './recovery.ts';
import { type RelayCommand, RelayCore, type RelayEvents } from './relay/core.ts';
import { type RelayOptions, type ResolvedRelayOptions, resolveRelayOptions } from './relay/options.ts';
import {
  type MarkBatch,
  postgresConnector,
  type RelayConnector,
  type RelaySession,
} from './relay/session.ts';

export type { RelayEvents } from './relay/core.ts';
export { type RelayOptions, resolveRelayOptions } from './relay/options.ts';
export type { RelayConnector, RelaySession } from './relay/session.ts';

/** Where the relay's time comes from: the real clock, or a test's. */
export interface RelayClock {
  now(): number;
  /** Resolves after `ms`, or as soon as `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

/** What the relay talks to, for tests and embedders; each defaults to the real thing. */
export interface RelayRuntime {
  /** Opens the database session (default: PostgreSQL at `connectionString`). */
  connect?: RelayConnector;
  clock?: RelayClock;
  /** The jitter of backoff delays. */
  random?: () => number;
}

const systemClock: RelayClock = {
  now: () => Date.now(),
  sleep: (ms, signal) => sleep(ms, undefined, { signal }).catch(() => {}),
};

/**
 * Moves outbox events to the broker: claim a batch from the partitions this relay owns, publish it in
 * one call, mark what the broker acknowledged. Survives broker and database outages by backing off
 * and retrying; never marks an event it has not seen acknowledged.
 *
 * This class is the I/O shell: the decisions are `RelayCore`'s, and the shell runs the commands the
 * core gives, one at a time, against the session, the publisher and the clock.
 */
export class OutboxRelay extends EventEmitter<RelayEvents> {
  private readonly options: ResolvedRelayOptions;
  private readonly core: RelayCore;
  private readonly connect: RelayConnector;
  private readonly clock: RelayClock;
  private session: RelaySession | undefined;
  private loop: Promise<void> | undefined;
  /** The current wait, so that a wake-up or a stop can end it. */
  private waiting: { controller: AbortController; byNotify: boolean } | undefined;
  /** At most one confirmation call in flight; a failed one is dropped (the journal's window expires it). */
  private confirming: Promise<void> = Promise.resolve();

  constructor(options: RelayOptions, runtime: RelayRuntime = {}) {
    super();
    this.options = resolveRelayOptions(options);
    this.core = new RelayCore(this.options, this.emit.bind(this), runtime.random);
    this.connect = runtime.connect ?? postgresConnector(this.options);
    this.clock = runtime.clock ?? systemClock;
  }

  get running(): boolean {
    return this.loop !== undefined && !this.core.isStopping;
  }

  get partitions(): number[] {
    return this.core.partitions;
  }

  /** One relay at a time is the leader: it runs retention and reports the table-wide gauges. */
  get isLeader(): boolean {
    return this.core.isLeader;
  }

  get isBrokerUp(): boolean {
    return this.core.isBrokerUp;
  }

  /** True while this relay owns every partition, so that waking it alone wakes every relay needed. */
  get ownsAllPartitions(): boolean {
    return this.core.ownsAllPartitions;
  }

  start(): void {
    if (this.loop !== undefined) return;
    this.core.start();
    this.loop = this.run();
    this.emit('running', { running: true });
  }

  /** Finishes the batch in hand, releases the partitions (by ending the session) and returns. */
  async stop(): Promise<void> {
    this.core.stop();
    this.waiting?.controller.abort();
    await this.loop;
    this.loop = undefined;
    // Our own publishes have all returned, so nothing of ours is in flight: forget our ids now
    // rather than leave them to the journal's window.
    const confirm = this.core.dueConfirmations(this.clock.now(), true);
    if (confirm !== undefined) this.confirm(confirm.events);
    await this.confirming;
    await this.closeSession();
    this.emit('running', { running: false });
  }

  /**
   * Looks at the outbox now instead of at the next poll: what a NOTIFY does, without the round trip
   * through PostgreSQL. For writers in this relay's own process (createRelayWaker's `localRelay`).
   * Backoff waits are not cut short: notifications keep coming during an outage.
   */
  wake(): void {
    this.core.wake();
    if (this.waiting?.byNotify) this.waiting.controller.abort();
  }

  private async run(): Promise<void> {
    for (;;) {
      const command = this.core.next(this.clock.now());
      if (command.kind === 'stop') return;
      try {
        await this.execute(command);
      } catch (error) {
        this.core.fail(error);
      }
    }
  }

  private async execute(command: Exclude<RelayCommand, { kind: 'stop' }>): Promise<void> {
    const { core, clock } = this;
    const { publisher } = this.options;
    switch (command.kind) {
      case 'connect':
        this.session = await this.connect(() => this.wake());
        core.connected();
        return;
      case 'disconnect':
        return this.closeSession();
      case 'sleep': {
        const controller = new AbortController();
        this.waiting = { controller, byNotify: command.byNotify };
        await clock.sleep(command.ms, controller.signal);
        this.waiting = undefined;
        core.slept(command.byNotify);
        return;
      }
      case 'rebalance':
        core.rebalanced(await this.open().rebalance(command.stallTimeoutMs), clock.now());
        return;
      case 'verify':
        core.verified(command.checks, await publisher.check(command.checks, core.fence.epochs));
        return;
      case 'retain':
        core.retained(await this.open().retain(), clock.now());
        return;
      case 'confirm':
        this.confirm(command.events);
        return;
      case 'ping':
        core.pinged(await publisher.ping());
        return;
      case 'recheck': {
        const verdicts = await publisher.check(command.checks, core.fence.epochs);
        core.rechecked(command.checks, verdicts, await this.open().streamRecords(command.partitions));
        return;
      }
      case 'restore':
        core.restored(command.checks, await publisher.check(command.checks, core.fence.epochs, true));
        return;
      case 'repair': {
        const result = await this.open().repair(publisher, core.fence, command.losses);
        core.repaired(command.losses, result, clock.now());
        return;
      }
      case 'claim':
        core.claimed(await this.open().claim(command.partitions, command.limit, command.exclude));
        return;
      case 'publish': {
        const [outcomes] = await Promise.all([
          publisher.publish(command.rows.map(toPublishable), { fence: core.fence }),
          command.mark && this.mark(command.mark),
        ]);
        core.published(command.rows, outcomes, new Date(clock.now()));
        return;
      }
      case 'mark':
        return this.mark(command.batch);
      case 'reject':
        core.rejected(command.rejections, await this.open().reject(command.rejections));
        return;
    }
  }

  /** Not awaited: chained so that at most one confirmation call is in flight. */
  private confirm(events: readonly { eventId: string; stream: string }[]): void {
    const { publisher } = this.options;
    this.confirming = this.confirming.then(() => publisher.confirm(events)).catch(() => {});
  }

  private async mark(batch: MarkBatch): Promise<void> {
    await this.open().mark(batch);
    this.core.marked(batch, this.clock.now());
  }

  /** The session the core's command needs; the core only asks for one after `connected`. */
  private open(): RelaySession {
    if (this.session === undefined) throw new Error('the relay has no database session');
    return this.session;
  }

  private async closeSession(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    this.core.sessionClosed();
    await session?.close();
  }
}
