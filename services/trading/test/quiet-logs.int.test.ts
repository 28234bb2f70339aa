// The relay's logs during real outages, under a steady write load: Redis refusing every write (OOM, a
// throwaway redis-server with maxmemory 1) and the database unreachable (the relay's connections go
// through a TCP proxy of this test, which drops them and refuses new ones). Each outage must cost a
// few lines (it began, still going every LOG_OUTAGE_SUMMARY_SECONDS, it ended with counts and duration),
// not one per failed attempt.

import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createOutboxWriter, type OutboxRelay } from '@astra/outbox';
import { type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import { pino } from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { createPool } from '../src/database.ts';
import { createApiKey } from '../src/http/auth.ts';
import { createRelay } from '../src/outbox.ts';
import { createTestDatabase, type TestDatabase } from './support.ts';

const SUMMARY_SECONDS = 2;

interface LogLine {
  level: number;
  msg: string;
  time: number;
  [field: string]: unknown;
}

/** A TCP proxy to PostgreSQL that the test can take down (dropping every connection) and bring back. */
class DatabaseProxy {
  private readonly sockets = new Set<Socket>();
  private down = false;
  private constructor(private readonly server: Server) {}

  static async start(target: URL): Promise<DatabaseProxy> {
    const server = createServer();
    const proxy = new DatabaseProxy(server);
    server.on('connection', (client) => {
      if (proxy.down) {
        client.destroy();
        return;
      }
      const upstream = connect(Number(target.port || 5432), target.hostname);
      for (const socket of [client, upstream]) {
        proxy.sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => {
          proxy.sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  setDown(down: boolean): void {
    this.down = down;
    if (down) for (const socket of this.sockets) socket.destroy();
  }

  close(): Promise<void> {
    this.setDown(true);
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('relay logs during outages', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  let redis: RedisServer;
  let proxy: DatabaseProxy;
  let relay: OutboxRelay;
  const lines: LogLine[] = [];
  const faults = { broker: 0, database: 0, event: 0 };
  let writing = true;
  let load: Promise<void> = Promise.resolve();

  before(async () => {
    db = await createTestDatabase();
    redis = await startRedisServer();
    proxy = await DatabaseProxy.start(new URL(db.url));
    const viaProxy = new URL(db.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const config = loadConfig({
      DATABASE_URL: viaProxy.toString(),
      REDIS_URL: redis.url,
      RELAY_POLL_INTERVAL_MS: '50',
      LOG_OUTAGE_SUMMARY_SECONDS: String(SUMMARY_SECONDS),
    });
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => lines.push(JSON.parse(line) as LogLine) },
    );
    relay = createRelay(config, logger);
    relay.on('fault', ({ kind }) => faults[kind]++);
    relay.start();
    // Events written all along, a few hundred a second, as trades would.
    const writer = createOutboxWriter({ source: '/test/quiet-logs' });
    load = (async () => {
      for (let i = 0; writing; i++) {
        await writer.write(db.pool, [
          { type: 'quiet.logs.v1', aggregateType: 'thing', aggregateId: `a${i % 50}`, data: { i } },
        ]);
        relay.wake();
        await new Promise((resolve) => setTimeout(resolve, 3));
      }
    })();
  });

  after(async () => {
    writing = false;
    await load.catch(() => {});
    await relay?.stop();
    await proxy?.close();
    await redis?.kill();
    await db?.drop();
  });

  /** Lines logged from `from` on, and a check of how many an outage of `elapsedMs` may write. */
  const linesSince = (from: number) => lines.filter((line) => line.time >= from);
  const allowed = (elapsedMs: number) =>
    // Began, ended, a summary per interval (one more for a tick landing on both ends), and a
    // 'relay partitions' line if ownership changes hands on reconnection.
    2 + Math.ceil(elapsedMs / (SUMMARY_SECONDS * 1000)) + 1 + 2;

  test('Redis refusing every write (OOM) under load: a few lines, not one per attempt', async () => {
    await waitFor(
      'the broker back and the relay partitions logged',
      async () => faults.broker === 0 && lines.some((l) => l.msg === 'relay partitions'),
      15_000,
    );
    const from = Date.now();
    const before = faults.broker;
    await redis.cli(['CONFIG', 'SET', 'maxmemory', '1']);
    // Enough failed attempts to have flooded the old logs (a line each).
    await waitFor('50 failed publish attempts', () => faults.broker - before >= 50, 60_000);
    await redis.cli(['CONFIG', 'SET', 'maxmemory', '0']);
    await waitFor(
      'the recovery line',
      () => lines.some((line) => line.time >= from && line.msg === 'Redis reachable again'),
      30_000,
    );
    const elapsed = Date.now() - from;
    const logged = linesSince(from);
    const attempts = faults.broker - before;
    assert.ok(
      logged.length <= allowed(elapsed),
      `${logged.length} lines for ${attempts} failed attempts in ${elapsed} ms:\n${logged.map((l) => l.msg).join('\n')}`,
    );
    assert.ok(logged.length * 10 < attempts, `${logged.length} lines for ${attempts} attempts`);
    const began = logged.filter((line) => line.msg.startsWith('Redis unreachable'));
    assert.equal(began.length, 1, 'one line when the outage begins');
    // The whole error, stack included: its message names the refusal.
    assert.match(JSON.stringify(began[0]?.err), /OOM/);
    const ended = logged.find((line) => line.msg === 'Redis reachable again');
    assert.ok(Number(ended?.failedAttempts) >= attempts, JSON.stringify(ended));
    assert.ok(Number(ended?.downForMs) > 0, JSON.stringify(ended));
    // The summaries while it lasted say it still goes on, with counts.
    for (const line of logged.filter((l) => l.msg === 'Redis still unreachable'))
      assert.ok(Number(line.totalFailedAttempts) > 0 && Number(line.downForMs) > 0, JSON.stringify(line));
  });

  test('the database unreachable under load: a few lines, not one per attempt', async () => {
    const from = Date.now();
    const before = faults.database;
    proxy.setDown(true);
    await waitFor('8 failed database attempts', () => faults.database - before >= 8, 60_000);
    proxy.setDown(false);
    await waitFor(
      'the recovery line',
      () => lines.some((line) => line.time >= from && line.msg === 'the database reachable again'),
      30_000,
    );
    const elapsed = Date.now() - from;
    const logged = linesSince(from);
    const attempts = faults.database - before;
    assert.ok(
      logged.length <= allowed(elapsed),
      `${logged.length} lines for ${attempts} failed attempts in ${elapsed} ms:\n${logged.map((l) => l.msg).join('\n')}`,
    );
    assert.equal(logged.filter((line) => line.msg.startsWith('the database unreachable')).length, 1);
    const ended = logged.find((line) => line.msg === 'the database reachable again');
    assert.ok(Number(ended?.failedAttempts) >= attempts, JSON.stringify(ended));
    assert.ok(Number(ended?.downForMs) > 0, JSON.stringify(ended));
    // Nothing was lost on the way: the events written during both outages are published.
    writing = false;
    await load;
    await waitFor(
      'every event published',
      async () =>
        (await db.pool.query(`SELECT 1 FROM event_outbox WHERE status <> 'PUBLISHED' LIMIT 1`)).rowCount ===
        0,
      60_000,
    );
  });
});

describe('HTTP service logs during a database outage', { timeout: 60_000 }, () => {
  test('every request fails with 503, and the outage costs a few lines, not one per request', async () => {
    const db = await createTestDatabase();
    const proxy = await DatabaseProxy.start(new URL(db.url));
    const viaProxy = new URL(db.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const pool = createPool(viaProxy.toString(), 4);
    const lines: LogLine[] = [];
    const logger = pino(
      { level: 'info' },
      { write: (line: string) => lines.push(JSON.parse(line) as LogLine) },
    );
    const app = await buildApp({ pool, eventSource: '/test/quiet-logs', logger, outageSummaryMs: 60_000 });
    try {
      const authorization = `Bearer ${await createApiKey(db.pool, 'alice', false)}`;
      const get = () =>
        app.inject({ method: 'GET', url: '/v1/accounts/alice/positions', headers: { authorization } });
      assert.equal((await get()).statusCode, 200);
      const from = lines.length;
      proxy.setDown(true);
      const statuses = new Map<number, number>();
      for (let i = 0; i < 200; i++) {
        const { statusCode } = await get();
        statuses.set(statusCode, (statuses.get(statusCode) ?? 0) + 1);
      }
      assert.deepEqual(Object.fromEntries(statuses), { 503: 200 });
      proxy.setDown(false);
      await waitFor('the database back', async () => (await get()).statusCode === 200, 20_000);
      const logged = lines.slice(from);
      assert.deepEqual(
        logged.map((line) => line.msg),
        [
          'the database unreachable: requests that need it fail with 503; further failures are summarised',
          'the database reachable again',
        ],
      );
      assert.ok(Number(logged[1]?.failedAttempts) >= 200, JSON.stringify(logged[1]));
    } finally {
      await app.close();
      await pool.end();
      await proxy.close();
      await db.drop();
    }
  });
});
