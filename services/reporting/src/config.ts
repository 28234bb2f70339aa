import { OutboxError, type RedisTarget, resolveRedisTarget } from '@astra/outbox/consumer';
import {
  ConfigError,
  type Env,
  integer,
  type LogLevel,
  logLevel,
  nodeList,
  text,
  url,
} from '@astra/service-support';

export { ConfigError };

/**
 * The reporting service's configuration, read from the environment in this one place. Every variable
 * has a working default for a developer machine; a value that is present but invalid stops the start
 * with a message naming the variable (exit code 2).
 */
export interface Config {
  host: string;
  /** HTTP port; 0 picks a free one (several processes on one host). */
  port: number;
  /** /metrics listens here, apart from the API; 0 picks a free one (logged). */
  metricsPort: number;
  metricsHost: string;
  databaseUrl: string;
  redisUrl: string;
  /** Which Redis the consumer reads: REDIS_URL, or a cluster, or a Sentinel-watched primary. */
  redis: RedisTarget;
  /** Inbox rows older than this are pruned (see the README's rule); 0 keeps them forever. */
  inboxRetentionSeconds: number;
  /** The trading service's database, read only, for its API keys. */
  tradingDatabaseUrl: string;
  /** Consumer group: every reporting process shares the work of one group. */
  group: string;
  dbPoolSize: number;
  logLevel: LogLevel;
}

const REDIS_VARIABLES: Record<string, string> = {
  url: 'REDIS_URL',
  clusterNodes: 'REDIS_CLUSTER_NODES',
  'sentinel.nodes': 'REDIS_SENTINEL_NODES',
  'sentinel.name': 'REDIS_SENTINEL_NAME',
};

/**
 * Which Redis, from the variables the trading service reads (REDIS_SENTINEL_NODES and
 * REDIS_SENTINEL_NAME, REDIS_CLUSTER_NODES, else REDIS_URL); the library checks the combination.
 */
function redisTarget(env: Env, url: string): RedisTarget {
  const clusterNodes = nodeList(env, 'REDIS_CLUSTER_NODES');
  const sentinelNodes = nodeList(env, 'REDIS_SENTINEL_NODES');
  const target: RedisTarget = {};
  if (sentinelNodes.length > 0)
    target.sentinel = { nodes: sentinelNodes, name: text(env, 'REDIS_SENTINEL_NAME', '') };
  if (clusterNodes.length > 0) target.clusterNodes = clusterNodes;
  if (target.sentinel === undefined && target.clusterNodes === undefined) target.url = url;
  if (target.sentinel !== undefined && target.clusterNodes !== undefined)
    throw new ConfigError(
      'REDIS_CLUSTER_NODES',
      'give REDIS_SENTINEL_NODES or REDIS_CLUSTER_NODES, not both',
    );
  try {
    resolveRedisTarget(target);
  } catch (error) {
    if (!(error instanceof OutboxError)) throw error;
    const field = error.field ?? 'url';
    throw new ConfigError(REDIS_VARIABLES[field] ?? 'REDIS_URL', error.message.slice(field.length + 2));
  }
  return target;
}

export function loadConfig(env: Env = process.env): Config {
  const group = text(env, 'REPORTING_GROUP', 'reporting');
  if (!/^[A-Za-z0-9_.:-]{1,200}$/.test(group))
    throw new ConfigError('REPORTING_GROUP', `must be 1-200 letters, digits or _.:-, got "${group}"`);
  const postgres = ['postgres:', 'postgresql:'];
  const redisUrl = url(env, 'REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']);
  return {
    host: text(env, 'HOST', '0.0.0.0'),
    port: integer(env, 'REPORTING_PORT', 3001, 0, 65535),
    // Next to the trading service's 9464 and a standalone relay's 9465 on one host.
    metricsPort: integer(env, 'REPORTING_METRICS_PORT', 9466, 0, 65535),
    metricsHost: text(env, 'METRICS_HOST', '127.0.0.1'),
    databaseUrl: url(
      env,
      'REPORTING_DATABASE_URL',
      'postgres://postgres@127.0.0.1:5432/astra_reporting',
      postgres,
    ),
    redisUrl,
    redis: redisTarget(env, redisUrl),
    // Hours, like the trading service's OUTBOX_RETENTION_HOURS, which it must not be below.
    inboxRetentionSeconds: integer(env, 'REPORTING_INBOX_RETENTION_HOURS', 168, 0, 87_600) * 3600,
    tradingDatabaseUrl: url(
      env,
      'TRADING_DATABASE_URL',
      'postgres://postgres@127.0.0.1:5432/astra_trading',
      postgres,
    ),
    group,
    dbPoolSize: integer(env, 'DB_POOL_SIZE', 10, 2, 1000),
    logLevel: logLevel(env),
  };
}
