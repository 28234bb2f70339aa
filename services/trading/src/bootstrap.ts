import { ensureDatabase } from '@astra/outbox/migrations';
import type pg from 'pg';
import { migrate } from './database.ts';
import { createApiKey } from './http/auth.ts';

/** Creates the database if missing and applies pending migrations (under node-pg-migrate's lock). */
export async function prepareDatabase(databaseUrl: string, log: (message: string) => void): Promise<void> {
  if (await ensureDatabase(databaseUrl)) log('created the database');
  const applied = await migrate(databaseUrl, 'up');
  if (applied.length > 0) log(`applied migrations: ${applied.join(', ')}`);
}

/**
 * On an empty database, creates the account `demo` and a key for it so a newcomer can trade at once.
 * Returns the key, or null when keys exist already. A transaction-scoped advisory lock keeps two
 * replicas starting together from both creating one.
 */
export async function createDemoKeyIfEmpty(pool: pg.Pool): Promise<string | null> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("SELECT pg_advisory_xact_lock(hashtext('astra-demo-key'))");
    const existing = await client.query('SELECT 1 FROM api_keys LIMIT 1');
    const key = existing.rowCount === 0 ? await createApiKey(client, 'demo', false) : null;
    await client.query('COMMIT');
    return key;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

export function demoBanner(key: string, port: number): string {
  return [
    'Created the demo account "demo" and its API key:',
    `  ${key}`,
    'Try it:',
    `  curl -s -X POST http://127.0.0.1:${port}/v1/trades -H 'Authorization: Bearer ${key}' \\`,
    `    -H 'Content-Type: application/json' \\`,
    `    -d '{"accountId":"demo","symbol":"AAPL","side":"BUY","quantity":"10","price":"189.25"}'`,
  ].join('\n');
}
