import { fileURLToPath } from 'node:url';
import { type ManagedProcess, spawnManaged } from '@astra/test-support';

/** The repository root: processes run from there, as a newcomer would run them. */
export const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const MAIN = 'services/trading/src/main.ts';

/** Variables the service reads: a test sets the ones it means, the rest come from no one. */
const CONFIG_VARIABLES = [
  'DATABASE_URL',
  'REDIS_URL',
  'REDIS_CLUSTER_NODES',
  'HOST',
  'PORT',
  'LOG_LEVEL',
  'DB_POOL_SIZE',
  'BODY_LIMIT_BYTES',
  'EVENT_SOURCE',
  'RELAY_ENABLED',
  'RELAY_BATCH_SIZE',
  'RELAY_POLL_INTERVAL_MS',
  'RELAY_MAX_ATTEMPTS',
  'RELAY_DEDUPE_WINDOW_SECONDS',
  'RELAY_STREAM_MAXLEN',
  'OUTBOX_RETENTION_HOURS',
  'OUTBOX_DELETE_PUBLISHED',
  'METRICS_PORT',
  'METRICS_HOST',
  'IDEMPOTENCY_KEY_TTL_HOURS',
  'DOCS_ENABLED',
  'DEMO_KEY',
  'NODE_ENV',
  'RATE_LIMIT_PER_KEY',
  'RATE_LIMIT_PER_ADDRESS',
  'RATE_LIMIT_WINDOW_MS',
  'DB_STATEMENT_TIMEOUT_MS',
  'DB_LOCK_TIMEOUT_MS',
  'DB_CONNECT_TIMEOUT_MS',
  'HTTP_REQUEST_TIMEOUT_MS',
  'SHUTDOWN_TIMEOUT_MS',
  'ACCESS_LOG',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
];

export function testEnv(overrides: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of CONFIG_VARIABLES) delete env[name];
  // node --test marks its children; the service must not think it is a test runner.
  delete env.NODE_TEST_CONTEXT;
  return { ...env, ...overrides };
}

/** Starts `node --import tsx <main>` from the repository root, its output kept in memory. */
export function startNode(main: string, env: NodeJS.ProcessEnv): ManagedProcess {
  return spawnManaged(main, process.execPath, ['--import', 'tsx', main], { env, cwd: ROOT });
}

/** `npm` as the user would type it; the test runner's node is first on PATH. */
export const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
