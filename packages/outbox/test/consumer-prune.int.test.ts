import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';
import { type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import pg from 'pg';
import { Registry } from 'prom-client';
import { type ConsumerOptions, OutboxConsumer } from '../src/consumer/consumer.ts';
import { registerConsumerMetrics } from '../src/consumer/prometheus.ts';
import { pruneInboxQuery, tryPruneLockQuery, unlockPruneQuery } from '../src/consumer/sql.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import {
  createInboxDatabase,
  type OutboxDatabase,
  publishEvents,
  recordApply,
  unordered,
} from './support.ts';

const DAY = 24 * 3600;

describe('inbox pruning', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  let publisher: RedisStreamsPublisher;
  const consumers: OutboxConsumer[] = [];

  before(async () => {
    [db, redis] = await Promise.all([createInboxDatabase(), startRedisServer()]);
    publisher = new RedisStreamsPublisher({ url: redis.url, timeoutMs: 2000 });
  });
  afterEach(async () => {
    await Promise.all(consumers.splice(0).map((consumer) => consumer.stop()));
  });
  after(async () => {
    await publisher.close();
    await redis.kill();
    await db.drop();
  });

  function newConsumer(
    stream: string,
    group: string,
    options: Partial<ConsumerOptions> = {},
  ): OutboxConsumer {
    const consumer: OutboxConsumer = new OutboxConsumer({
      url: redis.url,
      pool: db.pool,
      group,
      streams: [stream],
      ordering: false,
      blockMs: 100,
      timeoutMs: 2000,
      inboxRetentionSeconds: 7 * DAY,
      // No pass of its own unless a test asks: the tests call pruneInbox() themselves.
      inboxPruneIntervalMs: 3_600_000,
      ...options,
      handler: (event, { db: tx }) => recordApply(tx, event, consumer.name),
    });
    consumers.push(consumer);
    return consumer;
  }

  /** Applies `count` events on a fresh stream and group; returns their ids in stream order. */
  async function applied(stream: string, group: string, count: number): Promise<string[]> {
    const events = Array.from({ length: count }, (_, i) => unordered(`t-${i}`));
    await publishEvents(publisher, stream, events);
    const consumer = newConsumer(stream, group, { inboxRetentionSeconds: 0 });
    consumer.start();
    const ids = events.map((event) => event.id);
    await waitFor(
      'every event applied',
      async () =>
        Number(
          (await db.pool.query('SELECT count(*) FROM applied WHERE event_id = ANY($1)', [ids])).rows[0]
            ?.count,
        ) === count,
      10_000,
    );
    await consumer.stop();
    return ids;
  }

  const backdate = (ids: string[], days: number) =>
    db.pool.query(
      `UPDATE event_inbox SET processed_at = now() - make_interval(days => $2) WHERE event_id = ANY($1)`,
      [ids, days],
    );

  const inboxCount = async (group: string, ids?: string[]) =>
    Number(
      (
        await db.pool.query(
          'SELECT count(*) FROM event_inbox WHERE group_name = $1 AND ($2::text[] IS NULL OR event_id = ANY($2))',
          [group, ids ?? null],
        )
      ).rows[0]?.count,
    );

  /** The entry id of the `index`th entry of the stream. */
  const entryAt = async (stream: string, index: number) =>
    (await redis.cli(['XRANGE', stream, '-', '+', 'COUNT', String(index + 1)]))
      .split('\n')
      .filter((line) => /^\d+-\d+$/.test(line))[index] as string;

  test('old rows whose entries left the stream are pruned in bounded batches; recent ones and entries still in the stream are kept', async () => {
    const stream = `test.prune.${randomBytes(4).toString('hex')}.v1`;
    const ids = await applied(stream, 'p1', 25);
    const old = ids.slice(0, 20);
    const recent = ids.slice(20);
    await backdate(old, 8);
    // Another group's old rows on the same stream are not this group's to prune.
    await db.pool.query(
      `INSERT INTO event_inbox (group_name, event_id, event_type, stream, entry_id, processed_at)
       VALUES ('other', 'x-1', 't', $1, '1-0', now() - interval '30 days')`,
      [stream],
    );
    const consumer = newConsumer(stream, 'p1', { inboxPruneBatchSize: 7 });
    const passes: { rows: number; batches: number }[] = [];
    consumer.on('pruned', (pass) => passes.push(pass));

    assert.equal(await consumer.pruneInbox(), 0, 'every old row still has its entry in the stream');
    assert.equal(await inboxCount('p1'), 25);

    // Trim the stream to the recent entries, as XADD MAXLEN or XTRIM would.
    await redis.cli(['XTRIM', stream, 'MINID', await entryAt(stream, 20)]);
    assert.equal(await redis.cli(['XLEN', stream]), '5');
    // One statement deletes at most its batch size.
    const one = await db.pool.query(
      pruneInboxQuery('event_inbox', ['p1', stream, String(7 * DAY), null, null, '7']),
    );
    assert.equal(one.rowCount, 7);
    assert.equal(await consumer.pruneInbox(), 13, 'the other 13 old rows, in two more statements');
    assert.deepEqual(passes, [{ rows: 13, batches: 2 }]);
    assert.equal(await inboxCount('p1', old), 0);
    assert.equal(await inboxCount('p1', recent), 5, 'rows younger than the retention are kept');
    assert.equal(await inboxCount('other'), 1);
  });

  test('a row is kept while the stream holds entries from before its own, whatever the clocks say', async () => {
    const stream = `test.prune.${randomBytes(4).toString('hex')}.v1`;
    const ids = await applied(stream, 'p2', 4);
    await backdate(ids, 20);
    // The stream now starts with an entry newer than every row's: the time bound lets all four go.
    await redis.cli(['XTRIM', stream, 'MAXLEN', '0']);
    await redis.cli(['XADD', stream, '*', 'id', 'newer']);
    // Two rows recorded against entries Redis dated later than that (its clock ahead of PostgreSQL's).
    const [ahead1, ahead2] = ids as [string, string];
    await db.pool.query(`UPDATE event_inbox SET entry_id = '99999999999999-0' WHERE event_id = ANY($1)`, [
      [ahead1, ahead2],
    ]);
    assert.equal(await newConsumer(stream, 'p2').pruneInbox(), 2);
    assert.equal(await inboxCount('p2', [ahead1, ahead2]), 2, 'their entries may still be in the stream');
  });

  test('one consumer of a group prunes at a time: another one skips while the lock is held', async () => {
    const stream = `test.prune.${randomBytes(4).toString('hex')}.v1`;
    const ids = await applied(stream, 'p3', 6);
    await backdate(ids, 10);
    await redis.cli(['XTRIM', stream, 'MAXLEN', '0']);
    const [first, second] = [newConsumer(stream, 'p3'), newConsumer(stream, 'p3')] as [
      OutboxConsumer,
      OutboxConsumer,
    ];
    // A session that holds the group's prune lock, as a consumer does during its pass.
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      const [lock] = (await holder.query(tryPruneLockQuery(['event_inbox', 'p3']))).rows as {
        locked: boolean;
      }[];
      assert.equal(lock?.locked, true);
      assert.deepEqual(await Promise.all([first.pruneInbox(), second.pruneInbox()]), [undefined, undefined]);
      assert.equal(await inboxCount('p3'), 6, 'nothing deleted while another holds the lock');
      await holder.query(unlockPruneQuery(['event_inbox', 'p3']));
    } finally {
      await holder.end();
    }
    // Two at once: the lock lets one through; the other skips or, once the first released it, finds nothing.
    const results = await Promise.all([first.pruneInbox(), second.pruneInbox()]);
    assert.equal(
      results.reduce<number>((total, rows) => total + (rows ?? 0), 0),
      6,
      `${JSON.stringify(results)}: the rows were deleted once`,
    );
    assert.equal(await inboxCount('p3'), 0);
    // Each pass released the lock: a third session can take it.
    const [free] = (await db.pool.query(tryPruneLockQuery(['event_inbox', 'p3']))).rows as {
      locked: boolean;
    }[];
    assert.equal(free?.locked, true);
    await db.pool.query(unlockPruneQuery(['event_inbox', 'p3']));
  });

  test('a running consumer prunes every interval and counts the rows; retention 0 prunes nothing', async () => {
    const stream = `test.prune.${randomBytes(4).toString('hex')}.v1`;
    const ids = await applied(stream, 'p4', 3);
    await backdate(ids, 8);
    await redis.cli(['XTRIM', stream, 'MAXLEN', '0']);

    const keeper = newConsumer(stream, 'p4', { inboxRetentionSeconds: 0, inboxPruneIntervalMs: 100 });
    keeper.start();
    assert.equal(await keeper.pruneInbox(), undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await inboxCount('p4'), 3, 'retention 0 keeps every row');

    const pruner = newConsumer(stream, 'p4', { inboxPruneIntervalMs: 100 });
    const registry = new Registry();
    registerConsumerMetrics({ registry, consumers: [pruner] });
    pruner.start();
    await waitFor('the periodic pass', async () => (await inboxCount('p4')) === 0, 5000);
    const text = await registry.metrics();
    assert.match(text, /^outbox_consumer_inbox_pruned_total\{group="p4"\} 3$/m);
  });
});
