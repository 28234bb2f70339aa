import { PARTITION_COUNT } from '../schema.ts';
import type { SqlQuery } from './client.ts';
import { EVENT_COLUMNS } from './relayQueries.ts';

/**
 * Counts per status, the oldest PENDING event's age and the aggregates held back by FAILED events.
 * The age is that of the oldest of each partition's first PENDING event not held back by a FAILED event
 * of its aggregate: those held back are the FAILED alert's to report, and counting them here would page
 * twice for one cause. Per partition that walks the same index, with the same "earlier FAILED event"
 * probe, as the relay's claim; with nothing FAILED it is one index probe per partition.
 */
export function statusQuery(table: string): SqlQuery {
  return {
    name: `outbox_status_${table}`,
    text: `
SELECT (SELECT count(*) FROM ${table} WHERE status = 'PENDING')::bigint::text AS pending,
       (SELECT count(*) FROM ${table} WHERE status = 'FAILED')::bigint::text AS failed,
       (SELECT count(DISTINCT aggregate_id) FROM ${table} WHERE status = 'FAILED')::bigint::text AS blocked_aggregates,
       coalesce(extract(epoch FROM now() - (
         SELECT min(first.created_at)
         FROM generate_series(0, ${PARTITION_COUNT - 1}) AS p(no)
         CROSS JOIN LATERAL (
           SELECT o.created_at FROM ${table} o
           WHERE o.status = 'PENDING' AND o.partition_no = p.no
             AND NOT EXISTS (
               SELECT 1 FROM ${table} b
               WHERE b.aggregate_id = o.aggregate_id AND b.id < o.id AND b.status = 'FAILED')
           ORDER BY o.id LIMIT 1
         ) first)), 0)::float8 AS oldest_pending_age_seconds`,
  };
}

/** Rows per status, for `outbox status` (a full count of PUBLISHED rows is fine for an operator). */
export function publishedCountQuery(table: string): SqlQuery {
  return { text: `SELECT count(*)::bigint::text AS published FROM ${table} WHERE status = 'PUBLISHED'` };
}

/** $1 how many, oldest first. */
export function failedEventsQuery(table: string, limit: number): SqlQuery {
  return {
    text: `
SELECT id::text AS id, event_id::text AS event_id, event_type, aggregate_id, attempts, last_error, created_at, updated_at
FROM ${table} WHERE status = 'FAILED' ORDER BY id LIMIT $1`,
    values: [limit],
  };
}

/**
 * Puts FAILED events back to PENDING with a fresh attempt budget, and wakes the relays.
 * $1 the row id, or NULL for all FAILED events; $2 the NOTIFY channel.
 */
export function replayQuery(table: string, rowId: string | null, channel: string): SqlQuery {
  return {
    text: `
WITH replayed AS (
  UPDATE ${table} SET status = 'PENDING', attempts = 0, next_attempt_at = now(), updated_at = now()
  WHERE status = 'FAILED' AND ($1::bigint IS NULL OR id = $1::bigint)
  RETURNING id
)
SELECT count(*)::int AS replayed, pg_notify($2, '') FROM replayed`,
    values: [rowId, channel],
  };
}

/**
 * PUBLISHED events chosen by an operator for republishing, in id order (each aggregate's order), after
 * row id $1, up to $2: written at or after $3 and before $4 (null: no bound), of type $5 and aggregate
 * $6 when given.
 */
export function republishCandidatesQuery(
  table: string,
  filter: {
    afterRowId: string;
    limit: number;
    since: Date;
    until: Date | null;
    type: string | null;
    aggregateId: string | null;
  },
): SqlQuery {
  return {
    name: `outbox_republish_candidates_${table}`,
    text: `
SELECT ${EVENT_COLUMNS}
FROM ${table} o
WHERE o.status = 'PUBLISHED' AND o.id > $1::bigint AND o.created_at >= $3
  AND ($4::timestamptz IS NULL OR o.created_at < $4)
  AND ($5::text IS NULL OR o.event_type = $5)
  AND ($6::text IS NULL OR o.aggregate_id = $6)
ORDER BY o.id
LIMIT $2`,
    values: [filter.afterRowId, filter.limit, filter.since, filter.until, filter.type, filter.aggregateId],
  };
}
