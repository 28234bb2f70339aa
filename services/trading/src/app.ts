import { createOutboxWriter, createRelayWaker, type LocalRelay } from '@astra/outbox';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import { ApiKeyVerifier } from './http/auth.ts';
import { errorBody, registerErrorHandling } from './http/errors.ts';
import { registerHttpMetrics } from './metrics.ts';
import { createOutageLog } from './outage-log.ts';
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
  /** Serves GET /metrics from this registry and records request durations in it. */
  registry?: Registry;
  /** Called once per executed (not replayed) trade; the metrics adapter counts them. */
  onTradeExecuted?: (side: 'BUY' | 'SELL') => void;
  /**
   * While the database is down, one log line per this many ms instead of one per failed request.
   * @defaultValue 60000
   */
  outageSummaryMs?: number;
}

/** Builds the HTTP application without listening, so tests drive it with `inject()`. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: options.bodyLimitBytes ?? 16 * 1024,
    // One log line per request costs more CPU than the trade itself; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
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
    registerErrorHandling(app, FIELD_RULES, (error) =>
      outages.log.failed('database', error.message, 1, Date.now()),
    );
    app.addHook('onResponse', async (request, reply) => {
      // Only routes that query the database prove it answers (not /healthz or /metrics).
      const route = request.routeOptions.url ?? '';
      if (reply.statusCode < 500 && (route.startsWith('/v1/') || route === '/readyz'))
        outages.log.recovered('database', Date.now());
    });
    app.addHook('onClose', async () => outages.stop());
  }
  // The API speaks JSON only. Fastify also parses text/plain by default, which turned a JSON body sent
  // as text into a string and a misleading 400 "must be a JSON object"; it is a 415 like any other type.
  app.removeContentTypeParser('text/plain');

  await app.register(swagger, {
    openapi: {
      info: { title: 'Astra trading service', version: '1.0.0' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

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
    trades: new TradeService(pool, outbox, relays),
    keys: new ApiKeyVerifier(pool),
    ...(options.onTradeExecuted ? { onTradeExecuted: options.onTradeExecuted } : {}),
  });
  return app;
}
