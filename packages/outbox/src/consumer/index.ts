export type { CloudEvent } from '../cloudevents.ts';
export { driverCode, OutboxError, type OutboxErrorCode } from '../errors.ts';
export { type RedisTarget, resolveRedisTarget } from '../redis/connection.ts';
export { decodeEntry, ENTRY_FIELDS, type EntryEvent, entryFieldValues } from '../redis/entry.ts';
export {
  type ConsumerEvents,
  type ConsumerOptions,
  deadLetterStreamName,
  type GroupInfo,
  type Handler,
  type HandlerContext,
  isTransientDatabaseError,
  OutboxConsumer,
} from './consumer.ts';
export { type DeadLetter, DeadLetters, type DeadLettersOptions } from './dead-letters.ts';
export {
  type Ordering,
  type OrderingPosition,
  type SequenceVerdict,
  sequenceVerdict,
  subjectVersionOrdering,
} from './decisions.ts';
export { type InboxOptions, inboxSchema } from './schema.ts';
