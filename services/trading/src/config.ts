import {
  boolean,
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
  logLevel: LogLevel;
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
  /** /metrics (and a standalone relay's /healthz) listen here, apart from the API; 0 = any free port. */
  metricsPort: number;
  metricsHost: string;
  /** Serve the OpenAPI UI at /docs. */
  docsEnabled: boolean;
  /** Create and print a key for account `demo` on an empty database (never with NODE_ENV=production). */
  demoKey: boolean;
  /** Requests per key per rate-limit window, counted after authentication; 0 = no limit. */
  rateLimitPerKey: number;
  /** Requests per client address per window whose key is not already known; 0 = no limit. */
  rateLimitPerAddress: number;
  rateLimitWindowMs: number;
  /** Server-side limits for every statement and lock wait of the service's connections. */
  dbStatementTimeoutMs: number;
  dbLockTimeoutMs: number;
  /** Longest wait for a database connection (new, or free in the pool) before a 503. */
  dbConnectTimeoutMs: number;
  /** Longest time a client may take to send a whole request (headers and body). */
  httpRequestTimeoutMs: number;
  /** Longest a graceful shutdown may take before the process exits anyway. */
  shutdownTimeoutMs: number;
  /** One log line per request (at info), with its request id. */
  accessLog: boolean;
  /** OTLP/HTTP endpoint for traces; tracing is off when empty. */
  otlpEndpoint: string | undefined;
}

/** A URL for messages and logs: the password, if any, replaced by ***. */
export function redactUrl(value: string): string {
  try {
    const parsed = new URL(value);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(not shown: it may hold a password)';
  }
}

function otlpEndpoint(env: Env): string | undefined {
  const raw = text(env, 'OTEL_EXPORTER_OTLP_ENDPOINT', '');
  return raw === '' ? undefined : url(env, 'OTEL_EXPORTER_OTLP_ENDPOINT', '', ['http:', 'https:']);
}

export function loadConfig(env: Env = process.env): Config {
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
    logLevel: logLevel(env),
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
    metricsHost: text(env, 'METRICS_HOST', '127.0.0.1'),
    docsEnabled: boolean(env, 'DOCS_ENABLED', true),
    // A live key printed to the log is for a developer machine only.
    demoKey: boolean(env, 'DEMO_KEY', true) && env.NODE_ENV !== 'production',
    // Defaults far above one trader's needs and above the benchmark's ~2,000 trades/s on one key.
    rateLimitPerKey: integer(env, 'RATE_LIMIT_PER_KEY', 5000, 0, 1_000_000),
    rateLimitPerAddress: integer(env, 'RATE_LIMIT_PER_ADDRESS', 100, 0, 1_000_000),
    rateLimitWindowMs: integer(env, 'RATE_LIMIT_WINDOW_MS', 1000, 100, 3_600_000),
    dbStatementTimeoutMs: integer(env, 'DB_STATEMENT_TIMEOUT_MS', 5000, 100, 3_600_000),
    dbLockTimeoutMs: integer(env, 'DB_LOCK_TIMEOUT_MS', 2000, 100, 3_600_000),
    dbConnectTimeoutMs: integer(env, 'DB_CONNECT_TIMEOUT_MS', 2000, 100, 600_000),
    httpRequestTimeoutMs: integer(env, 'HTTP_REQUEST_TIMEOUT_MS', 10_000, 100, 600_000),
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 100, 600_000),
    accessLog: boolean(env, 'ACCESS_LOG', true),
    otlpEndpoint: otlpEndpoint(env),
  };
}
