import type { SqlQuery } from '../sql/client.ts';

/**
 * The inbox row of an event: $1 group, $2 event id, $3 type, $4 stream, $5 entry id. Returns a row
 * when it is new; none when the group has applied the event before (a concurrent insert of the same
 * id waits for the other transaction, then finds its row).
 */
export function insertInboxQuery(table: string, values: [string, string, string, string, string]): SqlQuery {
  return {
    name: `inbox_insert_${table}`,
    text: `INSERT INTO ${table} (group_name, event_id, event_type, stream, entry_id)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1 AS inserted`,
    values,
  };
}

/**
 * Locks the ordering key's row (creating it at $3, the sequence before the first, when new) and
 * returns the last sequence applied: $1 group, $2 key, $3 first sequence - 1. DO UPDATE, not DO
 * NOTHING, so the row is locked and returned whether or not it existed.
 */
export function lockSequenceQuery(table: string, values: [string, string, string]): SqlQuery {
  return {
    name: `inbox_lock_sequence_${table}`,
    text: `INSERT INTO ${table}_sequences AS s (group_name, ordering_key, last_sequence)
           VALUES ($1, $2, $3::bigint)
           ON CONFLICT (group_name, ordering_key) DO UPDATE SET last_sequence = s.last_sequence
           RETURNING last_sequence::text AS last_sequence`,
    values,
  };
}

export interface SequenceRow {
  last_sequence: string;
}

/** Records the sequence just applied: $1 group, $2 key, $3 sequence. */
export function advanceSequenceQuery(table: string, values: [string, string, string]): SqlQuery {
  return {
    name: `inbox_advance_sequence_${table}`,
    text: `UPDATE ${table}_sequences SET last_sequence = $3::bigint, updated_at = now()
           WHERE group_name = $1 AND ordering_key = $2`,
    values,
  };
}

/**
 * Deletes up to $6 rows of group $1 and stream $2, oldest first, processed more than $3 seconds ago
 * and before the stream's oldest entry ($4 its milliseconds, $5 its sequence; null for an empty
 * stream), whose own entry id is older than that entry. The time bound keeps the index scan short;
 * the entry id check holds whatever the clocks of Redis and PostgreSQL say.
 */
export function pruneInboxQuery(
  table: string,
  values: [string, string, string, string | null, string | null, string],
): SqlQuery {
  return {
    name: `inbox_prune_${table}`,
    text: `DELETE FROM ${table} WHERE ctid IN (
             SELECT ctid FROM ${table}
             WHERE group_name = $1 AND stream = $2
               AND processed_at < LEAST(now() - make_interval(secs => $3::bigint),
                                        to_timestamp($4::bigint / 1000.0))
               AND ($4::bigint IS NULL OR (split_part(entry_id, '-', 1)::bigint,
                                           split_part(entry_id, '-', 2)::bigint) < ($4::bigint, $5::bigint))
             ORDER BY processed_at
             LIMIT $6::int)`,
    values,
  };
}

/** Takes the session lock that lets one consumer of group $2 prune inbox $1; `locked` says if it did. */
export function tryPruneLockQuery(values: [string, string]): SqlQuery {
  return {
    name: 'inbox_try_prune_lock',
    text: `SELECT pg_try_advisory_lock(hashtext($1 || ':inbox-prune'), hashtext($2)) AS locked`,
    values,
  };
}

/** Releases the prune lock of inbox $1 and group $2. */
export function unlockPruneQuery(values: [string, string]): SqlQuery {
  return {
    name: 'inbox_unlock_prune',
    text: `SELECT pg_advisory_unlock(hashtext($1 || ':inbox-prune'), hashtext($2))`,
    values,
  };
}
