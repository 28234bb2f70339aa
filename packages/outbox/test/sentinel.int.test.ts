import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { startRedisServer, waitFor } from '@astra/test-support';
import type { PublishOutcome } from '../src/publisher.ts';
import type { StreamRepair } from '../src/recovery.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay } from '../src/relay.ts';
import { assertDelivered, writeWorkload } from './delivery.ts';
import { createOutboxDatabase, type OutboxDatabase, readStream } from './support.ts';
import { SENTINEL_NAME, SentinelSet } from './topologies.ts';

const TYPES = ['test.sentinel.a.v1', 'test.sentinel.b.v1'];
const NAME = SENTINEL_NAME;

describe('Redis Sentinel failover under load', () => {
  let db: OutboxDatabase;
  let set: SentinelSet | undefined;
  let relays: OutboxRelay[] = [];
  const repairs: StreamRepair[] = [];

  before(async () => {
    db = await createOutboxDatabase();
  });
  afterEach(async () => {
    await Promise.all(relays.map((relay) => relay.stop()));
    relays = [];
    await set?.stop();
    set = undefined;
    repairs.length = 0;
    await db.pool.query('TRUNCATE event_outbox, event_outbox_streams');
  });
  after(() => db.drop());

  async function failoverUnderLoad(prefix: string, waitReplicas: number): Promise<number> {
    const sentinelSet = await SentinelSet.start();
    set = sentinelSet;
    for (let i = 0; i < 2; i++) {
      const publisher = new RedisStreamsPublisher({
        sentinel: { nodes: [`127.0.0.1:${sentinelSet.sentinelPort}`], name: NAME },
        waitReplicas,
        timeoutMs: 2000,
      });
      const relay = new OutboxRelay({
        connectionString: db.url,
        publisher,
        batchSize: 100,
        pollIntervalMs: 100,
        rebalanceIntervalMs: 200,
        outageBackoff: { initialMs: 50, maxMs: 500 },
      });
      relay.on('dataLoss', (repair) => repairs.push(repair));
      relay.on('running', ({ running }) => {
        if (!running) void publisher.close();
      });
      relay.start();
      relays.push(relay);
    }
    const workload = writeWorkload({
      pool: db.pool,
      prefix,
      types: TYPES,
      aggregates: 60,
      eventsPerAggregate: 40,
      writers: 3,
      pauseMs: 5,
    });
    const first = sentinelSet.primary;
    await waitFor(
      'publishing',
      async () => Number(await first.cli(['XLEN', TYPES[0] as string])) > 200,
      20_000,
    );
    await first.kill('SIGKILL');
    await waitFor('the failover', async () => (await sentinelSet.primaryPort()) !== first.port, 30_000);
    const written = await workload;
    const port = await sentinelSet.primaryPort();
    const url = `redis://127.0.0.1:${port}`;
    await waitFor(
      'every event published after the failover',
      async () =>
        (await db.pool.query("SELECT 1 FROM event_outbox WHERE status <> 'PUBLISHED'")).rowCount === 0,
      60_000,
    );
    await waitFor(
      'every event in the new primary once, in order',
      () =>
        assertDelivered({
          pool: db.pool,
          read: (s) => readStream(url, s),
          aggregateLike: `${prefix}-%`,
          expected: written,
        }).then(() => true),
      30_000,
    );
    return written;
  }

  test('with RELAY_REDIS_WAIT_REPLICAS=1: nothing acknowledged is lost', async () => {
    await failoverUnderLoad('waited', 1);
    assert.deepEqual(
      repairs.filter((repair) => repair.lost > 0),
      [],
      'every marked event was on a replica: the new primary lost none',
    );
  });

  test('without WAIT: whatever the failover lost is found and published again', async () => {
    await failoverUnderLoad('unwaited', 0);
    for (const repair of repairs) assert.equal(repair.unrecoverable, 0);
  });
});

describe('waitReplicas', () => {
  test('marks nothing until enough replicas hold the batch; the retry adds nothing twice', async () => {
    const primary = await startRedisServer();
    const replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const event = {
      rowId: '1',
      partition: 3,
      eventId: '0190f0e0-0000-7000-8000-000000000001',
      type: 'test.wait.v1',
      source: '/test',
      aggregateType: 'thing',
      aggregateId: 'waited',
      time: new Date().toISOString(),
      data: '{}',
      traceparent: null,
      tracestate: null,
    };
    const fence = { epochs: new Map([[3, 1]]), expected: () => undefined };
    const tooMany = new RedisStreamsPublisher({ url: primary.url, waitReplicas: 2, waitTimeoutMs: 200 });
    const enough = new RedisStreamsPublisher({ url: primary.url, waitReplicas: 1 });
    try {
      await waitFor(
        'the replica in sync',
        async () => (await primary.cli(['INFO', 'replication'])).includes('connected_slaves:1'),
        20_000,
      );
      const [refused] = await tooMany.publish([event], { fence });
      assert.equal(refused?.status, 'unavailable');
      assert.match(refused?.status === 'unavailable' ? refused.error : '', /WAIT: [01] of 2 replicas/);
      // Retried as the relay would (a busy host can miss one WAIT timeout): the journal keeps it single.
      let published: PublishOutcome | undefined = refused;
      for (let attempt = 0; attempt < 10 && published?.status !== 'published'; attempt++)
        [published] = await enough.publish([event], { fence });
      assert.equal(published?.status, 'published');
      assert.equal(await primary.cli(['XLEN', 'test.wait.v1']), '1', 'the retry was answered by the journal');
      assert.equal(await replica.cli(['XLEN', 'test.wait.v1']), '1', 'and the replica holds the entry');
    } finally {
      await Promise.all([tooMany.close(), enough.close()]);
      await Promise.all([primary.kill(), replica.kill()]);
    }
  });
});
