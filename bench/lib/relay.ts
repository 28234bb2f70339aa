/**
 * Our relay as every benchmark scenario runs it, in a drainer process or in the producer's process:
 * the scenario's settings, and the Prometheus adapter attached as in the service.
 */
import { OutboxRelay, type Publisher } from '@astra/outbox';
import { registerOutboxMetrics } from '@astra/outbox/prometheus';
import { Registry } from 'prom-client';
import type { DrainerConfig } from '../workers/drainer.ts';

export type RelayConfig = Extract<DrainerConfig, { mode: 'relay' }>;

export function benchRelay(config: RelayConfig, publisher: Publisher): OutboxRelay {
  const relay = new OutboxRelay({
    connectionString: config.databaseUrl,
    publisher,
    listen: config.listen,
    pollIntervalMs: config.pollIntervalMs,
    rebalanceIntervalMs: config.rebalanceIntervalMs,
    batchSize: config.batchSize,
    deletePublished: config.deletePublished,
  });
  registerOutboxMetrics({ registry: new Registry(), relay });
  return relay;
}
