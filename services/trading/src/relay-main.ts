import Fastify from 'fastify';
import { pino } from 'pino';
import { prepareDatabase } from './bootstrap.ts';
import { loadConfig } from './config.ts';
import { createPool } from './database.ts';
import { onShutdown, runMain } from './lifecycle.ts';
import { createMetrics, STATUS_QUERY_TIMEOUT_MS } from './metrics.ts';
import { createRelay, OutboxAdmin } from './outbox.ts';

/** `npm run relay`: the relay alone, with /metrics and /healthz on METRICS_PORT. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
  await prepareDatabase(config.databaseUrl, (message) => logger.info(message));

  // One connection for the leader's gauges; the relay keeps its own session for its locks.
  const pool = createPool(config.databaseUrl, 1, { statementTimeoutMs: STATUS_QUERY_TIMEOUT_MS });
  const relay = createRelay(config, logger);
  const metrics = createMetrics({ relay, admin: new OutboxAdmin(pool) });
  const server = Fastify({ logger: false });
  server.get('/metrics', async (_request, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  server.get('/healthz', async () => ({
    status: 'ok',
    relay: relay.running,
    partitions: relay.partitions.length,
  }));
  await server.listen({ host: config.host, port: config.metricsPort });
  relay.start();
  logger.info({ metricsPort: config.metricsPort }, 'relay started');

  onShutdown(logger, async () => {
    await relay.stop();
    await server.close();
    await pool.end();
  });
}

runMain(main);
