import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
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

/** Applies pending migrations, each in its own transaction under node-pg-migrate's advisory lock. */
export async function migrate(
  databaseUrl: string,
  direction: 'up' | 'down' = 'up',
  count?: number,
): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  client.on('error', () => {});
  await client.connect();
  try {
    const applied = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      direction,
      count: count ?? (direction === 'up' ? Number.POSITIVE_INFINITY : 1),
      migrationsTable: 'pgmigrations',
      checkOrder: true,
      // Several reporting processes starting together: the others wait for the first one's migrations.
      advisoryLockMode: 'wait',
      log: () => {},
      singleTransaction: false,
    });
    return applied.map((migration) => migration.name);
  } finally {
    await client.end();
  }
}
