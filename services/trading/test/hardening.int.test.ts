import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createOutboxWriter, newEventId } from '@astra/outbox';
import { ensureDatabase } from '@astra/outbox/migrations';
import { registerErrorHandling } from '@astra/service-support';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { createPool } from '../src/database.ts';
import { createApiKey } from '../src/http/auth.ts';
import { shutdownHandler } from '../src/lifecycle.ts';
import { boundPort, createMetrics, ListenError, startMetricsServer } from '../src/metrics.ts';
import { createRelay, relayHealth } from '../src/outbox.ts';
import {
  assertError,
  createTestDatabase,
  postTrade,
  type TestDatabase,
  tradeBody,
  writeCounts,
} from './support.ts';

const SOURCE = '/astra/trading-service/test';

/** A pino logger at info whose lines (JSON text) are kept in `lines`. */
function capturingLogger() {
  const lines: string[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  );
  return { lines, logger };
}

describe('production hardening', () => {
  let db: TestDatabase;
  let alice: string;
  const apps: FastifyInstance[] = [];
  async function app(options: Partial<Parameters<typeof buildApp>[0]> = {}): Promise<FastifyInstance> {
    const built = await buildApp({ pool: db.pool, eventSource: SOURCE, ...options });
    apps.push(built);
    return built;
  }
  before(async () => {
    db = await createTestDatabase();
    alice = `Bearer ${await createApiKey(db.pool, 'alice', false)}`;
  });
  after(async () => {
    await Promise.all(apps.map((built) => built.close()));
    await db.drop();
  });

  test('the API port serves neither /metrics nor (with DOCS_ENABLED=false) /docs', async () => {
    const registry = new Registry();
    const withDocs = await app({ registry });
    assert.equal((await withDocs.inject({ url: '/metrics' })).statusCode, 404);
    assert.equal((await withDocs.inject({ url: '/docs/json' })).statusCode, 200, 'docs on by default');
    const withoutDocs = await app({ registry: new Registry(), docsEnabled: false });
    assert.equal((await withoutDocs.inject({ url: '/docs' })).statusCode, 404);
    assert.equal((await withoutDocs.inject({ url: '/docs/json' })).statusCode, 404);
  });

  test('metrics listen on their own port (0 = a free one); a clash names METRICS_PORT', async () => {
    const { registry } = createMetrics({});
    const first = await startMetricsServer({ registry, host: '127.0.0.1', port: 0 });
    try {
      assert.ok(first.port > 0);
      const response = await fetch(`http://127.0.0.1:${first.port}/metrics`);
      assert.equal(response.status, 200);
      assert.match(await response.text(), /trades_executed_total/);
      await assert.rejects(
        startMetricsServer({ registry, host: '127.0.0.1', port: first.port }),
        (error: unknown) =>
          error instanceof ListenError &&
          /^METRICS_PORT: 127\.0\.0\.1:\d+ is in use/.test(error.message) &&
          !error.message.includes('\n'),
      );
    } finally {
      await first.close();
    }
  });

  test("a standalone relay's /healthz is 503 while its loop is not running", async () => {
    const state = { running: false, partitions: [] as number[] };
    const server = await startMetricsServer({
      registry: new Registry(),
      host: '127.0.0.1',
      port: 0,
      health: relayHealth(state),
    });
    try {
      const down = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      assert.equal(down.status, 503);
      state.running = true;
      const up = await fetch(`http://127.0.0.1:${server.port}/healthz`);
      assert.equal(up.status, 200);
    } finally {
      await server.close();
    }
  });

  test('per key: past the limit a 429 with Retry-After in the error format, and nothing written', async () => {
    const limited = await app({ rateLimits: { perKey: 3, perAddress: 0, windowMs: 60_000 } });
    const bob = `Bearer ${await createApiKey(db.pool, 'bob', false)}`;
    for (let i = 0; i < 3; i++) {
      const ok = await postTrade(limited, bob, tradeBody({ accountId: 'bob', quantity: '1' }));
      assert.equal(ok.statusCode, 201, ok.body);
    }
    const counts = await writeCounts(db.pool);
    const refused = await postTrade(limited, bob, tradeBody({ accountId: 'bob', quantity: '1' }));
    assertError(refused, { status: 429, code: 'RATE_LIMITED' });
    assert.match(String(refused.headers['retry-after']), /^[1-9]\d*$/);
    assert.deepEqual(await writeCounts(db.pool), counts);
    // Another key is counted apart.
    const other = await postTrade(limited, alice, tradeBody({ quantity: '1' }));
    assert.equal(other.statusCode, 201, other.body);
  });

  test('per address, before authentication: unknown keys are cut off; a verified key is not', async () => {
    const limited = await app({ rateLimits: { perKey: 0, perAddress: 3, windowMs: 60_000 } });
    // A known key, verified once (that request counts), then served from the cache without counting.
    assert.equal((await postTrade(limited, alice, tradeBody({ quantity: '1' }))).statusCode, 201);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const response = await postTrade(limited, `Bearer astra_guess${i}`, tradeBody());
      assertError(response);
      statuses.push(response.statusCode);
    }
    // 401s until the address's budget is spent, then 429s: refused before any key lookup.
    assert.deepEqual(statuses, [401, 401, 429, 429, 429]);
    for (let i = 0; i < 5; i++) {
      const ok = await postTrade(limited, alice, tradeBody({ quantity: '1' }));
      assert.equal(ok.statusCode, 201, ok.body);
    }
  });

  test('an exhausted pool answers 503, not a hang', async () => {
    const pool = createPool(db.url, 1, { connectTimeoutMs: 200 });
    const built = await app({ pool });
    const held = await pool.connect();
    try {
      const response = await postTrade(built, alice, tradeBody({ quantity: '1' }));
      assertError(response, { status: 503, code: 'UNAVAILABLE' });
    } finally {
      held.release();
      await pool.end();
    }
  });

  test('a trade stuck behind a row lock gives up at lock_timeout with a 503', async () => {
    const pool = createPool(db.url, 2, { lockTimeoutMs: 200, statementTimeoutMs: 2000 });
    const built = await app({ pool });
    assert.equal(
      (await postTrade(built, alice, tradeBody({ symbol: 'LOCK', quantity: '1' }))).statusCode,
      201,
    );
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query("SELECT 1 FROM positions WHERE account_id = 'alice' AND symbol = 'LOCK' FOR UPDATE");
      const counts = await writeCounts(db.pool);
      const response = await postTrade(built, alice, tradeBody({ symbol: 'LOCK', quantity: '1' }));
      assertError(response, { status: 503, code: 'UNAVAILABLE' });
      await holder.query('ROLLBACK');
      assert.deepEqual(await writeCounts(db.pool), counts);
    } finally {
      holder.release();
      await pool.end();
    }
  });

  test("the outbox library's wrapped statement timeout answers 503 as pg's bare one does", async () => {
    // write() wraps pg's 57014 in an OutboxError; the 503 rule reads the code from its cause.
    const writer = createOutboxWriter({ source: SOURCE });
    const built = Fastify();
    apps.push(built);
    registerErrorHandling(built);
    built.post('/write', async () => {
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        await client.query("SET LOCAL statement_timeout = '200ms'");
        const event = { id: newEventId(), type: 'test.v1', aggregateType: 't', aggregateId: '1', data: {} };
        await writer.write(client, [event]);
        await client.query('COMMIT');
        return { written: true };
      } finally {
        await client.query('ROLLBACK');
        client.release();
      }
    });
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE event_outbox IN ACCESS EXCLUSIVE MODE');
      assertError(await built.inject({ method: 'POST', url: '/write' }), {
        status: 503,
        code: 'UNAVAILABLE',
      });
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
  });

  test('a request whose body never completes gets a 408 in the error format', async () => {
    const built = await app({ requestTimeoutMs: 300 });
    await built.listen({ host: '127.0.0.1', port: 0 });
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(boundPort(built), '127.0.0.1', () => {
        socket.write(
          `POST /v1/trades HTTP/1.1\r\nHost: x\r\nAuthorization: ${alice}\r\n` +
            'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"accountId":',
        );
      });
      let received = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        received += chunk;
      });
      socket.on('close', () => resolve(received));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
    assert.equal(body.error.code, 'REQUEST_TIMEOUT');
  });

  test('X-Request-Id is honoured and echoed, and the access log line carries it', async () => {
    const { lines, logger } = capturingLogger();
    const built = await app({ logger, accessLog: true });
    const given = await built.inject({ url: '/healthz', headers: { 'x-request-id': 'client-42' } });
    assert.equal(given.headers['x-request-id'], 'client-42');
    const made = await built.inject({ url: '/healthz', headers: { 'x-request-id': 'bad id\twith space' } });
    assert.match(String(made.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    const access = lines.map((line) => JSON.parse(line)).filter((entry) => entry.msg === 'request');
    assert.equal(access.length, 2);
    assert.equal(access[0].reqId, 'client-42');
    assert.equal(access[0].statusCode, 200);
    assert.equal(access[0].url, '/healthz');
  });

  test('relay faults are logged with their stack, not only their message', async () => {
    const { lines, logger } = capturingLogger();
    const relay = createRelay(loadConfig({ DATABASE_URL: db.url }), logger);
    relay.start();
    relay.emit('fault', { kind: 'database', error: new Error('connection reset'), count: 1 });
    // Stopping closes its publisher's Redis connection too.
    await relay.stop();
    // The outage's first line carries the whole error (later failures are summarised).
    const logged = lines
      .map((line) => JSON.parse(line))
      .find((entry) => entry.err?.message === 'connection reset');
    assert.equal(logged?.err?.message, 'connection reset');
    assert.match(String(logged?.err?.stack), /at /);
  });

  test('start-up connects to the postgres database only when the target database is missing', async () => {
    // An admin database that does not exist stands for one the role may not connect to.
    assert.equal(await ensureDatabase(db.url, 'no_such_admin_database'), false);
  });

  test('shutdown: a second signal or the deadline forces the exit, logged', async () => {
    const { lines, logger } = capturingLogger();
    const never = () => new Promise<void>(() => {});
    const codes: number[] = [];
    const twice = shutdownHandler(logger, never, 60_000, (code) => codes.push(code));
    twice('SIGTERM');
    twice('SIGINT');
    assert.deepEqual(codes, [1]);
    assert.ok(lines.some((line) => line.includes('second signal during shutdown')));

    const exited = new Promise<number>((resolve) => {
      shutdownHandler(logger, never, 50, resolve)('SIGTERM');
    });
    assert.equal(await exited, 1);
    assert.ok(lines.some((line) => line.includes('shutdown did not finish in time')));
  });
});
