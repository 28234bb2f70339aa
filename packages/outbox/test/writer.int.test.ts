import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OutboxError } from '../src/errors.ts';
import { createOutboxWriter, newEventId } from '../src/writer.ts';
import { createOutboxDatabase, type OutboxDatabase } from './support.ts';

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const HUGE_TRACESTATE = `congo=${'x'.repeat(8000)}`;

describe('the writer keeps only valid W3C trace context', () => {
  let db: OutboxDatabase;
  const writer = createOutboxWriter({ source: '/test/writer' });
  before(async () => {
    db = await createOutboxDatabase();
  });
  after(() => db.drop());

  async function headers(): Promise<Record<string, string>[]> {
    const result = await db.pool.query<{ headers: Record<string, string> }>(
      'SELECT headers FROM event_outbox ORDER BY id',
    );
    return result.rows.map((row) => row.headers);
  }

  test('write() refuses an oversized or malformed tracestate and writes nothing', async () => {
    const before = await headers();
    for (const tracestate of [HUGE_TRACESTATE, 'Not=valid', 'a=1\r\nX-Injected: yes']) {
      await assert.rejects(
        writer.write(db.pool, [
          {
            type: 'test.writer.v1',
            aggregateType: 't',
            aggregateId: '1',
            data: {},
            traceparent: TRACEPARENT,
            tracestate,
          },
        ]),
        (error: unknown) => error instanceof OutboxError && error.field === 'tracestate',
      );
    }
    await assert.rejects(
      writer.write(db.pool, [
        { type: 'test.writer.v1', aggregateType: 't', aggregateId: '1', data: {}, tracestate: 'a=1' },
      ]),
      (error: unknown) => error instanceof OutboxError && error.field === 'tracestate',
    );
    assert.deepEqual(await headers(), before);
  });

  test('insertFrom() drops an invalid tracestate, an invalid traceparent and any other header', async () => {
    await db.pool.query('DELETE FROM event_outbox');
    const cases: [Record<string, unknown>, Record<string, string>][] = [
      [
        { traceparent: TRACEPARENT, tracestate: 'congo=t61rcWkgMzE' },
        { traceparent: TRACEPARENT, tracestate: 'congo=t61rcWkgMzE' },
      ],
      [{ traceparent: TRACEPARENT, tracestate: HUGE_TRACESTATE }, { traceparent: TRACEPARENT }],
      [
        { traceparent: TRACEPARENT, tracestate: Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(',') },
        { traceparent: TRACEPARENT },
      ],
      [{ traceparent: TRACEPARENT, tracestate: 'k=a=b' }, { traceparent: TRACEPARENT }],
      [{ traceparent: 'not-a-traceparent', tracestate: 'congo=1' }, {}],
      [{ tracestate: 'congo=1' }, {}],
      [{ traceparent: TRACEPARENT, anything: 'x'.repeat(5000) }, { traceparent: TRACEPARENT }],
      [{}, {}],
    ];
    for (const [input] of cases) {
      await db.pool.query(
        `WITH events AS (${writer.insertFrom(
          `SELECT $1::uuid AS event_id, 'test.writer.v1' AS event_type, 't' AS aggregate_type,
                  '1' AS aggregate_id, '{}'::jsonb AS data, $2::jsonb AS headers`,
        )}) SELECT 1`,
        [newEventId(), JSON.stringify(input)],
      );
    }
    assert.deepEqual(
      await headers(),
      cases.map(([, expected]) => expected),
    );
  });
});
