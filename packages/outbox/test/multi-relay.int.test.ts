import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay } from '../src/relay.ts';
import { PARTITION_COUNT } from '../src/schema.ts';
import { assertDelivered, writeWorkload } from './delivery.ts';
import { createOutboxDatabase, type OutboxDatabase, readStream } from './support.ts';

const TYPES = ['test.multi.created.v1', 'test.multi.changed.v1', 'test.multi.closed.v1'];

/** What one relay did during a test, from the events it emits. */
interface Tracked {
  relay: OutboxRelay;
  /** Most partitions it owned at any time. */
  maxPartitions: number;
  published: number;
}

describe('several relays at once', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  const running: OutboxRelay[] = [];

  function startRelay(): Tracked {
    const publisher = new RedisStreamsPublisher({ url: redis.url, timeoutMs: 2000 });
    const relay = new OutboxRelay({
      connectionString: db.url,
      publisher,
      // Small batches and quick rebalancing: many claims and handovers within a short test.
      batchSize: 100,
      pollIntervalMs: 100,
      rebalanceIntervalMs: 100,
      outageBackoff: { initialMs: 20, maxMs: 200 },
    });
    const tracked: Tracked = { relay, maxPartitions: 0, published: 0 };
    relay.on('partitions', ({ partitions }) => {
      tracked.maxPartitions = Math.max(tracked.maxPartitions, partitions.length);
    });
    relay.on('published', ({ events }) => {
      tracked.published += events.length;
    });
    relay.on('running', ({ running }) => {
      if (!running) void publisher.close();
    });
    running.push(relay);
    relay.start();
    return tracked;
  }

  async function stop(relay: OutboxRelay): Promise<void> {
    running.splice(running.indexOf(relay), 1);
    await relay.stop();
  }

  const count = async (sql: string, prefix: string) =>
    (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM event_outbox WHERE ${sql}`, [prefix]))
      .rows[0]?.n ?? 0;
  const unpublished = (prefix: string) => count("aggregate_id LIKE $1 AND status <> 'PUBLISHED'", prefix);
  const written = (prefix: string) => count('aggregate_id LIKE $1', prefix);

  before(async () => {
    db = await createOutboxDatabase();
    redis = await startRedisServer();
  });
  beforeEach(async () => {
    await Promise.all(running.splice(0).map((relay) => relay.stop()));
  });
  after(async () => {
    await Promise.all(running.splice(0).map((relay) => relay.stop()));
    await redis.kill();
    await db.drop();
  });

  test('four relays, 10,000 events over 500 aggregates written while they run (some committing late): each event once, in order, load shared', async () => {
    const relays = [startRelay(), startRelay(), startRelay(), startRelay()];
    const total = await writeWorkload({
      pool: db.pool,
      prefix: 'four',
      types: TYPES,
      aggregates: 500,
      eventsPerAggregate: 20,
      writers: 8,
      // Some transactions commit well after later ids were committed and published.
      lingerMs: 50,
    });
    assert.equal(total, 10_000);
    await waitFor('all 10,000 published', async () => (await unpublished('four-%')) === 0, 60_000);
    await Promise.all(relays.map(({ relay }) => stop(relay)));

    assert.equal(
      await assertDelivered({
        pool: db.pool,
        read: (stream) => readStream(redis.url, stream),
        aggregateLike: 'four-%',
        expected: 10_000,
      }),
      10_000,
    );
    relays.forEach((tracked, index) => {
      assert.ok(tracked.maxPartitions > 0, `relay ${index} owned partitions at some point`);
      assert.ok(tracked.published > 0, `relay ${index} published events`);
      // Shared, not merely touched: each reached its fair share of the partitions, and published a
      // real part of the events (a quarter is the fair part; a twentieth leaves room for the start).
      assert.ok(
        tracked.maxPartitions >= Math.ceil(PARTITION_COUNT / 4),
        `relay ${index} held at most ${tracked.maxPartitions} partitions`,
      );
      assert.ok(tracked.published >= 500, `relay ${index} published only ${tracked.published} events`);
    });
    assert.equal(
      relays.reduce((sum, tracked) => sum + tracked.published, 0),
      10_000,
      'the relays together marked each event once',
    );
  });

  test('relays joining and leaving while events flow: each event once, in order', async () => {
    const a = startRelay();
    const b = startRelay();
    // The writers go on until every relay change below is done (then they are stopped), so the changes
    // happen mid-stream whatever the machine's speed. The plan is only a cap.
    const writing = new AbortController();
    const cap = 200 * 100;
    const workload = writeWorkload({
      pool: db.pool,
      prefix: 'churn',
      types: TYPES,
      aggregates: 200,
      eventsPerAggregate: 100,
      writers: 4,
      pauseMs: 10,
      signal: writing.signal,
    });
    const reached = (n: number, what: string) =>
      waitFor(what, async () => (await written('churn-%')) >= n, 30_000);

    await reached(1000, '1,000 written');
    await stop(a.relay); // leaves gracefully, mid-stream
    const c = startRelay(); // and another joins
    await reached(2000, '2,000 written');
    const d = startRelay();
    await waitFor('the newest relay took partitions', () => d.maxPartitions > 0, 10_000);
    await stop(b.relay);
    await reached((await written('churn-%')) + 500, '500 more written after the last change');
    writing.abort();
    const total = await workload;
    assert.ok(total < cap, 'the writers were still writing when the relays changed');

    await waitFor('all published', async () => (await unpublished('churn-%')) === 0, 60_000);
    await Promise.all([stop(c.relay), stop(d.relay)]);
    await assertDelivered({
      pool: db.pool,
      read: (stream) => readStream(redis.url, stream),
      aggregateLike: 'churn-%',
      expected: total,
    });
    for (const [name, tracked] of Object.entries({ a, b, c, d })) {
      assert.ok(tracked.maxPartitions > 0, `relay ${name} owned partitions`);
      assert.ok(tracked.published > 0, `relay ${name} published events`);
      // Never more than three relays at once: each reached at least a quarter of the partitions.
      assert.ok(
        tracked.maxPartitions >= Math.ceil(PARTITION_COUNT / 4),
        `relay ${name} held at most ${tracked.maxPartitions} partitions`,
      );
    }
    assert.equal(a.published + b.published + c.published + d.published, total, 'each event marked once');
  });
});
