import type pg from 'pg';
import { purgeIdempotencyKeysQuery } from './sql.ts';

/** Held for a whole purge: replicas that find it taken skip their round instead of racing for rows. */
const PURGE_LOCK = "SELECT pg_try_advisory_lock(hashtext('astra-idempotency-purge')) AS locked";
const PURGE_UNLOCK = "SELECT pg_advisory_unlock(hashtext('astra-idempotency-purge'))";

/**
 * Deletes stored Idempotency-Key answers older than `ttlSeconds`, oldest first (on the created_at
 * index), in batches of `batchSize` so no statement runs long. Runs on one replica at a time: returns
 * how many rows it deleted, or null when another replica's purge holds the lock.
 */
export async function purgeIdempotencyKeys(
  pool: pg.Pool,
  ttlSeconds: number,
  batchSize = 1000,
): Promise<number | null> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const lock = await client.query<{ locked: boolean }>(PURGE_LOCK);
    if (lock.rows[0]?.locked !== true) return null;
    try {
      let deleted = 0;
      for (;;) {
        const result = await client.query(purgeIdempotencyKeysQuery(ttlSeconds, batchSize));
        deleted += result.rowCount ?? 0;
        if ((result.rowCount ?? 0) < batchSize) return deleted;
      }
    } finally {
      await client.query(PURGE_UNLOCK).catch((error: unknown) => {
        // A session lock outlives the query: a connection that could not unlock must not be reused.
        broken = error instanceof Error ? error : new Error(String(error));
      });
    }
  } catch (error) {
    broken ??= error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    client.release(broken ?? false);
  }
}

/** Runs the purge every `everyMs` until the returned function is called. Failures wait for the next round. */
export function schedulePurge(
  pool: pg.Pool,
  ttlSeconds: number,
  everyMs: number,
  onError: (error: unknown) => void,
): () => void {
  const timer = setInterval(() => {
    purgeIdempotencyKeys(pool, ttlSeconds).catch(onError);
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
