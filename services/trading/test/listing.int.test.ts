import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { tradesNextPageQuery } from '../src/trades/sql.ts';
import { assertError, createTestApp, postTrade, type TestApp, tradeBody } from './support.ts';

interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

describe('listing trades and positions, a page at a time', () => {
  let t: TestApp;
  let alice: string;
  let bob: string;
  const get = (url: string, authorization = alice) =>
    t.app.inject({ method: 'GET', url, headers: { authorization } });

  async function all<T>(path: string, field: string, limit: number): Promise<T[][]> {
    const pages: T[][] = [];
    let cursor: string | null = null;
    do {
      const query: string = `?limit=${limit}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;
      const response = await get(`${path}${query}`);
      assert.equal(response.statusCode, 200, response.body);
      const body = response.json() as Record<string, unknown>;
      const page: Page<T> = { items: body[field] as T[], nextCursor: body.nextCursor as string | null };
      pages.push(page.items);
      cursor = page.nextCursor;
      assert.ok(pages.length < 50, 'the cursor must advance');
    } while (cursor !== null);
    return pages;
  }

  before(async () => {
    t = await createTestApp();
    alice = await t.accountKey('alice');
    bob = await t.accountKey('bob');
    for (const [symbol, quantity] of [
      ['AAPL', '1'],
      ['MSFT', '2'],
      ['AAPL', '3'],
      ['NVDA', '4'],
      ['TSLA', '5'],
    ] as const) {
      const response = await postTrade(t.app, alice, tradeBody({ symbol, quantity }));
      assert.equal(response.statusCode, 201, response.body);
    }
    assert.equal((await postTrade(t.app, bob, tradeBody({ accountId: 'bob' }))).statusCode, 201);
  });
  after(() => t.close());

  test("GET /v1/accounts/:id/trades pages through the account's trades, newest first, each once", async () => {
    const pages = await all<{ quantity: string; accountId: string }>(
      '/v1/accounts/alice/trades',
      'trades',
      2,
    );
    assert.deepEqual(
      pages.map((page) => page.map((trade) => trade.quantity)),
      [['5', '4'], ['3', '2'], ['1']],
    );
    assert.ok(pages.flat().every((trade) => trade.accountId === 'alice'));
    const whole = await get('/v1/accounts/alice/trades');
    assert.equal(whole.json().trades.length, 5);
    assert.equal(whole.json().nextCursor, null);
  });

  test('trades with one timestamp still page exactly once each (the id breaks the tie)', async () => {
    await t.db.pool.query(
      "UPDATE trades SET executed_at = '2026-01-01T00:00:00.123456Z' WHERE account_id = 'alice'",
    );
    const pages = await all<{ id: string }>('/v1/accounts/alice/trades', 'trades', 2);
    const ids = pages.flat().map((trade) => trade.id);
    assert.equal(ids.length, 5);
    assert.equal(new Set(ids).size, 5);
  });

  test('the next page is read on trades_account_idx', async () => {
    const client = await t.db.pool.connect();
    try {
      await client.query('SET enable_seqscan = off');
      const query = tradesNextPageQuery('alice', '00000000-0000-7000-8000-000000000000', 101);
      const plan = await client.query<{ 'QUERY PLAN': string }>({
        text: `EXPLAIN ${query.text}`,
        values: query.values,
      });
      const text = plan.rows.map((row) => row['QUERY PLAN']).join('\n');
      assert.match(text, /trades_account_idx/, text);
    } finally {
      await client.query('RESET enable_seqscan').catch(() => {});
      client.release();
    }
  });

  test('bad paging input is a 400 naming the field; another account is a 403', async () => {
    for (const [url, field] of [
      ['/v1/accounts/alice/trades?limit=0', 'limit'],
      ['/v1/accounts/alice/trades?limit=501', 'limit'],
      ['/v1/accounts/alice/trades?limit=ten', 'limit'],
      ['/v1/accounts/alice/trades?cursor=not-a-uuid', 'cursor'],
      ['/v1/accounts/alice/trades?sort=asc', 'sort'],
      ['/v1/accounts/alice/positions?limit=-1', 'limit'],
      ['/v1/accounts/alice/positions?cursor=%27%20OR%201%3D1', 'cursor'],
    ] as const) {
      assertError(await get(url), { status: 400, field });
    }
    const bobsTrade = (await get('/v1/accounts/bob/trades', bob)).json().trades[0].id as string;
    assertError(await get(`/v1/accounts/alice/trades?cursor=${bobsTrade}`), {
      status: 400,
      code: 'INVALID_CURSOR',
      field: 'cursor',
    });
    assertError(await get('/v1/accounts/bob/trades'), { status: 403, code: 'FORBIDDEN' });
    assertError(await get('/v1/accounts/bob/positions'), { status: 403, code: 'FORBIDDEN' });
  });

  test('GET /v1/accounts/:id/positions pages by symbol', async () => {
    const pages = await all<{ symbol: string }>('/v1/accounts/alice/positions', 'positions', 3);
    assert.deepEqual(
      pages.map((page) => page.map((position) => position.symbol)),
      [['AAPL', 'MSFT', 'NVDA'], ['TSLA']],
    );
  });

  test('the OpenAPI document has the headers and every error status, as schemas', async () => {
    const doc = (await t.app.inject({ url: '/docs/json' })).json();
    const post = doc.paths['/v1/trades'].post;
    const headers = Object.fromEntries(
      (post.parameters as { in: string; name: string; schema: Record<string, unknown> }[])
        .filter((parameter) => parameter.in === 'header')
        .map((parameter) => [parameter.name, parameter.schema]),
    );
    assert.equal(headers['idempotency-key']?.pattern, '^[\\x21-\\x7e]{1,255}$');
    assert.ok(headers.traceparent !== undefined);
    assert.ok(headers.tracestate !== undefined);
    assert.deepEqual(Object.keys(post.responses).sort(), [
      '201',
      '400',
      '401',
      '403',
      '404',
      '408',
      '409',
      '413',
      '415',
      '422',
      '429',
      '500',
      '503',
    ]);
    const errorSchema = post.responses['429'].content['application/json'].schema;
    assert.deepEqual(Object.keys(errorSchema.properties.error.properties).sort(), [
      'code',
      'field',
      'message',
    ]);
    const list = doc.paths['/v1/accounts/{accountId}/trades'].get;
    assert.deepEqual(
      (list.parameters as { in: string; name: string }[])
        .filter((p) => p.in === 'query')
        .map((p) => p.name)
        .sort(),
      ['cursor', 'limit'],
    );
    assert.ok(list.responses['200'].content['application/json'].schema.properties.nextCursor !== undefined);
    assert.ok(doc.paths['/v1/accounts/{accountId}/positions'].get.responses['429'] !== undefined);
  });
});
