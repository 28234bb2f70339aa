import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { purgeIdempotencyKeys } from '../src/trades/idempotency-purge.ts';
import { purgeIdempotencyKeysQuery } from '../src/trades/sql.ts';
import { assertError, createTestApp, postTrade, type TestApp, tradeBody, writeCounts } from './support.ts';

describe('Idempotency-Key', () => {
  let t: TestApp;
  let auth: string;
  before(async () => {
    t = await createTestApp();
    auth = await t.accountKey('alice');
  });
  after(() => t.close());

  test('the same key and body returns the first response and writes nothing new', async () => {
    const body = tradeBody({ quantity: '3', price: '10.5' });
    const first = await postTrade(t.app, auth, body, { 'idempotency-key': 'order-1' });
    assert.equal(first.statusCode, 201, first.body);
    assert.equal(first.headers['idempotent-replayed'], undefined);
    const counts = await writeCounts(t.db.pool);

    // The same fields in another order are the same request.
    const reordered = Object.fromEntries(Object.entries(body).reverse());
    for (const payload of [body, reordered]) {
      const again = await postTrade(t.app, auth, payload, { 'idempotency-key': 'order-1' });
      assert.equal(again.statusCode, 201, again.body);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.deepEqual(again.json(), first.json());
    }
    assert.deepEqual(await writeCounts(t.db.pool), counts);
  });

  test('the same key with another body is refused with 422 and writes nothing', async () => {
    const first = await postTrade(t.app, auth, tradeBody({ quantity: '3', price: '10.5' }), {
      'idempotency-key': 'order-reused',
    });
    assert.equal(first.statusCode, 201, first.body);
    const counts = await writeCounts(t.db.pool);
    const other = await postTrade(t.app, auth, tradeBody({ quantity: '4', price: '10.5' }), {
      'idempotency-key': 'order-reused',
    });
    assertError(other, { status: 422, code: 'IDEMPOTENCY_KEY_REUSED', field: 'idempotency-key' });
    assert.deepEqual(await writeCounts(t.db.pool), counts);
  });

  test('keys belong to the API key that used them: another key may reuse the value', async () => {
    const first = await postTrade(t.app, auth, tradeBody({ quantity: '3' }), {
      'idempotency-key': 'order-shared',
    });
    assert.equal(first.statusCode, 201, first.body);
    const otherAuth = await t.accountKey('alice');
    const response = await postTrade(t.app, otherAuth, tradeBody({ quantity: '4' }), {
      'idempotency-key': 'order-shared',
    });
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.headers['idempotent-replayed'], undefined);
    assert.notEqual(response.json().trade.id, first.json().trade.id, 'a trade of its own');
  });

  test('10 concurrent requests with one key execute exactly one trade', async () => {
    const counts = await writeCounts(t.db.pool);
    const body = tradeBody({ symbol: 'NVDA', quantity: '1.5', price: '120' });
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => postTrade(t.app, auth, body, { 'idempotency-key': 'concurrent-1' })),
    );
    for (const response of responses) assert.equal(response.statusCode, 201, response.body);
    const ids = new Set(responses.map((response) => response.json().trade.id));
    assert.equal(ids.size, 1);
    assert.equal(
      responses.filter((response) => response.headers['idempotent-replayed'] === 'true').length,
      9,
    );
    assert.deepEqual(await writeCounts(t.db.pool), {
      trades: counts.trades + 1,
      positions: counts.positions + 1,
      outbox: counts.outbox + 2,
      versions: counts.versions + 1,
    });
  });

  test("a refused trade (422) is the key's answer: a retry after a BUY replays the refusal", async () => {
    const counts = await writeCounts(t.db.pool);
    const sell = tradeBody({ symbol: 'TSLA', side: 'SELL', quantity: '1' });
    const refused = await postTrade(t.app, auth, sell, { 'idempotency-key': 'sell-first' });
    assertError(refused, { status: 422, code: 'INSUFFICIENT_POSITION', field: 'quantity' });
    assert.equal(refused.headers['idempotent-replayed'], undefined);
    assert.deepEqual(await writeCounts(t.db.pool), counts);
    const bought = await postTrade(t.app, auth, tradeBody({ symbol: 'TSLA', quantity: '1' }));
    assert.equal(bought.statusCode, 201, bought.body);
    const retried = await postTrade(t.app, auth, sell, { 'idempotency-key': 'sell-first' });
    assertError(retried, { status: 422, code: 'INSUFFICIENT_POSITION', field: 'quantity' });
    assert.equal(retried.headers['idempotent-replayed'], 'true');
    assert.equal(retried.body, refused.body);
    // Nothing was sold by the retry: the BUY's position is intact.
    assert.equal((await writeCounts(t.db.pool)).trades, counts.trades + 1);
  });

  test('a refusal the database raises (position past 16 digits) is stored too', async () => {
    const big = tradeBody({ symbol: 'BIG', quantity: '9999999999999999', price: '1' });
    assert.equal((await postTrade(t.app, auth, big)).statusCode, 201);
    const counts = await writeCounts(t.db.pool);
    const over = await postTrade(t.app, auth, big, { 'idempotency-key': 'too-big' });
    assertError(over, { status: 422, code: 'POSITION_LIMIT_EXCEEDED' });
    const again = await postTrade(t.app, auth, big, { 'idempotency-key': 'too-big' });
    assertError(again, { status: 422, code: 'POSITION_LIMIT_EXCEEDED' });
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.deepEqual(await writeCounts(t.db.pool), counts);
  });

  test('validation errors, 401 and 403 do not use up a key', async () => {
    const keys = async () =>
      (await t.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_keys')).rows[0]?.n;
    const before = await keys();
    const headers = { 'idempotency-key': 'not-yet' };
    assertError(await postTrade(t.app, auth, tradeBody({ quantity: '-1' }), headers), { status: 400 });
    assertError(await postTrade(t.app, 'Bearer astra_unknown', tradeBody(), headers), { status: 401 });
    assertError(await postTrade(t.app, auth, tradeBody({ accountId: 'bob' }), headers), { status: 403 });
    assert.equal(await keys(), before);
    const executed = await postTrade(t.app, auth, tradeBody({ quantity: '1' }), headers);
    assert.equal(executed.statusCode, 201, executed.body);
  });

  test('an invalid Idempotency-Key is refused with 400 and writes nothing', async () => {
    const keyCount = async () =>
      (await t.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_keys')).rows[0]?.n;
    // A valid key first, so "no key row written" is measured against a table that is not empty.
    const valid = await postTrade(t.app, auth, tradeBody({ symbol: 'AMD' }), {
      'idempotency-key': 'valid-1',
    });
    assert.equal(valid.statusCode, 201, valid.body);
    const keysBefore = await keyCount();
    assert.ok(keysBefore !== undefined && keysBefore >= 1);
    const counts = await writeCounts(t.db.pool);
    for (const key of ['has space', 'x'.repeat(256), 'tab\there', 'é']) {
      const response = await postTrade(t.app, auth, tradeBody(), { 'idempotency-key': key });
      assertError(response, { status: 400, code: 'INVALID_HEADER', field: 'idempotency-key' });
    }
    // An empty value is not a key either.
    const empty = await postTrade(t.app, auth, tradeBody(), { 'idempotency-key': '' });
    assertError(empty, { status: 400, code: 'INVALID_HEADER', field: 'idempotency-key' });
    assert.deepEqual(await writeCounts(t.db.pool), counts);
    assert.equal(await keyCount(), keysBefore, 'no key stored for a refused header');
  });

  test('keys older than their TTL are purged in batches; newer ones keep protecting retries', async () => {
    const body = tradeBody({ quantity: '1', price: '7' });
    for (const key of ['purge-old-1', 'purge-old-2', 'purge-new']) {
      assert.equal((await postTrade(t.app, auth, body, { 'idempotency-key': key })).statusCode, 201);
    }
    await t.db.pool.query(
      "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE key LIKE 'purge-old-%'",
    );
    // A batch of 1 makes the purge loop.
    assert.equal(await purgeIdempotencyKeys(t.db.pool, 24 * 3600, 1), 2);
    const left = await t.db.pool.query<{ key: string }>(
      "SELECT key FROM idempotency_keys WHERE key LIKE 'purge-%'",
    );
    assert.deepEqual(left.rows, [{ key: 'purge-new' }]);
    const newer = await postTrade(t.app, auth, body, { 'idempotency-key': 'purge-new' });
    assert.equal(newer.headers['idempotent-replayed'], 'true');
    // A purged key is free again: the same request now executes a new trade.
    const counts = await writeCounts(t.db.pool);
    const expired = await postTrade(t.app, auth, body, { 'idempotency-key': 'purge-old-1' });
    assert.equal(expired.statusCode, 201, expired.body);
    assert.equal(expired.headers['idempotent-replayed'], undefined);
    assert.equal((await writeCounts(t.db.pool)).trades, counts.trades + 1);
  });

  test('the purge runs on one replica at a time: a second one skips its round', async () => {
    const body = tradeBody({ quantity: '1', price: '3' });
    assert.equal((await postTrade(t.app, auth, body, { 'idempotency-key': 'locked-old' })).statusCode, 201);
    await t.db.pool.query(
      "UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE key = 'locked-old'",
    );
    const other = await t.db.pool.connect();
    try {
      // Another replica's purge, holding the lock.
      await other.query("SELECT pg_advisory_lock(hashtext('astra-idempotency-purge'))");
      assert.equal(await purgeIdempotencyKeys(t.db.pool, 24 * 3600), null);
      const left = await t.db.pool.query("SELECT 1 FROM idempotency_keys WHERE key = 'locked-old'");
      assert.equal(left.rowCount, 1);
      await other.query("SELECT pg_advisory_unlock(hashtext('astra-idempotency-purge'))");
    } finally {
      other.release();
    }
    assert.equal(await purgeIdempotencyKeys(t.db.pool, 24 * 3600), 1);
  });

  test('the purge finds old keys through an index on created_at', async () => {
    const client = await t.db.pool.connect();
    try {
      // The table is small here: forbid the sequential scan to see which index the plan can use.
      await client.query('SET enable_seqscan = off');
      const query = purgeIdempotencyKeysQuery(24 * 3600, 1000);
      const plan = await client.query<{ 'QUERY PLAN': string }>({
        text: `EXPLAIN ${query.text}`,
        values: query.values,
      });
      const text = plan.rows.map((row) => row['QUERY PLAN']).join('\n');
      assert.match(text, /idempotency_keys_created_at_idx/, text);
    } finally {
      await client.query('RESET enable_seqscan').catch(() => {});
      client.release();
    }
  });
});
