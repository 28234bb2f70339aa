import { OutboxAdmin, OutboxRelay, RedisStreamsPublisher } from '@astra/outbox';
import type { Logger } from 'pino';
import type { Config } from './config.ts';

/** The publisher to Redis, Redis Sentinel or Redis Cluster, as configured. */
export function createPublisher(config: Config): RedisStreamsPublisher {
  const target =
    config.redisSentinel !== undefined
      ? { sentinel: config.redisSentinel }
      : config.redisClusterNodes.length > 0
        ? { clusterNodes: config.redisClusterNodes }
        : { url: config.redisUrl };
  return new RedisStreamsPublisher({
    ...target,
    waitReplicas: config.relayRedisWaitReplicas,
    dedupeWindowSeconds: config.relayDedupeWindowSeconds,
    ...(config.relayStreamMaxLen === undefined ? {} : { maxLen: config.relayStreamMaxLen }),
  });
}

/** The relay as this service configures it, logging via pino. */
export function createRelay(config: Config, logger: Logger): OutboxRelay {
  const publisher = createPublisher(config);
  const relay = new OutboxRelay({
    connectionString: config.databaseUrl,
    publisher,
    batchSize: config.relayBatchSize,
    pollIntervalMs: config.relayPollIntervalMs,
    maxAttempts: config.relayMaxAttempts,
    retentionSeconds: config.retentionHours * 3600,
    deletePublished: config.deletePublished,
    stallTimeoutMs: config.relayStallTimeoutMs,
  });
  const log = logger.child({ component: 'outbox-relay' });
  relay.on('fault', ({ kind, error, count }) =>
    log.warn({ kind, count, err: error.message }, 'outbox publish problem'),
  );
  relay.on('broker', ({ up }) =>
    up ? log.info('broker reachable again') : log.error('broker unreachable; events stay PENDING'),
  );
  relay.on('failed', ({ rowIds }) => log.error({ rowIds }, 'outbox events FAILED after their last attempt'));
  relay.on('dataLoss', (repair) => {
    const { unrecoverable, ...range } = repair;
    if (unrecoverable > 0)
      log.error({ ...range, unrecoverable }, 'Redis lost events the outbox no longer has: they are gone');
    else log.warn(range, 'Redis lost acknowledged events: published again in their order');
  });
  relay.on('fenced', ({ partitions }) =>
    log.warn({ partitions }, 'relay fenced off: another relay owns its partitions now; reconnecting'),
  );
  relay.on('takeover', ({ pid, partitions }) =>
    log.warn({ pid, partitions }, 'ended a stalled relay session and took its partitions over'),
  );
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

export { OutboxAdmin };
