import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertError, createTestApp, postTrade, type TestApp, tradeBody, writeCounts } from './support.ts';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface OutboxRow {
  event_id: string;
  event_type: string;
  source: string;
  aggregate_type: string;
  aggregate_id: string;
  payload: Record<string, unknown>;
  headers: Record<string, string>;
  status: string;
  attempts: number;
  last_error: string | null;
  published_at: Date | null;
}

describe('a trade is one transaction: trade, position change and two outbox events', () => {
  let t: TestApp;
  let auth: string;
  before(async () => {
    t = await createTestApp();
    auth = await t.accountKey('alice');
  });
  after(() => t.close());

  async function outboxRows(): Promise<OutboxRow[]> {
    const result = await t.db.pool.query<OutboxRow>(
      `SELECT event_id, event_type, source, aggregate_type, aggregate_id, payload, headers, status, attempts,
              last_error, published_at
       FROM event_outbox ORDER BY id`,
    );
    return result.rows;
  }

  test('writes one trade row, the position and two PENDING events with CloudEvents columns', async () => {
    const response = await postTrade(t.app, auth, tradeBody({ quantity: '10.5', price: '189.25' }), {
      traceparent: TRACEPARENT,
      tracestate: 'congo=t61rcWkgMzE',
    });
    assert.equal(response.statusCode, 201, response.body);
    const body = response.json();
    assert.match(body.trade.id, UUID);
    assert.deepEqual(
      { ...body.trade, id: 'x', executedAt: 'x' },
      {
        id: 'x',
        accountId: 'alice',
        symbol: 'AAPL',
        side: 'BUY',
        quantity: '10.5',
        price: '189.25',
        positionVersion: 1,
        executedAt: 'x',
      },
    );
    assert.deepEqual(
      { ...body.position, updatedAt: 'x' },
      {
        accountId: 'alice',
        symbol: 'AAPL',
        quantity: '10.5',
        averagePrice: '189.25',
        version: 1,
        updatedAt: 'x',
      },
    );
    assert.deepEqual(await writeCounts(t.db.pool), { trades: 1, positions: 1, outbox: 2, versions: 1 });

    const trades = await t.db.pool.query(
      'SELECT id, account_id, symbol, side, quantity::text, price::text, position_version FROM trades',
    );
    assert.deepEqual(trades.rows, [
      {
        id: body.trade.id,
        account_id: 'alice',
        symbol: 'AAPL',
        side: 'BUY',
        quantity: '10.50000000',
        price: '189.25000000',
        position_version: 1,
      },
    ]);

    const [executed, updated, ...rest] = await outboxRows();
    assert.equal(rest.length, 0);
    assert.ok(executed !== undefined && updated !== undefined);
    const common = {
      source: '/astra/trading-service/test',
      status: 'PENDING',
      attempts: 0,
      last_error: null,
      published_at: null,
      headers: { traceparent: TRACEPARENT, tracestate: 'congo=t61rcWkgMzE' },
    };
    assert.match(executed.event_id, UUID);
    assert.match(updated.event_id, UUID);
    assert.notEqual(executed.event_id, updated.event_id);
    assert.deepEqual(
      { ...executed, event_id: 'x' },
      {
        ...common,
        event_id: 'x',
        event_type: 'astra.trading.trade_executed.v1',
        aggregate_type: 'trade',
        aggregate_id: body.trade.id,
        payload: body.trade,
      },
    );
    assert.deepEqual(
      { ...updated, event_id: 'x' },
      {
        ...common,
        event_id: 'x',
        event_type: 'astra.trading.position_updated.v1',
        aggregate_type: 'position',
        aggregate_id: 'alice:AAPL',
        payload: { ...body.position, tradeId: body.trade.id },
      },
    );
  });

  test('an invalid traceparent is ignored, not stored and not an error', async () => {
    const before = (await outboxRows()).length;
    for (const traceparent of [
      'garbage',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // all-zero trace id
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // all-zero span id
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', // upper case
    ]) {
      const response = await postTrade(t.app, auth, tradeBody({ quantity: '1' }), {
        traceparent,
        tracestate: 'congo=t61rcWkgMzE',
      });
      assert.equal(response.statusCode, 201, response.body);
    }
    const added = (await outboxRows()).slice(before);
    assert.equal(added.length, 8);
    for (const row of added) assert.deepEqual(row.headers, {});
  });

  test('an oversized or malformed tracestate is dropped; the traceparent is kept', async () => {
    const before = (await outboxRows()).length;
    for (const tracestate of [
      `congo=${'x'.repeat(8000)}`, // 8 KB: would be stored twice and copied into Redis
      Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','), // more than 32 list members
      'Upper=case',
      'k=a=b',
    ]) {
      const response = await postTrade(t.app, auth, tradeBody({ quantity: '1' }), {
        traceparent: TRACEPARENT,
        tracestate,
      });
      assert.equal(response.statusCode, 201, response.body);
    }
    const added = (await outboxRows()).slice(before);
    assert.equal(added.length, 8);
    for (const row of added) assert.deepEqual(row.headers, { traceparent: TRACEPARENT });
  });

  test('a failure after the trade insert leaves no trade, no position change and no event', async () => {
    const { pool } = t.db;
    const countsBefore = await writeCounts(pool);
    const position = await pool.query('SELECT quantity::text, average_price::text, version FROM positions');
    // The trigger proves the failure happens after the trade and its position change were written in
    // the same transaction: it bumps a (non-transactional) sequence when it can see both.
    await pool.query(`
      CREATE SEQUENCE injected_failures;
      CREATE FUNCTION fail_outbox_insert() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF EXISTS (SELECT 1 FROM trades t JOIN positions p USING (account_id, symbol)
                   WHERE t.id::text = NEW.aggregate_id AND t.position_version = p.version) THEN
          PERFORM nextval('injected_failures');
        END IF;
        RAISE EXCEPTION 'injected outbox failure';
      END $$;
      CREATE TRIGGER fail_outbox_insert BEFORE INSERT ON event_outbox
        FOR EACH ROW EXECUTE FUNCTION fail_outbox_insert();`);

    // One trade on the held position, one that would open a new position.
    for (const body of [
      tradeBody({ quantity: '2', price: '200' }),
      tradeBody({ symbol: 'NEW', quantity: '1' }),
    ]) {
      const failed = await postTrade(t.app, auth, body, {
        'idempotency-key': `after-failure-${body.symbol}`,
      });
      assert.ok(failed.statusCode >= 500 && failed.statusCode < 600, `${failed.statusCode} ${failed.body}`);
      assertError(failed, { status: 500, code: 'INTERNAL', field: null });
    }
    const seen = await pool.query<{ last_value: number; is_called: boolean }>(
      'SELECT last_value, is_called FROM injected_failures',
    );
    assert.deepEqual(
      seen.rows,
      [{ last_value: 2, is_called: true }],
      'both trades were inserted before the failure',
    );

    assert.deepEqual(await writeCounts(pool), countsBefore);
    assert.deepEqual(
      (await pool.query('SELECT quantity::text, average_price::text, version FROM positions')).rows,
      position.rows,
    );
    const keys = await pool.query('SELECT count(*)::int AS n FROM idempotency_keys');
    assert.deepEqual(keys.rows, [{ n: 0 }], 'the Idempotency-Key claim was rolled back too');

    await pool.query('DROP TRIGGER fail_outbox_insert ON event_outbox');
    // The same Idempotency-Key is free again: the failed attempt left nothing to replay.
    const retried = await postTrade(t.app, auth, tradeBody({ quantity: '2', price: '200' }), {
      'idempotency-key': 'after-failure-AAPL',
    });
    assert.equal(retried.statusCode, 201, retried.body);
    assert.equal(retried.headers['idempotent-replayed'], undefined);
    assert.equal(retried.json().position.version, countsBefore.versions + 1, 'no version was lost');
    assert.deepEqual(await writeCounts(pool), {
      trades: countsBefore.trades + 1,
      positions: countsBefore.positions,
      outbox: countsBefore.outbox + 2,
      versions: countsBefore.versions + 1,
    });
  });
});
