import type { ResolvedOutboxOptions } from '../options.ts';
import type { SqlQuery } from './client.ts';

/**
 * Inserts a batch of events in one statement and (optionally) notifies the relays at commit.
 * $1 event ids (uuid[]), $2 types, $3 sources, $4 aggregate types, $5 aggregate ids (text[]),
 * $6 payloads, $7 headers (jsonb[]); with notify, $8 the channel.
 * Returns one row: the transaction's timestamp, which is every event's `time`.
 */
export function insertEventsQuery(options: ResolvedOutboxOptions, values: unknown[]): SqlQuery {
  const notify = options.notify;
  return {
    name: `outbox_insert_${options.table}_${notify ? 'notify' : 'quiet'}`,
    text: `
WITH inserted AS (
  INSERT INTO ${options.table} (event_id, event_type, source, aggregate_type, aggregate_id, payload, headers)
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
  RETURNING created_at
)
SELECT max(created_at) AS created_at${notify ? ", pg_notify($8, '')" : ''} FROM inserted`,
    values: notify ? [...values, options.channel] : values,
  };
}
