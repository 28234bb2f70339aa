import { fileURLToPath } from 'node:url';
import { runMigrations } from '@astra/outbox/migrations';
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

export function createPool(databaseUrl: string, max: number, timeouts: PoolTimeouts = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    application_name: 'astra-trading',
    statement_timeout: timeouts.statementTimeoutMs ?? 5000,
    // The client gives up 2 s after the server would, for a server that stopped answering.
    query_timeout: (timeouts.statementTimeoutMs ?? 5000) + 2000,
    lock_timeout: timeouts.lockTimeoutMs ?? 2000,
    connectionTimeoutMillis: timeouts.connectTimeoutMs ?? 2000,
  });
  // An idle client that loses its connection (database restart, pg_terminate_backend) emits 'error';
  // without a listener that would crash the process. The pool drops it and opens a new one.
  const onError = timeouts.onError ?? (() => {});
  pool.on('error', (error) => onError(error));
  // The pool listens only while a client is idle: a checked-out client whose connection dies between
  // two queries of a transaction would emit an unhandled 'error' and crash the process. With this
  // listener the next query on it fails instead, and the caller releases it as broken.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
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
