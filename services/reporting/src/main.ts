import { OutboxError } from '@astra/outbox/consumer';
import { registerConsumerMetrics } from '@astra/outbox/consumer/prometheus';
import { ensureDatabase } from '@astra/outbox/migrations';
import { startMetricsServer } from '@astra/outbox/prometheus';
import { pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { buildApp } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createReportingConsumer } from './consumer.ts';
import { createPool, migrate } from './database.ts';
import { TradingKeyVerifier } from './keys.ts';

/**
 * `npm run reporting`: creates and migrates its database, consumes the trading streams into the ledger
 * and positions view, serves them over HTTP. Run several: they share the consumer group.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
  if (await ensureDatabase(config.databaseUrl)) logger.info('created the database');
  const applied = await migrate(config.databaseUrl, 'up');
  if (applied.length > 0) logger.info(`applied migrations: ${applied.join(', ')}`);

  const pool = createPool(config.databaseUrl, config.dbPoolSize);
  // The trading service's keys, read only: a bug here cannot write to the trading database.
  const keysPool = createPool(config.tradingDatabaseUrl, 2, {
    options: '-c default_transaction_read_only=on',
  });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const consumer = createReportingConsumer({
    pool,
    redis: config.redis,
    group: config.group,
    inboxRetentionSeconds: config.inboxRetentionSeconds,
  });
  registerConsumerMetrics({ registry, consumers: [consumer] });
  consumer.on('deadLettered', (letter) => logger.error({ ...letter }, 'event dead-lettered'));
  consumer.on('failed', ({ eventId, error, deliveries }) =>
    logger.warn({ eventId, err: error, deliveries }, 'handler failed; will retry'),
  );
  const app = await buildApp({ pool, keys: new TradingKeyVerifier(keysPool), logger });
  const metricsServer = await startMetricsServer({
    registry,
    host: config.metricsHost,
    port: config.metricsPort,
    portName: 'REPORTING_METRICS_PORT',
  });
  const address = await app.listen({ host: config.host, port: config.port });
  logger.info(
    {
      address,
      metricsPort: metricsServer.port,
      metricsHost: config.metricsHost,
      consumer: consumer.name,
      group: config.group,
    },
    'reporting service listening',
  );
  consumer.start();

  let closing = false;
  const stop = (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    (async () => {
      await app.close();
      await consumer.stop();
      await metricsServer.close();
      await pool.end();
      await keysPool.end();
    })().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`invalid configuration: ${error.message}\n`);
    process.exit(2);
  }
  // A metrics port in use or not allowed: one line naming REPORTING_METRICS_PORT.
  if (error instanceof OutboxError && error.field === 'REPORTING_METRICS_PORT') {
    process.stderr.write(`failed to start: ${error.message}\n`);
    process.exit(1);
  }
  process.stderr.write(
    `failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
