import { OutboxAdmin, OutboxRelay, RedisStreamsPublisher, tracedPublisher } from '@astra/outbox';
import type { Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Config } from './config.ts';
import { createOutageLog } from './outage-log.ts';

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
export function createRelay(config: Config, logger: Logger, tracer?: Tracer): OutboxRelay {
  const publisher = createPublisher(config);
  const relay = new OutboxRelay({
    connectionString: config.databaseUrl,
    // A span per publish call, linked to each event's stored trace context, while tracing is on.
    publisher: tracer === undefined ? publisher : tracedPublisher(publisher, tracer),
    batchSize: config.relayBatchSize,
    pollIntervalMs: config.relayPollIntervalMs,
    maxAttempts: config.relayMaxAttempts,
    retentionSeconds: config.retentionHours * 3600,
    deletePublished: config.deletePublished,
    stallTimeoutMs: config.relayStallTimeoutMs,
  });
  const log = logger.child({ component: 'outbox-relay' });
  // Outages are logged when they begin and end, with a summary every LOG_OUTAGE_SUMMARY_SECONDS in
  // between: the relay retries every few milliseconds, and a line per attempt drowned the logs.
  const outages = createOutageLog(log, config.logOutageSummaryMs, 'the relay retries, events stay PENDING');
  relay.on('fault', ({ kind, error, count }) => {
    if (kind === 'event') outages.log.refusedEvents(error.message, count, Date.now());
    else outages.log.failed(kind, error, count, Date.now());
  });
  // Redis has answered only once it acknowledged a publish, or when a whole round after its ping went
  // by without a broker failure: a Redis out of memory answers PING and still refuses every write.
  let brokerAnswered = false;
  relay.on('broker', ({ up }) => {
    brokerAnswered = up;
  });
  relay.on('published', () => outages.log.recovered('broker', Date.now()));
  // Any finished round trip to the database ends a database outage.
  const databaseAnswered = () => outages.log.recovered('database', Date.now());
  relay.on('batch', databaseAnswered);
  relay.on('published', databaseAnswered);
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
    if (running) return;
    outages.stop();
    void publisher.close();
  });
  let owned = -1;
  relay.on('partitions', ({ partitions, leader }) => {
    databaseAnswered();
    if (brokerAnswered && outages.log.isDown('broker')) outages.log.recovered('broker', Date.now());
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
