// The Prometheus adapter against a real PostgreSQL and Redis: the leader flag, the bounded status query
// and its error counter, and the oldest-age gauge that leaves out what a FAILED event holds back.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import { Registry } from 'prom-client';
import { OutboxAdmin } from '../src/admin.ts';
import { registerOutboxMetrics } from '../src/prometheus.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay } from '../src/relay.ts';
import { createOutboxWriter } from '../src/writer.ts';
import { createOutboxDatabase, type OutboxDatabase } from './support.ts';

/** Samples of one metric in the registry's text output, by their label text ('' for none). */
async function samples(registry: Registry, name: string): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for (const line of (await registry.metrics()).split('\n')) {
    const match = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`).exec(line);
    if (match) found.set(match[1] ?? '', Number(match[2]));
  }
  return found;
}

describe('registerOutboxMetrics with a real relay', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  let relay: OutboxRelay;
  let publisher: RedisStreamsPublisher;
  const registry = new Registry();

  before(async () => {
    db = await createOutboxDatabase();
    redis = await startRedisServer();
    publisher = new RedisStreamsPublisher({ url: redis.url });
    relay = new OutboxRelay({ connectionString: db.url, publisher, pollIntervalMs: 100 });
    registerOutboxMetrics({ registry, relay, admin: new OutboxAdmin(db.pool), statusTimeoutMs: 500 });
  });

  after(async () => {
    await relay?.stop();
    await publisher?.close();
    await redis?.kill();
    await db?.drop();
  });

  test('exports the leader flag and the table gauges once the relay leads', async () => {
    assert.equal((await samples(registry, 'outbox_relay_leader')).get(''), 0, 'not leading before start');
    assert.equal((await samples(registry, 'outbox_pending_events_total')).size, 0, 'no gauge before leading');
    relay.start();
    await waitFor(
      'leader',
      async () => (await samples(registry, 'outbox_relay_leader')).get('') === 1,
      10_000,
    );
    assert.equal((await samples(registry, 'outbox_pending_events_total')).get(''), 0);
    assert.equal((await samples(registry, 'outbox_status_query_errors_total')).get(''), 0);
  });

  test('a status query that outlasts its bound costs the gauges and counts an error, not the scrape', async () => {
    // Another session holds a lock the status query must wait for: a real slow query.
    const blocker = await db.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE event_outbox IN ACCESS EXCLUSIVE MODE');
      // Past the 1 s cache of the last good answer.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const text = await registry.metrics();
      assert.match(text, /^outbox_relay_running 1$/m, 'the rest of the scrape is there');
      assert.doesNotMatch(text, /^outbox_pending_events_total /m, 'no gauge from a query that timed out');
      assert.match(text, /^outbox_status_query_errors_total 1$/m);
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    await waitFor(
      'the gauges back once the lock is gone',
      async () => (await samples(registry, 'outbox_pending_events_total')).get('') === 0,
      10_000,
    );
  });

  test('the oldest-age gauge leaves out events held back by a FAILED event, which the FAILED gauge reports', async () => {
    await relay.stop();
    const writer = createOutboxWriter({ source: '/test' });
    await writer.write(db.pool, [
      { type: 'metrics.test', aggregateType: 'thing', aggregateId: 'blocked', data: { n: 1 } },
      { type: 'metrics.test', aggregateType: 'thing', aggregateId: 'blocked', data: { n: 2 } },
    ]);
    // The first event FAILED an hour ago; its successor waits behind it.
    await db.pool.query(
      `UPDATE event_outbox SET created_at = now() - interval '1 hour' WHERE aggregate_id = 'blocked'`,
    );
    await db.pool.query(
      `UPDATE event_outbox SET status = 'FAILED', attempts = 10
       WHERE id = (SELECT min(id) FROM event_outbox WHERE aggregate_id = 'blocked')`,
    );
    const admin = new OutboxAdmin(db.pool);
    const blocked = await admin.status();
    assert.deepEqual(
      [blocked.pending, blocked.failed, blocked.blockedAggregates, blocked.oldestPendingAgeSeconds],
      [1, 1, 1, 0],
    );
    // An unrelated event waiting 10 minutes is still seen.
    await writer.write(db.pool, [
      { type: 'metrics.test', aggregateType: 'thing', aggregateId: 'free', data: { n: 1 } },
    ]);
    await db.pool.query(
      `UPDATE event_outbox SET created_at = now() - interval '10 minutes' WHERE aggregate_id = 'free'`,
    );
    const age = (await admin.status()).oldestPendingAgeSeconds;
    assert.ok(age >= 600 && age < 3600, `oldest age ${age}`);
  });
});
