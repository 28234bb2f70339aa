export type { CloudEvent } from './cloudevents.ts';
export { isValidTraceparent } from './cloudevents.ts';
export { OutboxError, type OutboxErrorCode } from './errors.ts';
export type { OutboxOptions } from './options.ts';
export { PARTITION_COUNT } from './schema.ts';
export type { SqlClient, SqlQuery } from './sql/client.ts';
export { createOutboxWriter, type NewEvent, type OutboxWriter, type OutboxWriterOptions } from './writer.ts';
