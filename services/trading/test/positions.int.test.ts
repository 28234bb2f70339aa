import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertError, createTestApp, postTrade, type TestApp, tradeBody, writeCounts } from './support.ts';

describe('positions: no short selling, closing, limits', () => {
  let t: TestApp;
  let auth: string;
  before(async () => {
    t = await createTestApp();
    auth = await t.accountKey('alice');
  });
  after(() => t.close());

  async function position(symbol: string) {
    const response = await t.app.inject({
      method: 'GET',
      url: '/v1/accounts/alice/positions',
      headers: { authorization: auth },
    });
    assert.equal(response.statusCode, 200, response.body);
    const found = (response.json().positions as Array<{ symbol: string }>).find((p) => p.symbol === symbol);
    return found === undefined ? undefined : { ...found, updatedAt: 'x' };
  }

  test('a SELL without any position is refused with 422 and writes nothing', async () => {
    const before = await writeCounts(t.db.pool);
    const response = await postTrade(t.app, auth, tradeBody({ symbol: 'MSFT', side: 'SELL', quantity: '1' }));
    assertError(response, { status: 422, code: 'INSUFFICIENT_POSITION', field: 'quantity' });
    assert.deepEqual(await writeCounts(t.db.pool), before);
    assert.equal(await position('MSFT'), undefined);
  });

  test('a SELL beyond the holdings is refused with 422 and writes nothing', async () => {
    const bought = await postTrade(t.app, auth, tradeBody({ quantity: '10', price: '100.5' }));
    assert.equal(bought.statusCode, 201, bought.body);
    const before = await writeCounts(t.db.pool);
    const held = await position('AAPL');
    const response = await postTrade(
      t.app,
      auth,
      tradeBody({ side: 'SELL', quantity: '10.00000001', price: '101' }),
    );
    assertError(response, { status: 422, code: 'INSUFFICIENT_POSITION', field: 'quantity' });
    assert.deepEqual(await writeCounts(t.db.pool), before);
    assert.deepEqual(await position('AAPL'), held);
  });

  test('a partial SELL keeps the average price; a SELL of the rest closes the position to zero', async () => {
    const partial = await postTrade(t.app, auth, tradeBody({ side: 'SELL', quantity: '4.5', price: '120' }));
    assert.equal(partial.statusCode, 201, partial.body);
    assert.deepEqual(
      { ...partial.json().position, updatedAt: 'x' },
      {
        accountId: 'alice',
        symbol: 'AAPL',
        quantity: '5.5',
        averagePrice: '100.5',
        version: 2,
        updatedAt: 'x',
      },
    );
    assert.equal(partial.json().trade.side, 'SELL');

    const before = await writeCounts(t.db.pool);
    const closing = await postTrade(t.app, auth, tradeBody({ side: 'SELL', quantity: '5.5', price: '90' }));
    assert.equal(closing.statusCode, 201, closing.body);
    const body = closing.json();
    assert.deepEqual(
      { ...body.position, updatedAt: 'x' },
      { accountId: 'alice', symbol: 'AAPL', quantity: '0', averagePrice: '0', version: 3, updatedAt: 'x' },
    );
    assert.deepEqual(await writeCounts(t.db.pool), {
      trades: before.trades + 1,
      positions: before.positions,
      outbox: before.outbox + 2,
      versions: before.versions + 1,
    });
    const event = await t.db.pool.query(
      `SELECT payload FROM event_outbox WHERE event_type = 'astra.trading.position_updated.v1'
       ORDER BY id DESC LIMIT 1`,
    );
    assert.deepEqual(event.rows[0]?.payload, { ...body.position, tradeId: body.trade.id });

    // Nothing is left to sell, and a new BUY starts a fresh cost basis.
    assertError(await postTrade(t.app, auth, tradeBody({ side: 'SELL', quantity: '0.00000001' })), {
      status: 422,
      code: 'INSUFFICIENT_POSITION',
    });
    const reopened = await postTrade(t.app, auth, tradeBody({ quantity: '2', price: '50.25' }));
    assert.equal(reopened.statusCode, 201, reopened.body);
    assert.deepEqual(
      { ...reopened.json().position, updatedAt: 'x' },
      {
        accountId: 'alice',
        symbol: 'AAPL',
        quantity: '2',
        averagePrice: '50.25',
        version: 4,
        updatedAt: 'x',
      },
    );
  });

  test('the average price is rounded once, half up, to 8 decimals', async () => {
    // cost 5.000000055 over quantity 1.00000001 is 5.0000000049999999505...: 5.00000000 exactly
    // rounded. Rounding the quotient to 16 decimals first (plain numeric division) gives 5.000000005
    // and then 5.00000001.
    assert.equal(
      (await postTrade(t.app, auth, tradeBody({ symbol: 'RND', quantity: '1', price: '5.00000005' })))
        .statusCode,
      201,
    );
    const response = await postTrade(
      t.app,
      auth,
      tradeBody({ symbol: 'RND', quantity: '0.00000001', price: '0.5' }),
    );
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.json().position.averagePrice, '5');
    // Half up: 1 @ 1 plus 1 @ 1.00000001 averages to 1.000000005, which rounds to 1.00000001.
    assert.equal(
      (await postTrade(t.app, auth, tradeBody({ symbol: 'HALF', quantity: '1', price: '1' }))).statusCode,
      201,
    );
    const half = await postTrade(
      t.app,
      auth,
      tradeBody({ symbol: 'HALF', quantity: '1', price: '1.00000001' }),
    );
    assert.equal(half.json().position.averagePrice, '1.00000001');
  });

  test('the trade can be read back by its id', async () => {
    const created = await postTrade(t.app, auth, tradeBody({ symbol: 'BRK.B', quantity: '0.5', price: '1' }));
    assert.equal(created.statusCode, 201, created.body);
    const trade = created.json().trade;
    const read = await t.app.inject({
      method: 'GET',
      url: `/v1/trades/${trade.id}`,
      headers: { authorization: auth },
    });
    assert.equal(read.statusCode, 200, read.body);
    assert.deepEqual(read.json(), trade);
  });

  test('a position that would exceed 16 integer digits is refused with 422 and writes nothing', async () => {
    const max = '9999999999999999.99999999';
    const first = await postTrade(t.app, auth, tradeBody({ symbol: 'BIG', quantity: max, price: max }));
    assert.equal(first.statusCode, 201, first.body);
    assert.equal(first.json().position.quantity, max);
    const before = await writeCounts(t.db.pool);
    const response = await postTrade(
      t.app,
      auth,
      tradeBody({ symbol: 'BIG', quantity: '0.00000001', price: '1' }),
    );
    assertError(response, { status: 422, code: 'POSITION_LIMIT_EXCEEDED', field: 'quantity' });
    assert.deepEqual(await writeCounts(t.db.pool), before);
    // The connection that saw the error went back to the pool clean: the next trade works.
    const next = await postTrade(
      t.app,
      auth,
      tradeBody({ symbol: 'BIG', side: 'SELL', quantity: '1', price: '1' }),
    );
    assert.equal(next.statusCode, 201, next.body);
  });

  test('an admin trading for an account that does not exist gets 404 and nothing is written', async () => {
    const admin = await t.adminKey();
    const before = await writeCounts(t.db.pool);
    const response = await postTrade(t.app, admin, tradeBody({ accountId: 'nobody' }));
    assertError(response, { status: 404, code: 'ACCOUNT_NOT_FOUND', field: 'accountId' });
    assert.deepEqual(await writeCounts(t.db.pool), before);
  });
});
