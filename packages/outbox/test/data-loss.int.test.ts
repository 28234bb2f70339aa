import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type ManagedProcess,
  type RedisServer,
  spawnManaged,
  startRedisServer,
  waitFor,
} from '@astra/test-support';
import { OutboxAdmin } from '../src/admin.ts';
import type { StreamRepair } from '../src/recovery.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay, type RelayOptions } from '../src/relay.ts';
import { assertDelivered, writeWorkload } from './delivery.ts';
import { createOutboxDatabase, type OutboxDatabase, readStream } from './support.ts';

const TYPES = ['test.loss.a.v1', 'test.loss.b.v1'];
const CHILD = fileURLToPath(new URL('./fixtures/relay-child.ts', import.meta.url));

/** Quick relays: losses are found within a rebalance interval. */
const QUICK: Partial<RelayOptions> = {
  batchSize: 200,
  pollIntervalMs: 100,
  rebalanceIntervalMs: 200,
  outageBackoff: { initialMs: 20, maxMs: 300 },
  confirmDelayMs: 500,
};

describe('Redis loses data: found, published again in order, bounded where it cannot be', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  const relays: OutboxRelay[] = [];
  const children: ManagedProcess[] = [];
  const repairs: StreamRepair[] = [];

  function startRelay(options: Partial<RelayOptions> = {}): OutboxRelay {
    const publisher = new RedisStreamsPublisher({ url: redis.url, timeoutMs: 1000 });
    const relay = new OutboxRelay({ connectionString: db.url, publisher, ...QUICK, ...options });
    relay.on('dataLoss', (repair) => repairs.push(repair));
    relay.on('running', ({ running }) => {
      if (!running) void publisher.close();
    });
    relays.push(relay);
    relay.start();
    return relay;
  }

  /** A relay in its own process; resolves its events as they are printed. */
  function startChild(options: Partial<RelayOptions> = {}): {
    child: ManagedProcess;
    events: { event: string }[];
  } {
    const config = { connectionString: db.url, redisUrl: redis.url, ...QUICK, ...options };
    const child = spawnManaged('relay-child', process.execPath, ['--import', 'tsx', CHILD], {
      env: { ...process.env, OUTBOX_TEST_RELAY: JSON.stringify(config) },
    });
    const events: { event: string }[] = [];
    let buffered = '';
    child.child.stdout?.on('data', (chunk) => {
      buffered += String(chunk);
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line !== '') events.push(JSON.parse(line));
    });
    children.push(child);
    return { child, events };
  }

  const read = (stream: string) => readStream(redis.url, stream);
  const streamLength = async () => {
    let total = 0;
    for (const type of TYPES) total += Number(await redis.cli(['XLEN', type]));
    return total;
  };

  /** True once Redis's marker of every stream and partition is the outbox's record: no repair left. */
  const markersMatchRecords = async () => {
    const { rows } = await db.pool.query<{ stream: string; partition_no: number; last_entry_id: string }>(
      'SELECT stream, partition_no, last_entry_id FROM event_outbox_streams',
    );
    for (const row of rows) {
      const marker = await redis.cli(['HGET', `{${row.stream}}:outbox-state`, `m${row.partition_no}`]);
      if (marker !== row.last_entry_id) return false;
    }
    return rows.length > 0;
  };

  before(async () => {
    db = await createOutboxDatabase();
    redis = await startRedisServer();
  });
  afterEach(async () => {
    for (const child of children.splice(0)) await child.kill('SIGKILL');
    await Promise.all(relays.splice(0).map((relay) => relay.stop()));
    repairs.length = 0;
    await db.pool.query('TRUNCATE event_outbox, event_outbox_streams');
    await redis.cli(['FLUSHALL']);
  });
  after(async () => {
    await redis.kill();
    await db.drop();
  });

  test('Redis restarted empty under load, two relays: every event in its stream once, in order', async () => {
    startRelay();
    startRelay();
    const workload = writeWorkload({
      pool: db.pool,
      prefix: 'wipe',
      types: TYPES,
      aggregates: 100,
      eventsPerAggregate: 30,
      writers: 4,
      pauseMs: 5,
    });
    await waitFor('a first part published', async () => (await streamLength()) > 500, 20_000);
    await redis.kill('SIGKILL');
    await redis.restart();
    const written = await workload;

    await waitFor(
      'every event published and in its stream',
      async () =>
        (await db.pool.query("SELECT 1 FROM event_outbox WHERE status <> 'PUBLISHED'")).rowCount === 0 &&
        (await streamLength()) >= written,
      30_000,
    );
    await waitFor('every marker back in step with the outbox', markersMatchRecords, 30_000);
    await assertDelivered({ pool: db.pool, read, aggregateLike: 'wipe-%', expected: written });
    const republished = repairs.reduce((sum, repair) => sum + repair.republished, 0);
    assert.ok(republished > 500, `events published again: ${republished}`);
    assert.equal(
      repairs.reduce((sum, repair) => sum + repair.unrecoverable, 0),
      0,
      'nothing was past retention',
    );
    for (const repair of repairs)
      assert.equal(repair.lost, repair.republished, `${repair.stream} ${repair.partition}`);
  });

  test('a relay SIGKILLed halfway through a repair: the next one finishes it, each event once, in order', async () => {
    const first = startChild();
    const written = await writeWorkload({
      pool: db.pool,
      prefix: 'halfway',
      types: TYPES,
      aggregates: 200,
      eventsPerAggregate: 100,
      writers: 4,
    });
    await waitFor('all published once', async () => (await streamLength()) === written, 60_000);
    await redis.kill('SIGKILL');
    await redis.restart();
    // The repair publishes the 20,000 events again page by page: kill the relay between two pages.
    await waitFor('the repair started', async () => (await streamLength()) > 0, 20_000);
    await first.child.kill('SIGKILL');
    const atKill = await streamLength();
    assert.ok(atKill > 0 && atKill < written, `killed halfway: ${atKill} of ${written} published again`);
    assert.equal(
      first.events.filter((event) => event.event === 'dataLoss').length,
      0,
      'no stream was repaired before the kill',
    );

    startRelay();
    // Each stream and partition is reported once its marker has moved, after its last event went out.
    await waitFor(
      'the losses found add up to everything published',
      () => repairs.reduce((sum, repair) => sum + repair.lost, 0) === written,
      60_000,
    );
    await assertDelivered({ pool: db.pool, read, aggregateLike: 'halfway-%', expected: written });
    assert.equal(
      repairs.reduce((sum, repair) => sum + repair.republished, 0),
      written,
    );
  });

  test('loss beyond retention (deletePublished): the exact range is reported, the relay goes on', async () => {
    startRelay({ deletePublished: true });
    const written = await writeWorkload({
      pool: db.pool,
      prefix: 'gone',
      types: TYPES,
      aggregates: 20,
      eventsPerAggregate: 15,
      writers: 2,
    });
    await waitFor('all published', async () => (await streamLength()) === written, 20_000);
    await redis.kill('SIGKILL');
    await redis.restart();
    await waitFor(
      'every lost event counted as unrecoverable',
      () => repairs.reduce((sum, repair) => sum + repair.unrecoverable, 0) === written,
      20_000,
    );
    for (const repair of repairs) {
      assert.equal(repair.republished, 0);
      assert.equal(repair.afterEntryId, null, 'Redis held nothing of the partition');
      assert.match(repair.lastEventId, /^[0-9a-f-]{36}$/);
    }
    // The relay goes on: new events of the same aggregates are published.
    const more = await writeWorkload({
      pool: db.pool,
      prefix: 'gone',
      types: TYPES,
      aggregates: 20,
      eventsPerAggregate: 2,
      writers: 1,
    });
    await waitFor('new events published', async () => (await streamLength()) === more, 20_000);
  });

  test('operator republish: chosen PUBLISHED events again, in order, same ids, past the journal', async () => {
    startRelay();
    const written = await writeWorkload({
      pool: db.pool,
      prefix: 'again',
      types: TYPES,
      aggregates: 10,
      eventsPerAggregate: 5,
      writers: 1,
    });
    await waitFor('all published', async () => (await streamLength()) === written, 20_000);
    const publisher = new RedisStreamsPublisher({ url: redis.url });
    try {
      const admin = new OutboxAdmin(db.pool);
      const filter = { since: new Date(0), type: TYPES[0] as string, aggregateId: 'again-2' };
      const dry = await admin.republish(publisher, filter, true);
      assert.equal(dry.events, 5);
      assert.equal(await streamLength(), written, 'a dry run sends nothing');
      const done = await admin.republish(publisher, filter);
      assert.deepEqual(done, dry);
    } finally {
      await publisher.close();
    }
    const entries = (await read(TYPES[0] as string)).filter((entry) => entry.fields.subject === 'again-2');
    const seqs = entries.map((entry) => JSON.parse(entry.fields.data ?? '{}').seq);
    assert.deepEqual(seqs, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5], 'the five again, after the first five, in order');
    assert.deepEqual(
      entries.slice(5).map((entry) => entry.fields.id),
      entries.slice(0, 5).map((entry) => entry.fields.id),
      'with the same CloudEvents ids',
    );
  });
});
