import { createHash, randomBytes } from 'node:crypto';
import { ApiError } from '@astra/service-support';
import type { FastifyRequest } from 'fastify';
import type pg from 'pg';

/** Who is calling: an account's key, or an admin key that may act for any account. */
export interface Principal {
  keyId: number;
  accountId: string | null;
  isAdmin: boolean;
}

const KEY_PREFIX = 'astra_';
// The scheme is case-insensitive (RFC 9110); the key itself is not.
const BEARER = /^Bearer ([A-Za-z0-9_-]{1,200})$/i;

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** Creates a key bound to an account (created if new) or an admin key; returns the key, shown once. */
export async function createApiKey(
  db: pg.Pool | pg.PoolClient,
  accountId: string | null,
  isAdmin: boolean,
  expiresAt: Date | null = null,
): Promise<string> {
  return (await createApiKeyWithId(db, accountId, isAdmin, expiresAt)).key;
}

/** As createApiKey, also returning the key's id (what `keys list` shows and `keys revoke` takes). */
export async function createApiKeyWithId(
  db: pg.Pool | pg.PoolClient,
  accountId: string | null,
  isAdmin: boolean,
  expiresAt: Date | null = null,
): Promise<{ id: number; key: string }> {
  // An admin key bound to an account would read as either; the CLI refuses the pair, and so does this.
  if (isAdmin && accountId !== null) throw new Error('an admin key is not bound to an account');
  const key = KEY_PREFIX + randomBytes(32).toString('base64url');
  const result = await db.query<{ id: number }>(
    `WITH account AS (
       INSERT INTO accounts (id) SELECT $2::text WHERE $2::text IS NOT NULL ON CONFLICT (id) DO NOTHING
     )
     INSERT INTO api_keys (key_hash, account_id, is_admin, expires_at) VALUES ($1, $2, $3, $4) RETURNING id`,
    [digest(key), accountId, isAdmin, expiresAt],
  );
  return { id: Number(result.rows[0]?.id), key };
}

export interface ApiKeyInfo {
  id: number;
  accountId: string | null;
  isAdmin: boolean;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

/** Every key, oldest first; never the key itself (only its digest is stored). */
export async function listApiKeys(db: pg.Pool): Promise<ApiKeyInfo[]> {
  const result = await db.query<{
    id: number;
    account_id: string | null;
    is_admin: boolean;
    created_at: Date;
    expires_at: Date | null;
    revoked_at: Date | null;
  }>('SELECT id, account_id, is_admin, created_at, expires_at, revoked_at FROM api_keys ORDER BY id');
  return result.rows.map((row) => ({
    id: row.id,
    accountId: row.account_id,
    isAdmin: row.is_admin,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  }));
}

/**
 * Revokes a key: an UPDATE, not a DELETE, so its idempotency rows (and a purge deleting them) neither
 * block nor are lost. Returns 'revoked', 'already' or 'missing'.
 */
export async function revokeApiKey(db: pg.Pool, id: number): Promise<'revoked' | 'already' | 'missing'> {
  const result = await db.query<{ was_revoked: boolean }>(
    `UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now())
     FROM api_keys old WHERE k.id = $1 AND old.id = k.id
     RETURNING old.revoked_at IS NOT NULL AS was_revoked`,
    [id],
  );
  const row = result.rows[0];
  if (row === undefined) return 'missing';
  return row.was_revoked ? 'already' : 'revoked';
}

/**
 * How long a replica may keep answering for a key after its revocation: the cache below keeps known
 * keys this long, and the README promises every replica refuses a revoked key within 5 seconds.
 */
export const KEY_CACHE_TTL_MS = 2000;

/**
 * Resolves bearer keys to principals. Known keys are cached briefly so the hot path costs no query;
 * unknown keys are not cached, so guessing cannot fill memory.
 */
export class ApiKeyVerifier {
  private readonly cache = new Map<string, { principal: Principal; expires: number }>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly ttlMs = KEY_CACHE_TTL_MS,
    private readonly maxEntries = 10_000,
    /** The clock the cache runs on; tests pass a fake one. */
    private readonly now: () => number = Date.now,
  ) {}

  /** True when the request's key is cached as valid: authenticating it will cost no query. */
  knows(request: FastifyRequest): boolean {
    const match = BEARER.exec(request.headers.authorization ?? '');
    if (match?.[1] === undefined) return false;
    const cached = this.cache.get(digest(match[1]).toString('hex'));
    return cached !== undefined && cached.expires > this.now();
  }

  async authenticate(request: FastifyRequest): Promise<Principal> {
    const header = request.headers.authorization;
    const match = header === undefined ? null : BEARER.exec(header);
    if (match?.[1] === undefined) {
      throw new ApiError(401, 'UNAUTHENTICATED', 'send Authorization: Bearer <api key>', 'authorization');
    }
    const hash = digest(match[1]);
    const cacheKey = hash.toString('hex');
    const now = this.now();
    const cached = this.cache.get(cacheKey);
    if (cached !== undefined && cached.expires > now) return cached.principal;

    const result = await this.pool.query<{
      id: number;
      account_id: string | null;
      is_admin: boolean;
      revoked: boolean;
      expires_in_ms: number | null;
    }>({
      name: 'api_key_lookup',
      text: `SELECT id, account_id, is_admin, revoked_at IS NOT NULL AS revoked,
                    (extract(epoch FROM expires_at - now()) * 1000)::float8 AS expires_in_ms
             FROM api_keys WHERE key_hash = $1`,
      values: [hash],
    });
    const row = result.rows[0];
    if (row === undefined) throw new ApiError(401, 'UNAUTHENTICATED', 'unknown API key', 'authorization');
    if (row.revoked) throw new ApiError(401, 'UNAUTHENTICATED', 'this API key is revoked', 'authorization');
    if (row.expires_in_ms !== null && row.expires_in_ms <= 0) {
      throw new ApiError(401, 'UNAUTHENTICATED', 'this API key has expired', 'authorization');
    }
    const principal = { keyId: row.id, accountId: row.account_id, isAdmin: row.is_admin };
    if (this.cache.size >= this.maxEntries) this.cache.clear();
    // Cached no longer than the key lives (by the database's clock, counted from now).
    const ttl = row.expires_in_ms === null ? this.ttlMs : Math.min(this.ttlMs, row.expires_in_ms);
    this.cache.set(cacheKey, { principal, expires: now + ttl });
    return principal;
  }
}

/** A key acts for its own account only; admins act for any. */
export function authorize(principal: Principal, accountId: string): void {
  if (!principal.isAdmin && principal.accountId !== accountId) {
    throw new ApiError(403, 'FORBIDDEN', 'this API key may not act for that account', 'accountId');
  }
}
