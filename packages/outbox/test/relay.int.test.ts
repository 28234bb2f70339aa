import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';
import { type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import type pg from 'pg';
import { OutboxAdmin } from '../src/admin.ts';
import { entryFieldValues } from '../src/redis/entry.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay, type RelayOptions } from '../src/relay.ts';
import { createOutboxWriter, type NewEvent } from '../src/writer.ts';
import { createOutboxDatabase, type OutboxDatabase, readStream, waitAllPublished } from './support.ts';

const writer = createOutboxWriter({ source: '/test' });

async function write(pool: pg.Pool, events: NewEvent[]): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await writer.write(client, events);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

function event(type: string, aggregateId: string, seq: number): NewEvent {
  return { type, aggregateType: 'thing', aggregateId, data: { aggregateId, seq } };
}

async function counts(pool: pg.Pool): Promise<Record<string, number>> {
  const result = await pool.query<{ status: string; n: number; attempts: number }>(
    'SELECT status, count(*)::int AS n, sum(attempts)::int AS attempts FROM event_outbox GROUP BY status',
  );
  const out: Record<string, number> = { PENDING: 0, PUBLISHED: 0, FAILED: 0, attempts: 0 };
  for (const row of result.rows) {
    out[row.status] = row.n;
    out.attempts = (out.attempts ?? 0) + row.attempts;
  }
  return out;
}

/** Plays a relay that dies between publish and mark: publishes a type's PENDING rows, marks nothing. */
async function publishWithoutMarking(pool: pg.Pool, redisUrl: string, type: string) {
  const rows = await pool.query<{
    id: string;
    partition_no: number;
    event_id: string;
    aggregate_id: string;
    data: string;
    created_at: Date;
  }>(
    "SELECT id::text, partition_no, event_id::text, aggregate_id, payload::text AS data, created_at FROM event_outbox WHERE event_type = $1 AND status = 'PENDING' ORDER BY id",
    [type],
  );
  const ghost = new RedisStreamsPublisher({ url: redisUrl });
  try {
    return await ghost.publish(
      rows.rows.map((row) => ({
        rowId: row.id,
        partition: row.partition_no,
        eventId: row.event_id,
        type,
        source: '/test',
        aggregateType: 'thing',
        aggregateId: row.aggregate_id,
        time: row.created_at.toISOString(),
        data: row.data,
        traceparent: null,
        tracestate: null,
      })),
    );
  } finally {
    await ghost.close();
  }
}

describe('outbox relay', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  const relays: OutboxRelay[] = [];

  function startRelay(options: Partial<RelayOptions> = {}): OutboxRelay {
    const publisher = new RedisStreamsPublisher({ url: redis.url, timeoutMs: 500 });
    const relay = new OutboxRelay({
      connectionString: db.url,
      publisher,
      pollIntervalMs: 100,
      rebalanceIntervalMs: 200,
      outageBackoff: { initialMs: 20, maxMs: 200 },
      ...options,
    });
    relay.on('running', ({ running }) => {
      if (!running) void publisher.close();
    });
    relays.push(relay);
    relay.start();
    return relay;
  }

  async function stopAll(): Promise<void> {
    await Promise.all(relays.splice(0).map((relay) => relay.stop()));
  }

  before(async () => {
    db = await createOutboxDatabase();
    redis = await startRedisServer();
  });
  // A failed test leaves its relays running; stopped here, they cannot take the next test's partitions.
  afterEach(stopAll);
  after(async () => {
    await redis.kill();
    await db.drop();
  });

  test('publishes committed events as CloudEvents entries and marks them PUBLISHED with the entry id', async () => {
    await write(db.pool, [
      {
        ...event('test.basic.v1', 'a-1', 1),
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      },
      event('test.basic.v1', 'a-1', 2),
    ]);
    startRelay();
    await waitFor('both published', async () => (await counts(db.pool)).PUBLISHED === 2, 10_000);
    await stopAll();

    const entries = await readStream(redis.url, 'test.basic.v1');
    assert.equal(entries.length, 2);
    const rows = await db.pool.query<{
      event_id: string;
      stream_entry_id: string;
      created_at: Date;
      published_at: Date | null;
    }>('SELECT event_id::text, stream_entry_id, created_at, published_at FROM event_outbox ORDER BY id');
    entries.forEach((entry, index) => {
      const row = rows.rows[index];
      assert.ok(row);
      assert.equal(entry.entryId, row.stream_entry_id);
      assert.notEqual(row.published_at, null);
      assert.equal(entry.fields.id, row.event_id);
      assert.equal(entry.fields.type, 'test.basic.v1');
      assert.equal(entry.fields.source, '/test');
      assert.equal(entry.fields.subject, 'a-1');
      assert.equal(entry.fields.specversion, '1.0');
      assert.equal(entry.fields.datacontenttype, 'application/json');
      assert.equal(entry.fields.time, row.created_at.toISOString());
      assert.deepEqual(JSON.parse(entry.fields.data ?? 'null'), { aggregateId: 'a-1', seq: index + 1 });
    });
    assert.equal(entries[0]?.fields.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    assert.equal(entries[1]?.fields.traceparent, undefined);
    // The exported field list is what the script wrote, pair for pair and in order.
    entries.forEach((entry, index) => {
      const expected = entryFieldValues({
        eventId: entry.fields.id ?? '',
        type: 'test.basic.v1',
        source: '/test',
        aggregateId: 'a-1',
        time: entry.fields.time ?? '',
        data: entry.fields.data ?? '',
        traceparent: entry.fields.traceparent ?? null,
      });
      assert.deepEqual(Object.entries(entry.fields).flat(), expected, `entry ${index}`);
    });
    // A relay that stopped cleanly has confirmed its marks: the dedupe journal forgot its ids.
    assert.equal(await redis.cli(['KEYS', '*outbox-journal*']), '');
  });

  test("insertFrom: a change and its events in one statement; the events' data comes from the change", async () => {
    await db.pool.query('CREATE TABLE IF NOT EXISTS counters (id text PRIMARY KEY, n bigint NOT NULL)');
    const source = createOutboxWriter({ source: "/test/o'quoted" });
    // Bump a counter and record one event per bump, in one statement; a bump that matches no row
    // (the WHERE refuses it) records nothing.
    const bump = (id: string, by: number | bigint) => ({
      name: 'bump_counter',
      text: `
WITH bumped AS (
  INSERT INTO counters AS c (id, n) SELECT $1, $2::bigint WHERE $2::bigint > 0
  ON CONFLICT (id) DO UPDATE SET n = c.n + EXCLUDED.n
  RETURNING id, n
),
events AS (${source.insertFrom(`
  SELECT gen_random_uuid() AS event_id, 'test.counter.v1' AS event_type, 'counter' AS aggregate_type,
         bumped.id AS aggregate_id, jsonb_build_object('id', bumped.id, 'n', bumped.n::text) AS data,
         $3::jsonb AS headers
  FROM bumped`)})
SELECT n::text FROM bumped`,
      values: [
        id,
        by,
        JSON.stringify({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }),
      ],
    });
    assert.deepEqual((await db.pool.query(bump('k-1', 2))).rows, [{ n: '2' }]);
    assert.deepEqual((await db.pool.query(bump('k-1', 3))).rows, [{ n: '5' }]);
    assert.deepEqual((await db.pool.query(bump('k-1', 0))).rows, []);
    // A failing statement (this second bump overflows bigint) leaves neither the change nor its event.
    await db.pool.query(bump('k-2', 2n ** 62n));
    await assert.rejects(db.pool.query(bump('k-2', 2n ** 62n)), /out of range/);
    const { rows } = await db.pool.query<{ aggregate_id: string; source: string; payload: unknown }>(
      "SELECT aggregate_id, source, payload FROM event_outbox WHERE event_type = 'test.counter.v1' ORDER BY id",
    );
    assert.deepEqual(
      rows.map((row) => [row.aggregate_id, row.source, row.payload]),
      [
        ['k-1', "/test/o'quoted", { id: 'k-1', n: '2' }],
        ['k-1', "/test/o'quoted", { id: 'k-1', n: '5' }],
        ['k-2', "/test/o'quoted", { id: 'k-2', n: String(2n ** 62n) }],
      ],
    );

    startRelay();
    await waitFor('all published', async () => (await counts(db.pool)).PENDING === 0, 10_000);
    await stopAll();
    const entries = await readStream(redis.url, 'test.counter.v1');
    assert.deepEqual(
      entries.map((entry) => [
        entry.fields.subject,
        entry.fields.source,
        JSON.parse(entry.fields.data ?? 'null').n,
      ]),
      [
        ['k-1', "/test/o'quoted", '2'],
        ['k-1', "/test/o'quoted", '5'],
        ['k-2', "/test/o'quoted", String(2n ** 62n)],
      ],
    );
    assert.equal(entries[0]?.fields.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  test('an event published but not marked (relay died in between) is not added to its stream again', async () => {
    await write(db.pool, [event('test.crash.v1', 'c-1', 1), event('test.crash.v1', 'c-1', 2)]);
    // Play the dead relay: publish the claimed events, then never mark them.
    const outcomes = await publishWithoutMarking(db.pool, redis.url, 'test.crash.v1');
    assert.deepEqual(
      outcomes.map((o) => o.status),
      ['published', 'published'],
    );
    assert.equal((await counts(db.pool)).PENDING, 2);

    startRelay();
    await waitFor('crash events marked', async () => (await counts(db.pool)).PENDING === 0, 10_000);
    await stopAll();
    const entries = await readStream(redis.url, 'test.crash.v1');
    assert.equal(entries.length, 2, 'no second entry for either event');
    const marked = await db.pool.query<{ stream_entry_id: string }>(
      "SELECT stream_entry_id FROM event_outbox WHERE event_type = 'test.crash.v1' ORDER BY id",
    );
    assert.deepEqual(
      marked.rows.map((row) => row.stream_entry_id),
      entries.map((entry) => entry.entryId),
      'marked with the entry ids of the first publish',
    );
  });

  test('Redis down: events stay PENDING with no attempt spent; Redis back: all published once', async () => {
    const relay = startRelay();
    const brokerStates: boolean[] = [];
    relay.on('broker', ({ up }) => brokerStates.push(up));
    await redis.kill();
    await write(db.pool, [
      event('test.outage.v1', 'o-1', 1),
      event('test.outage.v1', 'o-2', 1),
      event('test.outage.v1', 'o-1', 2),
    ]);
    await waitFor('broker reported down', () => brokerStates.includes(false), 10_000);
    // Let it fail for a while: no attempt may be spent, nothing marked.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const during = await db.pool.query<{ status: string; attempts: number }>(
      "SELECT status, attempts FROM event_outbox WHERE event_type = 'test.outage.v1'",
    );
    assert.deepEqual(
      during.rows.map((row) => [row.status, row.attempts]),
      [
        ['PENDING', 0],
        ['PENDING', 0],
        ['PENDING', 0],
      ],
    );
    assert.equal(relay.isBrokerUp, false);

    await redis.restart();
    await waitFor('drained after Redis came back', async () => (await counts(db.pool)).PENDING === 0, 15_000);
    assert.equal(relay.isBrokerUp, true);
    await stopAll();
    const entries = (await readStream(redis.url, 'test.outage.v1')).map((entry) =>
      JSON.parse(entry.fields.data ?? '{}'),
    );
    // Each event once; per aggregate in order (aggregates in different partitions may interleave).
    assert.equal(entries.length, 3);
    assert.deepEqual(
      entries.filter((data) => data.aggregateId === 'o-1').map((data) => data.seq),
      [1, 2],
    );
    assert.deepEqual(
      entries.filter((data) => data.aggregateId === 'o-2').map((data) => data.seq),
      [1],
    );
  });

  test('a transaction that took its ids first and commits last is still published, in order', async () => {
    startRelay();
    const late = await db.pool.connect();
    try {
      await late.query('BEGIN');
      await writer.write(late, [event('test.late.v1', 'late-agg', 1)]);
      // Later ids commit first and are published meanwhile.
      await write(db.pool, [event('test.late.v1', 'early-agg', 1)]);
      await waitFor(
        'the early commit published',
        async () =>
          (
            await db.pool.query(
              "SELECT 1 FROM event_outbox WHERE aggregate_id = 'early-agg' AND status = 'PUBLISHED'",
            )
          ).rowCount === 1,
        10_000,
      );
      await late.query('COMMIT');
    } finally {
      late.release();
    }
    await write(db.pool, [event('test.late.v1', 'late-agg', 2)]);
    await waitAllPublished(db.pool, "event_type = 'test.late.v1'", 'the late commit published');
    await stopAll();
    const seqs = (await readStream(redis.url, 'test.late.v1')).map((entry) =>
      JSON.parse(entry.fields.data ?? '{}'),
    );
    assert.deepEqual(seqs, [
      { aggregateId: 'early-agg', seq: 1 },
      { aggregateId: 'late-agg', seq: 1 },
      { aggregateId: 'late-agg', seq: 2 },
    ]);
  });

  test('a poison event becomes FAILED after the last attempt, holds back only its aggregate, and goes out after replay', async () => {
    // A key of the wrong type makes Redis refuse every XADD to this stream.
    await redis.cli(['SET', 'test.poison.v1', 'not a stream']);
    const relay = startRelay({ maxAttempts: 3, retryBackoff: { initialMs: 10, maxMs: 20 } });
    const failedIds: string[] = [];
    relay.on('failed', ({ rowIds }) => failedIds.push(...rowIds));
    await write(db.pool, [
      event('test.ok.v1', 'p-1', 1),
      event('test.poison.v1', 'p-1', 2),
      event('test.ok.v1', 'p-1', 3),
      event('test.ok.v1', 'p-2', 1),
    ]);
    await waitFor('the poison event FAILED', () => failedIds.length === 1, 10_000);
    await write(db.pool, [event('test.ok.v1', 'p-2', 2), event('test.ok.v1', 'p-1', 4)]);
    await waitFor(
      'the other aggregate flowed',
      async () =>
        (
          await db.pool.query(
            "SELECT 1 FROM event_outbox WHERE aggregate_id = 'p-2' AND status = 'PUBLISHED'",
          )
        ).rowCount === 2,
      10_000,
    );
    const poison = await db.pool.query<{ status: string; attempts: number; last_error: string }>(
      "SELECT status, attempts, last_error FROM event_outbox WHERE event_type = 'test.poison.v1'",
    );
    assert.equal(poison.rows[0]?.status, 'FAILED');
    assert.equal(poison.rows[0]?.attempts, 3);
    assert.match(poison.rows[0]?.last_error ?? '', /WRONGTYPE/);
    const held = await db.pool.query<{ status: string }>(
      "SELECT status FROM event_outbox WHERE aggregate_id = 'p-1' ORDER BY id",
    );
    assert.deepEqual(
      held.rows.map((row) => row.status),
      ['PUBLISHED', 'FAILED', 'PENDING', 'PENDING'],
    );
    const admin = new OutboxAdmin(db.pool);
    assert.deepEqual(await admin.status().then((s) => [s.failed, s.blockedAggregates]), [1, 1]);

    await redis.cli(['DEL', 'test.poison.v1']);
    assert.equal(await admin.replay('all'), 1);
    await waitAllPublished(db.pool, "aggregate_id = 'p-1'", 'p-1 drained after replay');
    await stopAll();
    const ok = (await readStream(redis.url, 'test.ok.v1')).filter((entry) => entry.fields.subject === 'p-1');
    const poisoned = (await readStream(redis.url, 'test.poison.v1')).filter(
      (entry) => entry.fields.subject === 'p-1',
    );
    assert.deepEqual(
      ok.map((entry) => JSON.parse(entry.fields.data ?? '{}').seq),
      [1, 3, 4],
    );
    assert.deepEqual(
      poisoned.map((entry) => JSON.parse(entry.fields.data ?? '{}').seq),
      [2],
    );
    // Across streams, entry ids are times: the replayed event went out no later than its successor.
    assert.ok(
      compareEntryIds(poisoned[0]?.entryId ?? '', ok[1]?.entryId ?? '') <= 0,
      'seq 2 not after seq 3',
    );
  });

  test('a refusal in a full batch holds back the rest of its aggregate in the batches after it', async () => {
    await redis.cli(['SET', 'test.ahead-poison.v1', 'not a stream']);
    // With batches of 2, the first batch is [1, 2]: full, so the relay goes again at once; 2 is
    // refused, so [3, 4] must not go out in that next batch (nor any later one) until 2 has.
    await write(db.pool, [
      event('test.ahead.v1', 'q-1', 1),
      event('test.ahead-poison.v1', 'q-1', 2),
      ...[3, 4, 5, 6].map((seq) => event('test.ahead.v1', 'q-1', seq)),
    ]);
    const relay = startRelay({ batchSize: 2, maxAttempts: 2, retryBackoff: { initialMs: 10, maxMs: 20 } });
    const failedIds: string[] = [];
    relay.on('failed', ({ rowIds }) => failedIds.push(...rowIds));
    await waitFor('the refused event FAILED', () => failedIds.length === 1, 10_000);
    const seqs = async (stream: string) =>
      (await readStream(redis.url, stream)).map((entry) => JSON.parse(entry.fields.data ?? '{}').seq);
    assert.deepEqual(await seqs('test.ahead.v1'), [1], 'nothing after the refused event went out');

    await redis.cli(['DEL', 'test.ahead-poison.v1']);
    assert.equal(await new OutboxAdmin(db.pool).replay('all'), 1);
    await waitAllPublished(db.pool, "aggregate_id = 'q-1'", 'q-1 drained after replay');
    await stopAll();
    assert.deepEqual(await seqs('test.ahead.v1'), [1, 3, 4, 5, 6]);
    assert.deepEqual(await seqs('test.ahead-poison.v1'), [2]);
  });

  test('an event larger than the limit is refused without reaching Redis', async () => {
    const publisher = new RedisStreamsPublisher({ url: redis.url, maxEventBytes: 1000 });
    const relay = new OutboxRelay({
      connectionString: db.url,
      publisher,
      maxAttempts: 1,
      pollIntervalMs: 100,
    });
    relays.push(relay);
    relay.start();
    await write(db.pool, [
      { type: 'test.big.v1', aggregateType: 'thing', aggregateId: 'big', data: { blob: 'x'.repeat(2000) } },
    ]);
    await waitFor(
      'the big event FAILED',
      async () =>
        (
          await db.pool.query(
            "SELECT 1 FROM event_outbox WHERE event_type = 'test.big.v1' AND status = 'FAILED'",
          )
        ).rowCount === 1,
      10_000,
    );
    await stopAll();
    await publisher.close();
    assert.equal(await redis.cli(['EXISTS', 'test.big.v1']), '0');
  });

  test('streams are trimmed to about maxLen entries when asked, and not at all by default', async () => {
    const batch = (type: string, from: number) =>
      Array.from({ length: 500 }, (_, i) => ({
        rowId: String(from + i),
        partition: 0,
        eventId: randomUUID(),
        type,
        source: '/test',
        aggregateType: 'thing',
        aggregateId: `trim-${i % 10}`,
        time: new Date().toISOString(),
        data: JSON.stringify({ seq: from + i }),
        traceparent: null,
        tracestate: null,
      }));
    const trimming = new RedisStreamsPublisher({ url: redis.url, maxLen: 100 });
    const plain = new RedisStreamsPublisher({ url: redis.url });
    try {
      for (const from of [0, 500, 1000]) {
        const outcomes = [
          ...(await trimming.publish(batch('test.trimmed.v1', from))),
          ...(await plain.publish(batch('test.untrimmed.v1', from))),
        ];
        assert.ok(outcomes.every((outcome) => outcome.status === 'published'));
      }
    } finally {
      await Promise.all([trimming.close(), plain.close()]);
    }
    const trimmed = Number(await redis.cli(['XLEN', 'test.trimmed.v1']));
    // MAXLEN ~ trims whole macro nodes: about 100 entries, never all 1,500.
    assert.ok(trimmed >= 100 && trimmed < 1500, `trimmed stream holds ${trimmed}`);
    assert.equal(await redis.cli(['XLEN', 'test.untrimmed.v1']), '1500');
  });

  test('deletePublished: events are deleted as they are published, once each and in order; a refused one stays', async () => {
    await write(
      db.pool,
      [1, 2].map((seq) => event('test.delete.v1', 'd-1', seq)),
    );
    // The first two went out before a crash: the relay must not add them again when it deletes them.
    await publishWithoutMarking(db.pool, redis.url, 'test.delete.v1');
    await write(
      db.pool,
      [3, 4, 5].map((seq) => event('test.delete.v1', 'd-1', seq)),
    );
    await write(db.pool, [{ ...event('test.delete.v1', 'd-2', 1), data: { big: 'x'.repeat(2_000_000) } }]);
    startRelay({ deletePublished: true, maxAttempts: 1 });
    const left = async () =>
      (
        await db.pool.query<{ aggregate_id: string; status: string }>(
          "SELECT aggregate_id, status FROM event_outbox WHERE event_type = 'test.delete.v1'",
        )
      ).rows;
    await waitFor('all handled', async () => (await left()).every((row) => row.status === 'FAILED'), 10_000);
    await stopAll();
    assert.deepEqual(await left(), [{ aggregate_id: 'd-2', status: 'FAILED' }]);
    const entries = await readStream(redis.url, 'test.delete.v1');
    assert.deepEqual(
      entries.map((entry) => JSON.parse(entry.fields.data ?? 'null').seq),
      [1, 2, 3, 4, 5],
    );
  });

  test('retention deletes PUBLISHED events older than the retention, and nothing else', async () => {
    // Its own rows, so the test holds alone or after any other: old and recent PUBLISHED events, and
    // old PENDING and FAILED ones, which retention must never touch whatever their age.
    const type = 'test.retention.v1';
    await write(db.pool, [
      ...[1, 2, 3].map((seq) => event(type, 'ret-old', seq)),
      event(type, 'ret-recent', 1),
      event(type, 'ret-pending', 1),
      event(type, 'ret-waiting', 1),
      event(type, 'ret-failed', 1),
    ]);
    await db.pool.query(
      `UPDATE event_outbox SET status = 'PUBLISHED', published_at = now() - interval '2 hours',
              stream_entry_id = '0-' || id WHERE aggregate_id = 'ret-old'`,
    );
    await db.pool.query(
      `UPDATE event_outbox SET status = 'PUBLISHED', published_at = now(), stream_entry_id = '0-' || id
       WHERE aggregate_id = 'ret-recent'`,
    );
    await db.pool.query(
      `UPDATE event_outbox SET status = 'FAILED', attempts = 3, last_error = 'refused',
              created_at = now() - interval '2 days', updated_at = now() - interval '2 days'
       WHERE aggregate_id = 'ret-failed'`,
    );
    await db.pool.query(
      "UPDATE event_outbox SET created_at = now() - interval '2 days' WHERE aggregate_id = 'ret-pending'",
    );
    // PENDING and waiting for a retry an hour away: still PENDING when the retention has run.
    await db.pool.query(
      `UPDATE event_outbox SET attempts = 1, next_attempt_at = now() + interval '1 hour',
              created_at = now() - interval '2 days' WHERE aggregate_id = 'ret-waiting'`,
    );
    // What else is old and PUBLISHED in the table (rows of tests that ran before) goes too.
    const old = Number(
      (
        await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM event_outbox
           WHERE status = 'PUBLISHED' AND published_at < now() - interval '1 hour'`,
        )
      ).rows[0]?.n,
    );
    assert.ok(old >= 3, `${old} old PUBLISHED rows`);
    const relay = startRelay({ retentionSeconds: 3600, retentionBatchSize: 2 });
    let deleted = 0;
    relay.on('retention', (report) => {
      deleted += report.deleted;
    });
    await waitFor('old events deleted', () => deleted === old, 10_000);
    await waitAllPublished(db.pool, "aggregate_id = 'ret-pending'", 'the old PENDING event published');
    await stopAll();
    assert.equal(deleted, old, 'nothing deleted beyond the old PUBLISHED rows');
    const left = await db.pool.query<{ aggregate_id: string; status: string }>(
      'SELECT aggregate_id, status FROM event_outbox WHERE event_type = $1 ORDER BY id',
      [type],
    );
    assert.deepEqual(
      left.rows.map((row) => [row.aggregate_id, row.status]),
      [
        ['ret-recent', 'PUBLISHED'],
        ['ret-pending', 'PUBLISHED'],
        ['ret-waiting', 'PENDING'],
        ['ret-failed', 'FAILED'],
      ],
    );
    const entries = await readStream(redis.url, type);
    assert.deepEqual(
      entries.map((entry) => entry.fields.subject),
      ['ret-pending'],
    );
  });
});

function compareEntryIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am === bm ? Number(as - bs) : am < bm ? -1 : 1;
}
