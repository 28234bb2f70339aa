export {
  type FailedEvent,
  OutboxAdmin,
  type OutboxStatus,
  type RepublishFilter,
  type RepublishReport,
} from './admin.ts';
export type { Backoff } from './backoff.ts';
export type { CloudEvent } from './cloudevents.ts';
export { isValidTraceparent, isValidTracestate } from './cloudevents.ts';
export { driverCode, OutboxError, type OutboxErrorCode } from './errors.ts';
export type { OutboxOptions } from './options.ts';
export type {
  LostOutcome,
  PublishableEvent,
  Publisher,
  PublishFence,
  PublishMode,
  PublishOutcome,
  StreamCheck,
  StreamVerdict,
} from './publisher.ts';
export type { StreamRepair } from './recovery.ts';
export type { RedisTarget } from './redis/connection.ts';
export { RedisStreamsPublisher, type RedisStreamsPublisherOptions } from './redis/publisher.ts';
export { OutboxRelay, type RelayEvents, type RelayOptions } from './relay.ts';
export { PARTITION_COUNT } from './schema.ts';
export type { SqlClient, SqlQuery } from './sql/client.ts';
export { storedSpanContext, tracedPublisher } from './tracing.ts';
export { createRelayWaker, type LocalRelay, type RelayWaker, type RelayWakerOptions } from './waker.ts';
export {
  createOutboxWriter,
  type NewEvent,
  newEventId,
  type OutboxWriter,
  type OutboxWriterOptions,
} from './writer.ts';
