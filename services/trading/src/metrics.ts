import type { OutboxAdmin, OutboxRelay } from '@astra/outbox';
import { registerOutboxMetrics } from '@astra/outbox/prometheus';
import type { FastifyInstance } from 'fastify';
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

export interface ServiceMetrics {
  registry: Registry;
  tradeExecuted(side: 'BUY' | 'SELL'): void;
}

/** One registry per process: Node process metrics, the outbox's metrics, and the service's own. */
export function createMetrics(options: { relay?: OutboxRelay; admin?: OutboxAdmin }): ServiceMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerOutboxMetrics({ registry, ...options });
  const trades = new Counter({
    name: 'trades_executed_total',
    help: 'Trades executed (committed), by side.',
    labelNames: ['side'],
    registers: [registry],
  });
  for (const side of ['BUY', 'SELL']) trades.inc({ side }, 0);
  return { registry, tradeExecuted: (side) => trades.inc({ side }) };
}

/** GET /metrics, and a request-duration histogram labelled by route pattern (never by raw URL). */
export function registerHttpMetrics(app: FastifyInstance, registry: Registry): void {
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request durations by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  app.addHook('onResponse', async (request, reply) => {
    duration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );
}
