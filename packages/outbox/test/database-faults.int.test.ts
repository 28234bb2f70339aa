import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { freePort, type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import type { PublishableEvent, Publisher, PublishOutcome } from '../src/publisher.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay, type RelayEvents } from '../src/relay.ts';
import { assertDelivered, writeWorkload } from './delivery.ts';
import { createOutboxDatabase, type OutboxDatabase, readStream } from './support.ts';

const TYPES = ['test.dbfault.a.v1', 'test.dbfault.b.v1'];

type Fault = RelayEvents['fault'][0];

/**
 * A loopback TCP proxy in front of PostgreSQL that the test can cut: while down it resets every
 * connection and refuses new ones, which is what a relay sees when the database host goes away.
 */
class CuttableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  static async start(target: { host: string; port: number }): Promise<CuttableProxy> {
    const proxy = new CuttableProxy(await freePort(), target);
    await proxy.up();
    return proxy;
  }

  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = createConnection(this.target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => {
          this.sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.server = server;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.resetAndDestroy();
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Counts how often each event was acknowledged by Redis: more than once means the relay lost its mark. */
class CountingPublisher implements Publisher {
  constructor(
    private readonly inner: Publisher,
    readonly acks: Map<string, number>,
  ) {}
  async publish(
    events: readonly PublishableEvent[],
    options?: Parameters<Publisher['publish']>[1],
  ): Promise<PublishOutcome[]> {
    const outcomes = await this.inner.publish(events, options);
    outcomes.forEach((outcome, index) => {
      const id = events[index]?.eventId ?? '';
      if (outcome.status === 'published') this.acks.set(id, (this.acks.get(id) ?? 0) + 1);
    });
    return outcomes;
  }
  confirm(events: readonly { eventId: string; stream: string }[]): Promise<void> {
    return this.inner.confirm(events);
  }
  check(...args: Parameters<Publisher['check']>) {
    return this.inner.check(...args);
  }
  stream(type: string): string {
    return this.inner.stream(type);
  }
  ping(): Promise<boolean> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('relay and PostgreSQL failures', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  const running: OutboxRelay[] = [];
  const acks = new Map<string, number>();

  function startRelay(connectionString: string): {
    relay: OutboxRelay;
    faults: Fault[];
    stoppedEarly: boolean[];
  } {
    const publisher = new CountingPublisher(
      new RedisStreamsPublisher({ url: redis.url, timeoutMs: 2000 }),
      acks,
    );
    const relay = new OutboxRelay({
      connectionString,
      publisher,
      batchSize: 100,
      pollIntervalMs: 100,
      rebalanceIntervalMs: 100,
      outageBackoff: { initialMs: 20, maxMs: 300 },
    });
    const faults: Fault[] = [];
    const stoppedEarly: boolean[] = [];
    relay.on('fault', (fault) => faults.push(fault));
    relay.on('running', ({ running: isRunning }) => {
      if (!isRunning) {
        stoppedEarly.push(running.includes(relay));
        void publisher.close();
      }
    });
    running.push(relay);
    relay.start();
    return { relay, faults, stoppedEarly };
  }

  async function stopAll(): Promise<void> {
    const relays = running.splice(0);
    await Promise.all(relays.map((relay) => relay.stop()));
  }

  const unpublished = async (prefix: string) =>
    (
      await db.pool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM event_outbox WHERE aggregate_id LIKE $1 AND status <> 'PUBLISHED'",
        [prefix],
      )
    ).rows[0]?.n ?? 0;

  before(async () => {
    db = await createOutboxDatabase();
    redis = await startRedisServer();
  });
  after(async () => {
    await stopAll();
    await redis.kill();
    await db.drop();
  });

  test('relay sessions killed with pg_terminate_backend while events flow: no loss, no duplicate, order kept, no crash', async (t) => {
    const relays = [startRelay(db.url), startRelay(db.url)];
    const aggregates = 150;
    const perAggregate = 20;
    // How many events Redis acknowledged twice: a kill landed between a publish and its mark, and the
    // dedupe answered the second publish. That window is the point of the test, so rounds go on until a
    // kill has landed in it (bounded: a round is 3,000 events).
    const again = () => [...acks.values()].filter((n) => n > 1).length;
    const MAX_ROUNDS = 5;
    const rounds: { prefix: string; total: number }[] = [];
    let terminated = 0;
    for (let round = 1; round <= MAX_ROUNDS && (round === 1 || again() === 0); round++) {
      const prefix = `term${round}`;
      const done = new AbortController();
      const workload = writeWorkload({
        pool: db.pool,
        prefix,
        types: TYPES,
        aggregates,
        eventsPerAggregate: perAggregate,
        writers: 4,
        pauseMs: 5,
      });
      // Kill a relay session every 100-300 ms until the writers are done: some land mid-batch, between
      // claim, publish and mark.
      const killer = (async () => {
        while (!done.signal.aborted) {
          await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 200));
          const result = await db.pool.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity
             WHERE application_name = 'outbox-relay' AND datname = current_database()
             ORDER BY random() LIMIT 1`,
          );
          const pid = result.rows[0]?.pid;
          if (pid === undefined) continue;
          await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
          terminated++;
        }
      })();
      const total = await workload;
      done.abort();
      await killer;
      assert.equal(total, aggregates * perAggregate);
      rounds.push({ prefix, total });
      await waitFor(
        `round ${round} all published after the kills`,
        async () => (await unpublished(`${prefix}-%`)) === 0,
        60_000,
      );
      t.diagnostic(
        `round ${round}: ${terminated} sessions killed so far; ${again()} events acknowledged twice`,
      );
    }
    assert.ok(terminated >= 3, `terminated ${terminated} relay sessions`);
    assert.ok(
      again() > 0,
      `no kill landed between a publish and its mark in ${rounds.length} rounds: the dedupe went untested`,
    );

    for (const { relay, stoppedEarly } of relays) {
      assert.equal(relay.running, true, 'the relay survived');
      assert.deepEqual(stoppedEarly, [], 'the relay never stopped by itself');
    }
    const databaseFaults = relays.flatMap(({ faults }) => faults).filter((f) => f.kind === 'database');
    assert.ok(databaseFaults.length >= 1, 'killed sessions are reported as database faults');
    assert.ok(
      relays.every(({ faults }) => faults.every((f) => f.kind === 'database')),
      'nothing else went wrong',
    );
    await stopAll();

    for (const { prefix, total } of rounds) {
      await assertDelivered({
        pool: db.pool,
        read: (stream) => readStream(redis.url, stream),
        aggregateLike: `${prefix}-%`,
        expected: total,
      });
    }
    t.diagnostic(
      `${terminated} sessions killed in ${rounds.length} rounds; ${again()} events acknowledged twice by Redis, once in the stream`,
    );
  });

  test('PostgreSQL unreachable for a while: the relay backs off without crashing and drains once it is back', async () => {
    const server = new URL(db.url);
    const proxy = await CuttableProxy.start({ host: server.hostname, port: Number(server.port || 5432) });
    const viaProxy = new URL(db.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    try {
      const { relay, faults, stoppedEarly } = startRelay(viaProxy.toString());
      const before = await writeWorkload({
        pool: db.pool,
        prefix: 'cut1',
        types: TYPES,
        aggregates: 20,
        eventsPerAggregate: 5,
        writers: 2,
      });
      await waitFor('published before the cut', async () => (await unpublished('cut1-%')) === 0, 10_000);

      await proxy.down();
      // Written while the relay cannot reach the database (the test's pool goes around the proxy).
      const total = await writeWorkload({
        pool: db.pool,
        prefix: 'cut2',
        types: TYPES,
        aggregates: 50,
        eventsPerAggregate: 10,
        writers: 2,
      });
      const faultsBefore = faults.length;
      await waitFor('the relay retrying while cut off', () => faults.length >= faultsBefore + 3, 10_000);
      assert.equal(await unpublished('cut2-%'), total, 'nothing published without the database');
      assert.ok(faults.every((f) => f.kind === 'database'));
      assert.equal(relay.running, true);

      await proxy.up();
      await waitFor(
        'drained after the database came back',
        async () => (await unpublished('cut2-%')) === 0,
        20_000,
      );
      assert.deepEqual(stoppedEarly, []);
      await stopAll();
      for (const [prefix, expected] of [
        ['cut1-%', before],
        ['cut2-%', total],
      ] as const) {
        await assertDelivered({
          pool: db.pool,
          read: (stream) => readStream(redis.url, stream),
          aggregateLike: prefix,
          expected,
        });
      }
      assert.deepEqual([before, total], [100, 500], 'the workloads wrote what they planned');
    } finally {
      await stopAll();
      await proxy.down();
    }
  });
});
