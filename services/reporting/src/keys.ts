import { createHash } from 'node:crypto';
import { ApiError } from '@astra/service-support';
import type pg from 'pg';

/** Who is calling: an account's key, or an admin key that may act for any account. */
export interface Principal {
  accountId: string | null;
  isAdmin: boolean;
}

/**
 * Resolves bearer keys made by the trading service (`npm run cli -- keys create`) against its
 * `api_keys` table, through a pool that can only read (`default_transaction_read_only`; in production
 * connect as a role granted nothing but SELECT on api_keys). Keys are stored as SHA-256 digests there;
 * the same rules as the trading service: 401 without a known key, 403 for another account's data.
 * Known keys are cached for `ttlMs`, as the trading service does.
 */
export class TradingKeyVerifier {
  private readonly cache = new Map<string, { principal: Principal; expires: number }>();

  constructor(
    private readonly keysPool: pg.Pool,
    private readonly ttlMs = 60_000,
    private readonly maxEntries = 10_000,
  ) {}

  async authenticate(header: string | undefined): Promise<Principal> {
    // The scheme is case-insensitive (RFC 9110); the key itself is not.
    const match = header === undefined ? null : /^Bearer ([A-Za-z0-9_-]{1,200})$/i.exec(header);
    if (match?.[1] === undefined)
      throw new ApiError(401, 'UNAUTHENTICATED', 'send Authorization: Bearer <api key>', 'authorization');
    const hash = createHash('sha256').update(match[1]).digest();
    const cacheKey = hash.toString('hex');
    const cached = this.cache.get(cacheKey);
    if (cached !== undefined && cached.expires > Date.now()) return cached.principal;
    const result = await this.keysPool.query<{ account_id: string | null; is_admin: boolean }>({
      name: 'trading_api_key_lookup',
      text: 'SELECT account_id, is_admin FROM api_keys WHERE key_hash = $1',
      values: [hash],
    });
    const row = result.rows[0];
    if (row === undefined) throw new ApiError(401, 'UNAUTHENTICATED', 'unknown API key', 'authorization');
    const principal = { accountId: row.account_id, isAdmin: row.is_admin };
    if (this.cache.size >= this.maxEntries) this.cache.clear();
    this.cache.set(cacheKey, { principal, expires: Date.now() + this.ttlMs });
    return principal;
  }
}

export function authorize(principal: Principal, accountId: string): void {
  if (!principal.isAdmin && principal.accountId !== accountId)
    throw new ApiError(403, 'FORBIDDEN', 'this API key may not act for that account', 'accountId');
}
