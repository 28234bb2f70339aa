import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type ManagedProcess,
  type RedisServer,
  spawnManaged,
  startRedisServer,
  waitFor,
} from '@astra/test-support';
import { Registry } from 'prom-client';
import {
  type ConsumerEvents,
  type ConsumerOptions,
  deadLetterStreamName,
  OutboxConsumer,
} from '../src/consumer/consumer.ts';
import { DeadLetters } from '../src/consumer/dead-letters.ts';
import { registerConsumerMetrics } from '../src/consumer/prometheus.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import {
  createInboxDatabase,
  type OutboxDatabase,
  publishEvents,
  recordApply,
  type TestEvent,
  unordered,
  versioned,
} from './support.ts';

const CHILD = fileURLToPath(new URL('./fixtures/consumer-child.ts', import.meta.url));

/** Quick consumers: short blocks and idle times, so claims and retries happen within a test. */
const QUICK = {
  blockMs: 100,
  claimIdleMs: 600,
  deferBackoff: { initialMs: 5, maxMs: 50 },
  retryBackoff: { initialMs: 10, maxMs: 50 },
  outageBackoff: { initialMs: 20, maxMs: 200 },
  timeoutMs: 2000,
};

describe('outbox consumer against real Redis and PostgreSQL', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  let publisher: RedisStreamsPublisher;
  const consumers: OutboxConsumer[] = [];
  const children: ManagedProcess[] = [];

  before(async () => {
    [db, redis] = await Promise.all([createInboxDatabase(), startRedisServer()]);
    publisher = new RedisStreamsPublisher({ url: redis.url, timeoutMs: 2000 });
  });

  afterEach(async () => {
    for (const child of children.splice(0)) await child.kill('SIGKILL');
    await Promise.all(consumers.splice(0).map((consumer) => consumer.stop()));
  });

  after(async () => {
    await publisher.close();
    await redis.kill();
    await db.drop();
  });

  const newStream = () => `test.consumer.${randomBytes(4).toString('hex')}.v1`;

  const publish = (stream: string, events: TestEvent[]) => publishEvents(publisher, stream, events);

  /** A consumer in this process whose handler records each apply; `refuse` can make it throw. */
  function startConsumer(
    stream: string,
    group: string,
    options: Partial<ConsumerOptions> & { refuse?: (eventId: string) => boolean } = {},
  ): { consumer: OutboxConsumer; seen: { [K in keyof ConsumerEvents]: ConsumerEvents[K][0][] } } {
    const { refuse, ...rest } = options;
    const consumer: OutboxConsumer = new OutboxConsumer({
      url: redis.url,
      pool: db.pool,
      group,
      streams: [stream],
      ...QUICK,
      ...rest,
      async handler(event, { db: tx }) {
        if (refuse?.(event.id)) throw new Error(`refused ${event.id}`);
        await recordApply(tx, event, consumer.name);
      },
    });
    const seen = {
      processed: [],
      redelivered: [],
      deferred: [],
      failed: [],
      deadLettered: [],
      fault: [],
      pruned: [],
      running: [],
    } as { [K in keyof ConsumerEvents]: ConsumerEvents[K][0][] };
    for (const name of Object.keys(seen) as (keyof ConsumerEvents)[]) {
      consumer.on(name, ((payload: unknown) => (seen[name] as unknown[]).push(payload)) as never);
    }
    consumers.push(consumer);
    consumer.start();
    return { consumer, seen };
  }

  async function appliedIds(ids: string[]): Promise<string[]> {
    const { rows } = await db.pool.query<{ event_id: string }>(
      'SELECT event_id FROM applied WHERE event_id = ANY($1) ORDER BY id',
      [ids],
    );
    return rows.map((row) => row.event_id);
  }

  const pendingCount = async (stream: string, group: string) =>
    Number((await redis.cli(['XPENDING', stream, group])).split('\n')[0]);

  test('applies each event once, acknowledges it, skips a redelivered id and a passed version', async () => {
    const stream = newStream();
    const first = [
      versioned('acct:A', 1),
      versioned('acct:A', 2),
      unordered('trade-1'),
      versioned('acct:B', 1),
    ];
    await publish(stream, first);
    const { consumer, seen } = startConsumer(stream, 'g1');
    const ids = first.map((event) => event.id);
    await waitFor('first events applied', async () => (await appliedIds(ids)).length === 4, 10_000);

    // An operator republish: the same ids again, so older versions follow newer ones.
    await publish(stream, [first[0] as TestEvent, first[2] as TestEvent, versioned('acct:A', 3)]);
    await waitFor('republished entries processed', () => seen.processed.length === 7, 10_000);
    await waitFor('everything acknowledged', async () => (await pendingCount(stream, 'g1')) === 0, 10_000);
    await consumer.stop();

    const applied = await appliedIds(ids);
    assert.deepEqual([...applied].sort(), [...ids].sort(), 'each first event applied exactly once');
    const outcomes = seen.processed.map((p) => `${p.eventId}:${p.outcome}`);
    assert.ok(outcomes.includes(`${first[0]?.id}:duplicate`), 'a redelivered id is a duplicate');
    assert.ok(outcomes.includes(`${first[2]?.id}:duplicate`), 'an unordered redelivered id too');
    assert.equal(seen.processed.filter((p) => p.outcome === 'applied').length, 5);
    const { rows } = await db.pool.query(
      "SELECT last_sequence::int AS last FROM event_inbox_sequences WHERE group_name = 'g1' ORDER BY ordering_key",
    );
    assert.deepEqual(
      rows.map((row) => row.last),
      [3, 1],
    );
  });

  test('a stale version that was never applied in this group is skipped, not applied', async () => {
    const stream = newStream();
    const v1 = versioned('acct:S', 1);
    const v2 = versioned('acct:S', 2);
    await publish(stream, [v1, v2]);
    const { seen } = startConsumer(stream, 'g-stale');
    await waitFor('v1 and v2', async () => (await appliedIds([v1.id, v2.id])).length === 2, 10_000);
    // Another event claiming version 1 (a different id): version 1 has passed, so it is skipped.
    const late = versioned('acct:S', 1);
    await publish(stream, [late]);
    await waitFor('late v1 processed', () => seen.processed.some((p) => p.eventId === late.id), 10_000);
    assert.equal(seen.processed.find((p) => p.eventId === late.id)?.outcome, 'stale');
    assert.deepEqual(await appliedIds([late.id]), []);
  });

  test('two consumers of one group never apply version N+1 of a key before N', async () => {
    const stream = newStream();
    const keys = Array.from({ length: 8 }, (_, i) => `acct:${i}`);
    const perKey = 30;
    const events: TestEvent[] = [];
    for (let version = 1; version <= perKey; version++)
      for (const key of keys) events.push(versioned(key, version));
    // Swap neighbours here and there: N+1 sits before N in the stream, as after a relay repair.
    for (let i = 0; i + keys.length < events.length; i += 5 * keys.length) {
      const a = events[i] as TestEvent;
      events[i] = events[i + keys.length] as TestEvent;
      events[i + keys.length] = a;
    }
    await publish(stream, events);
    // Small batches, so entries of one key land on both consumers.
    const one = startConsumer(stream, 'g2', { batchSize: 3 });
    const two = startConsumer(stream, 'g2', { batchSize: 3 });
    await waitFor(
      'all applied',
      async () => (await appliedIds(events.map((e) => e.id))).length === events.length,
      30_000,
    );

    const { rows } = await db.pool.query<{ ordering_key: string; sequence: string; consumer: string }>(
      'SELECT ordering_key, sequence::text, consumer FROM applied WHERE event_id = ANY($1) ORDER BY id',
      [events.map((e) => e.id)],
    );
    const byKey = new Map<string, number[]>();
    for (const row of rows)
      byKey.set(row.ordering_key, [...(byKey.get(row.ordering_key) ?? []), Number(row.sequence)]);
    const expected = Array.from({ length: perKey }, (_, i) => i + 1);
    for (const key of keys)
      assert.deepEqual(byKey.get(key), expected, `${key} applied 1..${perKey} in order`);
    assert.equal(new Set(rows.map((row) => row.consumer)).size, 2, 'both consumers applied events');
    assert.ok(
      one.seen.deferred.length + two.seen.deferred.length > 0,
      'some event arrived out of turn and was deferred',
    );
  });

  test('after Redis loses the stream and its group, the group is recreated from the start: nothing skipped, nothing twice', async () => {
    const stream = newStream();
    const before = [versioned('acct:L', 1), versioned('acct:L', 2), unordered('t-1')];
    await publish(stream, before);
    const { seen } = startConsumer(stream, 'g3');
    await waitFor('applied', async () => (await appliedIds(before.map((e) => e.id))).length === 3, 10_000);

    // Redis restarts empty; the relay publishes the lost events again, then new ones follow.
    await redis.kill();
    await redis.restart();
    const afterLoss = [versioned('acct:L', 3), unordered('t-2')];
    await publish(stream, [...before, ...afterLoss]);
    const all = [...before, ...afterLoss].map((e) => e.id);
    await waitFor('events after the loss applied', async () => (await appliedIds(all)).length === 5, 15_000);
    await waitFor('all acknowledged', async () => (await pendingCount(stream, 'g3')) === 0, 10_000);

    assert.deepEqual([...(await appliedIds(all))].sort(), [...all].sort(), 'each applied exactly once');
    const groups = await redis.cli(['XINFO', 'GROUPS', stream]);
    assert.match(groups, /g3/, 'the group exists again');
    const duplicates = seen.processed.filter((p) => p.outcome === 'duplicate').map((p) => p.eventId);
    assert.deepEqual(
      [...duplicates].sort(),
      before.map((e) => e.id).sort(),
      'republished ones skipped by the inbox',
    );
  });

  test('a poison event goes to the dead-letter stream after maxDeliveries; its key waits; replay applies it and the rest follow', async () => {
    const stream = newStream();
    const v1 = versioned('acct:P', 1);
    const v2 = versioned('acct:P', 2);
    const v3 = versioned('acct:P', 3);
    const other = versioned('acct:Q', 1);
    await publish(stream, [v1, v2, v3, other]);
    // A broken entry the relay would never write: dead-lettered at once.
    await redis.cli(['XADD', stream, '*', 'id', 'broken-1', 'type', stream, 'data', '{']);
    let poisoned = true;
    const { consumer, seen } = startConsumer(stream, 'g4', {
      maxDeliveries: 3,
      refuse: (id) => poisoned && id === v2.id,
    });
    const dead = deadLetterStreamName(stream, 'g4');
    await waitFor('two dead letters', () => seen.deadLettered.length === 2, 15_000);
    await waitFor(
      'healthy events applied',
      async () => (await appliedIds([v1.id, other.id])).length === 2,
      10_000,
    );

    const letters = new DeadLetters({ url: redis.url });
    try {
      const listed = await letters.list(dead);
      assert.equal(listed.length, 2);
      const poison = listed.find((letter) => letter.eventId === v2.id);
      assert.ok(poison, 'the refused event is a dead letter');
      assert.equal(poison.deliveries, 3);
      assert.equal(poison.error, `refused ${v2.id}`);
      assert.equal(poison.stream, stream);
      const broken = listed.find((letter) => letter.eventId === 'broken-1');
      assert.match(broken?.error ?? '', /cannot be decoded/);
      assert.equal(seen.failed.length, 3, 'the handler ran exactly maxDeliveries times');

      // v3 waits behind the dead-lettered v2: it is held, not applied, not acknowledged.
      await waitFor('v3 deferred', () => seen.deferred.some((d) => d.eventId === v3.id), 10_000);
      assert.deepEqual(await appliedIds([v2.id, v3.id]), []);
      assert.equal(consumer.heldCount, 1);
      assert.equal(await pendingCount(stream, 'g4'), 1);

      // Fixed: replay puts v2 back on the stream with its id; v2 then v3 apply, in order.
      poisoned = false;
      await letters.replay(dead, poison.entryId);
      await waitFor(
        'v2 and v3 after replay',
        async () => (await appliedIds([v2.id, v3.id])).length === 2,
        10_000,
      );
      assert.deepEqual(await appliedIds([v1.id, v2.id, v3.id]), [v1.id, v2.id, v3.id]);
      assert.equal((await letters.list(dead)).length, 1, 'the replayed letter is gone, the broken one stays');
      await assert.rejects(letters.replay(dead, poison.entryId), { code: 'OUTBOX_EVENT_NOT_FOUND' });
      await assert.rejects(letters.replay(dead, 'nope'), { code: 'OUTBOX_INVALID_OPTION', field: 'entryId' });
      await waitFor('all acknowledged', async () => (await pendingCount(stream, 'g4')) === 0, 10_000);
    } finally {
      letters.close();
    }
  });

  test('entries a SIGKILLed consumer held are claimed after the idle time and applied once', async () => {
    const stream = newStream();
    const events = [versioned('acct:K', 1), versioned('acct:K', 2), unordered('t-k1'), unordered('t-k2')];
    await publish(stream, events);
    const config = {
      databaseUrl: db.url,
      redisUrl: redis.url,
      group: 'g5',
      streams: [stream],
      consumer: 'doomed',
      ...QUICK,
      // Its handler never returns for v1: the whole batch stays pending on it.
      stallOn: [events[0]?.id],
    };
    const child = spawnManaged('consumer-child', process.execPath, ['--import', 'tsx', CHILD], {
      env: { ...process.env, OUTBOX_TEST_CONSUMER: JSON.stringify(config) },
    });
    children.push(child);
    await waitFor('the child to stall in its handler', () => child.stdout.includes('"stalled"'), 15_000);
    assert.equal(await pendingCount(stream, 'g5'), 4, 'the child holds all four entries');
    await child.kill('SIGKILL');

    const { seen } = startConsumer(stream, 'g5');
    const ids = events.map((e) => e.id);
    await waitFor('claimed entries applied', async () => (await appliedIds(ids)).length === 4, 15_000);
    await waitFor('all acknowledged', async () => (await pendingCount(stream, 'g5')) === 0, 10_000);
    assert.deepEqual(await appliedIds(ids), ids, 'once each, v1 before v2');
    assert.equal(seen.redelivered.length, 4);
    assert.ok(
      seen.redelivered.every((r) => r.delivery === 2),
      JSON.stringify(seen.redelivered),
    );
  });

  test('stop() finishes and acknowledges what was applied; a restarted group member goes on from there', async () => {
    const stream = newStream();
    const events = Array.from({ length: 40 }, (_, i) => versioned('acct:G', i + 1));
    await publish(stream, events);
    const { consumer, seen } = startConsumer(stream, 'g6', { batchSize: 5 });
    await waitFor('some applied', () => seen.processed.length >= 10, 10_000);
    await consumer.stop();
    assert.equal(consumer.running, false);
    const appliedBefore = (await appliedIds(events.map((e) => e.id))).length;
    assert.equal(await pendingCount(stream, 'g6'), 0, 'nothing applied is left unacknowledged');
    assert.equal(seen.processed.length, appliedBefore);

    startConsumer(stream, 'g6');
    await waitFor('the rest', async () => (await appliedIds(events.map((e) => e.id))).length === 40, 10_000);
    assert.deepEqual(
      await appliedIds(events.map((e) => e.id)),
      events.map((e) => e.id),
    );
  });

  test('metrics count outcomes per group and stream, and read the group backlog at scrape time', async () => {
    const stream = newStream();
    const v1 = versioned('acct:M', 1);
    const v3 = versioned('acct:M', 3);
    await publish(stream, [v1, v1, v3]);
    const { consumer, seen } = startConsumer(stream, 'g7', {
      maxDeliveries: 1,
      refuse: (id) => id === v1.id,
    });
    const registry = new Registry();
    registerConsumerMetrics({ registry, consumers: [consumer] });
    // v1 fails once and is dead-lettered; its copy is dead-lettered too (the inbox never got it); v3 waits.
    await waitFor('dead letters', () => seen.deadLettered.length === 2 && seen.deferred.length > 0, 10_000);
    const text = await registry.metrics();
    const sample = (name: string, labels: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
      return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const labels = `group="g7",stream="${stream}"`;
    assert.equal(sample('outbox_consumer_dead_lettered_total', labels), 2);
    assert.equal(sample('outbox_consumer_handler_failures_total', labels), 2, 'once per copy');
    assert.equal(sample('outbox_consumer_events_total', `${labels},outcome="applied"`), 0);
    assert.ok((sample('outbox_consumer_deferred_total', labels) ?? 0) >= 1);
    assert.equal(sample('outbox_consumer_held_entries', 'group="g7"'), 1);
    assert.equal(sample('outbox_consumer_group_pending', labels), 1, 'v3 is pending');
    assert.equal(sample('outbox_consumer_group_lag', labels), 0, 'everything was delivered');
    // The gauge the dead-letter page reads: it stays until the dead letters are replayed.
    assert.equal(sample('outbox_consumer_dead_letters', labels), 2, 'both wait for a replay');
  });

  test('a PostgreSQL session killed under the handler spends no delivery: the event is applied later, not dead-lettered', async () => {
    const stream = newStream();
    const event = versioned('acct:O', 1);
    await publish(stream, [event]);
    let killed = 0;
    const consumer: OutboxConsumer = new OutboxConsumer({
      url: redis.url,
      pool: db.pool,
      group: 'g8',
      streams: [stream],
      ...QUICK,
      // One delivery only: were the outage counted, the event would be dead-lettered.
      maxDeliveries: 1,
      async handler(e, { db: tx }) {
        if (killed < 2) {
          killed++;
          // The database ends this very session, as a restart or failover would.
          await tx.query('SELECT pg_terminate_backend(pg_backend_pid())');
        }
        await tx.query(
          'INSERT INTO applied (event_id, ordering_key, sequence, consumer) VALUES ($1, $2, 1, $3)',
          [e.id, e.subject, consumer.name],
        );
      },
    });
    const faults: string[] = [];
    const dead: unknown[] = [];
    consumer.on('fault', ({ kind }) => faults.push(kind));
    consumer.on('deadLettered', (letter) => dead.push(letter));
    consumers.push(consumer);
    consumer.start();
    await waitFor(
      'applied after the outage',
      async () => (await appliedIds([event.id])).length === 1,
      10_000,
    );
    assert.equal(killed, 2);
    assert.deepEqual(dead, []);
    assert.ok(faults.filter((kind) => kind === 'database').length >= 2, JSON.stringify(faults));
    await waitFor('acknowledged', async () => (await pendingCount(stream, 'g8')) === 0, 10_000);
  });
});
