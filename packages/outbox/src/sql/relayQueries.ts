import type { SqlQuery } from './client.ts';

/**
 * The relay's statements, one per named prepared query. All take the outbox table name, which is
 * validated as an identifier before it reaches here.
 */

/** The columns of a ClaimedRow, from the outbox table aliased `o`. */
export const EVENT_COLUMNS = `o.id::text AS id, o.partition_no AS partition, o.event_id::text AS event_id,
  o.event_type, o.source, o.aggregate_type, o.aggregate_id, o.payload::text AS data,
  o.headers->>'traceparent' AS traceparent, o.headers->>'tracestate' AS tracestate, o.created_at, o.attempts`;

export interface ClaimedRow {
  id: string;
  partition: number;
  event_id: string;
  event_type: string;
  source: string;
  aggregate_type: string;
  aggregate_id: string;
  data: string;
  traceparent: string | null;
  tracestate: string | null;
  created_at: Date;
  attempts: number;
}

/**
 * The next events to publish from the partitions this relay owns: partition by partition in the given
 * order (the relay rotates it, so no partition waits behind a busy one), each partition's oldest first,
 * up to the batch size. Only an aggregate's order matters, and an aggregate lives in one partition.
 * $1 owned partitions (smallint[]), $2 batch size, $3 row ids to leave out (bigint[]: the batch whose
 * mark is still running).
 * An event is skipped while an earlier event of its aggregate is FAILED or waiting for a retry:
 * an aggregate whose oldest unpublished event waits, waits as a whole.
 * No row lock: partition ownership (an advisory lock) already makes this relay the only one here.
 */
export function claimEventsQuery(
  table: string,
  partitions: number[],
  limit: number,
  exclude: string[],
): SqlQuery {
  return {
    name: `outbox_claim_${table}`,
    text: `
SELECT claimed.* FROM unnest($1::smallint[]) AS p(no)
CROSS JOIN LATERAL (
  SELECT ${EVENT_COLUMNS}
  FROM ${table} o
  WHERE o.status = 'PENDING'
    AND o.partition_no = p.no
    AND (o.attempts = 0 OR o.next_attempt_at <= now())
    AND o.id NOT IN (SELECT unnest($3::bigint[]))
    AND NOT EXISTS (
      SELECT 1 FROM ${table} b
      WHERE b.aggregate_id = o.aggregate_id AND b.id < o.id
        AND (b.status = 'FAILED' OR (b.status = 'PENDING' AND b.attempts > 0)))
  ORDER BY o.id
  LIMIT $2
) claimed
LIMIT $2`,
    values: [partitions, limit, exclude],
  };
}

/** The newest entry a batch added to one stream for one partition, and how many it added there. */
export interface StreamRecord {
  stream: string;
  partition: number;
  lastEntryId: string;
  lastEventId: string;
  count: number;
}

/** SQL ordering key of a Redis stream entry id ('<ms>-<seq>': text order is wrong for it). */
function entryKey(expression: string): string {
  return `(split_part(${expression}, '-', 1)::bigint, split_part(${expression}, '-', 2)::bigint)`;
}

/**
 * Adds a batch's stream records to ${table}_streams, in the statement that marks the batch: the
 * record is the durable half of loss detection, so it must never lag a committed mark.
 * Parameters $first.. are the records as arrays (stream, partition, last entry id, last event id, count).
 */
function recordStreams(table: string, first: number): string {
  const [streams, partitions, entryIds, eventIds, counts] = [0, 1, 2, 3, 4].map((i) => `$${first + i}`);
  const newer = `${entryKey('excluded.last_entry_id')} > ${entryKey('s.last_entry_id')}`;
  return `
INSERT INTO ${table}_streams AS s (stream, partition_no, last_entry_id, last_event_id, published)
SELECT * FROM unnest(${streams}::text[], ${partitions}::smallint[], ${entryIds}::text[], ${eventIds}::uuid[], ${counts}::bigint[])
ON CONFLICT (stream, partition_no) DO UPDATE
SET published = s.published + excluded.published,
    last_entry_id = CASE WHEN ${newer} THEN excluded.last_entry_id ELSE s.last_entry_id END,
    last_event_id = CASE WHEN ${newer} THEN excluded.last_event_id ELSE s.last_event_id END`;
}

function recordValues(records: StreamRecord[]): unknown[] {
  return [
    records.map((r) => r.stream),
    records.map((r) => r.partition),
    records.map((r) => r.lastEntryId),
    records.map((r) => r.lastEventId),
    records.map((r) => r.count),
  ];
}

/**
 * Marks events PUBLISHED with their stream entry ids and records what each stream received.
 * $1 row ids (bigint[]), $2 entry ids (text[]), $3-$7 the stream records.
 */
export function markPublishedQuery(
  table: string,
  rowIds: string[],
  entryIds: string[],
  records: StreamRecord[],
): SqlQuery {
  return {
    name: `outbox_mark_published_${table}`,
    text: `
WITH marked AS (
  UPDATE ${table} o
  SET status = 'PUBLISHED', published_at = now(), updated_at = now(), stream_entry_id = m.entry_id
  FROM unnest($1::bigint[], $2::text[]) AS m(id, entry_id)
  WHERE o.id = m.id AND o.status = 'PENDING'
)${recordStreams(table, 3)}`,
    values: [rowIds, entryIds, ...recordValues(records)],
  };
}

/**
 * Deletes published events instead of marking them: the stream entry is then their only record.
 * $1 row ids (bigint[]), $2-$6 the stream records.
 */
export function deleteOnPublishQuery(table: string, rowIds: string[], records: StreamRecord[]): SqlQuery {
  return {
    name: `outbox_delete_on_publish_${table}`,
    text: `
WITH deleted AS (
  DELETE FROM ${table} o USING unnest($1::bigint[]) AS m(id) WHERE o.id = m.id AND o.status = 'PENDING'
)${recordStreams(table, 2)}`,
    values: [rowIds, ...recordValues(records)],
  };
}

/** Raises the epochs of partitions this relay has just taken. $1 partitions (smallint[]). */
export function takePartitionsQuery(table: string, partitions: number[]): SqlQuery {
  return {
    name: `outbox_take_partitions_${table}`,
    text: `
UPDATE ${table}_partitions SET epoch = epoch + 1 WHERE partition_no = ANY($1::smallint[])
RETURNING partition_no AS partition, epoch::text AS epoch`,
    values: [partitions],
  };
}

export interface StreamRecordRow {
  stream: string;
  partition: number;
  last_entry_id: string;
  last_event_id: string;
  published: string;
  base_count: string;
}

/** What the broker acknowledged on every stream for these partitions. $1 partitions (smallint[]). */
export function streamRecordsQuery(table: string, partitions: number[]): SqlQuery {
  return {
    name: `outbox_stream_records_${table}`,
    text: `
SELECT stream, partition_no AS partition, last_entry_id, last_event_id::text AS last_event_id,
       published::text AS published, base_count::text AS base_count
FROM ${table}_streams WHERE partition_no = ANY($1::smallint[])`,
    values: [partitions],
  };
}

/**
 * After a repair: the stream holds the events published again, so its record moves to the newest
 * of them, and `base_count` to where the stream now starts. $1 stream, $2 partition, $3 last entry id,
 * $4 last event id, $5 base count.
 */
export function repairedStreamQuery(
  table: string,
  record: { stream: string; partition: number; lastEntryId: string; lastEventId: string; baseCount: number },
): SqlQuery {
  return {
    name: `outbox_repaired_stream_${table}`,
    text: `
UPDATE ${table}_streams SET last_entry_id = $3, last_event_id = $4::uuid, base_count = $5
WHERE stream = $1 AND partition_no = $2`,
    values: [record.stream, record.partition, record.lastEntryId, record.lastEventId, record.baseCount],
  };
}

export interface PublishedRow extends ClaimedRow {
  stream_entry_id: string | null;
}

/**
 * PUBLISHED events of some partitions, in id order (an aggregate's original order), after row id $2,
 * up to $3 of them: the history a repair publishes again. $1 partitions (smallint[]).
 */
export function publishedEventsQuery(
  table: string,
  partitions: number[],
  afterRowId: string,
  limit: number,
): SqlQuery {
  return {
    name: `outbox_published_events_${table}`,
    text: `
SELECT ${EVENT_COLUMNS}, o.stream_entry_id
FROM ${table} o
WHERE o.status = 'PUBLISHED' AND o.partition_no = ANY($1::smallint[]) AND o.id > $2::bigint
ORDER BY o.id
LIMIT $3`,
    values: [partitions, afterRowId, limit],
  };
}

/** Records the new entry ids of events published again. $1 row ids (bigint[]), $2 entry ids (text[]). */
export function updateEntryIdsQuery(table: string, rowIds: string[], entryIds: string[]): SqlQuery {
  return {
    name: `outbox_update_entry_ids_${table}`,
    text: `
UPDATE ${table} o SET stream_entry_id = m.entry_id, updated_at = now()
FROM unnest($1::bigint[], $2::text[]) AS m(id, entry_id)
WHERE o.id = m.id AND o.status = 'PUBLISHED'`,
    values: [rowIds, entryIds],
  };
}

/**
 * Records a rejected attempt: counts it, keeps the error, schedules the retry, and turns the event
 * FAILED once it has used its last attempt.
 * $1 row ids (bigint[]), $2 errors (text[]), $3 retry delays in ms (float8[]), $4 max attempts.
 */
export function markRejectedQuery(
  table: string,
  rowIds: string[],
  errors: string[],
  delaysMs: number[],
  maxAttempts: number,
): SqlQuery {
  return {
    name: `outbox_mark_rejected_${table}`,
    text: `
UPDATE ${table} o
SET attempts = o.attempts + 1,
    last_error = m.error,
    updated_at = now(),
    next_attempt_at = now() + m.delay_ms * interval '1 millisecond',
    status = CASE WHEN o.attempts + 1 >= $4 THEN 'FAILED' ELSE 'PENDING' END
FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS m(id, error, delay_ms)
WHERE o.id = m.id AND o.status = 'PENDING'
RETURNING o.id::text AS id, o.status`,
    values: [rowIds, errors, delaysMs, maxAttempts],
  };
}

/**
 * Deletes up to $2 PUBLISHED events published more than $1 seconds ago, oldest first. Small batches
 * keep each transaction short; the caller loops.
 */
export function deletePublishedQuery(table: string, olderThanSeconds: number, limit: number): SqlQuery {
  return {
    name: `outbox_retention_${table}`,
    text: `
DELETE FROM ${table} o
USING (
  SELECT id FROM ${table}
  WHERE status = 'PUBLISHED' AND published_at < now() - $1 * interval '1 second'
  ORDER BY published_at
  LIMIT $2
) doomed
WHERE o.id = doomed.id`,
    values: [olderThanSeconds, limit],
  };
}
