/** One claimed outbox event, ready for the broker. */
export interface PublishableEvent {
  /** The outbox row id. */
  rowId: string;
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
 * What became of one event. Only `rejected` spends one of the event's attempts: the broker refused
 * this event itself. `unavailable` means the broker could not be asked (down, timing out, failing
 * over), and `held` means an earlier event of the same aggregate did not go out in this call, so
 * this one must wait to keep the aggregate's order.
 */
export type PublishOutcome =
  | { status: 'published'; stream: string; entryId: string }
  | { status: 'rejected'; error: string }
  | { status: 'unavailable'; error: string }
  | { status: 'held' };

/**
 * The broker side of the relay. Implementations publish in the given order, keep each aggregate's
 * events in order, publish an event at most once however often it is offered (the relay offers it
 * again after a crash between publish and mark), and never throw for broker trouble: they report it
 * per event instead.
 */
export interface Publisher {
  publish(events: readonly PublishableEvent[]): Promise<PublishOutcome[]>;
  /** Called once the events' PUBLISHED marks are committed: the publisher may forget them. */
  confirm(events: readonly { eventId: string; stream: string }[]): Promise<void>;
  /** True when the broker answers. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
