import { createHash } from 'node:crypto';
import type { OutboxWriter, RelayWaker } from '@astra/outbox';
import type pg from 'pg';
import { ApiError } from '../http/errors.ts';
import type { TradeRequest, TradeResult } from './schema.ts';
import {
  claimIdempotencyKeyQuery,
  newTradeId,
  storedResponseQuery,
  storeResponseQuery,
  type TradeRow,
  type TradeValues,
  tradeResultFromRow,
  tradeWithEventsQuery,
} from './sql.ts';

export interface TradeContext {
  /** The caller's API key id: idempotency keys are scoped to it. */
  keyId: number;
  idempotencyKey?: string;
  traceparent?: string;
  tracestate?: string;
}

export interface TradeOutcome {
  statusCode: number;
  body: TradeResult | unknown;
  /** True when the body is the stored answer to an earlier request with the same Idempotency-Key. */
  replayed: boolean;
}

/** A stable hash of the request body: the same fields in any order hash alike. */
function requestHash(request: TradeRequest): Buffer {
  const canonical = JSON.stringify([
    request.accountId,
    request.symbol,
    request.side,
    request.quantity,
    request.price,
  ]);
  return createHash('sha256').update(canonical).digest();
}

function databaseError(error: unknown): ApiError | undefined {
  switch ((error as { code?: string }).code) {
    case '23503':
      return new ApiError(404, 'ACCOUNT_NOT_FOUND', 'the account does not exist', 'accountId');
    case '22003':
      return new ApiError(
        422,
        'POSITION_LIMIT_EXCEEDED',
        'the position would exceed 16 integer digits',
        'quantity',
      );
    default:
      return undefined;
  }
}

export class TradeService {
  constructor(
    private readonly pool: pg.Pool,
    private readonly outbox: OutboxWriter,
    private readonly relays: RelayWaker,
  ) {}

  /**
   * Executes a trade: the trade row, the position change and both events commit together, or none of
   * them does. Without an Idempotency-Key that is one statement (atomic on its own, one round trip);
   * with one, the key's claim and stored answer join it in a transaction. Nothing here talks to Redis.
   */
  async execute(request: TradeRequest, context: TradeContext): Promise<TradeOutcome> {
    const key = context.idempotencyKey;
    const outcome =
      key === undefined
        ? await this.trade(this.pool, request, context)
        : await this.inTransaction((client) => this.idempotentTrade(client, request, context, key));
    if (!outcome.replayed) this.relays.wake();
    return outcome;
  }

  private async inTransaction(work: (client: pg.PoolClient) => Promise<TradeOutcome>): Promise<TradeOutcome> {
    const client = await this.pool.connect();
    let release: boolean | Error = false;
    try {
      await client.query('BEGIN');
      try {
        const outcome = await work(client);
        await client.query(outcome.replayed ? 'ROLLBACK' : 'COMMIT');
        return outcome;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      }
    } catch (error) {
      // A connection that failed mid-transaction must not go back to the pool.
      if (!(error instanceof ApiError)) release = error instanceof Error ? error : true;
      throw error;
    } finally {
      client.release(release);
    }
  }

  private async idempotentTrade(
    client: pg.PoolClient,
    request: TradeRequest,
    context: TradeContext,
    idempotencyKey: string,
  ): Promise<TradeOutcome> {
    const { keyId } = context;
    const hash = requestHash(request);
    const claimed = await client.query(claimIdempotencyKeyQuery(keyId, idempotencyKey, hash));
    if (claimed.rowCount === 0) return this.replay(client, keyId, idempotencyKey, hash);
    const outcome = await this.trade(client, request, context);
    await client.query(storeResponseQuery(keyId, idempotencyKey, outcome.statusCode, outcome.body));
    return outcome;
  }

  /** The trade statement (trade, position and both events) on a pool or in the caller's transaction. */
  private async trade(
    db: pg.Pool | pg.PoolClient,
    request: TradeRequest,
    context: TradeContext,
  ): Promise<TradeOutcome> {
    const values: TradeValues = [
      newTradeId(),
      request.accountId,
      request.symbol,
      request.quantity,
      request.price,
    ];
    const query = tradeWithEventsQuery(request.side, values, traceHeaders(context), this.outbox);
    let row: TradeRow | undefined;
    try {
      row = (await db.query<TradeRow>(query)).rows[0];
    } catch (error) {
      throw databaseError(error) ?? error;
    }
    if (row === undefined) {
      throw new ApiError(
        422,
        'INSUFFICIENT_POSITION',
        'cannot sell more than the position holds (no short selling)',
        'quantity',
      );
    }
    return { statusCode: 201, body: tradeResultFromRow(row), replayed: false };
  }

  private async replay(
    client: pg.PoolClient,
    keyId: number,
    key: string,
    hash: Buffer,
  ): Promise<TradeOutcome> {
    const stored = await client.query<{
      request_hash: Buffer;
      status_code: number | null;
      response: unknown;
    }>(storedResponseQuery(keyId, key));
    const row = stored.rows[0];
    if (row === undefined || row.status_code === null) {
      throw new ApiError(
        409,
        'IDEMPOTENCY_KEY_IN_USE',
        'a request with this Idempotency-Key is still running',
        'idempotency-key',
      );
    }
    if (!row.request_hash.equals(hash)) {
      throw new ApiError(
        422,
        'IDEMPOTENCY_KEY_REUSED',
        'this Idempotency-Key was used with a different body',
        'idempotency-key',
      );
    }
    return { statusCode: row.status_code, body: row.response, replayed: true };
  }
}

/** The events' W3C trace context headers (the route passes only a valid traceparent). */
function traceHeaders(context: TradeContext): Record<string, string> {
  if (context.traceparent === undefined) return {};
  if (context.tracestate === undefined) return { traceparent: context.traceparent };
  return { traceparent: context.traceparent, tracestate: context.tracestate };
}
