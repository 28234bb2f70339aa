import { fileURLToPath } from 'node:url';
import { runMigrations } from '@astra/outbox/migrations';
import { createPool as createServicePool } from '@astra/service-support';
import pg from 'pg';

// numeric stays a string (exact decimals); bigint (int8) columns we read are versions and counts
// far below 2^53, so they become numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));

export interface PoolTimeouts {
  /** Server-side limit per statement. @defaultValue 5000 */
  statementTimeoutMs?: number;
  /** Server-side limit per lock wait. @defaultValue 2000 */
  lockTimeoutMs?: number;
  /** Longest wait for a connection, new or free in the pool: an exhausted pool fails, never hangs. @defaultValue 2000 */
  connectTimeoutMs?: number;
  /** Told about idle connections that failed (the pool has dropped them already). */
  onError?: (error: Error) => void;
}

/** A pool with the service's limits: a slow or unreachable database is a quick 503, never a hang. */
export function createPool(databaseUrl: string, max: number, timeouts: PoolTimeouts = {}): pg.Pool {
  return createServicePool(databaseUrl, {
    applicationName: 'astra-trading',
    max,
    statementTimeoutMs: timeouts.statementTimeoutMs ?? 5000,
    lockTimeoutMs: timeouts.lockTimeoutMs ?? 2000,
    connectTimeoutMs: timeouts.connectTimeoutMs ?? 2000,
    onError: timeouts.onError,
  });
}

export type MigrationDirection = 'up' | 'down';

/** Applies (or reverts) the service's migrations; see runMigrations for the lock replicas share. */
export function migrate(
  databaseUrl: string,
  direction: MigrationDirection,
  count?: number,
  log?: (message: string) => void,
): Promise<string[]> {
  return runMigrations({ databaseUrl, dir: MIGRATIONS_DIR, direction, count, log });
}
