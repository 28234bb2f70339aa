import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { createScratchDatabase } from '../../../packages/outbox/test/support.ts';
import { buildApp } from '../src/app.ts';
import { createPool, migrate } from '../src/database.ts';
import { createApiKey } from '../src/http/auth.ts';

export { SERVER_URL } from '../../../packages/outbox/test/support.ts';

export interface TestDatabase {
  url: string;
  name: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/**
 * A fresh database for one test file, migrated to the latest schema unless `migrated` is false.
 * Isolation by database keeps tests from seeing each other's rows on the shared server.
 */
export async function createTestDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const { name, url: databaseUrl, dropDatabase } = await createScratchDatabase('astra_test');
  if (options.migrated !== false) await migrate(databaseUrl, 'up');
  const pool = createPool(databaseUrl, 20);
  return {
    url: databaseUrl,
    name,
    pool,
    async drop() {
      await pool.end();
      await dropDatabase();
    },
  };
}

export interface TestApp {
  db: TestDatabase;
  app: FastifyInstance;
  /** Creates an account with its own key and returns the Authorization header for it. */
  accountKey(accountId: string): Promise<string>;
  adminKey(): Promise<string>;
  close(): Promise<void>;
}

export async function createTestApp(): Promise<TestApp> {
  const db = await createTestDatabase();
  const app = await buildApp({ pool: db.pool, eventSource: '/astra/trading-service/test' });
  return {
    db,
    app,
    accountKey: async (accountId) => `Bearer ${await createApiKey(db.pool, accountId, false)}`,
    adminKey: async () => `Bearer ${await createApiKey(db.pool, null, true)}`,
    async close() {
      await app.close();
      await db.drop();
    },
  };
}

/** Row counts of everything a trade writes: a rejected request must leave them unchanged. */
export async function writeCounts(
  pool: pg.Pool,
): Promise<{ trades: number; positions: number; outbox: number; versions: number }> {
  const result = await pool.query<{ trades: number; positions: number; outbox: number; versions: number }>(
    `SELECT (SELECT count(*) FROM trades)::int AS trades,
            (SELECT count(*) FROM positions)::int AS positions,
            (SELECT count(*) FROM event_outbox)::int AS outbox,
            (SELECT coalesce(sum(version), 0) FROM positions)::int AS versions`,
  );
  const row = result.rows[0];
  if (row === undefined) throw new Error('no counts');
  return row;
}

export { createPool };

/** A valid trade body; override any field. */
export function tradeBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { accountId: 'alice', symbol: 'AAPL', side: 'BUY', quantity: '10', price: '189.25', ...overrides };
}

/** POSTs a trade through `inject()` as JSON; a string `payload` is sent as it is (raw text). */
export function postTrade(
  app: FastifyInstance,
  authorization: string | undefined,
  payload: unknown,
  headers: Record<string, string> = {},
) {
  return app.inject({
    method: 'POST',
    url: '/v1/trades',
    headers: {
      'content-type': 'application/json',
      ...(authorization === undefined ? {} : { authorization }),
      ...headers,
    },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });
}

export interface ErrorShape {
  error: { code: string; message: string; field: string | null };
}

/**
 * Asserts the one error shape every failure has and returns it. `expected` pins status, code and
 * field when given; otherwise the status must at least be a 4xx.
 */
export function assertError(
  response: { statusCode: number; body: string; headers: Record<string, unknown> },
  expected: { status?: number; code?: string; field?: string | null } = {},
): ErrorShape['error'] {
  const context = `${response.statusCode} ${response.body}`;
  if (expected.status === undefined) {
    assert.ok(response.statusCode >= 400 && response.statusCode < 500, `expected a 4xx: ${context}`);
  } else {
    assert.equal(response.statusCode, expected.status, context);
  }
  assert.match(String(response.headers['content-type']), /^application\/json/, context);
  const parsed: unknown = JSON.parse(response.body);
  assert.ok(typeof parsed === 'object' && parsed !== null && 'error' in parsed, context);
  const error = (parsed as { error: unknown }).error;
  assert.ok(typeof error === 'object' && error !== null, context);
  const { code, message, field } = error as Record<string, unknown>;
  assert.equal(typeof code, 'string', context);
  assert.match(code as string, /^[A-Z][A-Z_]+$/, context);
  assert.equal(typeof message, 'string', context);
  assert.ok((message as string).length > 0, context);
  assert.ok(field === null || typeof field === 'string', context);
  assert.deepEqual(Object.keys(error).sort(), ['code', 'field', 'message'], context);
  if (expected.code !== undefined) assert.equal(code, expected.code, context);
  if (expected.field !== undefined) assert.equal(field, expected.field, context);
  return { code: code as string, message: message as string, field: field as string | null };
}
