import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  POSITION_UPDATED_SQL,
  positionUpdatedData,
  TRADE_EXECUTED_SQL,
  tradeExecutedData,
} from '../src/trades/events.ts';
import { Position, Trade } from '../src/trades/schema.ts';
import { jsonbObject, selectList } from '../src/trades/shapes.ts';

const trade: Trade = {
  id: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
  accountId: 'alice',
  symbol: 'AAPL',
  side: 'BUY',
  quantity: '0.00000001',
  price: '9999999999999999.99999999',
  positionVersion: 3,
  executedAt: '2026-12-03T12:00:00.123Z',
};

const position: Position = {
  accountId: 'alice',
  symbol: 'AAPL',
  quantity: '12.5',
  averagePrice: '100.00000001',
  version: 3,
  updatedAt: '2026-12-03T12:00:00.123Z',
};

describe('trade_executed', () => {
  test('its data is the trade as the API answers it, decimals kept as strings', () => {
    const data = tradeExecutedData(trade);
    assert.deepEqual(data, trade);
    assert.equal(data.quantity, '0.00000001');
    assert.equal(data.price, '9999999999999999.99999999');
  });

  test('the SQL builds exactly the keys of the API trade', () => {
    assert.deepEqual(Object.keys(TRADE_EXECUTED_SQL).sort(), Object.keys(Trade.properties).sort());
  });
});

describe('position_updated', () => {
  test('its data is the position as the API answers it plus the trade id, decimals as strings', () => {
    const data = positionUpdatedData(position, trade.id);
    assert.deepEqual(data, { ...position, tradeId: trade.id });
    assert.equal(typeof data.quantity, 'string');
    assert.equal(data.averagePrice, '100.00000001');
  });

  test('the SQL builds exactly the keys of the API position plus tradeId', () => {
    assert.deepEqual(
      Object.keys(POSITION_UPDATED_SQL).sort(),
      [...Object.keys(Position.properties), 'tradeId'].sort(),
    );
  });

  test('the SQL reads decimals as text, so no float touches them', () => {
    assert.equal(POSITION_UPDATED_SQL.quantity, 'trim_scale(pos.quantity)::text');
    assert.equal(POSITION_UPDATED_SQL.averagePrice, 'trim_scale(pos.average_price)::text');
    assert.equal(TRADE_EXECUTED_SQL.price, 'trim_scale(trade.price)::text');
  });
});

test('jsonbObject pairs each quoted key with its expression', () => {
  assert.equal(
    jsonbObject({ id: 'trade.id', version: 'pos.version' }),
    "jsonb_build_object('id', trade.id, 'version', pos.version)",
  );
});

test('selectList names each column for its key, so a row is the shape itself', () => {
  assert.equal(selectList({ accountId: 'p.account_id' }), 'p.account_id AS "accountId"');
});
