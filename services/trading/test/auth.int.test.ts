import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertError, createTestApp, postTrade, type TestApp, tradeBody, writeCounts } from './support.ts';

describe('auth: bearer API keys bound to one account, or admin', () => {
  let t: TestApp;
  let alice: string;
  let bob: string;
  let admin: string;
  let bobTradeId: string;
  before(async () => {
    t = await createTestApp();
    alice = await t.accountKey('alice');
    bob = await t.accountKey('bob');
    admin = await t.adminKey();
    const response = await postTrade(t.app, bob, tradeBody({ accountId: 'bob' }));
    assert.equal(response.statusCode, 201, response.body);
    bobTradeId = response.json().trade.id;
  });
  after(() => t.close());

  const unauthenticated: Array<[string, string | undefined]> = [
    ['no header', undefined],
    ['empty header', ''],
    ['another scheme', 'Basic YWxpY2U6c2VjcmV0'],
    ['Bearer without a key', 'Bearer '],
    ['a key with characters keys never have', 'Bearer astra_abc$def'],
    ['an overlong key', `Bearer ${'a'.repeat(201)}`],
    ['an unknown key', 'Bearer astra_thisKeyWasNeverIssued0123456789abcdefghijk'],
  ];

  for (const [name, authorization] of unauthenticated) {
    test(`401 for ${name}, on every route, before the body is looked at`, async () => {
      const headers = authorization === undefined ? {} : { authorization };
      const counts = await writeCounts(t.db.pool);
      // A valid body and an invalid one get the same answer: validation is not reached.
      for (const payload of [tradeBody(), '{"broken":']) {
        const response = await postTrade(t.app, authorization, payload);
        assertError(response, { status: 401, code: 'UNAUTHENTICATED', field: 'authorization' });
      }
      for (const url of [`/v1/trades/${bobTradeId}`, '/v1/accounts/alice/positions']) {
        const response = await t.app.inject({ method: 'GET', url, headers });
        assertError(response, { status: 401, code: 'UNAUTHENTICATED', field: 'authorization' });
      }
      assert.deepEqual(await writeCounts(t.db.pool), counts);
    });
  }

  test('the scheme is case-insensitive, the key is not', async () => {
    const key = alice.slice('Bearer '.length);
    const lower = await postTrade(t.app, `bearer ${key}`, tradeBody({ quantity: '1' }));
    assert.equal(lower.statusCode, 201, lower.body);
    const wrongCase = await postTrade(t.app, `Bearer ${key.toUpperCase()}`, tradeBody({ quantity: '1' }));
    assertError(wrongCase, { status: 401, code: 'UNAUTHENTICATED', field: 'authorization' });
  });

  test("403 when an account's key trades for another account; nothing is written", async () => {
    const counts = await writeCounts(t.db.pool);
    const response = await postTrade(t.app, alice, tradeBody({ accountId: 'bob' }));
    assertError(response, { status: 403, code: 'FORBIDDEN', field: 'accountId' });
    // Even with an Idempotency-Key: the key is not claimed.
    const keyed = await postTrade(t.app, alice, tradeBody({ accountId: 'bob' }), { 'idempotency-key': 'k1' });
    assertError(keyed, { status: 403, code: 'FORBIDDEN' });
    assert.deepEqual(await writeCounts(t.db.pool), counts);
    const keys = await t.db.pool.query('SELECT count(*)::int AS n FROM idempotency_keys');
    assert.deepEqual(keys.rows, [{ n: 0 }]);
  });

  test("403 when an account's key reads another account's positions", async () => {
    const response = await t.app.inject({
      method: 'GET',
      url: '/v1/accounts/bob/positions',
      headers: { authorization: alice },
    });
    assertError(response, { status: 403, code: 'FORBIDDEN', field: 'accountId' });
  });

  test("404, not 403, for another account's trade, so trade ids cannot be probed", async () => {
    const response = await t.app.inject({
      method: 'GET',
      url: `/v1/trades/${bobTradeId}`,
      headers: { authorization: alice },
    });
    assertError(response, { status: 404, code: 'TRADE_NOT_FOUND', field: 'id' });
    const own = await t.app.inject({
      method: 'GET',
      url: `/v1/trades/${bobTradeId}`,
      headers: { authorization: bob },
    });
    assert.equal(own.statusCode, 200, own.body);
    assert.equal(own.json().accountId, 'bob');
  });

  test('an admin key trades and reads for any account', async () => {
    const traded = await postTrade(t.app, admin, tradeBody({ accountId: 'alice', symbol: 'ADM' }));
    assert.equal(traded.statusCode, 201, traded.body);
    assert.equal(traded.json().trade.accountId, 'alice');
    const positions = await t.app.inject({
      method: 'GET',
      url: '/v1/accounts/bob/positions',
      headers: { authorization: admin },
    });
    assert.equal(positions.statusCode, 200, positions.body);
    assert.deepEqual(
      positions.json().positions.map((p: { accountId: string; symbol: string }) => [p.accountId, p.symbol]),
      [['bob', 'AAPL']],
    );
    const trade = await t.app.inject({
      method: 'GET',
      url: `/v1/trades/${bobTradeId}`,
      headers: { authorization: admin },
    });
    assert.equal(trade.statusCode, 200, trade.body);
    // The admin's trade for alice is alice's: her own key reads it.
    const mine = await t.app.inject({
      method: 'GET',
      url: `/v1/trades/${traded.json().trade.id}`,
      headers: { authorization: alice },
    });
    assert.equal(mine.statusCode, 200, mine.body);
  });

  test('keys are stored hashed, never in clear', async () => {
    const stored = await t.db.pool.query<{ key_hash: Buffer }>('SELECT key_hash FROM api_keys ORDER BY id');
    assert.equal(stored.rows.length, 3);
    for (const [index, header] of [alice, bob, admin].entries()) {
      const key = Buffer.from(header.slice('Bearer '.length));
      assert.equal(stored.rows[index]?.key_hash.length, 32, 'a SHA-256 digest');
      for (const row of stored.rows) assert.ok(!row.key_hash.includes(key));
    }
  });

  test('health endpoints need no key', async () => {
    for (const url of ['/healthz', '/readyz']) {
      const response = await t.app.inject({ method: 'GET', url });
      assert.equal(response.statusCode, 200, response.body);
    }
  });
});
