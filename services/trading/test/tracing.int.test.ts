import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import { SpanKind } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { createApiKey } from '../src/http/auth.ts';
import { createRelay } from '../src/outbox.ts';
import { createTestDatabase, postTrade, type TestDatabase, tradeBody } from './support.ts';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${CLIENT_SPAN}-01`;

describe('OpenTelemetry spans, seen by an in-process exporter', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer('test');
  let db: TestDatabase;
  let redis: RedisServer;
  let app: FastifyInstance;
  let key: string;

  before(async () => {
    db = await createTestDatabase();
    redis = await startRedisServer();
    app = await buildApp({ pool: db.pool, eventSource: '/test', tracer });
    key = `Bearer ${await createApiKey(db.pool, 'alice', false)}`;
  });
  after(async () => {
    await app.close();
    await provider.shutdown();
    await redis.kill();
    await db.drop();
  });

  test("a trade: a SERVER span under the caller's traceparent, the statement under it, its context in the events", async () => {
    exporter.reset();
    const response = await postTrade(app, key, tradeBody(), {
      traceparent: TRACEPARENT,
      tracestate: 'congo=t61rcWkgMzE',
    });
    assert.equal(response.statusCode, 201, response.body);
    const spans = exporter.getFinishedSpans();
    const server = spans.find((span) => span.kind === SpanKind.SERVER);
    const statement = spans.find((span) => span.name === 'trade statement');
    assert.ok(server !== undefined && statement !== undefined, spans.map((s) => s.name).join());
    assert.equal(server.name, 'POST /v1/trades');
    assert.equal(server.spanContext().traceId, TRACE_ID);
    assert.equal(server.parentSpanContext?.spanId, CLIENT_SPAN);
    assert.equal(server.attributes['http.response.status_code'], 201);
    assert.equal(statement.kind, SpanKind.CLIENT);
    assert.equal(statement.parentSpanContext?.spanId, server.spanContext().spanId);
    const rows = await db.pool.query<{ headers: Record<string, string> }>('SELECT headers FROM event_outbox');
    assert.equal(rows.rows.length, 2);
    for (const row of rows.rows) {
      assert.deepEqual(row.headers, {
        traceparent: `00-${TRACE_ID}-${statement.spanContext().spanId}-01`,
        tracestate: 'congo=t61rcWkgMzE',
      });
    }
  });

  test("the relay publishes in a PRODUCER span linked to each event's stored trace context", async () => {
    exporter.reset();
    const stored = await db.pool.query<{ traceparent: string }>(
      "SELECT headers->>'traceparent' AS traceparent FROM event_outbox",
    );
    const config = loadConfig({ DATABASE_URL: db.url, REDIS_URL: redis.url, RELAY_POLL_INTERVAL_MS: '100' });
    const relay = createRelay(config, pino({ level: 'silent' }), tracer);
    relay.start();
    try {
      await waitFor(
        'events published',
        async () =>
          (await db.pool.query("SELECT 1 FROM event_outbox WHERE status <> 'PUBLISHED'")).rowCount === 0,
        20_000,
      );
    } finally {
      await relay.stop();
    }
    const publishes = exporter.getFinishedSpans().filter((span) => span.name === 'outbox publish');
    assert.ok(publishes.length >= 1);
    for (const span of publishes) assert.equal(span.kind, SpanKind.PRODUCER);
    const linked = publishes.flatMap((span) =>
      span.links.map((link) => `00-${link.context.traceId}-${link.context.spanId}-01`),
    );
    assert.deepEqual(linked.sort(), stored.rows.map((row) => row.traceparent).sort());
    assert.ok(
      publishes.every((span) =>
        span.links.every((link) => link.context.traceState?.get('congo') === 't61rcWkgMzE'),
      ),
    );
  });

  test("without a tracer no span is made and the caller's traceparent is stored as it came", async () => {
    exporter.reset();
    const plain = await buildApp({ pool: db.pool, eventSource: '/test' });
    try {
      await db.pool.query('DELETE FROM event_outbox');
      const response = await postTrade(plain, key, tradeBody(), { traceparent: TRACEPARENT });
      assert.equal(response.statusCode, 201, response.body);
      assert.equal(exporter.getFinishedSpans().length, 0);
      const rows = await db.pool.query<{ headers: Record<string, string> }>(
        'SELECT headers FROM event_outbox',
      );
      for (const row of rows.rows) assert.deepEqual(row.headers, { traceparent: TRACEPARENT });
    } finally {
      await plain.close();
    }
  });
});
