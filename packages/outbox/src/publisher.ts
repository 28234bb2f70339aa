/** One claimed outbox event, ready for the broker. */
export interface PublishableEvent {
  /** The outbox row id. */
  rowId: string;
  /** The outbox partition of its aggregate: the unit of ownership, fencing and loss detection. */
  partition: number;
  /** CloudEvents `id`: consumers and the publisher's dedupe use it. */
  eventId: string;
  type: string;
  source: string;
  aggregateType: string;
  /** CloudEvents `subject`. */
  aggregateId: string;
  /** CloudEvents `time`, ISO 8601. */
  time: string;
  /** The payload as JSON text, sent as it is stored. */
  data: string;
  traceparent: string | null;
  tracestate: string | null;
}

/**
 * What the relay proves with each call: that it still owns the partitions (their epochs), and what it
 * knows the broker holds (the newest entry id acknowledged per stream and partition).
 */
export interface PublishFence {
  epochs: ReadonlyMap<number, number>;
  expected(stream: string, partition: number): string | undefined;
}

/**
 * How a call publishes: `relay` is the relay's normal publish (fenced, loss-checked, deduplicated);
 * `repair` publishes again what the broker lost (fenced, deduplicated, loss check off); `replay` is an
 * operator's deliberate republish (no fence, no dedupe: every event is added again).
 */
export type PublishMode = 'relay' | 'repair' | 'replay';

/**
 * What became of one event. Only `rejected` spends one of the event's attempts: the broker refused
 * this event itself. `unavailable` means the broker could not be asked (down, timing out, failing
 * over, too few replicas confirmed), and `held` means an earlier event of the same aggregate did not
 * go out in this call, so this one must wait to keep the aggregate's order. `fenced`: a relay with a
 * newer epoch owns the partition now. `lost`: the broker no longer holds entries it acknowledged for
 * this stream and partition (its marker, null when gone, and how many entries it counts up to it).
 */
export type PublishOutcome =
  | { status: 'published'; stream: string; entryId: string }
  | { status: 'rejected'; error: string }
  | { status: 'unavailable'; error: string }
  | { status: 'held' }
  | { status: 'fenced' }
  | LostOutcome;

export interface LostOutcome {
  status: 'lost';
  stream: string;
  partition: number;
  marker: string | null;
  count: number;
}

/** One stream and partition to check, or (with `restore`) whose marker to set. */
export interface StreamCheck {
  stream: string;
  partition: number;
  /** The newest entry id known to be acknowledged; with `restore`, the marker to set. */
  expected: string | undefined;
  /** With `restore`: how many entries the marker counts. */
  count?: number;
}

/**
 * A check's verdict: `ok`; `fenced`; `lost` as above; `unmarked` when the marker is gone but the
 * expected entry is still in the stream (only the bookkeeping was lost); `unavailable`.
 */
export type StreamVerdict =
  | { status: 'ok' }
  | { status: 'fenced' }
  | { status: 'unmarked' }
  | { status: 'unavailable'; error: string }
  | LostOutcome;

/**
 * The broker side of the relay. Implementations publish in the given order, keep each aggregate's
 * events in order, publish an event at most once however often it is offered (the relay offers it
 * again after a crash between publish and mark), refuse calls whose fence is stale, and never throw
 * for broker trouble: they report it per event instead.
 */
export interface Publisher {
  publish(
    events: readonly PublishableEvent[],
    options?: { fence?: PublishFence; mode?: PublishMode },
  ): Promise<PublishOutcome[]>;
  /** Checks fences and markers without publishing (`restore`: sets the markers after a repair). */
  check(
    checks: readonly StreamCheck[],
    epochs: ReadonlyMap<number, number>,
    restore?: boolean,
  ): Promise<StreamVerdict[]>;
  /** The stream an event type goes to. */
  stream(eventType: string): string;
  /** Called once the events' PUBLISHED marks are committed: the publisher may forget them. */
  confirm(events: readonly { eventId: string; stream: string }[]): Promise<void>;
  /** True when the broker answers. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** Orders stream entry ids ('<ms>-<seq>', as Redis Streams writes them): negative when a is older. */
export function compareEntryIds(a: string, b: string): number {
  // Both parts stay far below 2^53 (milliseconds since 1970, a per-millisecond counter): plain numbers.
  const aDash = a.indexOf('-');
  const bDash = b.indexOf('-');
  const aMs = Number(a.slice(0, aDash));
  const bMs = Number(b.slice(0, bDash));
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  const aSeq = Number(a.slice(aDash + 1));
  const bSeq = Number(b.slice(bDash + 1));
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}
