import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import pg from 'pg';
import { buildApp } from '../src/app.ts';
import { prepareDatabase } from '../src/bootstrap.ts';
import { MIGRATIONS_DIR, migrate } from '../src/database.ts';
import { createApiKey } from '../src/http/auth.ts';
import { createTestDatabase, postTrade, SERVER_URL, type TestDatabase, tradeBody } from './support.ts';

const ALL = readdirSync(MIGRATIONS_DIR)
  .filter((file) => /^\d{4}_.*\.ts$/.test(file))
  .map((file) => file.replace(/\.ts$/, ''))
  .sort();
const TABLES = [
  'accounts',
  'api_keys',
  'event_outbox',
  'event_outbox_partitions',
  'event_outbox_streams',
  'idempotency_keys',
  'positions',
  'trades',
];

async function tables(db: TestDatabase): Promise<string[]> {
  const result = await db.pool.query<{ name: string }>(
    `SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'pgmigrations'
     ORDER BY 1`,
  );
  return result.rows.map((row) => row.name);
}

/**
 * The schema as pg_dump --schema-only prints it: every table, column, type, default, constraint, index,
 * storage parameter and function, not just table names. The migrations' own bookkeeping table and
 * pg_dump's comment lines and per-run \restrict key are left out.
 */
function schemaDump(db: TestDatabase): string {
  const result = spawnSync(
    'pg_dump',
    ['--schema-only', '--no-owner', '--no-privileges', '--exclude-table=pgmigrations*', db.url],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(result.status, 0, `pg_dump failed: ${result.stderr}`);
  return result.stdout
    .split('\n')
    .filter((line) => !line.startsWith('--') && !/^\\(un)?restrict\b/.test(line) && line.trim() !== '')
    .join('\n');
}

async function appliedMigrations(db: TestDatabase): Promise<string[]> {
  const result = await db.pool.query<{ name: string }>('SELECT name FROM pgmigrations ORDER BY run_on, id');
  return result.rows.map((row) => row.name);
}

async function tradeWorks(db: TestDatabase): Promise<void> {
  const app = await buildApp({ pool: db.pool, eventSource: '/astra/trading-service/test' });
  try {
    const key = await createApiKey(db.pool, 'alice', false);
    const response = await postTrade(app, `Bearer ${key}`, tradeBody());
    assert.equal(response.statusCode, 201, response.body);
    const outbox = await db.pool.query(
      "SELECT count(*)::int AS n FROM event_outbox WHERE status = 'PENDING'",
    );
    assert.deepEqual(outbox.rows, [{ n: 2 }]);
  } finally {
    await app.close();
  }
}

describe('migrations', () => {
  test('up, down all the way and up again on an empty database; then a trade works', async () => {
    const db = await createTestDatabase({ migrated: false });
    try {
      assert.deepEqual(ALL, [
        '0001_event_outbox',
        '0002_trading',
        '0003_outbox_relay_state',
        '0004_key_lifecycle',
      ]);
      assert.deepEqual(await tables(db), []);

      const empty = schemaDump(db);
      assert.deepEqual(await migrate(db.url, 'up'), ALL);
      assert.deepEqual(await tables(db), TABLES);
      assert.deepEqual(await appliedMigrations(db), ALL);
      const full = schemaDump(db);
      assert.match(full, /CREATE TABLE public\.trades/, 'the dump holds the schema');
      assert.deepEqual(await migrate(db.url, 'up'), [], 'a second up has nothing to do');

      // One step down reverts only the latest migration, to exactly the schema of the ones before.
      const before = await createTestDatabase({ migrated: false });
      let allButLast: string;
      try {
        assert.deepEqual(await migrate(before.url, 'up', ALL.length - 1), ALL.slice(0, -1));
        allButLast = schemaDump(before);
      } finally {
        await before.drop();
      }
      assert.deepEqual(await migrate(db.url, 'down'), ALL.slice(-1));
      assert.deepEqual(await tables(db), TABLES, 'the latest migration adds columns, no table');
      assert.equal(schemaDump(db), allButLast, 'down 1 leaves the schema of the migrations before it');
      assert.deepEqual(await migrate(db.url, 'up'), ALL.slice(-1));
      assert.equal(schemaDump(db), full, 'up again restores the same schema');

      assert.deepEqual(await migrate(db.url, 'down', Number.POSITIVE_INFINITY), [...ALL].reverse());
      assert.deepEqual(await tables(db), [], 'down removes every table');
      assert.equal(schemaDump(db), empty, 'down removes everything up created');
      assert.deepEqual(await appliedMigrations(db), []);

      assert.deepEqual(await migrate(db.url, 'up'), ALL);
      assert.deepEqual(await tables(db), TABLES);
      assert.equal(schemaDump(db), full, 'up after a full down restores the same schema');
      await tradeWorks(db);
    } finally {
      await db.drop();
    }
  });

  test('two migrators starting together on an empty database both succeed, each migration runs once', async () => {
    // Two replicas of the service starting at the same time: the second must wait for the first's
    // lock, not fail its start.
    const db = await createTestDatabase({ migrated: false });
    try {
      const settled = await Promise.allSettled([1, 2, 3].map(() => migrate(db.url, 'up')));
      const results = settled.map((result) => {
        if (result.status === 'rejected') assert.fail(`a migrator failed: ${String(result.reason)}`);
        return result.value;
      });
      assert.deepEqual(results.flat().sort(), ALL);
      assert.deepEqual(await appliedMigrations(db), ALL);
      assert.deepEqual(await tables(db), TABLES);
    } finally {
      await db.drop();
    }
  });

  test('two replicas preparing a database that does not exist yet both start', async () => {
    const name = `astra_test_${randomBytes(6).toString('hex')}`;
    const url = new URL(SERVER_URL);
    url.pathname = `/${name}`;
    const server = new pg.Client({ connectionString: SERVER_URL });
    await server.connect();
    try {
      const settled = await Promise.allSettled(
        [1, 2, 3].map(() => prepareDatabase(url.toString(), () => {})),
      );
      for (const result of settled) {
        if (result.status === 'rejected') assert.fail(`a replica failed to start: ${String(result.reason)}`);
      }
      const pool = new pg.Pool({ connectionString: url.toString(), max: 1 });
      // pool.end() resolves before its sockets close (brianc/node-postgres#2328): the DROP ... FORCE
      // below can terminate one still closing, and an 'error' without a listener fails the test.
      pool.on('error', () => {});
      try {
        const applied = await pool.query<{ name: string }>('SELECT name FROM pgmigrations ORDER BY id');
        assert.deepEqual(
          applied.rows.map((row) => row.name),
          ALL,
        );
      } finally {
        await pool.end();
      }
    } finally {
      await server.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      await server.end();
    }
  });
});
