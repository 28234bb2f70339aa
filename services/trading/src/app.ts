import { randomUUID } from 'node:crypto';
import { createOutboxWriter, createRelayWaker, type LocalRelay } from '@astra/outbox';
import { errorBody, registerErrorHandling } from '@astra/service-support';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Tracer } from '@opentelemetry/api';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import { ApiKeyVerifier } from './http/auth.ts';
import { type RateLimits, registerRateLimit } from './http/rate-limit.ts';
import { registerHttpMetrics } from './metrics.ts';
import { createOutageLog } from './outage-log.ts';
import { registerRequestSpans } from './tracing.ts';
import { tradeRoutes } from './trades/routes.ts';
import { FIELD_RULES } from './trades/schema.ts';
import { TradeService } from './trades/service.ts';

export interface AppOptions {
  pool: pg.Pool;
  /**
   * Where the relay wake-ups go (see the library's waker.ts): a pool of its own, so a wake-up never
   * waits for a connection behind the very trades it announces. Defaults to `pool`.
   */
  wakePool?: pg.Pool;
  /**
   * The relay running in this process, if any: while it is the only relay, trades wake it with a call
   * instead of a NOTIFY.
   */
  localRelay?: LocalRelay;
  eventSource: string;
  bodyLimitBytes?: number;
  /** A pino logger; requests are not logged without one. */
  logger?: FastifyBaseLogger;
  /** Records request durations in this registry (served by the metrics server, not here). */
  registry?: Registry;
  /** Called once per executed (not replayed) trade; the metrics adapter counts them. */
  onTradeExecuted?: (side: 'BUY' | 'SELL') => void;
  /**
   * While the database is down, one log line per this many ms instead of one per failed request.
   * @defaultValue 60000
   */
  outageSummaryMs?: number;
  /** Serve the OpenAPI UI at /docs. @defaultValue true */
  docsEnabled?: boolean;
  /** Rate limits per key and per address; none when absent. */
  rateLimits?: RateLimits;
  /** Longest time a client may take to send a request, headers and body. @defaultValue 10000 */
  requestTimeoutMs?: number;
  /** One info line per request with its id. @defaultValue false */
  accessLog?: boolean;
  /** Spans for each request and trade statement; none at all when absent. */
  tracer?: Tracer;
}

/** A request id a client may choose: short and printable, so it is safe in logs and headers. */
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

/** Builds the HTTP application without listening, so tests drive it with `inject()`. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: options.bodyLimitBytes ?? 16 * 1024,
    // Fastify's two lines per request are replaced by one access line (accessLog), off in tests.
    logController: new LogController({ disableRequestLogging: true }),
    // X-Request-Id is honoured when it is sane, and echoed (onSend below); otherwise a fresh one.
    genReqId: (raw) => {
      const given = raw.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // A client that trickles its headers or body (slowloris) is cut off with a 408.
    requestTimeout: requestTimeoutMs,
    // Given to http.createServer too: set only afterwards, Node kept its 60 s headersTimeout and the
    // body timeout fired after a minute.
    http: {
      requestTimeout: requestTimeoutMs,
      headersTimeout: requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, requestTimeoutMs),
    },
    clientErrorHandler: (error, socket) => {
      if (!socket.writable) return;
      const timeout = (error as { code?: string }).code === 'ERR_HTTP_REQUEST_TIMEOUT';
      const body = JSON.stringify(
        timeout
          ? errorBody('REQUEST_TIMEOUT', `the request was not received within ${requestTimeoutMs} ms`)
          : errorBody('BAD_REQUEST', 'the request is not valid HTTP'),
      );
      socket.end(
        `HTTP/1.1 ${timeout ? '408 Request Timeout' : '400 Bad Request'}\r\nConnection: close\r\n` +
          `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    },
    ajv: {
      // Reject what does not match instead of repairing it: unknown fields are errors, and a number
      // is never silently turned into the decimal string a quantity must be.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  if (options.logger === undefined) registerErrorHandling(app, FIELD_RULES);
  else {
    // A database outage fails every request: log it when it begins and ends, and summarise between.
    const outages = createOutageLog(
      options.logger.child({ component: 'http' }),
      options.outageSummaryMs ?? 60_000,
      'requests that need it fail with 503',
    );
    registerErrorHandling(app, FIELD_RULES, (error) => outages.log.failed('database', error, 1, Date.now()));
    app.addHook('onResponse', async (request, reply) => {
      // Only routes that query the database prove it answers (not /healthz or /metrics).
      const route = request.routeOptions.url ?? '';
      if (reply.statusCode < 500 && (route.startsWith('/v1/') || route === '/readyz'))
        outages.log.recovered('database', Date.now());
    });
    app.addHook('onClose', async () => outages.stop());
  }
  // First, so the request's span covers the rate limits and authentication too.
  if (options.tracer !== undefined) registerRequestSpans(app, options.tracer);
  else app.decorateRequest('span', null);
  // The API speaks JSON only. Fastify also parses text/plain by default, which turned a JSON body sent
  // as text into a string and a misleading 400 "must be a JSON object"; it is a 415 like any other type.
  app.removeContentTypeParser('text/plain');

  await app.register(swagger, {
    openapi: {
      info: { title: 'Astra trading service', version: '1.0.0' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
    },
  });
  // Off in production if the API's shape should not be advertised; on by default for local use.
  if (options.docsEnabled ?? true) await app.register(swaggerUi, { routePrefix: '/docs' });
  await registerRateLimit(app);

  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  if (options.accessLog === true) {
    app.addHook('onResponse', async (request, reply) => {
      request.log.info(
        {
          method: request.method,
          url: request.url.slice(0, 200),
          statusCode: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 10) / 10,
        },
        'request',
      );
    });
  }
  if (options.registry !== undefined) registerHttpMetrics(app, options.registry);
  const { pool } = options;
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    try {
      await pool.query('SELECT 1');
      return { status: 'ready' };
    } catch {
      return reply.status(503).send(errorBody('DATABASE_UNAVAILABLE', 'the database is not reachable'));
    }
  });

  // Relays are woken after each commit rather than by a NOTIFY inside the trade transaction, which
  // would make trades commit one at a time (see the library's waker.ts).
  const outbox = createOutboxWriter({ source: options.eventSource, notify: false });
  const relays = createRelayWaker(options.wakePool ?? pool, { localRelay: options.localRelay });
  await app.register(tradeRoutes, {
    pool,
    trades: new TradeService(pool, outbox, relays, options.tracer),
    keys: new ApiKeyVerifier(pool),
    ...(options.onTradeExecuted ? { onTradeExecuted: options.onTradeExecuted } : {}),
    ...(options.rateLimits ? { rateLimits: options.rateLimits } : {}),
  });
  return app;
}
