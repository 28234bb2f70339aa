import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import { createClient } from '@redis/client';
import type pg from 'pg';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay, type RelayEvents, type RelayOptions } from '../src/relay.ts';
import { createOutboxWriter, type NewEvent } from '../src/writer.ts';
import { assertDelivered } from './delivery.ts';
import { createOutboxDatabase, type OutboxDatabase, readStream, waitAllPublished } from './support.ts';

/**
 * Each of the relay's mechanisms on its own. Elsewhere relays poll every 100 ms and rebalance every
 * 200 ms or less, so a broken LISTEN and a broken poll would hide each other: here a relay either
 * polls once a minute and can only be woken by NOTIFY, or hears no NOTIFY and can only poll. Then the
 * broker errors the publisher treats as transient, each provoked for real on a redis-server of the
 * test's own: no attempt is spent, nothing turns FAILED, and everything goes out once when it heals.
 */

type Fault = RelayEvents['fault'][0];

const notifying = createOutboxWriter({ source: '/test' });
const silent = createOutboxWriter({ source: '/test', notify: false });

async function write(pool: pg.Pool, events: NewEvent[], writer = notifying): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await writer.write(client, events);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

/** `perAggregate` events with seq 1.. for each of `aggregates` aggregates, one transaction per round. */
async function writeRounds(
  pool: pg.Pool,
  type: string,
  prefix: string,
  aggregates: number,
  perAggregate: number,
  writer = notifying,
): Promise<number> {
  for (let seq = 1; seq <= perAggregate; seq++) {
    const events = Array.from({ length: aggregates }, (_, i) => ({
      type,
      aggregateType: 'thing',
      aggregateId: `${prefix}-${i}`,
      data: { aggregateId: `${prefix}-${i}`, seq },
    }));
    await write(pool, events, writer);
  }
  return aggregates * perAggregate;
}

async function statuses(pool: pg.Pool, prefix: string): Promise<{ status: string; attempts: number }[]> {
  const result = await pool.query<{ status: string; attempts: number }>(
    'SELECT status, attempts FROM event_outbox WHERE aggregate_id LIKE $1 ORDER BY id',
    [`${prefix}-%`],
  );
  return result.rows;
}

describe('relay mechanisms, each alone', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  const relays: OutboxRelay[] = [];

  function startRelay(options: Partial<RelayOptions>): OutboxRelay {
    const publisher = new RedisStreamsPublisher({ url: redis.url, timeoutMs: 2000 });
    const relay = new OutboxRelay({ connectionString: db.url, publisher, ...options });
    relay.on('running', ({ running }) => {
      if (!running) void publisher.close();
    });
    relays.push(relay);
    relay.start();
    return relay;
  }

  before(async () => {
    db = await createOutboxDatabase();
    redis = await startRedisServer();
  });
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((relay) => relay.stop()));
  });
  after(async () => {
    await redis?.kill();
    await db?.drop();
  });

  /** Waits until the relay has made its first look at the table (which publishes `warmup`). */
  async function settle(relay: OutboxRelay, type: string, prefix: string, writer = notifying): Promise<void> {
    await waitFor('the relay owning every partition', () => relay.ownsAllPartitions, 20_000);
    await write(
      db.pool,
      [{ type, aggregateType: 'thing', aggregateId: `${prefix}-warmup`, data: { seq: 1 } }],
      writer,
    );
    // Whatever way it gets out, the relay is past its first look once it has.
    await waitAllPublished(db.pool, `aggregate_id = '${prefix}-warmup'`, 'the warm-up event', 70_000);
    // Let the relay finish that round and go to sleep until its next wake-up.
    await new Promise((resolve) => setTimeout(resolve, 500));
  }

  test('LISTEN/NOTIFY alone: with polls and rebalances a minute apart, NOTIFY gets every event out', async () => {
    const type = 'test.mech.listen.v1';
    const relay = startRelay({ listen: true, pollIntervalMs: 60_000, rebalanceIntervalMs: 60_000 });
    await settle(relay, type, 'listen');
    // Several commits, each its own NOTIFY; the relay sleeps between them.
    let total = 0;
    for (let round = 0; round < 3; round++) {
      total += await writeRounds(db.pool, type, `listen-r${round}`, 5, 2);
      // Far below the minute-long poll: only a NOTIFY can have woken the relay in time.
      await waitAllPublished(
        db.pool,
        `aggregate_id LIKE 'listen-r${round}-%'`,
        `round ${round} published`,
        30_000,
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    await assertDelivered({
      pool: db.pool,
      read: (stream) => readStream(redis.url, stream),
      aggregateLike: 'listen-r%',
      expected: total,
    });
  });

  test('polling alone: with no NOTIFY sent, no LISTEN and no waker, the poll gets every event out', async () => {
    const type = 'test.mech.poll.v1';
    // The writer sends no NOTIFY and the relay does not LISTEN: its poll is the only way to new events.
    const relay = startRelay({ listen: false, pollIntervalMs: 300, rebalanceIntervalMs: 60_000 });
    await settle(relay, type, 'poll', silent);
    let total = 0;
    for (let round = 0; round < 3; round++) {
      total += await writeRounds(db.pool, type, `poll-r${round}`, 5, 2, silent);
      await waitAllPublished(
        db.pool,
        `aggregate_id LIKE 'poll-r${round}-%'`,
        `round ${round} published`,
        30_000,
      );
    }
    await assertDelivered({
      pool: db.pool,
      read: (stream) => readStream(redis.url, stream),
      aggregateLike: 'poll-r%',
      expected: total,
    });
    // No session of this database listens: the events above owe nothing to NOTIFY.
    const listening = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = current_database() AND query ILIKE 'LISTEN%'`,
    );
    assert.deepEqual(listening.rows, [{ n: 0 }]);
  });
});

/**
 * A broker error class, provoked for real: `provoke` breaks the broker (it returns a description of
 * the error the relay must have seen), `heal` mends it. Events written while it is broken must stay
 * PENDING with no attempt spent (maxAttempts 2 would turn them FAILED after two counted attempts),
 * then all go out once, in order, after it heals.
 */
interface BrokerFault {
  /** The Redis URL the relay publishes to. */
  url: string;
  /** Matches the error the relay reports while the fault lasts. */
  error: RegExp;
  provoke(): Promise<void>;
  heal(): Promise<void>;
  /** Where to read the streams after healing. @defaultValue url */
  readUrl?: string;
}

describe('broker errors the publisher treats as transient', () => {
  let db: OutboxDatabase;
  const cleanups: (() => Promise<void>)[] = [];

  before(async () => {
    db = await createOutboxDatabase();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });
  after(async () => {
    await db?.drop();
  });

  async function throughOutage(prefix: string, fault: BrokerFault): Promise<void> {
    const type = `test.transient.${prefix}.v1`;
    const publisher = new RedisStreamsPublisher({ url: fault.url, timeoutMs: 500 });
    const relay = new OutboxRelay({
      connectionString: db.url,
      publisher,
      maxAttempts: 2,
      retryBackoff: { initialMs: 10, maxMs: 20 },
      pollIntervalMs: 100,
      rebalanceIntervalMs: 200,
      outageBackoff: { initialMs: 20, maxMs: 200 },
    });
    const faults: Fault[] = [];
    const failed: string[] = [];
    relay.on('fault', (f) => faults.push(f));
    relay.on('failed', ({ rowIds }) => failed.push(...rowIds));
    cleanups.push(async () => {
      await relay.stop();
      await publisher.close();
    });
    relay.start();
    await waitFor('the relay owning every partition', () => relay.ownsAllPartitions, 20_000);

    await fault.provoke();
    const total = await writeRounds(db.pool, type, prefix, 4, 3);
    // The relay must really have met this error class on these events (a counted attempt would show
    // as attempts 1 below, two as FAILED), and found the broker down.
    await waitFor(
      `a broker fault matching ${fault.error}`,
      () => faults.some((f) => f.kind === 'broker' && fault.error.test(f.error.message)) && !relay.isBrokerUp,
      30_000,
    );
    // Let it keep failing for a while: retries must not spend attempts either.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const during = await statuses(db.pool, prefix);
    assert.equal(during.length, total);
    assert.deepEqual(
      during.filter((row) => row.status !== 'PENDING' || row.attempts !== 0),
      [],
      'PENDING with no attempt spent while the broker is broken',
    );
    assert.ok(
      faults.every((f) => f.kind !== 'event'),
      `no event-level refusal: ${faults.find((f) => f.kind === 'event')?.error.message}`,
    );

    await fault.heal();
    await waitAllPublished(db.pool, `aggregate_id LIKE '${prefix}-%'`, 'drained after healing', 60_000);
    await relay.stop();
    assert.deepEqual(failed, [], 'nothing turned FAILED');
    const after = await statuses(db.pool, prefix);
    assert.deepEqual(
      after.filter((row) => row.status !== 'PUBLISHED' || row.attempts !== 0),
      [],
      'all PUBLISHED, attempts still 0',
    );
    await assertDelivered({
      pool: db.pool,
      read: (stream) => readStream(fault.readUrl ?? fault.url, stream),
      aggregateLike: `${prefix}-%`,
      expected: total,
    });
  }

  async function ownRedis(args: string[] = []): Promise<RedisServer> {
    const redis = await startRedisServer({ args });
    cleanups.push(() => redis.kill());
    return redis;
  }

  test('OOM: Redis at its maxmemory refuses writes', async () => {
    const redis = await ownRedis(['--maxmemory-policy', 'noeviction']);
    await throughOutage('oom', {
      url: redis.url,
      error: /^OOM\b/,
      // Any write now exceeds the limit; reads and PING still answer.
      provoke: async () => {
        await redis.cli(['CONFIG', 'SET', 'maxmemory', '1']);
      },
      heal: async () => {
        await redis.cli(['CONFIG', 'SET', 'maxmemory', '0']);
      },
    });
  });

  test('READONLY: the relay is pointed at a replica until it is promoted', async () => {
    // A replica writes the primary's snapshot to its --dir: a temporary one, never the working tree.
    const dir = await mkdtemp(join(tmpdir(), 'outbox-replica-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const primary = await ownRedis(['--dir', dir, '--dbfilename', 'primary.rdb']);
    const replica = await ownRedis(['--dir', dir, '--replicaof', '127.0.0.1', String(primary.port)]);
    await waitFor(
      'the replica in sync',
      async () => (await replica.cli(['INFO', 'replication'])).includes('master_link_status:up'),
      20_000,
    );
    await throughOutage('readonly', {
      url: replica.url,
      error: /^READONLY\b/,
      provoke: async () => {},
      // Promoted (as a failover would), it takes writes.
      heal: async () => {
        await replica.cli(['REPLICAOF', 'NO', 'ONE']);
      },
    });
  });

  test('a hung Redis (SIGSTOP): calls time out; after SIGCONT everything goes out once', async () => {
    const redis = await ownRedis();
    cleanups.push(async () => redis.signal('SIGCONT'));
    await throughOutage('hung', {
      url: redis.url,
      // The publisher's own timeout, or a connection it gave up on.
      error: /./,
      provoke: async () => redis.signal('SIGSTOP'),
      heal: async () => redis.signal('SIGCONT'),
    });
  });

  test('LOADING: Redis loading a large dataset at start answers LOADING until it is done', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'outbox-loading-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    // The dir is kept, so a restart loads the dataset saved there: at 50 µs per key, for long enough to
    // be met many times. It answers (LOADING) between chunks of the file: small chunks, so it answers
    // at once. Neither setting matters to the first start, which has nothing to load.
    const redis = await startRedisServer({
      dir,
      args: ['--key-load-delay', '50', '--loading-process-events-interval-bytes', '1024'],
      // A restart is ready (answers PONG) only once the whole dataset is loaded.
      readyTimeoutMs: 120_000,
    });
    cleanups.push(() => redis.kill());
    // redis-cli's answer whatever its exit code (an error reply such as LOADING is an answer here).
    const ping = async () =>
      spawnSync('redis-cli', ['-p', String(redis.port), 'PING'], {
        encoding: 'utf8',
        timeout: 5000,
      }).stdout.trim();

    // A dataset of 200,000 keys, saved once to dump.rdb (an explicit SAVE: no automatic snapshots).
    const filler = createClient({ url: redis.url });
    filler.on('error', () => {});
    await filler.connect();
    try {
      for (let batch = 0; batch < 200; batch++) {
        const pairs: string[] = [];
        for (let i = 0; i < 1000; i++) pairs.push(`filler:${batch}:${i}`, 'x');
        await filler.mSet(pairs);
      }
      await filler.sendCommand(['SAVE']);
    } finally {
      filler.destroy();
    }
    await redis.kill();

    let loaded: Promise<void> = Promise.resolve();
    await throughOutage('loading', {
      url: redis.url,
      error: /^LOADING\b/,
      provoke: async () => {
        loaded = redis.restart();
        // Awaited by heal; a failure before heal must not also surface as an unhandled rejection.
        loaded.catch(() => {});
        await waitFor('redis answering LOADING', async () => /LOADING/.test(await ping()), 10_000);
      },
      // It heals by itself when the load ends.
      heal: () => loaded,
    });
  });
});
