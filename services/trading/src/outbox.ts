import { OutboxAdmin, OutboxRelay, RedisStreamsPublisher, tracedPublisher } from '@astra/outbox';
import type { Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Config } from './config.ts';

/** The relay as this service configures it: Redis (or Redis Cluster) from the config, logs via pino. */
export function createRelay(config: Config, logger: Logger, tracer?: Tracer): OutboxRelay {
  const publisher = new RedisStreamsPublisher({
    ...(config.redisClusterNodes.length > 0
      ? { clusterNodes: config.redisClusterNodes }
      : { url: config.redisUrl }),
    dedupeWindowSeconds: config.relayDedupeWindowSeconds,
    ...(config.relayStreamMaxLen === undefined ? {} : { maxLen: config.relayStreamMaxLen }),
  });
  const relay = new OutboxRelay({
    connectionString: config.databaseUrl,
    // A span per publish call, linked to each event's stored trace context, while tracing is on.
    publisher: tracer === undefined ? publisher : tracedPublisher(publisher, tracer),
    batchSize: config.relayBatchSize,
    pollIntervalMs: config.relayPollIntervalMs,
    maxAttempts: config.relayMaxAttempts,
    retentionSeconds: config.retentionHours * 3600,
    deletePublished: config.deletePublished,
  });
  const log = logger.child({ component: 'outbox-relay' });
  // The whole error (pino logs its stack and cause), not just its message.
  relay.on('fault', ({ kind, error, count }) =>
    log.warn({ kind, count, err: error }, 'outbox publish problem'),
  );
  relay.on('broker', ({ up }) =>
    up ? log.info('broker reachable again') : log.error('broker unreachable; events stay PENDING'),
  );
  relay.on('failed', ({ rowIds }) => log.error({ rowIds }, 'outbox events FAILED after their last attempt'));
  relay.on('running', ({ running }) => {
    if (!running) void publisher.close();
  });
  let owned = -1;
  relay.on('partitions', ({ partitions, leader }) => {
    if (partitions.length !== owned) log.info({ partitions: partitions.length, leader }, 'relay partitions');
    owned = partitions.length;
  });
  return relay;
}

/** /healthz of a standalone relay: 503 while its loop is not running, so an orchestrator restarts it. */
export function relayHealth(relay: {
  running: boolean;
  partitions: number[];
}): () => { ok: boolean; body: Record<string, unknown> } {
  return () => ({
    ok: relay.running,
    body: {
      status: relay.running ? 'ok' : 'stopped',
      relay: relay.running,
      partitions: relay.partitions.length,
    },
  });
}

export { OutboxAdmin };
