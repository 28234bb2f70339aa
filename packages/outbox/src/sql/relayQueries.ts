import type { SqlQuery } from './client.ts';

/**
 * The relay's statements, one per named prepared query. All take the outbox table name, which is
 * validated as an identifier before it reaches here.
 */

export interface ClaimedRow {
  id: string;
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
  SELECT o.id::text AS id, o.event_id::text AS event_id, o.event_type, o.source, o.aggregate_type,
         o.aggregate_id, o.payload::text AS data, o.headers->>'traceparent' AS traceparent,
         o.headers->>'tracestate' AS tracestate, o.created_at, o.attempts
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

/** Marks events PUBLISHED with their stream entry ids. $1 row ids (bigint[]), $2 entry ids (text[]). */
export function markPublishedQuery(table: string, rowIds: string[], entryIds: string[]): SqlQuery {
  return {
    name: `outbox_mark_published_${table}`,
    text: `
UPDATE ${table} o
SET status = 'PUBLISHED', published_at = now(), updated_at = now(), stream_entry_id = m.entry_id
FROM unnest($1::bigint[], $2::text[]) AS m(id, entry_id)
WHERE o.id = m.id AND o.status = 'PENDING'`,
    values: [rowIds, entryIds],
  };
}

/**
 * Deletes published events instead of marking them: the stream entry is then their only record.
 * $1 row ids (bigint[]).
 */
export function deleteOnPublishQuery(table: string, rowIds: string[]): SqlQuery {
  return {
    name: `outbox_delete_on_publish_${table}`,
    text: `DELETE FROM ${table} o USING unnest($1::bigint[]) AS m(id) WHERE o.id = m.id AND o.status = 'PENDING'`,
    values: [rowIds],
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
