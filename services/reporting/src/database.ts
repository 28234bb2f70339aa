import { fileURLToPath } from 'node:url';
import { runMigrations } from '@astra/outbox/migrations';
import pg from 'pg';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));

export function createPool(databaseUrl: string, max: number, options: Partial<pg.PoolConfig> = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    application_name: 'astra-reporting',
    ...options,
  });
  // A connection that dies while idle (or between two queries) emits 'error': without listeners that
  // would crash the process; the next query fails instead and the pool replaces the client.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/** Applies (or reverts) the service's migrations; see runMigrations for the lock replicas share. */
export function migrate(
  databaseUrl: string,
  direction: 'up' | 'down' = 'up',
  count?: number,
): Promise<string[]> {
  return runMigrations({ databaseUrl, dir: MIGRATIONS_DIR, direction, count });
}
