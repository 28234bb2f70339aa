import pg from 'pg';
import { databaseError, driverCode } from './errors.ts';

/**
 * Creates the configured database when it does not exist yet (first start on a fresh server). Only
 * then does it connect to the `adminDatabase`: managed PostgreSQL often forbids connecting there.
 */
export async function ensureDatabase(databaseUrl: string, adminDatabase = 'postgres'): Promise<boolean> {
  const target = new URL(databaseUrl);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (name === '') return false;
  if (await databaseExists(databaseUrl)) return false;
  const admin = new URL(databaseUrl);
  admin.pathname = `/${adminDatabase}`;
  const client = new pg.Client({ connectionString: admin.toString() });
  client.on('error', () => {});
  try {
    await client.connect();
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount !== 0) return false;
    try {
      await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    } catch (error) {
      // Two replicas starting together: the other one created it first. PostgreSQL reports that as
      // duplicate_database (42P04), or as unique_violation (23505) when both CREATEs overlap.
      const code = driverCode(error);
      if (code !== '42P04' && code !== '23505') throw databaseError(error);
      return false;
    }
    return true;
  } catch (error) {
    throw databaseError(error);
  } finally {
    await client.end().catch(() => {});
  }
}

/** True when the database answers; false only when the server says it does not exist (3D000). */
async function databaseExists(databaseUrl: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return true;
  } catch (error) {
    if (driverCode(error) === '3D000') return false;
    throw databaseError(error);
  } finally {
    await client.end().catch(() => {});
  }
}
