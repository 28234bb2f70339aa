import type pg from 'pg';
import { purgeIdempotencyKeysQuery } from './sql.ts';

/**
 * Deletes stored Idempotency-Key answers older than `ttlSeconds`, in batches of `batchSize` so no
 * statement runs long. Returns how many it deleted. Safe to run from every replica at once.
 */
export async function purgeIdempotencyKeys(
  pool: pg.Pool,
  ttlSeconds: number,
  batchSize = 1000,
): Promise<number> {
  let deleted = 0;
  for (;;) {
    const result = await pool.query(purgeIdempotencyKeysQuery(ttlSeconds, batchSize));
    deleted += result.rowCount ?? 0;
    if ((result.rowCount ?? 0) < batchSize) return deleted;
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
