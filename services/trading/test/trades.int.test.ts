import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestApp, type TestApp, writeCounts } from './support.ts';

describe('POST /v1/trades', () => {
  let t: TestApp;
  let auth: string;
  before(async () => {
    t = await createTestApp();
    auth = await t.accountKey('alice');
  });
  after(() => t.close());

  test('writes one trade, the position change and two PENDING events in one transaction', async () => {
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/trades',
      headers: { authorization: auth },
      payload: { accountId: 'alice', symbol: 'AAPL', side: 'BUY', quantity: '10', price: '189.25' },
    });
    assert.equal(response.statusCode, 201, response.body);
    const body = response.json();
    assert.equal(body.position.quantity, '10');
    assert.equal(body.position.version, 1);
    assert.deepEqual(await writeCounts(t.db.pool), { trades: 1, positions: 1, outbox: 2, versions: 1 });
    const events = await t.db.pool.query(
      'SELECT event_type, aggregate_type, aggregate_id, status FROM event_outbox ORDER BY id',
    );
    assert.deepEqual(events.rows, [
      {
        event_type: 'astra.trading.trade_executed.v1',
        aggregate_type: 'trade',
        aggregate_id: body.trade.id,
        status: 'PENDING',
      },
      {
        event_type: 'astra.trading.position_updated.v1',
        aggregate_type: 'position',
        aggregate_id: 'alice:AAPL',
        status: 'PENDING',
      },
    ]);
  });
});
