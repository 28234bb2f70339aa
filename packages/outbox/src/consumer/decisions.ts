/**
 * The consumer's decisions, apart from its I/O: whether an event is applied, skipped or deferred,
 * when it goes to the dead-letter stream, and when a held entry is tried again. The shell
 * (consumer.ts) feeds them what PostgreSQL and Redis said and the clock; the unit tier drives them
 * with a fake clock.
 */
import { type Backoff, backoffDelay } from '../backoff.ts';
import type { CloudEvent } from '../cloudevents.ts';

/** Where an event stands in its aggregate's order: its key and its place (1, 2, 3, ...). */
export interface OrderingPosition {
  key: string;
  sequence: number;
}

/** Reads an event's ordering key and sequence; undefined for an event applied in no particular order. */
export type Ordering = (event: CloudEvent) => OrderingPosition | undefined;

/**
 * The default ordering: the aggregate is the CloudEvents `subject`, the place is `data.version` when
 * the data has a whole-number `version` (the outbox's `position_updated` events do). Events without
 * one are unordered.
 */
export const subjectVersionOrdering: Ordering = (event) => {
  const data = event.data;
  if (typeof data !== 'object' || data === null || !('version' in data)) return undefined;
  const version = (data as { version: unknown }).version;
  return typeof version === 'number' ? { key: event.subject, sequence: version } : undefined;
};

/**
 * What to do with an ordered event, given the last sequence applied for its key (`firstSequence - 1`
 * when none was): apply the next one, skip one already passed (a republish or repair delivers older
 * versions after newer ones), defer one whose predecessor has not been applied yet.
 */
export type SequenceVerdict = 'apply' | 'stale' | 'defer';

export function sequenceVerdict(lastApplied: bigint, sequence: bigint): SequenceVerdict {
  if (sequence <= lastApplied) return 'stale';
  return sequence === lastApplied + 1n ? 'apply' : 'defer';
}

/**
 * Deliveries an event has used: the handler failures this consumer saw, plus one for each earlier
 * delivery to a consumer that never finished it (Redis counts a delivery per read and per claim;
 * a claim happens only after the holder went quiet, e.g. it crashed inside the handler).
 */
export function deliveriesUsed(redisDeliveries: number, failures: number): number {
  return Math.max(0, redisDeliveries - 1) + failures;
}

/** True when an event that is due to run has used its deliveries: it goes to the dead-letter stream. */
export function shouldDeadLetter(redisDeliveries: number, failures: number, maxDeliveries: number): boolean {
  return deliveriesUsed(redisDeliveries, failures) >= maxDeliveries;
}

/** Why an entry is held back instead of acknowledged. */
export type HoldReason = 'deferred' | 'failed' | 'unavailable';

interface Held<T> {
  id: string;
  key: string | undefined;
  reason: HoldReason;
  /** How often it was held for this reason in a row: drives its backoff. */
  times: number;
  due: number;
  item: T;
}

export interface HeldEntriesOptions {
  /** Wait before trying a deferred event again (its predecessor may commit on another consumer). */
  deferBackoff: Backoff;
  /** Wait before running a failed handler again. */
  retryBackoff: Backoff;
  /** Wait while PostgreSQL is unreachable (no delivery is spent). */
  outageBackoff: Backoff;
  random?: () => number;
}

/**
 * Entries this consumer holds unacknowledged (deferred, failed, or waiting out a database outage),
 * with the time each is due again. An entry applied for a key makes that key's held entries due at
 * once, so the next version follows its predecessor without waiting out a backoff.
 */
export class HeldEntries<T> {
  private readonly entries = new Map<string, Held<T>>();

  constructor(private readonly options: HeldEntriesOptions) {}

  get size(): number {
    return this.entries.size;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  ids(): string[] {
    return [...this.entries.keys()];
  }

  /** Holds an entry (again); returns when it is due. */
  hold(id: string, key: string | undefined, reason: HoldReason, item: T, now: number): number {
    const previous = this.entries.get(id);
    const times = previous?.reason === reason ? previous.times + 1 : 1;
    const backoff =
      reason === 'deferred'
        ? this.options.deferBackoff
        : reason === 'failed'
          ? this.options.retryBackoff
          : this.options.outageBackoff;
    const due = now + backoffDelay(backoff, times - 1, this.options.random);
    this.entries.set(id, { id, key, reason, times, due, item });
    return due;
  }

  release(id: string): void {
    this.entries.delete(id);
  }

  /** Makes the held entries of `key` due now (their predecessor was just applied). */
  wake(key: string, now: number): void {
    // Entries in flight (due is infinite) are being tried right now: leave them alone.
    for (const held of this.entries.values())
      if (held.key === key && held.due > now && held.due !== Number.POSITIVE_INFINITY) held.due = now;
  }

  /** The earliest due time, or undefined when nothing is held. */
  nextDue(): number | undefined {
    let next: number | undefined;
    for (const held of this.entries.values()) if (next === undefined || held.due < next) next = held.due;
    return next === Number.POSITIVE_INFINITY ? undefined : next;
  }

  /**
   * The entries due by `now`, in the order they were first held (stream order within a stream). They
   * stay held, marked in flight (never due), until the shell holds them again or releases them.
   */
  takeDue(now: number): T[] {
    const due: T[] = [];
    for (const held of this.entries.values()) {
      if (held.due > now) continue;
      held.due = Number.POSITIVE_INFINITY;
      due.push(held.item);
    }
    return due;
  }
}
