import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { waitFor } from '@astra/test-support';
import { type ConsumerOptions, deadLetterStreamName, OutboxConsumer } from '../src/consumer/consumer.ts';
import { DeadLetters } from '../src/consumer/dead-letters.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import {
  assertAppliedOnceInOrder,
  createInboxDatabase,
  eventually,
  type OutboxDatabase,
  publishEvents,
  recordApply,
  type TestEvent,
  unordered,
  versioned,
} from './support.ts';
import { TestCluster } from './topologies.ts';

// Names whose slots fall in the three thirds `redis-cli --cluster create` gives its three masters
// (checked below, not assumed).
const STREAMS = ['test.consumer.limits.v1', 'test.consumer.fills.v1', 'test.consumer.orders.v1'];

describe('consumer against a Redis Cluster', () => {
  let db: OutboxDatabase;
  let cluster: TestCluster;
  let publisher: RedisStreamsPublisher;
  const consumers: OutboxConsumer[] = [];

  before(async () => {
    [db, cluster] = await Promise.all([createInboxDatabase(), TestCluster.start()]);
    publisher = new RedisStreamsPublisher({ clusterNodes: cluster.nodes, timeoutMs: 2000 });
  });
  afterEach(async () => {
    await Promise.all(consumers.splice(0).map((consumer) => consumer.stop()));
  });
  after(async () => {
    await publisher.close();
    await cluster?.stop();
    await db?.drop();
  });

  function startConsumer(group: string, options: Partial<ConsumerOptions> = {}): OutboxConsumer {
    const consumer: OutboxConsumer = new OutboxConsumer({
      clusterNodes: cluster.nodes,
      pool: db.pool,
      group,
      streams: STREAMS,
      blockMs: 200,
      claimIdleMs: 1000,
      deferBackoff: { initialMs: 5, maxMs: 50 },
      outageBackoff: { initialMs: 20, maxMs: 300 },
      timeoutMs: 2000,
      ...options,
      handler: options.handler ?? ((event, { db: tx }) => recordApply(tx, event, consumer.name)),
    });
    consumers.push(consumer);
    consumer.start();
    return consumer;
  }

  /** Per stream, version `version` of its keys and one unordered event. */
  function round(group: string, version: number, keys = 8): Map<string, TestEvent[]> {
    return new Map(
      STREAMS.map((stream, s) => [
        stream,
        [
          ...Array.from({ length: keys }, (_, k) => versioned(`${group}:s${s}:k${k}`, version)),
          unordered(`${group}:s${s}:t${version}`),
        ],
      ]),
    );
  }

  async function publishRound(events: Map<string, TestEvent[]>): Promise<TestEvent[]> {
    await Promise.all([...events].map(([stream, list]) => publishEvents(publisher, stream, list)));
    return [...events.values()].flat();
  }

  async function pendingEverywhere(group: string): Promise<number> {
    let total = 0;
    for (const stream of STREAMS) {
      const reply = await cluster.cli(await cluster.masterOf(stream), ['XPENDING', stream, group]);
      total += Number(reply.split('\n')[0]);
    }
    return total;
  }

  test('streams on three shards: two consumers apply every event once, in order per key, and ack it on its shard', async () => {
    const masters = new Set(await Promise.all(STREAMS.map((stream) => cluster.masterOf(stream))));
    assert.equal(masters.size, 3, 'one stream per master');
    const redelivered: string[] = [];
    for (const consumer of [startConsumer('c1'), startConsumer('c1')])
      consumer.on('redelivered', ({ entryId }) => redelivered.push(entryId));
    const events: TestEvent[] = [];
    // Rounds published while the consumers read, so every shard's read comes back with work in turn.
    for (let version = 1; version <= 8; version++) {
      events.push(...(await publishRound(round('c1', version))));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await eventually(
      () => assertAppliedOnceInOrder(db.pool, events),
      20_000,
      'every event applied once, in order',
    );
    await waitFor('every entry acknowledged', async () => (await pendingEverywhere('c1')) === 0, 10_000);
    const { rows } = await db.pool.query<{ consumer: string }>(
      'SELECT DISTINCT consumer FROM applied WHERE ordering_key LIKE $1',
      ['c1:%'],
    );
    assert.equal(rows.length, 2, 'both consumers applied events');
    assert.deepEqual(redelivered, [], 'every entry applied from its read, none left for a claim');
  });

  test('one master restarted empty: its group is created again from 0 and the events published again are skipped', async () => {
    startConsumer('c2');
    const first = await publishRound(round('c2', 1));
    await eventually(() => assertAppliedOnceInOrder(db.pool, first), 15_000, 'the first round');

    const lost = STREAMS[0] as string;
    await cluster.restartEmpty(await cluster.masterOf(lost));
    // The relay's repair publishes the lost shard's events again, then new events follow everywhere.
    const again = first.filter((event) => event.subject.startsWith('c2:s0:'));
    await publishEvents(publisher, lost, again);
    const second = await publishRound(round('c2', 2));
    await eventually(
      () => assertAppliedOnceInOrder(db.pool, [...first, ...second]),
      20_000,
      'every event once, in order, after the loss',
    );
    await waitFor('every entry acknowledged', async () => (await pendingEverywhere('c2')) === 0, 10_000);
  });

  test('a poison event goes to a dead-letter stream on its own shard; DeadLetters lists and replays it there', async () => {
    const stream = STREAMS[1] as string;
    const [poison, next] = [versioned('c3:p', 1), versioned('c3:p', 2)];
    let refusing = true;
    const consumer = startConsumer('c3', {
      maxDeliveries: 1,
      async handler(event, { db: tx }) {
        if (refusing && event.id === poison.id) throw new Error('refused');
        await recordApply(tx, event, consumer.name);
      },
    });
    await publishEvents(publisher, stream, [poison, next]);
    const dead = deadLetterStreamName(stream, 'c3');
    assert.equal(
      await cluster.masterOf(dead),
      await cluster.masterOf(stream),
      'the dead letters share its slot',
    );
    const letters = new DeadLetters({ clusterNodes: cluster.nodes, timeoutMs: 2000 });
    try {
      let listed: Awaited<ReturnType<DeadLetters['list']>> = [];
      await waitFor(
        'the dead letter',
        async () => {
          listed = await letters.list(dead);
          return listed.length === 1;
        },
        10_000,
      );
      assert.equal(listed[0]?.eventId, poison.id);
      refusing = false;
      await letters.replay(dead, listed[0]?.entryId as string);
      await eventually(
        () => assertAppliedOnceInOrder(db.pool, [poison, next]),
        10_000,
        'replayed, then the next',
      );
      assert.deepEqual(await letters.list(dead), []);
    } finally {
      letters.close();
    }
  });
});
