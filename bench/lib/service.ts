/** The trading service's real processes (and the bench-only direct-publish server), started for a scenario. */

import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { freePort, type ManagedProcess, waitFor } from '@astra/test-support';
import { prepareDatabase } from '@astra/trading-service/bootstrap';
import { databaseUrl, randomToken, spawnNode, withClient } from './infra.ts';

// The service's entry points through its package exports, so the bench runs what `npm start` runs.
export const SERVICE_MAIN = fileURLToPath(import.meta.resolve('@astra/trading-service/main'));
export const RELAY_MAIN = fileURLToPath(import.meta.resolve('@astra/trading-service/relay-main'));
export const DIRECT_SERVER = fileURLToPath(new URL('../direct-publish-server.ts', import.meta.url));

export const ACCOUNTS = 1000;

/**
 * Migrates a fresh database the way the service does, adds `ACCOUNTS` accounts (acct-1 ...) and an
 * admin key that may trade for any of them; returns the key.
 */
export async function prepareTradingDatabase(database: string): Promise<string> {
  const url = databaseUrl(database);
  await prepareDatabase(url, () => {});
  const key = `astra_bench${randomToken(24)}`;
  await withClient(url, async (client) => {
    await client.query("INSERT INTO accounts (id) SELECT 'acct-' || g FROM generate_series(1, $1::int) g", [
      ACCOUNTS,
    ]);
    await client.query('INSERT INTO api_keys (key_hash, account_id, is_admin) VALUES ($1, NULL, true)', [
      createHash('sha256').update(key).digest(),
    ]);
  });
  return key;
}

export interface RunningServer {
  child: ManagedProcess;
  url: string;
}

async function waitHealthy(child: ManagedProcess, url: string): Promise<void> {
  await waitFor(
    `${child.name} at ${url}`,
    async () => {
      if (!child.running) throw new Error(`${child.name} exited: ${child.logTail()}`);
      const response = await fetch(`${url}/healthz`);
      return response.ok;
    },
    60_000,
    100,
  ).catch((error: unknown) => {
    void child.kill();
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${child.logTail()}`);
  });
}

/** How the service runs its relay: in-process (marking or deleting what it publishes), or not at all. */
export type ServiceRelay = 'mark' | 'delete' | 'off';

/** The service's `main` (as `npm start` runs it), with the relay in-process unless told otherwise. */
export async function startService(
  database: string,
  redisUrl: string,
  relay: ServiceRelay = 'mark',
  nodeArgs: string[] = [],
): Promise<RunningServer> {
  const port = await freePort();
  const child = spawnNode('service', SERVICE_MAIN, [], {
    nodeArgs,
    env: {
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl(database),
      REDIS_URL: redisUrl,
      LOG_LEVEL: 'warn',
      METRICS_PORT: String(await freePort()),
      RELAY_ENABLED: String(relay !== 'off'),
      OUTBOX_DELETE_PUBLISHED: String(relay === 'delete'),
    },
  });
  const url = `http://127.0.0.1:${port}`;
  await waitHealthy(child, url);
  return { child, url };
}

/** The service's `relay-main`: the standalone relay (`npm run relay`). */
export async function startRelayProcess(database: string, redisUrl: string): Promise<RunningServer> {
  const port = await freePort();
  const child = spawnNode('relay', RELAY_MAIN, [], {
    env: {
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl(database),
      REDIS_URL: redisUrl,
      LOG_LEVEL: 'warn',
      METRICS_PORT: String(port),
    },
  });
  const url = `http://127.0.0.1:${port}`;
  await waitHealthy(child, url);
  return { child, url };
}

/** The old design, for comparison: commit, then XADD both events directly (bench/direct-publish-server.ts). */
export async function startDirectServer(database: string, redisUrl: string): Promise<RunningServer> {
  const port = await freePort();
  const child = spawnNode('direct-publish', DIRECT_SERVER, [], {
    env: { PORT: String(port), DATABASE_URL: databaseUrl(database), REDIS_URL: redisUrl },
  });
  const url = `http://127.0.0.1:${port}`;
  await waitHealthy(child, url);
  return { child, url };
}
