import { pino } from 'pino';
import { prepareDatabase } from './bootstrap.ts';
import { loadConfig } from './config.ts';
import { createPool } from './database.ts';
import { onShutdown, runMain } from './lifecycle.ts';
import { createMetrics, STATUS_QUERY_TIMEOUT_MS, startMetricsServer } from './metrics.ts';
import { createRelay, OutboxAdmin, relayHealth } from './outbox.ts';
import { startTracing } from './tracing.ts';

/** `npm run relay`: the relay alone, with /metrics and /healthz on METRICS_PORT. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
  const tracing = startTracing(config.otlpEndpoint, 'astra-outbox-relay');
  await prepareDatabase(config.databaseUrl, (message) => logger.info(message));

  // One connection for the leader's gauges; the relay keeps its own session for its locks.
  const poolLog = logger.child({ component: 'db-pool' });
  const pool = createPool(config.databaseUrl, 1, {
    // The leader's status query: bounded well under the scrape timeout.
    statementTimeoutMs: STATUS_QUERY_TIMEOUT_MS,
    lockTimeoutMs: config.dbLockTimeoutMs,
    connectTimeoutMs: config.dbConnectTimeoutMs,
    onError: (error) => poolLog.warn({ err: error }, 'idle database connection failed'),
  });
  const relay = createRelay(config, logger, tracing?.tracer);
  const metrics = createMetrics({ relay, admin: new OutboxAdmin(pool) });
  const server = await startMetricsServer({
    registry: metrics.registry,
    host: config.metricsHost,
    port: config.metricsPort,
    health: relayHealth(relay),
  });
  relay.start();
  logger.info({ metricsPort: server.port, metricsHost: config.metricsHost }, 'relay started');

  onShutdown(
    logger,
    async () => {
      await relay.stop();
      await server.close();
      await pool.end();
      await tracing?.shutdown();
    },
    config.shutdownTimeoutMs,
  );
}

runMain(main);
