import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createOutboxWriter, type NewEvent } from '@astra/outbox';
import {
  freePort,
  type ManagedProcess,
  type RedisServer,
  spawnManaged,
  startRedisServer,
  waitFor,
} from '@astra/test-support';
import { createClient, type RedisClientType } from '@redis/client';
import { assertDelivered } from '../../../packages/outbox/test/delivery.ts';
import { readStream } from '../../../packages/outbox/test/support.ts';
import { createApiKey } from '../src/http/auth.ts';
import { POSITION_UPDATED, TRADE_EXECUTED } from '../src/trades/events.ts';
import { createTestDatabase, type TestDatabase } from './support.ts';

/**
 * The relay and the service as real OS processes, started the way `npm run relay` and `npm start` do
 * (`tsx src/relay-main.ts`, `tsx src/main.ts`), against a database of their own and a throwaway Redis.
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SCRIPTS = {
  relay: 'services/trading/src/relay-main.ts',
  service: 'services/trading/src/main.ts',
  cli: 'services/trading/src/cli.ts',
} as const;

const writer = createOutboxWriter({ source: '/e2e' });

describe('relay and service processes', () => {
  let db: TestDatabase;
  let redis: RedisServer;
  // In-process, for the kill loop's quick looks (a redis-cli process per look would starve the relay).
  let redisClient: RedisClientType;
  const started: ManagedProcess[] = [];

  function start(
    script: keyof typeof SCRIPTS,
    env: Record<string, string> = {},
    args: string[] = [],
  ): ManagedProcess {
    const proc = spawnManaged(script, process.execPath, ['--import', 'tsx', SCRIPTS[script], ...args], {
      cwd: ROOT,
      // A clean environment: only what a user would set, so nothing of the test runner's leaks in.
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        // What `npm run relay` sets (.npmrc): @astra/outbox from its sources, unbuilt.
        NODE_OPTIONS: '--conditions=@astra/source',
        DATABASE_URL: db.url,
        REDIS_URL: redis.url,
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        ...env,
      },
    });
    started.push(proc);
    return proc;
  }

  async function startRelay(
    env: Record<string, string> = {},
  ): Promise<{ proc: ManagedProcess; metricsPort: number }> {
    const metricsPort = await freePort();
    return { proc: start('relay', { METRICS_PORT: String(metricsPort), ...env }), metricsPort };
  }

  /** `npm run cli -- <args>`: its output, after checking it exited 0. */
  async function cli(args: string[]): Promise<string> {
    const run = start('cli', {}, args);
    const exit = await run.exited;
    assert.equal(exit.code, 0, `cli ${args.join(' ')} failed:\n${run.output}`);
    return run.output;
  }

  /** Writes `total` events round-robin over `aggregates` aggregates (`seq` per aggregate), 2,000 per transaction. */
  async function backlog(prefix: string, types: string[], total: number, aggregates: number): Promise<void> {
    for (let first = 0; first < total; first += 2000) {
      const events: NewEvent[] = [];
      for (let i = first; i < Math.min(total, first + 2000); i++) {
        const aggregate = i % aggregates;
        const aggregateId = `${prefix}-${aggregate}`;
        events.push({
          type: types[aggregate % types.length] as string,
          aggregateType: 'thing',
          aggregateId,
          data: { aggregateId, seq: Math.floor(i / aggregates) + 1 },
        });
      }
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        await writer.write(client, events);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    }
  }

  async function progress(prefix: string): Promise<{ published: number; pending: number; failed: number }> {
    const result = await db.pool.query<{ published: number; pending: number; failed: number }>(
      `SELECT count(*) FILTER (WHERE status = 'PUBLISHED')::int AS published,
              count(*) FILTER (WHERE status = 'PENDING')::int AS pending,
              count(*) FILTER (WHERE status = 'FAILED')::int AS failed
       FROM event_outbox WHERE aggregate_id LIKE $1`,
      [`${prefix}-%`],
    );
    return result.rows[0] ?? { published: 0, pending: 0, failed: 0 };
  }

  const allPublished = (prefix: string, timeoutMs = 60_000) =>
    waitFor(
      `every ${prefix} event PUBLISHED`,
      async () => {
        const { pending, failed } = await progress(prefix);
        return pending === 0 && failed === 0;
      },
      timeoutMs,
    );

  async function entriesIn(streams: string[]): Promise<number> {
    let total = 0;
    for (const stream of streams) total += await redisClient.xLen(stream);
    return total;
  }

  const read = (stream: string) => readStream(redis.url, stream);

  async function relaySessions(): Promise<number[]> {
    const result = await db.pool.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE application_name = 'outbox-relay' AND datname = current_database()`,
    );
    return result.rows.map((row) => row.pid);
  }

  async function advisoryLocks(): Promise<number> {
    const result = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks
       WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    return result.rows[0]?.n ?? 0;
  }

  async function metrics(port: number): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(response.status, 200);
    return response.text();
  }

  before(async () => {
    db = await createTestDatabase();
    redis = await startRedisServer();
    redisClient = createClient({ url: redis.url });
    redisClient.on('error', () => {});
    await redisClient.connect();
  });
  after(async () => {
    await Promise.all(
      started.splice(0).map(async (proc) => {
        if (proc.running) await proc.kill('SIGKILL');
      }),
    );
    redisClient?.destroy();
    await redis?.kill();
    await db?.drop();
  });

  test('a relay SIGKILLed mid-drain three times, then restarted: every event once, in order', async (t) => {
    const types = ['test.e2e.kill.a.v1', 'test.e2e.kill.b.v1'];
    const total = 20_000;
    await backlog('kill', types, total, 200);
    let marked = 0;
    // Three kills at least; more (up to six) until one has landed in the worst window, a batch in the
    // streams but not yet marked: that window is what the dedupe is for, so the test must reach it.
    let hitWindow = 0;
    const MAX_ROUNDS = 6;
    for (let round = 1; round <= MAX_ROUNDS && (round <= 3 || hitWindow === 0); round++) {
      // Small batches: more claim-publish-mark cycles for the kill to land in.
      const { proc } = await startRelay({ RELAY_BATCH_SIZE: '200' });
      await waitFor(
        `relay run ${round} making progress`,
        async () => (await progress('kill')).published > marked || !proc.running,
        30_000,
      );
      // Aim for the worst moment: a batch is in the streams but not yet marked (best effort, at most 1 s).
      const deadline = Date.now() + 1000;
      while (Date.now() < deadline) {
        const { published } = await progress('kill');
        if ((await entriesIn(types)) > published) break;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      const exit = await proc.kill('SIGKILL');
      assert.equal(exit.signal, 'SIGKILL', `run ${round} was still running when killed:\n${proc.output}`);
      marked = (await progress('kill')).published;
      assert.ok(marked < total, `run ${round} was killed before it finished`);
      const inStream = await entriesIn(types);
      assert.ok(inStream >= marked, 'every marked event is in a stream');
      if (inStream > marked) hitWindow++;
      t.diagnostic(`kill ${round}: ${marked} marked, ${inStream - marked} in a stream but not yet marked`);
    }
    assert.ok(hitWindow > 0, 'no kill landed between a batch reaching the streams and its mark');

    const { proc } = await startRelay();
    await allPublished('kill');
    assert.deepEqual(await proc.kill('SIGTERM', 20_000), { code: 0, signal: null }, proc.output);
    assert.equal(
      await assertDelivered({ pool: db.pool, read, aggregateLike: 'kill-%', expected: total }),
      total,
    );
  });

  test('SIGTERM while draining: exits 0, holds no locks, leaves no published-but-unmarked event; a new relay finishes', async () => {
    const types = ['test.e2e.term.a.v1', 'test.e2e.term.b.v1'];
    const total = 20_000;
    await backlog('term', types, total, 200);
    const { proc } = await startRelay({ RELAY_BATCH_SIZE: '200' });
    await waitFor('the relay draining', async () => (await progress('term')).published > 0, 30_000);
    assert.equal((await relaySessions()).length, 1, 'one relay session');

    assert.deepEqual(await proc.kill('SIGTERM', 15_000), { code: 0, signal: null }, proc.output);
    const { published, pending } = await progress('term');
    assert.ok(pending > 0, 'stopped mid-drain');
    assert.deepEqual(await relaySessions(), [], 'its session is closed');
    assert.equal(await advisoryLocks(), 0, 'no partition, presence or leader lock left behind');
    // It finished the batch in hand: what reached the streams is exactly what it marked.
    assert.equal(await entriesIn(types), published, 'stream entries = PUBLISHED rows');
    const marked = await db.pool.query<{ event_id: string; event_type: string; stream_entry_id: string }>(
      `SELECT event_id::text, event_type, stream_entry_id FROM event_outbox
       WHERE aggregate_id LIKE 'term-%' AND status = 'PUBLISHED'`,
    );
    // Entry ids are unique per stream only.
    const entries = new Map<string, string>();
    for (const type of types) {
      for (const entry of await read(type)) entries.set(`${type} ${entry.entryId}`, entry.fields.id ?? '');
    }
    for (const row of marked.rows) {
      assert.equal(
        entries.get(`${row.event_type} ${row.stream_entry_id}`),
        row.event_id,
        'marked with its entry',
      );
    }

    const next = await startRelay();
    await allPublished('term');
    assert.deepEqual(await next.proc.kill('SIGTERM', 20_000), { code: 0, signal: null }, next.proc.output);
    await assertDelivered({ pool: db.pool, read, aggregateLike: 'term-%', expected: total });
  });

  test('npm start with RELAY_ENABLED=false publishes nothing; with the relay it publishes the trades, in order', async () => {
    const port = await freePort();
    const key = await createApiKey(db.pool, 'e2e-trader', false);
    const trade = async (side: 'BUY' | 'SELL', symbol: string, quantity: string) => {
      const response = await fetch(`http://127.0.0.1:${port}/v1/trades`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ accountId: 'e2e-trader', symbol, side, quantity, price: '100.5' }),
      });
      assert.equal(response.status, 201, await response.text());
    };
    const healthy = () =>
      waitFor(
        'the service listening',
        async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok,
        30_000,
      );
    const statuses = async () =>
      (
        await db.pool.query<{ status: string; n: number }>(
          `SELECT status, count(*)::int AS n FROM event_outbox
           WHERE event_type IN ($1, $2) GROUP BY status ORDER BY status`,
          [TRADE_EXECUTED, POSITION_UPDATED],
        )
      ).rows.map((row) => `${row.status}:${row.n}`);

    const without = start('service', { PORT: String(port), RELAY_ENABLED: 'false' });
    await healthy();
    await trade('BUY', 'AAPL', '10');
    await trade('BUY', 'AAPL', '5');
    await trade('SELL', 'AAPL', '3');
    await trade('BUY', 'MSFT', '1');
    // No relay means no relay session and no locks; give a relay that should not exist more than its
    // poll interval (1 s) to show itself.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.deepEqual(await relaySessions(), []);
    assert.deepEqual(await statuses(), ['PENDING:8']);
    for (const stream of [TRADE_EXECUTED, POSITION_UPDATED])
      assert.equal(await redis.cli(['EXISTS', stream]), '0');
    assert.deepEqual(await without.kill('SIGTERM', 20_000), { code: 0, signal: null }, without.output);

    const withRelay = start('service', { PORT: String(port) });
    await healthy();
    await trade('SELL', 'AAPL', '2');
    await waitFor('the trades published', async () => (await statuses()).join() === 'PUBLISHED:10', 30_000);
    assert.deepEqual(await withRelay.kill('SIGTERM', 20_000), { code: 0, signal: null }, withRelay.output);

    // Both streams hold each event once; per position, `version` rises by one per event in stream order.
    await assertDelivered({
      pool: db.pool,
      read,
      types: [TRADE_EXECUTED, POSITION_UPDATED],
      expected: 10,
      seqField: 'version',
    });
    const versions = (await read(POSITION_UPDATED))
      .filter((entry) => entry.fields.subject === 'e2e-trader:AAPL')
      .map((entry) => (JSON.parse(entry.fields.data ?? '{}') as { version?: number }).version);
    assert.deepEqual(versions, [1, 2, 3, 4]);
    assert.equal((await read(TRADE_EXECUTED)).length, 5);
  });

  test('the standalone relay serves its metrics: running, published, broker up, and (as leader) pending', async () => {
    const types = ['test.e2e.metrics.v1'];
    await backlog('metrics', types, 50, 5);
    const { proc, metricsPort } = await startRelay();
    await allPublished('metrics', 30_000);
    const text = await metrics(metricsPort);
    const sample = (pattern: RegExp) => {
      const match = pattern.exec(text);
      assert.ok(match, `${pattern} in:\n${text}`);
      return Number(match[1]);
    };
    assert.equal(sample(/^outbox_relay_running (\S+)$/m), 1);
    assert.equal(sample(/^outbox_broker_up (\S+)$/m), 1);
    assert.equal(sample(/^outbox_events_published_total\{event_type="test\.e2e\.metrics\.v1"\} (\S+)$/m), 50);
    assert.equal(sample(/^outbox_pending_events_total (\S+)$/m), 0);
    assert.equal(sample(/^outbox_relay_partitions_held (\S+)$/m), 64);
    const health = (await (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).json()) as Record<
      string,
      unknown
    >;
    assert.deepEqual(health, { status: 'ok', relay: true, partitions: 64 });
    assert.deepEqual(await proc.kill('SIGTERM', 20_000), { code: 0, signal: null }, proc.output);
  });

  test('a poison event: FAILED after RELAY_MAX_ATTEMPTS, listed by `outbox failed`, published after `outbox replay`', async () => {
    const ok = 'test.e2e.ok.v1';
    const poison = 'test.e2e.poison.v1';
    // A key of the wrong type makes Redis refuse every XADD to the poison stream.
    await redis.cli(['SET', poison, 'not a stream']);
    const events = (rows: [string, string, number][]): NewEvent[] =>
      rows.map(([type, aggregateId, seq]) => ({ type, aggregateType: 'thing', aggregateId, data: { seq } }));
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await writer.write(
        client,
        events([
          [ok, 'poison-1', 1],
          [poison, 'poison-1', 2],
          [ok, 'poison-1', 3],
          [ok, 'poison-2', 1],
        ]),
      );
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const { proc } = await startRelay({ RELAY_MAX_ATTEMPTS: '2' });
    await waitFor('the poison event FAILED', async () => (await progress('poison')).failed === 1, 30_000);
    const [failedRow] = (
      await db.pool.query<{ id: string }>("SELECT id::text FROM event_outbox WHERE status = 'FAILED'")
    ).rows;
    assert.ok(failedRow);

    const listed = await cli(['outbox', 'failed']);
    assert.match(
      listed,
      new RegExp(
        `^${failedRow.id}\\t${poison.replaceAll('.', '\\.')}\\tpoison-1\\tattempts=2\\t.*WRONGTYPE`,
        'm',
      ),
    );
    const status = await cli(['outbox', 'status']);
    assert.match(status, /^failed:\s+1$/m);
    assert.match(status, /^blocked aggregates:\s+1$/m);
    assert.match(status, /^pending:\s+1$/m, 'poison-1 #3 waits behind it');

    await redis.cli(['DEL', poison]);
    assert.match(await cli(['outbox', 'replay', failedRow.id]), /replayed 1 event\b/);
    await allPublished('poison', 30_000);
    assert.deepEqual(await proc.kill('SIGTERM', 20_000), { code: 0, signal: null }, proc.output);
    await assertDelivered({ pool: db.pool, read, aggregateLike: 'poison-%', expected: 4 });
  });
});
