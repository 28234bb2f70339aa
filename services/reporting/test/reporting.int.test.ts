import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OutboxAdmin, OutboxRelay, RedisStreamsPublisher } from '@astra/outbox';
import { type OutboxConsumer, OutboxError } from '@astra/outbox/consumer';
import { registerConsumerMetrics } from '@astra/outbox/consumer/prometheus';
import { startMetricsServer } from '@astra/outbox/prometheus';
import { type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { Registry } from 'prom-client';
import { createScratchDatabase } from '../../../packages/outbox/test/support.ts';
import { createApiKey } from '../../trading/src/http/auth.ts';
import { createTestApp, type TestApp } from '../../trading/test/support.ts';
import { buildApp } from '../src/app.ts';
import { createReportingConsumer } from '../src/consumer.ts';
import { createPool, migrate } from '../src/database.ts';
import { TradingKeyVerifier } from '../src/keys.ts';
import { POSITION_UPDATED } from '../src/projection.ts';

const ACCOUNTS = ['alice', 'bob', 'carol'];
const SYMBOLS = ['AAPL', 'MSFT'];

describe('reporting service: trades over the trading API end up in the ledger once and the positions by version', () => {
  let trading: TestApp;
  let redis: RedisServer;
  let relay: OutboxRelay;
  /** Publishers hold a reconnecting Redis client: each is closed in after(), or the process never exits. */
  const publishers: RedisStreamsPublisher[] = [];
  const newPublisher = () => {
    const publisher = new RedisStreamsPublisher({ url: redis.url });
    publishers.push(publisher);
    return publisher;
  };
  let reportingDb: { url: string; dropDatabase(): Promise<void> };
  let pool: pg.Pool;
  let keysPool: pg.Pool;
  let reporting: FastifyInstance;
  const consumers: OutboxConsumer<unknown>[] = [];
  const keys = new Map<string, string>();
  let admin: string;

  before(async () => {
    [trading, redis, reportingDb] = await Promise.all([
      createTestApp(),
      startRedisServer(),
      createScratchDatabase('reporting_test'),
    ]);
    await migrate(reportingDb.url, 'up');
    pool = createPool(reportingDb.url, 10);
    keysPool = createPool(trading.db.url, 2, { options: '-c default_transaction_read_only=on' });
    reporting = await buildApp({ pool, keys: new TradingKeyVerifier(keysPool) });
    relay = new OutboxRelay({
      connectionString: trading.db.url,
      publisher: newPublisher(),
      pollIntervalMs: 50,
    });
    relay.start();
    for (const name of ['one', 'two']) {
      const consumer = createReportingConsumer({
        pool,
        redis: { url: redis.url },
        group: 'reporting',
        tuning: { blockMs: 100, claimIdleMs: 1000, consumer: name },
      });
      consumers.push(consumer as OutboxConsumer<unknown>);
      consumer.start();
    }
    for (const account of ACCOUNTS) keys.set(account, await trading.accountKey(account));
    admin = await trading.adminKey();
  });

  after(async () => {
    await Promise.all(consumers.map((consumer) => consumer.stop()));
    await relay.stop();
    await Promise.all(publishers.map((publisher) => publisher.close()));
    await reporting.close();
    await pool.end();
    await keysPool.end();
    await trading.close();
    await redis.kill();
    await reportingDb.dropDatabase();
  });

  async function trade(
    account: string,
    symbol: string,
    side: 'BUY' | 'SELL',
    quantity: string,
    price: string,
  ) {
    const response = await trading.app.inject({
      method: 'POST',
      url: '/v1/trades',
      headers: { authorization: keys.get(account) as string, 'content-type': 'application/json' },
      payload: { accountId: account, symbol, side, quantity, price },
    });
    return response;
  }

  const get = (app: FastifyInstance, url: string, authorization?: string) =>
    app.inject({ method: 'GET', url, headers: authorization === undefined ? {} : { authorization } });

  test('positions equal the trading service exactly; the ledger holds every trade once, paged by cursor', async () => {
    // Concurrent trades per account: each account's symbols get BUYs with odd decimals, then SELLs.
    const accepted = new Map<string, string[]>(ACCOUNTS.map((account) => [account, []]));
    for (let round = 0; round < 6; round++) {
      const responses = await Promise.all(
        ACCOUNTS.flatMap((account, a) =>
          SYMBOLS.map(async (symbol, s) => {
            const side = round % 3 === 2 ? 'SELL' : 'BUY';
            const quantity = side === 'SELL' ? '0.33333333' : `${round + a + 1}.1`;
            const price = `${100 + round * 7 + s}.${(round * 37 + a) % 100}`;
            return { account, response: await trade(account, symbol, side, quantity, price) };
          }),
        ),
      );
      for (const { account, response } of responses) {
        assert.equal(response.statusCode, 201, response.body);
        accepted.get(account)?.push(response.json().trade.id);
      }
    }
    // An operator republish: every event again, older versions after newer ones.
    await new OutboxAdmin(trading.db.pool).republish(newPublisher(), {
      since: new Date(Date.now() - 3_600_000),
    });

    for (const account of ACCOUNTS) {
      const expected = (await get(trading.app, `/v1/accounts/${account}/positions`, admin)).json();
      await waitFor(
        `${account}'s positions in reporting`,
        async () =>
          JSON.stringify((await get(reporting, `/v1/accounts/${account}/positions`, admin)).json()) ===
          JSON.stringify(expected),
        20_000,
      );
      const response = await get(reporting, `/v1/accounts/${account}/positions`, keys.get(account));
      assert.equal(response.statusCode, 200);
      assert.deepEqual(response.json(), expected, 'same JSON as the trading service, with its own key');
      assert.equal(expected.positions.length, SYMBOLS.length);
    }

    // Every accepted trade once; pages of 5 follow the cursor to the end.
    for (const account of ACCOUNTS) {
      const want = accepted.get(account) as string[];
      let seen: string[] = [];
      await waitFor(
        `${account}'s ledger`,
        async () => {
          seen = [];
          let cursor: string | undefined;
          for (let page = 0; page < 50; page++) {
            const query = cursor === undefined ? '?limit=5' : `?limit=5&cursor=${cursor}`;
            const body = (
              await get(reporting, `/v1/accounts/${account}/ledger${query}`, keys.get(account))
            ).json();
            seen.push(...body.entries.map((entry: { id: string }) => entry.id));
            cursor = body.nextCursor;
            if (!body.hasMore) break;
          }
          return seen.length >= want.length;
        },
        20_000,
      );
      assert.equal(seen.length, want.length, 'no trade twice');
      assert.deepEqual([...seen].sort(), [...want].sort(), 'every accepted trade');
    }
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM ledger');
    assert.equal(rows[0]?.n, ACCOUNTS.length * SYMBOLS.length * 6);
    const stale = await pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM event_inbox WHERE group_name = 'reporting' AND event_type = $1",
      [POSITION_UPDATED],
    );
    assert.equal(stale.rows[0]?.n, ACCOUNTS.length * SYMBOLS.length * 6, 'each position event recorded once');
    // The apply record: per position, versions 1..6 in apply order, each once, by the two consumers.
    const applies = await pool.query<{ position: string; versions: string[]; consumers: string[] }>(
      `SELECT account_id || ':' || symbol AS position, array_agg(version::text ORDER BY seq) AS versions,
              array_agg(DISTINCT consumer) AS consumers
       FROM position_applies GROUP BY account_id, symbol`,
    );
    assert.equal(applies.rows.length, ACCOUNTS.length * SYMBOLS.length);
    for (const row of applies.rows) {
      assert.deepEqual(row.versions, ['1', '2', '3', '4', '5', '6'], row.position);
      assert.ok(
        row.consumers.every((name) => name === 'one' || name === 'two'),
        row.consumers.join(),
      );
    }
  });

  test('a ledger entry has the trade shape with exact decimals', async () => {
    const response = await trade('alice', 'ZZ.X', 'BUY', '0.00000001', '12345678.12345678');
    assert.equal(response.statusCode, 201);
    const id = response.json().trade.id;
    let entry: Record<string, unknown> | undefined;
    await waitFor(
      'the new trade in the ledger',
      async () => {
        let cursor: string | undefined;
        for (let page = 0; page < 50 && entry === undefined; page++) {
          const query = cursor === undefined ? '?limit=100' : `?limit=100&cursor=${cursor}`;
          const body = (await get(reporting, `/v1/accounts/alice/ledger${query}`, admin)).json();
          entry = body.entries.find((e: { id: string }) => e.id === id);
          cursor = body.nextCursor;
          if (!body.hasMore) break;
        }
        return entry !== undefined;
      },
      20_000,
    );
    const { trade: original } = response.json();
    assert.deepEqual(entry, original);
  });

  test('the same 401 and 403 rules as the trading service; bad input is a 400 that changes nothing', async () => {
    assert.equal((await get(reporting, '/v1/accounts/alice/positions')).statusCode, 401);
    assert.equal(
      (await get(reporting, '/v1/accounts/alice/positions', 'Bearer astra_unknown')).statusCode,
      401,
    );
    const forbidden = await get(reporting, '/v1/accounts/alice/positions', keys.get('bob'));
    assert.equal(forbidden.statusCode, 403);
    assert.deepEqual(forbidden.json().error.code, 'FORBIDDEN');
    assert.equal((await get(reporting, '/v1/accounts/alice/ledger', keys.get('bob'))).statusCode, 403);
    const badCursor = await get(reporting, '/v1/accounts/alice/ledger?cursor=bm9wZQ', keys.get('alice'));
    assert.equal(badCursor.statusCode, 400);
    assert.equal(badCursor.json().error.field, 'cursor');
    const badLimit = await get(reporting, '/v1/accounts/alice/ledger?limit=0', keys.get('alice'));
    assert.equal(badLimit.statusCode, 400);
    const badAccount = await get(reporting, '/v1/accounts/a%20b/ledger', admin);
    assert.equal(badAccount.statusCode, 400);
    // A key made after start works on both services (nothing to copy or sync).
    const fresh = `Bearer ${await createApiKey(trading.db.pool, 'dave', false)}`;
    assert.equal((await get(reporting, '/v1/accounts/dave/positions', fresh)).statusCode, 200);
    // The key lookup cannot write to the trading database.
    await assert.rejects(keysPool.query('DELETE FROM api_keys'), { code: '25006' });
  });

  test('metrics are not on the API port but on a listener of their own; a clash names the variable', async () => {
    assert.equal((await get(reporting, '/metrics')).statusCode, 404);
    const registry = new Registry();
    registerConsumerMetrics({ registry, consumers });
    const metrics = await startMetricsServer({
      registry,
      host: '127.0.0.1',
      port: 0,
      portName: 'REPORTING_METRICS_PORT',
    });
    try {
      const response = await fetch(`http://127.0.0.1:${metrics.port}/metrics`);
      assert.equal(response.status, 200);
      const text = await response.text();
      assert.match(text, /^outbox_consumer_group_pending\{group="reporting",stream="[^"]+"\} \d+$/m);
      assert.match(text, /^outbox_consumer_dead_letters\{group="reporting",stream="[^"]+"\} 0$/m);
      assert.equal((await fetch(`http://127.0.0.1:${metrics.port}/v1/accounts/alice/ledger`)).status, 404);
      await assert.rejects(
        startMetricsServer({
          registry,
          host: '127.0.0.1',
          port: metrics.port,
          portName: 'REPORTING_METRICS_PORT',
        }),
        (error: unknown) =>
          error instanceof OutboxError &&
          error.field === 'REPORTING_METRICS_PORT' &&
          /^REPORTING_METRICS_PORT: 127\.0\.0\.1:\d+ is in use/.test(error.message) &&
          !error.message.includes('\n'),
      );
    } finally {
      await metrics.close();
    }
  });
});
