import pg from 'pg';
import { databaseError } from './errors.ts';

export interface RunMigrationsOptions {
  databaseUrl: string;
  /** The service's migration folder (node-pg-migrate files, the outbox steps among them). */
  dir: string;
  /** @defaultValue 'up' */
  direction?: 'up' | 'down';
  /** How many migrations to apply or revert. @defaultValue every pending one up, one down */
  count?: number;
  /** node-pg-migrate's progress lines. @defaultValue none */
  log?: (message: string) => void;
}

/**
 * Applies (or reverts) a service's node-pg-migrate migrations, each in its own transaction under an
 * advisory lock: replicas starting at once apply each migration exactly once, and the later ones wait
 * for it instead of failing their start. Returns the names of the migrations run, in order.
 * node-pg-migrate is an optional peer dependency, loaded only here.
 */
export async function runMigrations(options: RunMigrationsOptions): Promise<string[]> {
  const { runner } = await import('node-pg-migrate');
  const direction = options.direction ?? 'up';
  // Our own client: node-pg-migrate does not wait for its client's end(), so a server error arriving
  // while it closed (the database dropped or restarted right after) was an 'error' event without a
  // listener, which crashes the process.
  const client = new pg.Client({ connectionString: options.databaseUrl });
  client.on('error', () => {});
  try {
    await client.connect();
    const applied = await runner({
      dbClient: client,
      dir: options.dir,
      direction,
      count: options.count ?? (direction === 'up' ? Number.POSITIVE_INFINITY : 1),
      migrationsTable: 'pgmigrations',
      checkOrder: true,
      // node-pg-migrate's default ('fail') makes a second replica starting at the same time crash with
      // "Another migration is already running".
      advisoryLockMode: 'wait',
      log: options.log ?? (() => {}),
      singleTransaction: false,
    });
    return applied.map((migration) => migration.name);
  } catch (error) {
    throw databaseError(error);
  } finally {
    await client.end().catch(() => {});
  }
}
