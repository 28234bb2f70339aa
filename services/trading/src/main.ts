import { pino } from 'pino';
import { buildApp } from './app.ts';
import { createDemoKeyIfEmpty, demoBanner, prepareDatabase } from './bootstrap.ts';
import { loadConfig } from './config.ts';
import { createPool } from './database.ts';
import { onShutdown, runMain } from './lifecycle.ts';
import {
  boundPort,
  createMetrics,
  listenOn,
  STATUS_QUERY_TIMEOUT_MS,
  startMetricsServer,
} from './metrics.ts';
import { createRelay, OutboxAdmin } from './outbox.ts';
import { startTracing } from './tracing.ts';
import { schedulePurge } from './trades/idempotency-purge.ts';

/** `npm start`: migrations, the HTTP API, and (unless RELAY_ENABLED=false) the relay in-process. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
  const tracing = startTracing(config.otlpEndpoint, 'astra-trading');
  await prepareDatabase(config.databaseUrl, (message) => logger.info(message));

  const poolLog = logger.child({ component: 'db-pool' });
  const timeouts = {
    statementTimeoutMs: config.dbStatementTimeoutMs,
    lockTimeoutMs: config.dbLockTimeoutMs,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    onError: (error: Error) => poolLog.warn({ err: error }, 'idle database connection failed'),
  };
  const pool = createPool(config.databaseUrl, config.dbPoolSize, timeouts);
  // Before listening, like the migrations: once the service answers, start-up has no database step
  // left whose failure (a terminated session, say) would stop a process that is already serving.
  const demoKey = config.demoKey ? await createDemoKeyIfEmpty(pool) : null;
  const wakePool = createPool(config.databaseUrl, 1, timeouts);
  const relay = config.relayEnabled ? createRelay(config, logger, tracing?.tracer) : undefined;
  // The metrics leader's status query gets a connection of its own, bounded by a statement timeout:
  // it neither waits behind trades for a connection nor holds one of theirs when the database is slow.
  const statusPool =
    relay === undefined
      ? undefined
      : createPool(config.databaseUrl, 1, { ...timeouts, statementTimeoutMs: STATUS_QUERY_TIMEOUT_MS });
  const metrics = createMetrics(
    relay === undefined || statusPool === undefined ? {} : { relay, admin: new OutboxAdmin(statusPool) },
  );
  const app = await buildApp({
    pool,
    wakePool,
    localRelay: relay,
    eventSource: config.eventSource,
    bodyLimitBytes: config.bodyLimitBytes,
    logger,
    registry: metrics.registry,
    onTradeExecuted: metrics.tradeExecuted,
    outageSummaryMs: config.logOutageSummaryMs,
    docsEnabled: config.docsEnabled,
    rateLimits: {
      perKey: config.rateLimitPerKey,
      perAddress: config.rateLimitPerAddress,
      windowMs: config.rateLimitWindowMs,
    },
    requestTimeoutMs: config.httpRequestTimeoutMs,
    accessLog: config.accessLog,
    ...(tracing === undefined ? {} : { tracer: tracing.tracer }),
  });
  const metricsServer = await startMetricsServer({
    registry: metrics.registry,
    host: config.metricsHost,
    port: config.metricsPort,
  });
  await listenOn(app, 'PORT', config.host, config.port);
  const port = boundPort(app);
  logger.info({ port, metricsPort: metricsServer.port, metricsHost: config.metricsHost }, 'listening');
  relay?.start();
  // Every 10 minutes: a key older than its TTL no longer protects a retry; its row can go.
  const stopPurge = schedulePurge(pool, config.idempotencyKeyTtlHours * 3600, 10 * 60_000, (error) =>
    logger.warn({ err: error }, 'idempotency key purge failed'),
  );
  if (demoKey !== null) process.stdout.write(`${demoBanner(demoKey, port)}\n`);

  onShutdown(
    logger,
    async () => {
      stopPurge();
      await app.close();
      await relay?.stop();
      await metricsServer.close();
      await pool.end();
      await wakePool.end();
      await statusPool?.end();
      await tracing?.shutdown();
    },
    config.shutdownTimeoutMs,
  );
}

runMain(main);
