import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';

// numeric stays a string (exact decimals); bigint (int8) columns we read are versions and counts
// far below 2^53, so they become numbers.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));

/**
 * A pool of `max` connections. `statementTimeoutMs` bounds every statement on the server (and, 2 s
 * later, on the client, for a server that stopped answering).
 */
export function createPool(
  databaseUrl: string,
  max: number,
  options: { statementTimeoutMs?: number } = {},
): pg.Pool {
  const timeouts =
    options.statementTimeoutMs === undefined
      ? {}
      : { statement_timeout: options.statementTimeoutMs, query_timeout: options.statementTimeoutMs + 2000 };
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    application_name: 'astra-trading',
    ...timeouts,
  });
  // An idle client that loses its connection (database restart, pg_terminate_backend) emits 'error';
  // without a listener that would crash the process. The pool drops it and opens a new one.
  pool.on('error', () => {});
  // The pool listens only while a client is idle: a checked-out client whose connection dies between
  // two queries of a transaction would emit an unhandled 'error' and crash the process. With this
  // listener the next query on it fails instead, and the caller releases it as broken.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/** Creates the configured database when it does not exist yet (first start on a fresh server). */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const target = new URL(databaseUrl);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (name === '') return false;
  const admin = new URL(databaseUrl);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount !== 0) return false;
    try {
      await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    } catch (error) {
      // Two replicas starting together: the other one created it first. PostgreSQL reports that as
      // duplicate_database (42P04), or as unique_violation (23505) when both CREATEs overlap.
      const code = (error as { code?: string }).code;
      if (code !== '42P04' && code !== '23505') throw error;
      return false;
    }
    return true;
  } finally {
    await client.end();
  }
}

export type MigrationDirection = 'up' | 'down';

/**
 * Applies (or reverts) migrations. node-pg-migrate runs each in its own transaction under an advisory
 * lock, so replicas starting at once apply each migration exactly once.
 */
export async function migrate(
  databaseUrl: string,
  direction: MigrationDirection,
  count?: number,
  log: (message: string) => void = () => {},
): Promise<string[]> {
  // Our own client: node-pg-migrate does not wait for its client's end(), so migrate() resolved while the
  // connection was still closing, and a server error arriving then (the database dropped or restarted
  // right after) was an 'error' event without a listener, which crashes the process.
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
      // node-pg-migrate's default ('fail') makes a second replica starting at the same time crash with
      // "Another migration is already running"; waiting lets it start once the first has migrated.
      advisoryLockMode: 'wait',
      log,
      singleTransaction: false,
    });
    return applied.map((migration) => migration.name);
  } finally {
    await client.end();
  }
}
