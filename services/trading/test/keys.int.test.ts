import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ApiError } from '@astra/service-support';
import type { FastifyRequest } from 'fastify';
import pg from 'pg';
import {
  ApiKeyVerifier,
  createApiKeyWithId,
  KEY_CACHE_TTL_MS,
  listApiKeys,
  revokeApiKey,
} from '../src/http/auth.ts';
import { createTestApp, postTrade, type TestApp, tradeBody } from './support.ts';

const asRequest = (key: string) => ({ headers: { authorization: `Bearer ${key}` } }) as FastifyRequest;

async function refusal(verifier: ApiKeyVerifier, key: string): Promise<string | null> {
  try {
    await verifier.authenticate(asRequest(key));
    return null;
  } catch (error) {
    assert.ok(error instanceof ApiError && error.statusCode === 401, String(error));
    return error.message;
  }
}

describe('API key lifecycle', () => {
  let t: TestApp;
  let clock = 1_000_000;
  const now = () => clock;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  test('a revoked key is refused by every replica once their cache (at most 5 s) has passed', async () => {
    assert.ok(KEY_CACHE_TTL_MS <= 5000);
    const { id, key } = await createApiKeyWithId(t.db.pool, 'alice', false);
    const replicas = [1, 2].map(() => new ApiKeyVerifier(t.db.pool, KEY_CACHE_TTL_MS, 10_000, now));
    for (const replica of replicas) assert.equal(await refusal(replica, key), null);
    assert.equal(await revokeApiKey(t.db.pool, id), 'revoked');
    assert.equal(await revokeApiKey(t.db.pool, id), 'already');
    assert.equal(await revokeApiKey(t.db.pool, 999_999), 'missing');
    clock += KEY_CACHE_TTL_MS + 1;
    for (const replica of replicas) assert.equal(await refusal(replica, key), 'this API key is revoked');
    const listed = (await listApiKeys(t.db.pool)).find((info) => info.id === id);
    assert.ok(listed?.revokedAt instanceof Date);
  });

  test('a key with idempotency history is revoked while a purge deletes that history', async () => {
    const { id, key } = await createApiKeyWithId(t.db.pool, 'bob', false);
    const traded = await postTrade(t.app, `Bearer ${key}`, tradeBody({ accountId: 'bob' }), {
      'idempotency-key': 'history',
    });
    assert.equal(traded.statusCode, 201, traded.body);
    const purge = await t.db.pool.connect();
    // Fails fast instead of hanging the test if revocation waited for the purge's locks.
    const admin = new pg.Pool({ connectionString: t.db.url, max: 1, statement_timeout: 5000 });
    // Its sockets may still be closing when the database is dropped (brianc/node-postgres#2328).
    admin.on('error', () => {});
    try {
      await purge.query('BEGIN');
      const deleted = await purge.query('DELETE FROM idempotency_keys WHERE api_key_id = $1', [id]);
      assert.equal(deleted.rowCount, 1);
      assert.equal(await revokeApiKey(admin, id), 'revoked');
      await purge.query('COMMIT');
    } finally {
      await purge.query('ROLLBACK').catch(() => {});
      purge.release();
      await admin.end();
    }
  });

  test('an expired key is refused; the cache never outlives the expiry', async () => {
    const inAnHour = new Date(Date.now() + 3_600_000);
    const { id, key } = await createApiKeyWithId(t.db.pool, 'carol', false, inAnHour);
    const verifier = new ApiKeyVerifier(t.db.pool, KEY_CACHE_TTL_MS, 10_000, now);
    assert.equal(await refusal(verifier, key), null);
    await t.db.pool.query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", [id]);
    clock += KEY_CACHE_TTL_MS + 1;
    assert.equal(await refusal(verifier, key), 'this API key has expired');
  });

  test('an admin key cannot be bound to an account', async () => {
    await assert.rejects(createApiKeyWithId(t.db.pool, 'alice', true), /not bound to an account/);
  });
});
