import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import type { StreamRepair } from '../src/recovery.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { OutboxRelay } from '../src/relay.ts';
import { assertDelivered, writeWorkload } from './delivery.ts';
import {
  createOutboxDatabase,
  freePort,
  type OutboxDatabase,
  readStream,
  runCommand,
  TestRedis,
  waitFor,
} from './support.ts';

const TYPES = ['test.sentinel.a.v1', 'test.sentinel.b.v1'];
const NAME = 'outbox-test';

/** A primary, two replicas and one Sentinel (quorum 1), all local and throwaway. */
class SentinelSet {
  private constructor(
    readonly primary: TestRedis,
    readonly replicas: TestRedis[],
    private readonly sentinel: ChildProcess,
    readonly sentinelPort: number,
    private readonly dir: string,
  ) {}

  static async start(): Promise<SentinelSet> {
    const primary = await TestRedis.start();
    const replicas = [
      await TestRedis.start(['--replicaof', '127.0.0.1', String(primary.port)]),
      await TestRedis.start(['--replicaof', '127.0.0.1', String(primary.port)]),
    ];
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'outbox-sentinel-'));
    const config = join(dir, 'sentinel.conf');
    // Sentinel rewrites its config file, so it gets its own writable copy.
    writeFileSync(
      config,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `sentinel monitor ${NAME} 127.0.0.1 ${primary.port} 1`,
        `sentinel down-after-milliseconds ${NAME} 1000`,
        `sentinel failover-timeout ${NAME} 5000`,
        '',
      ].join('\n'),
    );
    const sentinel = spawn('redis-server', [config, '--sentinel'], { stdio: 'ignore' });
    const set = new SentinelSet(primary, replicas, sentinel, port, dir);
    await waitFor(
      async () => (await set.sentinelCli(['SENTINEL', 'REPLICAS', NAME])).includes('slave'),
      20_000,
      'the sentinel seeing both replicas',
    );
    await waitFor(
      async () => (await primary.cli(['INFO', 'replication'])).includes('connected_slaves:2'),
      20_000,
      'both replicas in sync',
    );
    return set;
  }

  sentinelCli(args: string[]): Promise<string> {
    return runCommand('redis-cli', ['-p', String(this.sentinelPort), ...args]);
  }

  async primaryPort(): Promise<number> {
    const reply = await this.sentinelCli(['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', NAME]);
    return Number(reply.split('\n')[1]);
  }

  async stop(): Promise<void> {
    this.sentinel.kill('SIGKILL');
    if (this.sentinel.exitCode === null) await once(this.sentinel, 'exit');
    await Promise.all([this.primary, ...this.replicas].map((redis) => redis.kill()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

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
      async () => Number(await first.cli(['XLEN', TYPES[0] as string])) > 200,
      20_000,
      'publishing',
    );
    await first.kill('SIGKILL');
    await waitFor(async () => (await sentinelSet.primaryPort()) !== first.port, 30_000, 'the failover');
    const written = await workload;
    const port = await sentinelSet.primaryPort();
    const url = `redis://127.0.0.1:${port}`;
    await waitFor(
      async () =>
        (await db.pool.query("SELECT 1 FROM event_outbox WHERE status <> 'PUBLISHED'")).rowCount === 0,
      60_000,
      'every event published after the failover',
    );
    await waitFor(
      () =>
        assertDelivered({
          pool: db.pool,
          read: (s) => readStream(url, s),
          aggregateLike: `${prefix}-%`,
          expected: written,
        }).then(() => true),
      30_000,
      'every event in the new primary once, in order',
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
    const primary = await TestRedis.start();
    const replica = await TestRedis.start(['--replicaof', '127.0.0.1', String(primary.port)]);
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
        async () => (await primary.cli(['INFO', 'replication'])).includes('connected_slaves:1'),
        20_000,
        'the replica in sync',
      );
      const [refused] = await tooMany.publish([event], { fence });
      assert.equal(refused?.status, 'unavailable');
      assert.match(refused?.status === 'unavailable' ? refused.error : '', /WAIT: 1 of 2 replicas/);
      const [published] = await enough.publish([event], { fence });
      assert.equal(published?.status, 'published');
      assert.equal(await primary.cli(['XLEN', 'test.wait.v1']), '1', 'the retry was answered by the journal');
      assert.equal(await replica.cli(['XLEN', 'test.wait.v1']), '1', 'and the replica holds the entry');
    } finally {
      await Promise.all([tooMany.close(), enough.close()]);
      await Promise.all([primary.kill(), replica.kill()]);
    }
  });
});
