import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { waitFor } from '@astra/test-support';
import { HttpClient } from './http.ts';
import { killLeftovers, Stack } from './stack.ts';
import { readStreams } from './streams.ts';

// Black-box: the service and relay run as OS processes started the way a user starts them; the test
// sees them only through HTTP, SQL and Redis.

const TRADE_EXECUTED = 'astra.trading.trade_executed.v1';
const POSITION_UPDATED = 'astra.trading.position_updated.v1';

interface OutboxRow {
  event_id: string;
  event_type: string;
  aggregate_id: string;
  status: string;
  attempts: number;
  last_error: string | null;
  stream_entry_id: string | null;
  payload: Record<string, unknown>;
}

async function outboxRows(stack: Stack): Promise<OutboxRow[]> {
  const result = await stack.db.pool.query<OutboxRow>(
    `SELECT event_id::text, event_type, aggregate_id, status, attempts, last_error, stream_entry_id, payload
     FROM event_outbox ORDER BY id`,
  );
  return result.rows;
}

interface TradeResponse {
  trade: { id: string; accountId: string; symbol: string; positionVersion: number };
  position: { version: number; quantity: string; averagePrice: string; updatedAt: string };
}

async function postTrade(
  http: HttpClient,
  key: string,
  body: Record<string, string>,
): Promise<TradeResponse> {
  const response = await http.postJson('/v1/trades', body, { authorization: `Bearer ${key}` });
  assert.equal(response.status, 201, response.body);
  return JSON.parse(response.body) as TradeResponse;
}

/** Every outbox row is in its stream exactly once, at the entry id the row recorded. */
async function assertPublishedOnce(stack: Stack, rows: OutboxRow[]): Promise<void> {
  const streams = await readStreams(stack.redis.url, [TRADE_EXECUTED, POSITION_UPDATED]);
  const entries = [...streams.values()].flat();
  assert.equal(entries.length, rows.length, 'one stream entry per outbox row');
  for (const row of rows) {
    const matching = (streams.get(row.event_type) ?? []).filter((entry) => entry.fields.id === row.event_id);
    assert.equal(matching.length, 1, `event ${row.event_id} once in ${row.event_type}`);
    assert.equal(matching[0]?.entryId, row.stream_entry_id);
    assert.equal(matching[0]?.fields.subject, row.aggregate_id);
    assert.deepEqual(JSON.parse(matching[0]?.fields.data ?? 'null'), row.payload);
  }
}

const allPublished = (stack: Stack, count: number) => async () => {
  const rows = await outboxRows(stack);
  return rows.length === count && rows.every((row) => row.status === 'PUBLISHED');
};

describe('seed tests through the real processes', { timeout: 180_000 }, () => {
  const stacks: Stack[] = [];
  const clients: HttpClient[] = [];
  after(async () => {
    for (const client of clients) client.close();
    await Promise.allSettled(stacks.map((stack) => stack.close()));
    await killLeftovers();
  });

  test('seed 1: a trade writes two PENDING rows; the service with its embedded relay publishes both and marks them PUBLISHED', async () => {
    const stack = await Stack.create({ label: 'seed1', env: { RELAY_POLL_INTERVAL_MS: '200' } });
    stacks.push(stack);

    // First without the relay, to see the rows exactly as the request left them.
    const first = await stack.startService({ relay: false });
    const key = await stack.createKey({ account: 'alice' });
    const http = new HttpClient(first.port);
    clients.push(http);
    const { trade, position } = await postTrade(http, key, {
      accountId: 'alice',
      symbol: 'AAPL',
      side: 'BUY',
      quantity: '10',
      price: '189.25',
    });

    const pending = await outboxRows(stack);
    assert.deepEqual(
      pending.map((row) => [row.event_type, row.aggregate_id, row.status, row.attempts]),
      [
        [TRADE_EXECUTED, trade.id, 'PENDING', 0],
        [POSITION_UPDATED, 'alice:AAPL', 'PENDING', 0],
      ],
    );
    assert.equal(await stack.redis.cli(['EXISTS', TRADE_EXECUTED, POSITION_UPDATED]), '0');
    const tradeRows = await stack.db.pool.query('SELECT 1 FROM trades WHERE id = $1', [trade.id]);
    assert.equal(tradeRows.rowCount, 1);

    // SIGTERM stops it cleanly; the same service with its embedded relay publishes what is waiting.
    assert.deepEqual(await first.process.kill('SIGTERM'), { code: 0, signal: null });
    await stack.startService({ relay: true });
    await waitFor('both events PUBLISHED', allPublished(stack, 2), 30_000);

    const published = await outboxRows(stack);
    await assertPublishedOnce(stack, published);
    const streams = await readStreams(stack.redis.url, [TRADE_EXECUTED, POSITION_UPDATED]);
    const executed = streams.get(TRADE_EXECUTED)?.[0]?.fields;
    const updated = streams.get(POSITION_UPDATED)?.[0]?.fields;
    assert.ok(executed !== undefined && updated !== undefined);
    for (const fields of [executed, updated]) {
      assert.equal(fields.specversion, '1.0');
      assert.equal(fields.datacontenttype, 'application/json');
      assert.equal(fields.source, '/astra/trading-service');
      assert.ok(!Number.isNaN(Date.parse(fields.time ?? '')), 'time is a timestamp');
    }
    assert.equal(executed.type, TRADE_EXECUTED);
    assert.equal(executed.subject, trade.id);
    assert.equal((JSON.parse(executed.data ?? '{}') as { id?: string }).id, trade.id);
    assert.equal(updated.type, POSITION_UPDATED);
    assert.equal(updated.subject, 'alice:AAPL');
    assert.deepEqual(JSON.parse(updated.data ?? '{}'), {
      accountId: 'alice',
      symbol: 'AAPL',
      quantity: position.quantity,
      averagePrice: position.averagePrice,
      version: 1,
      updatedAt: position.updatedAt,
      tradeId: trade.id,
    });
  });

  test('seed 2: while Redis is down trades succeed and their rows stay PENDING with no attempt spent; once Redis is back every event is published exactly once', async () => {
    // Durable Redis: the entries published before the outage must still be there after it.
    const stack = await Stack.create({
      label: 'seed2',
      durableRedis: true,
      env: { RELAY_POLL_INTERVAL_MS: '200' },
    });
    stacks.push(stack);
    const service = await stack.startService({ relay: true });
    const key = await stack.createKey({ account: 'bob' });
    const http = new HttpClient(service.port);
    const metricsHttp = new HttpClient(service.metricsPort);
    clients.push(http, metricsHttp);
    const trade = (symbol: string, quantity: string) =>
      postTrade(http, key, { accountId: 'bob', symbol, side: 'BUY', quantity, price: '10.5' });

    await trade('MSFT', '1');
    await waitFor('the first trade published', allPublished(stack, 2), 30_000);

    await stack.redis.kill();
    const during = [];
    for (let i = 0; i < 10; i++) during.push(await trade(i % 2 === 0 ? 'MSFT' : 'NVDA', String(i + 1)));
    assert.equal(new Set(during.map((t) => t.trade.id)).size, 10);

    // The relay has tried the new rows and found the broker down...
    await waitFor(
      'the relay to report the broker down',
      async () => {
        const metrics = await metricsHttp.send({ method: 'GET', path: '/metrics' });
        return (
          /^outbox_broker_up 0$/m.test(metrics.body) &&
          /publish_errors_total\{kind="broker"\} [1-9]/.test(metrics.body)
        );
      },
      30_000,
    );
    // ...and the rows are waiting, not spent.
    const waiting = (await outboxRows(stack)).slice(2);
    assert.equal(waiting.length, 20);
    for (const row of waiting) {
      assert.equal(row.status, 'PENDING', row.event_id);
      assert.equal(row.attempts, 0, row.event_id);
      assert.equal(row.last_error, null, row.event_id);
    }

    await stack.redis.restart();
    await waitFor('all 22 events PUBLISHED', allPublished(stack, 22), 60_000);
    const rows = await outboxRows(stack);
    assert.ok(rows.every((row) => row.attempts === 0));
    await assertPublishedOnce(stack, rows);

    // Per position, versions rise in stream order.
    const streams = await readStreams(stack.redis.url, [POSITION_UPDATED]);
    const versions = new Map<string, number[]>();
    for (const entry of streams.get(POSITION_UPDATED) ?? []) {
      const subject = entry.fields.subject ?? '';
      versions.set(subject, [
        ...(versions.get(subject) ?? []),
        (JSON.parse(entry.fields.data ?? '{}') as { version: number }).version,
      ]);
    }
    assert.deepEqual(Object.fromEntries(versions), {
      'bob:MSFT': [1, 2, 3, 4, 5, 6],
      'bob:NVDA': [1, 2, 3, 4, 5],
    });
  });
});
