import { fileURLToPath } from 'node:url';
import { runMigrations } from '@astra/outbox/migrations';
import { createPool as createServicePool } from '@astra/service-support';
import type pg from 'pg';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));

/** A pool with no statement limits; `options` are session settings sent at connect. */
export function createPool(databaseUrl: string, max: number, settings: { options?: string } = {}): pg.Pool {
  return createServicePool(databaseUrl, {
    applicationName: 'astra-reporting',
    max,
    options: settings.options,
  });
}

/** Applies (or reverts) the service's migrations; see runMigrations for the lock replicas share. */
export function migrate(
  databaseUrl: string,
  direction: 'up' | 'down' = 'up',
  count?: number,
): Promise<string[]> {
  return runMigrations({ databaseUrl, dir: MIGRATIONS_DIR, direction, count });
}
