import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type ManagedProcess,
  type RedisServer,
  spawnManaged,
  startRedisServer,
  waitFor,
} from '@astra/test-support';
import type { PublishableEvent, PublishFence } from '../src/publisher.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay } from '../src/relay.ts';
import { assertDelivered, writeWorkload } from './delivery.ts';
import { createOutboxDatabase, type OutboxDatabase, readStream } from './support.ts';

const CHILD = fileURLToPath(new URL('./fixtures/relay-child.ts', import.meta.url));

function batch(stream: string, partition: number, size: number): PublishableEvent[] {
  return Array.from({ length: size }, (_, i) => ({
    rowId: String(i),
    partition,
    eventId: randomUUID(),
    type: stream,
    source: '/test',
    aggregateType: 'thing',
    aggregateId: `fenced-${partition}`,
    time: new Date().toISOString(),
    data: JSON.stringify({ seq: i + 1 }),
    traceparent: null,
    tracestate: null,
  }));
}

const owner = (partition: number, epoch: number): PublishFence => ({
  epochs: new Map([[partition, epoch]]),
  expected: () => undefined,
});

/**
 * The pause case: a relay claimed a batch under epoch 1, froze, and its partition passed to a relay with
 * epoch 2, which published the same batch, marked it and let the journal forget the ids. Whatever the
 * order in which the stale call reaches Redis, each event is in the stream once.
 */
describe('fencing: a stale owner cannot publish again', () => {
  let redis: RedisServer;
  let stale: RedisStreamsPublisher;
  let current: RedisStreamsPublisher;

  before(async () => {
    redis = await startRedisServer();
    stale = new RedisStreamsPublisher({ url: redis.url });
    current = new RedisStreamsPublisher({ url: redis.url });
  });
  after(async () => {
    await Promise.all([stale.close(), current.close()]);
    await redis.kill();
  });

  const entries = async (stream: string) => (await readStream(redis.url, stream)).length;
  const forget = (events: PublishableEvent[], stream: string) =>
    current.confirm(events.map((event) => ({ eventId: event.eventId, stream })));

  test('stale call after the new owner published, marked and forgot: refused', async () => {
    const events = batch('fence.after', 1, 5);
    const published = await current.publish(events, { fence: owner(1, 2) });
    assert.ok(published.every((outcome) => outcome.status === 'published'));
    await forget(events, 'fence.after');
    const late = await stale.publish(events, { fence: owner(1, 1) });
    assert.deepEqual(
      late.map((outcome) => outcome.status),
      ['fenced', 'held', 'held', 'held', 'held'],
    );
    assert.equal(await entries('fence.after'), 5);
  });

  test('stale call after the new owner only took the partition (verified it): refused', async () => {
    const events = batch('fence.taken', 2, 3);
    // The new owner checks the streams its partition published to as soon as it takes it.
    await current.publish(batch('fence.taken', 2, 1), { fence: owner(2, 1) });
    const [verdict] = await current.check(
      [{ stream: 'fence.taken', partition: 2, expected: undefined }],
      new Map([[2, 2]]),
    );
    assert.deepEqual(verdict, { status: 'ok' });
    const late = await stale.publish(events, { fence: owner(2, 1) });
    assert.equal(late[0]?.status, 'fenced');
    assert.equal(await entries('fence.taken'), 1);
  });

  test('stale call before the new owner publishes: the new owner gets the same entries back', async () => {
    const events = batch('fence.before', 3, 4);
    const early = await stale.publish(events, { fence: owner(3, 1) });
    const next = await current.publish(events, { fence: owner(3, 2) });
    assert.deepEqual(next, early, 'the journal answers with the stale call’s entries');
    await forget(events, 'fence.before');
    const again = await stale.publish(events, { fence: owner(3, 1) });
    assert.equal(again[0]?.status, 'fenced');
    assert.equal(await entries('fence.before'), 4);
  });

  test('stale call and new owner at the same moment: each event once', async () => {
    const events = batch('fence.during', 4, 50);
    const [old, fresh] = await Promise.all([
      stale.publish(events, { fence: owner(4, 1) }),
      current.publish(events, { fence: owner(4, 2) }),
    ]);
    assert.ok(fresh.every((outcome) => outcome.status === 'published'));
    // The stale call either went first (the new owner's journal answered with its entries) or was fenced.
    old.forEach((outcome, i) => {
      if (outcome.status === 'published') assert.deepEqual(outcome, fresh[i]);
      else assert.ok(outcome.status === 'fenced' || outcome.status === 'held', outcome.status);
    });
    assert.equal(await entries('fence.during'), 50);
  });
});

describe('a relay frozen with its session open', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  let child: ManagedProcess | undefined;
  const relays: OutboxRelay[] = [];

  before(async () => {
    db = await createOutboxDatabase();
    redis = await startRedisServer();
  });
  after(async () => {
    await child?.kill('SIGKILL');
    await Promise.all(relays.map((relay) => relay.stop()));
    await redis.kill();
    await db.drop();
  });

  test('is ended after the stall timeout, its partitions taken over; woken, it adds no duplicate', async () => {
    const options = {
      batchSize: 50,
      pollIntervalMs: 100,
      rebalanceIntervalMs: 200,
      outageBackoff: { initialMs: 20, maxMs: 300 },
      confirmDelayMs: 300,
      stallTimeoutMs: 2000,
    };
    child = spawnManaged('relay-child', process.execPath, ['--import', 'tsx', CHILD], {
      env: {
        ...process.env,
        OUTBOX_TEST_RELAY: JSON.stringify({ connectionString: db.url, redisUrl: redis.url, ...options }),
      },
    });
    const publisher = new RedisStreamsPublisher({ url: redis.url });
    const relay = new OutboxRelay({ connectionString: db.url, publisher, ...options });
    const takeovers: { pid: number; partitions: number[] }[] = [];
    relay.on('takeover', (takeover) => takeovers.push(takeover));
    relay.on('running', ({ running }) => {
      if (!running) void publisher.close();
    });
    relays.push(relay);
    relay.start();
    await waitFor('the two relays sharing the partitions', () => relay.partitions.length === 32, 10_000);

    const workload = writeWorkload({
      pool: db.pool,
      prefix: 'frozen',
      types: ['test.frozen.v1'],
      aggregates: 64,
      eventsPerAggregate: 40,
      writers: 2,
      pauseMs: 10,
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    child.signalGroup('SIGSTOP');
    await waitFor('the frozen relay ended by the live one', () => takeovers.length > 0, 20_000);
    assert.ok((takeovers[0]?.partitions.length ?? 0) > 0, 'it held partitions');
    await waitFor('the live relay owning every partition', () => relay.partitions.length === 64, 10_000);
    // Wake it well after the new owner published and confirmed its batch: whatever it held is refused.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    child.signalGroup('SIGCONT');
    const written = await workload;
    await waitFor(
      'all published',
      async () =>
        (await db.pool.query("SELECT 1 FROM event_outbox WHERE status <> 'PUBLISHED'")).rowCount === 0,
      30_000,
    );
    await assertDelivered({
      pool: db.pool,
      read: (stream) => readStream(redis.url, stream),
      aggregateLike: 'frozen-%',
      expected: written,
    });
  });
});
