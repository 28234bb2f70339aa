import { pino } from 'pino';
import { buildApp } from './app.ts';
import { createDemoKeyIfEmpty, demoBanner, prepareDatabase } from './bootstrap.ts';
import { loadConfig } from './config.ts';
import { createPool } from './database.ts';
import { onShutdown, runMain } from './lifecycle.ts';
import { createMetrics, STATUS_QUERY_TIMEOUT_MS } from './metrics.ts';
import { createRelay, OutboxAdmin } from './outbox.ts';
import { schedulePurge } from './trades/idempotency-purge.ts';

/** `npm start`: migrations, the HTTP API, and (unless RELAY_ENABLED=false) the relay in-process. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
  await prepareDatabase(config.databaseUrl, (message) => logger.info(message));

  const pool = createPool(config.databaseUrl, config.dbPoolSize);
  // Before listening, like the migrations: once the service answers, start-up has no database step
  // left whose failure (a terminated session, say) would stop a process that is already serving.
  const demoKey = await createDemoKeyIfEmpty(pool);
  const wakePool = createPool(config.databaseUrl, 1);
  const relay = config.relayEnabled ? createRelay(config, logger) : undefined;
  // The metrics leader's status query gets a connection of its own, bounded by a statement timeout:
  // it neither waits behind trades for a connection nor holds one of theirs when the database is slow.
  const statusPool =
    relay === undefined
      ? undefined
      : createPool(config.databaseUrl, 1, { statementTimeoutMs: STATUS_QUERY_TIMEOUT_MS });
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
  });
  await app.listen({ host: config.host, port: config.port });
  relay?.start();
  // Every 10 minutes: a key older than its TTL no longer protects a retry; its row can go.
  const stopPurge = schedulePurge(pool, config.idempotencyKeyTtlHours * 3600, 10 * 60_000, (error) =>
    logger.warn({ err: error }, 'idempotency key purge failed'),
  );
  if (demoKey !== null) process.stdout.write(`${demoBanner(demoKey, config.port)}\n`);

  onShutdown(logger, async () => {
    stopPurge();
    await app.close();
    await relay?.stop();
    await pool.end();
    await wakePool.end();
    await statusPool?.end();
  });
}

runMain(main);
