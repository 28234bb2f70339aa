import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { averagePriceAfterBuy, formatDecimal, parseDecimal } from './decimal.ts';
import { createTestApp, postTrade, type TestApp, tradeBody, writeCounts } from './support.ts';

const TRADES = 200;
const QUANTITIES = ['0.1', '0.25', '1.00000001', '3', '0.00000007', '12.5'];

/** Deterministic, varied prices with up to 8 decimals: 100.xxxxxxxx to 299.xxxxxxxx. */
function priceOf(index: number): string {
  const fraction = ((index * 7_919_013) % 100_000_000).toString().padStart(8, '0');
  return `${100 + ((index * 37) % 200)}.${fraction}`;
}

interface TradeRowOut {
  id: string;
  quantity: string;
  price: string;
  position_version: number;
}

interface PositionEvent {
  id: number;
  payload: { version: number; quantity: string; averagePrice: string; tradeId: string };
}

describe('200 concurrent trades on one position', () => {
  let t: TestApp;
  let auth: string;
  before(async () => {
    t = await createTestApp();
    auth = await t.accountKey('alice');
  });
  after(() => t.close());

  test('serialise exactly: exact quantity and average, versions 1..200, 400 events', async () => {
    const bodies = Array.from({ length: TRADES }, (_, index) =>
      tradeBody({ quantity: QUANTITIES[index % QUANTITIES.length], price: priceOf(index) }),
    );
    const responses = await Promise.all(bodies.map((body) => postTrade(t.app, auth, body)));
    for (const response of responses) assert.equal(response.statusCode, 201, response.body);

    const versions = (versionsOf: number[]) => [...versionsOf].sort((a, b) => a - b);
    const oneToN = Array.from({ length: TRADES }, (_, index) => index + 1);
    assert.deepEqual(versions(responses.map((response) => response.json().trade.positionVersion)), oneToN);

    // Final quantity: the exact sum, compared as a decimal string.
    const expectedQuantity = bodies.reduce((sum, body) => sum + parseDecimal(String(body.quantity)), 0n);
    const positions = await t.app.inject({
      method: 'GET',
      url: '/v1/accounts/alice/positions',
      headers: { authorization: auth },
    });
    assert.equal(positions.statusCode, 200, positions.body);
    const [position, ...others] = positions.json().positions;
    assert.equal(others.length, 0);
    assert.equal(position.quantity, formatDecimal(expectedQuantity));
    assert.equal(position.version, TRADES);

    // Versions on the trade rows: each of 1..200 exactly once.
    const trades = await t.db.pool.query<TradeRowOut>(
      `SELECT id, trim_scale(quantity)::text AS quantity, trim_scale(price)::text AS price, position_version
       FROM trades ORDER BY position_version`,
    );
    assert.deepEqual(
      trades.rows.map((row) => row.position_version),
      oneToN,
    );

    // The outbox: 400 events, and the position's events carry versions 1..200 in id order (the row
    // lock serialises the writers, so the relay publishes them in version order).
    assert.deepEqual(await writeCounts(t.db.pool), {
      trades: TRADES,
      positions: 1,
      outbox: 2 * TRADES,
      versions: TRADES,
    });
    const byType = await t.db.pool.query<{ event_type: string; n: number }>(
      "SELECT event_type, count(*)::int AS n FROM event_outbox WHERE status = 'PENDING' GROUP BY 1 ORDER BY 1",
    );
    assert.deepEqual(byType.rows, [
      { event_type: 'astra.trading.position_updated.v1', n: TRADES },
      { event_type: 'astra.trading.trade_executed.v1', n: TRADES },
    ]);
    const events = await t.db.pool.query<PositionEvent>(
      `SELECT id, payload FROM event_outbox
       WHERE event_type = 'astra.trading.position_updated.v1' AND aggregate_id = 'alice:AAPL' ORDER BY id`,
    );
    assert.deepEqual(
      events.rows.map((row) => row.payload.version),
      oneToN,
    );

    // Replay the trades in version order with exact arithmetic mirroring the SQL: every event's
    // quantity and average price, and the final position, must match step by step.
    let quantity = 0n;
    let average = 0n;
    for (const [index, row] of trades.rows.entries()) {
      const bought = parseDecimal(row.quantity);
      const price = parseDecimal(row.price);
      average = quantity === 0n ? price : averagePriceAfterBuy(quantity, average, bought, price);
      quantity += bought;
      const event = events.rows[index];
      assert.ok(event !== undefined);
      assert.deepEqual(
        { ...event.payload },
        {
          ...event.payload,
          tradeId: row.id,
          quantity: formatDecimal(quantity),
          averagePrice: formatDecimal(average),
        },
        `version ${row.position_version}`,
      );
    }
    assert.equal(quantity, expectedQuantity);
    assert.equal(position.averagePrice, formatDecimal(average));
  });
});

describe('concurrent SELLs against one position', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  // Each case buys `held` in one trade, then sends `sells` SELLs of `each` at once: exactly
  // floor(held / each) may execute, the rest are refused, and the position never goes below zero.
  for (const { account, held, sells, each } of [
    { account: 'seller-1', held: '10', sells: 40, each: '1' },
    { account: 'seller-2', held: '10', sells: 20, each: '3' },
  ]) {
    const fits = Number(parseDecimal(held) / parseDecimal(each));
    test(`${sells} concurrent SELL ${each} against a position of ${held}: exactly ${fits} execute, no oversell`, async () => {
      const auth = await t.accountKey(account);
      const bought = await postTrade(
        t.app,
        auth,
        tradeBody({ accountId: account, quantity: held, price: '50' }),
      );
      assert.equal(bought.statusCode, 201, bought.body);
      const before = await writeCounts(t.db.pool);

      const responses = await Promise.all(
        Array.from({ length: sells }, () =>
          postTrade(
            t.app,
            auth,
            tradeBody({ accountId: account, side: 'SELL', quantity: each, price: '60' }),
          ),
        ),
      );
      const statuses = responses.map((response) => response.statusCode);
      assert.deepEqual(
        [statuses.filter((s) => s === 201).length, statuses.filter((s) => s === 422).length],
        [fits, sells - fits],
        `statuses: ${JSON.stringify(statuses)}`,
      );
      for (const response of responses.filter((r) => r.statusCode === 422)) {
        assert.equal(response.json().error.code, 'INSUFFICIENT_POSITION', response.body);
      }
      const accepted = responses.filter((r) => r.statusCode === 201).map((r) => r.json());
      // Versions 2..fits+1, each once; the quantities the answers report step down by `each`.
      assert.deepEqual(
        accepted.map((body) => body.trade.positionVersion).sort((a: number, b: number) => a - b),
        Array.from({ length: fits }, (_, i) => i + 2),
      );
      const remaining = parseDecimal(held) - BigInt(fits) * parseDecimal(each);
      assert.deepEqual(
        accepted.map((body) => body.position.quantity).sort(),
        Array.from({ length: fits }, (_, i) =>
          formatDecimal(parseDecimal(held) - BigInt(i + 1) * parseDecimal(each)),
        ).sort(),
      );

      const position = await t.db.pool.query<{ quantity: string; version: number }>(
        'SELECT trim_scale(quantity)::text AS quantity, version FROM positions WHERE account_id = $1',
        [account],
      );
      assert.deepEqual(position.rows, [{ quantity: formatDecimal(remaining), version: fits + 1 }]);
      assert.deepEqual(await writeCounts(t.db.pool), {
        trades: before.trades + fits,
        positions: before.positions,
        outbox: before.outbox + 2 * fits,
        versions: before.versions + fits,
      });
      const events = await t.db.pool.query<{ event_type: string; n: number }>(
        `SELECT event_type, count(*)::int AS n FROM event_outbox
         WHERE aggregate_id = $1 OR payload->>'accountId' = $2 GROUP BY 1 ORDER BY 1`,
        [`${account}:AAPL`, account],
      );
      assert.deepEqual(events.rows, [
        { event_type: 'astra.trading.position_updated.v1', n: fits + 1 },
        { event_type: 'astra.trading.trade_executed.v1', n: fits + 1 },
      ]);
      // The position's events, in id order, step down by `each` from `held` and never below zero.
      const updates = await t.db.pool.query<{ quantity: string; version: number }>(
        `SELECT payload->>'quantity' AS quantity, (payload->>'version')::int AS version FROM event_outbox
         WHERE event_type = 'astra.trading.position_updated.v1' AND aggregate_id = $1 ORDER BY id`,
        [`${account}:AAPL`],
      );
      assert.deepEqual(
        updates.rows,
        Array.from({ length: fits + 1 }, (_, i) => ({
          quantity: formatDecimal(parseDecimal(held) - BigInt(i) * parseDecimal(each)),
          version: i + 1,
        })),
      );
    });
  }
});
