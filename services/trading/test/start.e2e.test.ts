import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { freePort, type ManagedProcess } from '@astra/test-support';
import pg from 'pg';
import { MAIN, startNode, testEnv } from './process.ts';
import { SERVER_URL } from './support.ts';

async function onServer<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** fetch that gives up: a hung service fails the test instead of hanging it. */
function fetchBounded(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
}

describe('npm start on a database that does not exist', () => {
  const name = `astra_test_start_${randomBytes(6).toString('hex')}`;
  const databaseUrl = new URL(SERVER_URL);
  databaseUrl.pathname = `/${name}`;
  let service: ManagedProcess | undefined;

  after(async () => {
    await service?.kill();
    await onServer((client) =>
      client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
    );
  });

  test('creates and migrates it, prints a demo key and a curl command that trade; SIGTERM exits 0', async () => {
    const exists = () =>
      onServer(
        async (client) =>
          (await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount,
      );
    assert.equal(await exists(), 0);

    const port = await freePort();
    service = startNode(
      MAIN,
      testEnv({
        DATABASE_URL: databaseUrl.toString(),
        PORT: String(port),
        HOST: '127.0.0.1',
        RELAY_ENABLED: 'false',
        LOG_LEVEL: 'warn',
        METRICS_PORT: '0',
      }),
    );
    const banner = await service.waitForStdout(/curl [^\n]*\n[^\n]*\n[^\n]*'\n/, 60_000);
    const key = /^ {2}(astra_[A-Za-z0-9_-]{43})$/m.exec(service.stdout)?.[1];
    assert.ok(key !== undefined, service.output);
    assert.match(service.stdout, /demo account "demo"/);
    assert.ok(banner[0].includes(`http://127.0.0.1:${port}/v1/trades`), banner[0]);
    assert.ok(banner[0].includes(`Authorization: Bearer ${key}`), banner[0]);

    assert.equal(await exists(), 1, 'the database was created');
    const database = new pg.Client({ connectionString: databaseUrl.toString() });
    await database.connect();
    const migrated = await database
      .query<{ name: string }>('SELECT name FROM pgmigrations ORDER BY id')
      .finally(() => database.end());
    assert.deepEqual(
      migrated.rows.map((row) => row.name),
      ['0001_event_outbox', '0002_trading', '0003_outbox_relay_state', '0004_key_lifecycle'],
    );

    // The body the printed curl command sends, over real HTTP with the printed key.
    const data = /-d '([^']+)'/.exec(banner[0])?.[1];
    assert.ok(data !== undefined, banner[0]);
    const response = await fetchBounded(`http://127.0.0.1:${port}/v1/trades`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: data,
    });
    const text = await response.text();
    assert.equal(response.status, 201, text);
    const result = JSON.parse(text);
    assert.equal(result.trade.accountId, 'demo');
    assert.equal(result.position.version, 1);

    const ready = await fetchBounded(`http://127.0.0.1:${port}/readyz`);
    assert.equal(ready.status, 200, await ready.text());

    service.signalGroup('SIGTERM');
    const exit = await service.exitWithin(15_000);
    assert.deepEqual(exit, { code: 0, signal: null }, service.output);
  });
});

describe('npm start with NODE_ENV=production on an empty database', () => {
  const name = `astra_test_prod_${randomBytes(6).toString('hex')}`;
  const databaseUrl = new URL(SERVER_URL);
  databaseUrl.pathname = `/${name}`;
  let service: ManagedProcess | undefined;

  after(async () => {
    await service?.kill();
    await onServer((client) =>
      client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
    );
  });

  test('creates no demo key and prints none; METRICS_PORT=0 picks a free port and logs it', async () => {
    const port = await freePort();
    service = startNode(
      MAIN,
      testEnv({
        DATABASE_URL: databaseUrl.toString(),
        PORT: String(port),
        HOST: '127.0.0.1',
        RELAY_ENABLED: 'false',
        LOG_LEVEL: 'info',
        METRICS_PORT: '0',
        NODE_ENV: 'production',
      }),
    );
    const listening = await service.waitForStdout(/"metricsPort":(\d+)[^\n]*"msg":"listening"/, 60_000);
    const metricsPort = Number(listening[1]);
    assert.ok(metricsPort > 0, service.output);
    const metrics = await fetchBounded(`http://127.0.0.1:${metricsPort}/metrics`);
    assert.equal(metrics.status, 200);
    assert.doesNotMatch(service.output, /astra_|demo account/);
    const keys = await onServer(async () => {
      const database = new pg.Client({ connectionString: databaseUrl.toString() });
      await database.connect();
      try {
        return (await database.query('SELECT count(*)::int AS n FROM api_keys')).rows[0]?.n;
      } finally {
        await database.end();
      }
    });
    assert.equal(keys, 0);
    service.signalGroup('SIGTERM');
    assert.deepEqual(await service.exitWithin(15_000), { code: 0, signal: null }, service.output);
  });
});
