/**
 * The service's configuration, read from the environment in this one place. Every variable has a
 * working default for a developer machine; a value that is present but invalid stops the start with a
 * message naming the variable.
 */
export interface Config {
  databaseUrl: string;
  redisUrl: string;
  /** Comma-separated host:port list; when set, the relay publishes to a Redis Cluster instead. */
  redisClusterNodes: string[];
  /** Sentinels (host:port list) and the primary's name; when set, the relay follows its failovers. */
  redisSentinel: { nodes: string[]; name: string } | undefined;
  /** Replicas that must confirm a publish (WAIT) before its events are marked PUBLISHED. */
  relayRedisWaitReplicas: number;
  /** A relay idle this long while holding due events is ended and its partitions taken over. */
  relayStallTimeoutMs: number;
  host: string;
  port: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  dbPoolSize: number;
  bodyLimitBytes: number;
  eventSource: string;
  relayEnabled: boolean;
  relayBatchSize: number;
  relayPollIntervalMs: number;
  relayMaxAttempts: number;
  /** While Redis or the database is down: one log line per this many ms, not one per attempt. */
  logOutageSummaryMs: number;
  relayDedupeWindowSeconds: number;
  relayStreamMaxLen: number | undefined;
  retentionHours: number;
  /** Delete events as they are published instead of keeping them for `retentionHours`. */
  deletePublished: boolean;
  /** How long an Idempotency-Key's first answer is kept (and a retry with that key is safe). */
  idempotencyKeyTtlHours: number;
  metricsPort: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
  }
}

type Env = Record<string, string | undefined>;

function text(env: Env, name: string, fallback: string): string {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  return value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(name, `must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return Number(raw);
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const value = text(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new ConfigError(name, `must be a URL, got "${value}"`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must start with ${protocols.join(' or ')}, got "${parsed.protocol}"`);
  }
  return value;
}

/** A comma-separated host:port list. */
function nodeList(env: Env, name: string): string[] {
  const nodes = text(env, name, '')
    .split(',')
    .map((node) => node.trim())
    .filter((node) => node !== '');
  for (const node of nodes) {
    if (!/^[^\s:]+:\d{1,5}$/.test(node)) {
      throw new ConfigError(name, `must be host:port[,host:port...], got "${node}"`);
    }
  }
  return nodes;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function loadConfig(env: Env = process.env): Config {
  const logLevel = text(env, 'LOG_LEVEL', 'info');
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  }
  const clusterNodes = nodeList(env, 'REDIS_CLUSTER_NODES');
  const sentinelNodes = nodeList(env, 'REDIS_SENTINEL_NODES');
  const sentinelName = text(env, 'REDIS_SENTINEL_NAME', '');
  if (sentinelNodes.length > 0 && sentinelName === '')
    throw new ConfigError('REDIS_SENTINEL_NAME', 'is required with REDIS_SENTINEL_NODES');
  if (sentinelNodes.length > 0 && clusterNodes.length > 0)
    throw new ConfigError(
      'REDIS_SENTINEL_NODES',
      'give REDIS_SENTINEL_NODES or REDIS_CLUSTER_NODES, not both',
    );
  const maxLen = integer(env, 'RELAY_STREAM_MAXLEN', 0, 0, 2 ** 31 - 1);
  return {
    databaseUrl: url(env, 'DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/astra_trading', [
      'postgres:',
      'postgresql:',
    ]),
    redisUrl: url(env, 'REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    redisClusterNodes: clusterNodes,
    redisSentinel: sentinelNodes.length > 0 ? { nodes: sentinelNodes, name: sentinelName } : undefined,
    relayRedisWaitReplicas: integer(env, 'RELAY_REDIS_WAIT_REPLICAS', 0, 0, 100),
    relayStallTimeoutMs: integer(env, 'RELAY_STALL_TIMEOUT_MS', 15_000, 0, 3_600_000),
    host: text(env, 'HOST', '0.0.0.0'),
    port: integer(env, 'PORT', 3000, 0, 65535),
    logLevel: logLevel as Config['logLevel'],
    dbPoolSize: integer(env, 'DB_POOL_SIZE', 10, 1, 1000),
    bodyLimitBytes: integer(env, 'BODY_LIMIT_BYTES', 16 * 1024, 256, 1024 * 1024),
    eventSource: text(env, 'EVENT_SOURCE', '/astra/trading-service'),
    relayEnabled: boolean(env, 'RELAY_ENABLED', true),
    relayBatchSize: integer(env, 'RELAY_BATCH_SIZE', 500, 1, 10000),
    relayPollIntervalMs: integer(env, 'RELAY_POLL_INTERVAL_MS', 1000, 10, 3_600_000),
    relayMaxAttempts: integer(env, 'RELAY_MAX_ATTEMPTS', 10, 1, 1000),
    logOutageSummaryMs: integer(env, 'LOG_OUTAGE_SUMMARY_SECONDS', 60, 1, 3600) * 1000,
    relayDedupeWindowSeconds: integer(env, 'RELAY_DEDUPE_WINDOW_SECONDS', 7 * 24 * 3600, 60, 365 * 24 * 3600),
    relayStreamMaxLen: maxLen === 0 ? undefined : maxLen,
    retentionHours: integer(env, 'OUTBOX_RETENTION_HOURS', 7 * 24, 1, 365 * 24),
    deletePublished: boolean(env, 'OUTBOX_DELETE_PUBLISHED', false),
    idempotencyKeyTtlHours: integer(env, 'IDEMPOTENCY_KEY_TTL_HOURS', 24, 1, 365 * 24),
    metricsPort: integer(env, 'METRICS_PORT', 9464, 0, 65535),
  };
}
