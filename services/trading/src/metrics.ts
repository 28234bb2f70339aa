import { type OutboxAdmin, OutboxError, type OutboxRelay } from '@astra/outbox';
import {
  type MetricsServer,
  type MetricsServerOptions,
  registerOutboxMetrics,
  startMetricsServer as startOutboxMetricsServer,
} from '@astra/outbox/prometheus';
import type { FastifyInstance } from 'fastify';
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import { EVENT_TYPES, POSITION_UPDATED, TRADE_EXECUTED } from './trades/events.ts';

export interface ServiceMetrics {
  registry: Registry;
  tradeExecuted(side: 'BUY' | 'SELL'): void;
}

/**
 * The outbox's table-wide status query at scrape time: bounded on the server (the admin's pool gets
 * this statement_timeout) and, a little later, in the adapter, both well under Prometheus's 10 s
 * scrape_timeout so that a slow database costs the backlog gauges, not the whole scrape.
 */
export const STATUS_QUERY_TIMEOUT_MS = 1500;

/** One registry per process: Node process metrics, the outbox's metrics, and the service's own. */
export function createMetrics(options: { relay?: OutboxRelay; admin?: OutboxAdmin }): ServiceMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const outbox = registerOutboxMetrics({
    registry,
    ...options,
    statusTimeoutMs: STATUS_QUERY_TIMEOUT_MS + 500,
  });
  const trades = new Counter({
    name: 'trades_executed_total',
    help: 'Trades executed (committed), by side.',
    labelNames: ['side'],
    registers: [registry],
  });
  for (const side of ['BUY', 'SELL']) trades.inc({ side }, 0);
  for (const type of EVENT_TYPES) outbox.enqueued(type, 0);
  return {
    registry,
    tradeExecuted: (side) => {
      trades.inc({ side });
      // Each executed trade committed one event of each type (trades/sql.ts).
      outbox.enqueued(TRADE_EXECUTED);
      outbox.enqueued(POSITION_UPDATED);
    },
  };
}

/** A request-duration histogram labelled by route pattern (never by raw URL). */
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
}

/**
 * The metrics listener, apart from the API: GET /metrics, and `health` at /healthz when given (a
 * standalone relay's). Binds METRICS_HOST (127.0.0.1 by default): metrics reveal volumes and versions.
 * Returns the bound port (METRICS_PORT=0 picks a free one). A port in use is a one-line ListenError.
 */
export async function startMetricsServer(
  options: Omit<MetricsServerOptions, 'portName'>,
): Promise<MetricsServer> {
  try {
    return await startOutboxMetricsServer({ ...options, portName: 'METRICS_PORT' });
  } catch (error) {
    throw error instanceof OutboxError ? new ListenError(error.message, { cause: error }) : error;
  }
}

/** A listen that failed because of its configuration: names the variable, in one line. */
export class ListenError extends Error {
  override readonly name = 'ListenError';
}

/** listen(), with EADDRINUSE and EACCES turned into a one-line error naming `variable`. */
export async function listenOn(
  server: FastifyInstance,
  variable: string,
  host: string,
  port: number,
): Promise<void> {
  try {
    await server.listen({ host, port });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'EADDRINUSE') {
      throw new ListenError(
        `${variable}: ${host}:${port} is in use (another process listens there; ${variable}=0 picks a free port)`,
      );
    }
    if (code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new ListenError(`${variable}: cannot listen on ${host}:${port} (${code})`);
    }
    throw error;
  }
}

export function boundPort(server: FastifyInstance): number {
  const address = server.server.address();
  return typeof address === 'object' && address !== null ? address.port : 0;
}
