/**
 * In-memory stand-ins for what the relay talks to (clock, outbox table and partition locks, broker),
 * so its loop runs in a unit test with every interleaving under the test's control. Each models the
 * rule the relay relies on and nothing more; the integration tests hold the real ones to the same rules.
 */

import type {
  PublishableEvent,
  Publisher,
  PublishFence,
  PublishOutcome,
  StreamCheck,
  StreamVerdict,
} from '../../src/publisher.ts';
import { streamKey } from '../../src/recovery.ts';
import type { MarkBatch, Rebalance, Rejection } from '../../src/relay/session.ts';
import type { RelayClock, RelayConnector, RelaySession } from '../../src/relay.ts';
import { PARTITION_COUNT } from '../../src/schema.ts';
import type { ClaimedRow, StreamRecordRow } from '../../src/sql/relayQueries.ts';

/** Lets every promise chain that can move without the clock or a gate move. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

export class FakeClock implements RelayClock {
  time = 1_700_000_000_000;
  private sleepers: { until: number; ms: number; resolve: () => void }[] = [];

  now(): number {
    return this.time;
  }

  sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const sleeper = { until: this.time + ms, ms, resolve };
      this.sleepers.push(sleeper);
      signal.addEventListener('abort', () => this.wakeSleeper(sleeper), { once: true });
    });
  }

  /** The lengths of the waits in progress. */
  get waits(): number[] {
    return this.sleepers.map((sleeper) => sleeper.ms);
  }

  async advance(ms: number): Promise<void> {
    await settle();
    this.time += ms;
    for (const sleeper of [...this.sleepers]) if (sleeper.until <= this.time) this.wakeSleeper(sleeper);
    await settle();
  }

  private wakeSleeper(sleeper: { resolve: () => void }): void {
    this.sleepers = this.sleepers.filter((s) => s !== sleeper);
    sleeper.resolve();
  }
}

class Gate {
  private open!: () => void;
  readonly opened = new Promise<void>((resolve) => {
    this.open = resolve;
  });
  entered = false;
  release(): void {
    this.open();
  }
}

export interface FakeRow {
  id: string;
  partition: number;
  eventId: string;
  aggregateId: string;
  type: string;
  status: 'PENDING' | 'PUBLISHED' | 'FAILED';
  attempts: number;
  nextAttemptAt: number;
  entryId: string | null;
}

type SessionCall = 'connect' | 'rebalance' | 'claim' | 'mark' | 'reject';

/** The outbox table, the partition locks and the epochs, shared by every session. */
export class FakeDatabase {
  readonly rows: FakeRow[] = [];
  readonly log: string[] = [];
  readonly locks = new Map<number, FakeSession>();
  readonly epochs = new Map<number, number>();
  readonly records = new Map<string, StreamRecordRow>();
  readonly sessions = new Set<FakeSession>();
  /** Broken rules the relay must never break, for the test to assert empty. */
  readonly violations: string[] = [];
  leader: FakeSession | undefined;
  private readonly faults = new Map<SessionCall, number>();
  private readonly gates = new Map<SessionCall, Gate>();

  constructor(
    readonly clock: FakeClock,
    readonly maxAttempts = 10,
  ) {}

  /** Writes events in order; an aggregate's partition is its number modulo the partition count. */
  write(aggregate: number, count = 1): FakeRow[] {
    const written: FakeRow[] = [];
    for (let i = 0; i < count; i++) {
      const id = String(this.rows.length + 1);
      const row: FakeRow = {
        id,
        partition: aggregate % PARTITION_COUNT,
        eventId: `event-${id}`,
        aggregateId: `aggregate-${aggregate}`,
        type: 'thing_happened',
        status: 'PENDING',
        attempts: 0,
        nextAttemptAt: this.clock.now(),
        entryId: null,
      };
      this.rows.push(row);
      written.push(row);
    }
    return written;
  }

  /** What a commit's NOTIFY does. */
  notify(): void {
    for (const session of this.sessions) session.wake();
  }

  connector(): RelayConnector {
    return async (wake) => {
      await this.enter('connect');
      const session = new FakeSession(this, wake);
      this.sessions.add(session);
      return session;
    };
  }

  /** The next `times` calls of this kind fail, as a dropped connection does. */
  failNext(call: SessionCall, times = 1): void {
    this.faults.set(call, times);
  }

  /** The next call of this kind waits until the returned gate is released. */
  hold(call: SessionCall): Gate {
    const gate = new Gate();
    this.gates.set(call, gate);
    return gate;
  }

  /** Ends a session from outside, as another relay ending a frozen one does: its locks go at once. */
  terminate(session: FakeSession): void {
    session.closed = true;
    for (const [partition, holder] of this.locks) if (holder === session) this.locks.delete(partition);
    if (this.leader === session) this.leader = undefined;
    this.sessions.delete(session);
  }

  async enter(call: SessionCall, session?: FakeSession): Promise<void> {
    this.log.push(`${call} start`);
    const gate = this.gates.get(call);
    if (gate !== undefined) {
      this.gates.delete(call);
      gate.entered = true;
      await gate.opened;
    }
    if (session?.closed) throw new Error('Connection terminated');
    const faults = this.faults.get(call) ?? 0;
    if (faults > 0) {
      this.faults.set(call, faults - 1);
      throw new Error(`injected ${call} failure`);
    }
  }
}

export class FakeSession implements RelaySession {
  closed = false;

  constructor(
    private readonly db: FakeDatabase,
    readonly wake: () => void,
  ) {}

  get partitions(): number[] {
    return [...this.db.locks].filter(([, holder]) => holder === this).map(([partition]) => partition);
  }

  async rebalance(): Promise<Rebalance> {
    const { db } = this;
    await db.enter('rebalance', this);
    if (db.leader === undefined) db.leader = this;
    const share = Math.ceil(PARTITION_COUNT / db.sessions.size);
    const held = this.partitions.sort((a, b) => a - b);
    const released = held.slice(share);
    for (const partition of released) db.locks.delete(partition);
    const taken: number[] = [];
    for (let partition = 0; partition < PARTITION_COUNT && held.length + taken.length < share; partition++) {
      if (db.locks.has(partition)) continue;
      db.locks.set(partition, this);
      db.epochs.set(partition, (db.epochs.get(partition) ?? 0) + 1);
      taken.push(partition);
    }
    return {
      takeovers: [],
      taken,
      released,
      partitions: this.partitions.sort((a, b) => a - b),
      leader: db.leader === this,
      epochs: taken.map((partition) => ({ partition, epoch: db.epochs.get(partition) ?? 0 })),
      records: [...db.records.values()].filter((record) => taken.includes(record.partition)),
    };
  }

  async claim(partitions: number[], limit: number, exclude: string[]): Promise<ClaimedRow[]> {
    const { db } = this;
    await db.enter('claim', this);
    const now = db.clock.now();
    const claimed: ClaimedRow[] = [];
    for (const partition of partitions) {
      for (const row of db.rows) {
        if (claimed.length === limit) return claimed;
        if (row.partition !== partition || row.status !== 'PENDING' || exclude.includes(row.id)) continue;
        if (row.attempts > 0 && row.nextAttemptAt > now) continue;
        const waitsBehind = db.rows.some(
          (earlier) =>
            earlier.aggregateId === row.aggregateId &&
            Number(earlier.id) < Number(row.id) &&
            (earlier.status === 'FAILED' || (earlier.status === 'PENDING' && earlier.attempts > 0)),
        );
        if (!waitsBehind) claimed.push(claimedRow(row));
      }
    }
    return claimed;
  }

  async mark(batch: MarkBatch): Promise<void> {
    const { db } = this;
    await db.enter('mark', this);
    for (const ack of batch.acks) {
      const row = db.rows.find((r) => r.id === ack.rowId);
      if (row === undefined || row.status !== 'PENDING') throw new Error(`row ${ack.rowId} is not PENDING`);
      if (db.locks.get(row.partition) !== this)
        db.violations.push(`${row.eventId} marked by a session not holding partition ${row.partition}`);
      row.status = 'PUBLISHED';
      row.entryId = ack.entryId;
    }
    for (const record of batch.records) {
      const key = streamKey(record.stream, record.partition);
      const published = Number(db.records.get(key)?.published ?? 0) + record.count;
      db.records.set(key, {
        stream: record.stream,
        partition: record.partition,
        last_entry_id: record.lastEntryId,
        last_event_id: record.lastEventId,
        published: String(published),
        base_count: '0',
      });
    }
    db.log.push('mark end');
  }

  async reject(rejections: Rejection[]): Promise<{ id: string; status: string }[]> {
    const { db } = this;
    await db.enter('reject', this);
    return rejections.map(({ rowId, delayMs }) => {
      const row = db.rows.find((r) => r.id === rowId) as FakeRow;
      row.attempts++;
      row.nextAttemptAt = db.clock.now() + delayMs;
      if (row.attempts >= db.maxAttempts) row.status = 'FAILED';
      return { id: row.id, status: row.status };
    });
  }

  async streamRecords(partitions: number[]): Promise<StreamRecordRow[]> {
    return [...this.db.records.values()].filter((record) => partitions.includes(record.partition));
  }

  async repair(): Promise<never> {
    throw new Error('the fake broker never loses data');
  }

  async retain(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    this.db.terminate(this);
  }
}

function claimedRow(row: FakeRow): ClaimedRow {
  return {
    id: row.id,
    partition: row.partition,
    event_id: row.eventId,
    event_type: row.type,
    source: 'test',
    aggregate_type: 'thing',
    aggregate_id: row.aggregateId,
    data: '{}',
    traceparent: null,
    tracestate: null,
    created_at: new Date(0),
    attempts: row.attempts,
  };
}

export interface FakeEntry {
  entryId: string;
  eventId: string;
  aggregateId: string;
}

/**
 * A broker with the publisher's promises: one entry per event id however often offered, an aggregate's
 * events in order (a later one is held while an earlier one in the call did not go out), and calls
 * whose fence carries an older epoch than the broker has seen refused.
 */
export class FakePublisher implements Publisher {
  readonly entries: FakeEntry[] = [];
  readonly confirmed: { eventId: string; at: number }[] = [];
  readonly calls: { events: string[]; epochs: Map<number, number> }[] = [];
  down = false;
  /** Event ids the broker refuses, each for as many calls as given. */
  readonly refuse = new Map<string, number>();
  private readonly journal = new Map<string, string>();
  private readonly epochs = new Map<number, number>();
  private gate: { gate: Gate; skip: number } | undefined;
  private sequence = 0;

  constructor(private readonly clock: FakeClock) {}

  /** The publish after the next `skip` ones waits until the returned gate is released. */
  hold(skip = 0): Gate {
    const gate = new Gate();
    this.gate = { gate, skip };
    return gate;
  }

  async publish(
    events: readonly PublishableEvent[],
    options?: { fence?: PublishFence },
  ): Promise<PublishOutcome[]> {
    let gate: Gate | undefined;
    if (this.gate !== undefined && this.gate.skip-- === 0) {
      gate = this.gate.gate;
      this.gate = undefined;
    }
    const epochs = new Map(options?.fence?.epochs ?? []);
    this.calls.push({ events: events.map((event) => event.eventId), epochs });
    if (gate !== undefined) {
      gate.entered = true;
      await gate.opened;
    }
    if (this.down) return events.map(() => ({ status: 'unavailable', error: 'broker down' }));
    const stale = events.some(
      (event) => (epochs.get(event.partition) ?? 0) < (this.epochs.get(event.partition) ?? 0),
    );
    if (stale) return events.map(() => ({ status: 'fenced' }));
    for (const [partition, epoch] of epochs) this.epochs.set(partition, epoch);
    const stopped = new Set<string>();
    return events.map((event): PublishOutcome => {
      const stream = this.stream(event.type);
      if (stopped.has(event.aggregateId)) return { status: 'held' };
      const refusals = this.refuse.get(event.eventId) ?? 0;
      if (refusals > 0) {
        this.refuse.set(event.eventId, refusals - 1);
        stopped.add(event.aggregateId);
        return { status: 'rejected', error: 'refused by the test' };
      }
      const known = this.journal.get(event.eventId);
      if (known !== undefined) return { status: 'published', stream, entryId: known };
      const entryId = `${this.clock.now()}-${this.sequence++}`;
      this.journal.set(event.eventId, entryId);
      this.entries.push({ entryId, eventId: event.eventId, aggregateId: event.aggregateId });
      return { status: 'published', stream, entryId };
    });
  }

  async check(checks: readonly StreamCheck[], epochs: ReadonlyMap<number, number>): Promise<StreamVerdict[]> {
    if (this.down) return checks.map(() => ({ status: 'unavailable', error: 'broker down' }));
    return checks.map((check) =>
      (epochs.get(check.partition) ?? 0) < (this.epochs.get(check.partition) ?? 0)
        ? { status: 'fenced' }
        : { status: 'ok' },
    );
  }

  stream(eventType: string): string {
    return `events:${eventType}`;
  }

  async confirm(events: readonly { eventId: string; stream: string }[]): Promise<void> {
    for (const { eventId } of events) this.confirmed.push({ eventId, at: this.clock.now() });
  }

  async ping(): Promise<boolean> {
    return !this.down;
  }

  async close(): Promise<void> {}
}
