import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import pg from 'pg';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay } from '../src/relay.ts';
import { createRelayWaker } from '../src/waker.ts';
import { createOutboxWriter } from '../src/writer.ts';
import { createOutboxDatabase, type OutboxDatabase, readStream } from './support.ts';

// The writer sends no NOTIFY of its own: wake-ups come from the waker alone.
const writer = createOutboxWriter({ source: '/test', notify: false });
const CHANNEL = 'event_outbox';

/** Notifications on the outbox channel, as a LISTENing relay receives them. */
class ChannelListener {
  readonly payloads: string[] = [];
  private constructor(private readonly client: pg.Client) {}

  static async start(url: string): Promise<ChannelListener> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const listener = new ChannelListener(client);
    client.on('notification', (message) => listener.payloads.push(message.payload ?? ''));
    await client.query(`LISTEN ${CHANNEL}`);
    return listener;
  }

  /**
   * Everything notified before now: PostgreSQL delivers notifications in commit order, so once our
   * own marker arrives, every earlier NOTIFY has arrived too.
   */
  async received(db: pg.Pool): Promise<string[]> {
    const marker = `marker-${this.payloads.length}-${Date.now()}`;
    await db.query('SELECT pg_notify($1, $2)', [CHANNEL, marker]);
    await waitFor(`the ${marker} notification`, () => this.payloads.includes(marker), 5000);
    return this.payloads.slice(0, this.payloads.indexOf(marker)).filter((p) => !p.startsWith('marker-'));
  }

  async stop(): Promise<void> {
    await this.client.end();
  }
}

describe('createRelayWaker with a relay in the writer process', () => {
  let db: OutboxDatabase;
  let redis: RedisServer;
  let wakePool: pg.Pool;
  const relays: OutboxRelay[] = [];

  /** A relay that polls once a minute; between rebalances it looks at the table only when woken. */
  function startRelay(listen: boolean, rebalanceIntervalMs: number): OutboxRelay {
    const publisher = new RedisStreamsPublisher({ url: redis.url });
    const relay = new OutboxRelay({
      connectionString: db.url,
      publisher,
      listen,
      pollIntervalMs: 60_000,
      rebalanceIntervalMs,
    });
    relay.on('running', ({ running }) => {
      if (!running) void publisher.close();
    });
    relays.push(relay);
    relay.start();
    return relay;
  }

  async function writeEvent(aggregateId: string, type: string): Promise<void> {
    await writer.write(db.pool, [{ type, aggregateType: 'thing', aggregateId, data: { aggregateId } }]);
  }

  before(async () => {
    db = await createOutboxDatabase();
    redis = await startRedisServer();
    wakePool = new pg.Pool({ connectionString: db.url, max: 1 });
    // Its sockets may still be closing when the database is dropped (brianc/node-postgres#2328).
    wakePool.on('error', () => {});
    // Connected up front, so a wake-up's NOTIFY is not still connecting when a test counts NOTIFYs.
    await wakePool.query('SELECT 1');
  });
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((relay) => relay.stop()));
  });
  after(async () => {
    await wakePool.end();
    await redis.kill();
    await db.drop();
  });

  test('the only relay is woken by a call: the event goes out with no NOTIFY sent', async () => {
    const relay = startRelay(false, 60_000);
    await waitFor('the relay to own every partition', () => relay.ownsAllPartitions, 5000);
    // Let the relay finish its first look at the table and settle into its minute-long poll.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const listener = await ChannelListener.start(db.url);
    try {
      const waker = createRelayWaker(wakePool, { localRelay: relay });
      await writeEvent('solo-1', 'test.waker.solo.v1');
      waker.wake();
      await waitFor(
        'the solo event on the stream',
        async () => (await readStream(redis.url, 'test.waker.solo.v1')).length === 1,
        5000,
      );
      assert.deepEqual(
        await listener.received(db.pool),
        [],
        'no NOTIFY while the local relay owns everything',
      );
    } finally {
      await listener.stop();
    }
  });

  test('while another relay shares the partitions, wake() sends the NOTIFY that wakes them all', async () => {
    // Quick rebalancing, so the two split the partitions within the test.
    const local = startRelay(true, 100);
    const other = startRelay(true, 100);
    await waitFor(
      'both relays to hold 32 partitions each',
      () => local.partitions.length === 32 && other.partitions.length === 32,
      10_000,
    );
    assert.equal(local.ownsAllPartitions, false);
    // An aggregate in a partition the other relay owns: only a NOTIFY can get it out within the test.
    const { rows } = await db.pool.query<{ aggregate_id: string }>(
      `SELECT 'shared-' || n AS aggregate_id FROM generate_series(1, 1000) AS n
       WHERE (hashtext('shared-' || n) & 63) = ANY($1::int[]) LIMIT 1`,
      [other.partitions],
    );
    const aggregateId = rows[0]?.aggregate_id;
    assert.ok(aggregateId !== undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const listener = await ChannelListener.start(db.url);
    try {
      const waker = createRelayWaker(wakePool, { localRelay: local });
      await writeEvent(aggregateId, 'test.waker.shared.v1');
      waker.wake();
      await waitFor(
        'the shared event on the stream',
        async () => (await readStream(redis.url, 'test.waker.shared.v1')).length === 1,
        5000,
      );
      // The other relay also looks at every rebalance, so the event can be out before the NOTIFY has
      // even arrived: wait for it, then count what came before our marker.
      await waitFor('a notification', () => listener.payloads.length > 0, 5000);
      assert.equal((await listener.received(db.pool)).length, 1, 'one NOTIFY for one wake()');
    } finally {
      await listener.stop();
    }
  });
});
