/**
 * The reporting service's configuration, read from the environment in this one place. Every variable
 * has a working default for a developer machine; a value that is present but invalid stops the start
 * with a message naming the variable (exit code 2).
 */
export interface Config {
  host: string;
  /** HTTP port; 0 picks a free one (several processes on one host). */
  port: number;
  databaseUrl: string;
  redisUrl: string;
  /** host:port list; when set, the streams are read from a Redis Cluster instead. */
  redisClusterNodes: string[];
  /** Sentinels (host:port list) and the primary's name; when set, the consumer follows its failovers. */
  redisSentinel: { nodes: string[]; name: string } | undefined;
  /** Inbox rows older than this are pruned (see the README's rule); 0 keeps them forever. */
  inboxRetentionSeconds: number;
  /** The trading service's database, read only, for its API keys. */
  tradingDatabaseUrl: string;
  /** Consumer group: every reporting process shares the work of one group. */
  group: string;
  dbPoolSize: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
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
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function text(env: Env, name: string, fallback: string): string {
  const value = env[name];
  return value === undefined || value === '' ? fallback : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max)
    throw new ConfigError(name, `must be a whole number from ${min} to ${max}, got "${raw}"`);
  return Number(raw);
}

function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const value = text(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new ConfigError(name, `must be a URL, got "${value}"`);
  }
  if (!protocols.includes(parsed.protocol))
    throw new ConfigError(name, `must start with ${protocols.join(' or ')}, got "${parsed.protocol}"`);
  return value;
}

/** A comma-separated host:port list. */
function nodeList(env: Env, name: string): string[] {
  const nodes = text(env, name, '')
    .split(',')
    .map((node) => node.trim())
    .filter((node) => node !== '');
  for (const node of nodes)
    if (!/^[^\s:]+:\d{1,5}$/.test(node))
      throw new ConfigError(name, `must be host:port[,host:port...], got "${node}"`);
  return nodes;
}

export function loadConfig(env: Env = process.env): Config {
  const logLevel = text(env, 'LOG_LEVEL', 'info');
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel))
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  const group = text(env, 'REPORTING_GROUP', 'reporting');
  if (!/^[A-Za-z0-9_.:-]{1,200}$/.test(group))
    throw new ConfigError('REPORTING_GROUP', `must be 1-200 letters, digits or _.:-, got "${group}"`);
  const postgres = ['postgres:', 'postgresql:'];
  // Which Redis, as the trading service reads it.
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
  return {
    host: text(env, 'HOST', '0.0.0.0'),
    port: integer(env, 'REPORTING_PORT', 3001, 0, 65535),
    databaseUrl: url(
      env,
      'REPORTING_DATABASE_URL',
      'postgres://postgres@127.0.0.1:5432/astra_reporting',
      postgres,
    ),
    redisUrl: url(env, 'REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    redisClusterNodes: clusterNodes,
    redisSentinel: sentinelNodes.length > 0 ? { nodes: sentinelNodes, name: sentinelName } : undefined,
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
    logLevel: logLevel as Config['logLevel'],
  };
}
