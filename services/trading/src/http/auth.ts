import { createHash, randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type pg from 'pg';
import { ApiError } from './errors.ts';

/** Who is calling: an account's key, or an admin key that may act for any account. */
export interface Principal {
  keyId: number;
  accountId: string | null;
  isAdmin: boolean;
}

const KEY_PREFIX = 'astra_';

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** Creates a key bound to an account (created if new) or an admin key; returns the key, shown once. */
export async function createApiKey(
  db: pg.Pool | pg.PoolClient,
  accountId: string | null,
  isAdmin: boolean,
): Promise<string> {
  const key = KEY_PREFIX + randomBytes(32).toString('base64url');
  await db.query(
    `WITH account AS (
       INSERT INTO accounts (id) SELECT $2::text WHERE $2::text IS NOT NULL ON CONFLICT (id) DO NOTHING
     )
     INSERT INTO api_keys (key_hash, account_id, is_admin) VALUES ($1, $2, $3)`,
    [digest(key), accountId, isAdmin],
  );
  return key;
}

/**
 * Resolves bearer keys to principals. Known keys are cached briefly so the hot path costs no query;
 * unknown keys are not cached, so guessing cannot fill memory.
 */
export class ApiKeyVerifier {
  private readonly cache = new Map<string, { principal: Principal; expires: number }>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly ttlMs = 60_000,
    private readonly maxEntries = 10_000,
  ) {}

  async authenticate(request: FastifyRequest): Promise<Principal> {
    const header = request.headers.authorization;
    // The scheme is case-insensitive (RFC 9110); the key itself is not.
    const match = header === undefined ? null : /^Bearer ([A-Za-z0-9_-]{1,200})$/i.exec(header);
    if (match?.[1] === undefined) {
      throw new ApiError(401, 'UNAUTHENTICATED', 'send Authorization: Bearer <api key>', 'authorization');
    }
    const hash = digest(match[1]);
    const cacheKey = hash.toString('hex');
    const cached = this.cache.get(cacheKey);
    if (cached !== undefined && cached.expires > Date.now()) return cached.principal;

    const result = await this.pool.query<{ id: number; account_id: string | null; is_admin: boolean }>({
      name: 'api_key_lookup',
      text: 'SELECT id, account_id, is_admin FROM api_keys WHERE key_hash = $1',
      values: [hash],
    });
    const row = result.rows[0];
    if (row === undefined) throw new ApiError(401, 'UNAUTHENTICATED', 'unknown API key', 'authorization');
    const principal = { keyId: row.id, accountId: row.account_id, isAdmin: row.is_admin };
    if (this.cache.size >= this.maxEntries) this.cache.clear();
    this.cache.set(cacheKey, { principal, expires: Date.now() + this.ttlMs });
    return principal;
  }
}

/** A key acts for its own account only; admins act for any. */
export function authorize(principal: Principal, accountId: string): void {
  if (!principal.isAdmin && principal.accountId !== accountId) {
    throw new ApiError(403, 'FORBIDDEN', 'this API key may not act for that account', 'accountId');
  }
}
