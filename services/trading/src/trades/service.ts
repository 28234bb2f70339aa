import { createHash, randomUUID } from 'node:crypto';
import type { OutboxWriter, RelayWaker } from '@astra/outbox';
import type pg from 'pg';
import { ApiError } from '../http/errors.ts';
import type { TradeRequest, TradeResult } from './schema.ts';
import {
  buyQuery,
  claimIdempotencyKeyQuery,
  sellQuery,
  storedResponseQuery,
  storeResponseQuery,
  type TradeRow,
  tradeResultFromRow,
} from './sql.ts';

export const TRADE_EXECUTED = 'astra.trading.trade_executed.v1';
export const POSITION_UPDATED = 'astra.trading.position_updated.v1';

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

export function positionAggregateId(accountId: string, symbol: string): string {
  return `${accountId}:${symbol}`;
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
   * Executes a trade: the trade row, the position change and both events commit together in one
   * transaction, or none of them does. Nothing here talks to Redis.
   */
  async execute(request: TradeRequest, context: TradeContext): Promise<TradeOutcome> {
    const client = await this.pool.connect();
    let release: boolean | Error = false;
    try {
      await client.query('BEGIN');
      try {
        const outcome = await this.executeInTransaction(client, request, context);
        await client.query(outcome.replayed ? 'ROLLBACK' : 'COMMIT');
        if (!outcome.replayed) this.relays.wake();
        return outcome;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw databaseError(error) ?? error;
      }
    } catch (error) {
      // A connection that failed mid-transaction must not go back to the pool.
      if (!(error instanceof ApiError)) release = error instanceof Error ? error : true;
      throw error;
    } finally {
      client.release(release);
    }
  }

  private async executeInTransaction(
    client: pg.PoolClient,
    request: TradeRequest,
    context: TradeContext,
  ): Promise<TradeOutcome> {
    const { idempotencyKey } = context;
    if (idempotencyKey !== undefined) {
      const hash = requestHash(request);
      const claimed = await client.query(claimIdempotencyKeyQuery(context.keyId, idempotencyKey, hash));
      if (claimed.rowCount === 0) return this.replay(client, context.keyId, idempotencyKey, hash);
    }

    const tradeId = randomUUID();
    const values: [string, string, string, string, string] = [
      tradeId,
      request.accountId,
      request.symbol,
      request.quantity,
      request.price,
    ];
    const result = await client.query<TradeRow>(
      request.side === 'BUY' ? buyQuery(values) : sellQuery(values),
    );
    const row = result.rows[0];
    if (row === undefined) {
      throw new ApiError(
        422,
        'INSUFFICIENT_POSITION',
        'cannot sell more than the position holds (no short selling)',
        'quantity',
      );
    }
    const body = tradeResultFromRow(row);
    const trace = traceHeaders(context);
    await this.outbox.write(client, [
      {
        type: TRADE_EXECUTED,
        aggregateType: 'trade',
        aggregateId: tradeId,
        data: body.trade,
        ...trace,
      },
      {
        type: POSITION_UPDATED,
        aggregateType: 'position',
        aggregateId: positionAggregateId(request.accountId, request.symbol),
        data: { ...body.position, tradeId },
        ...trace,
      },
    ]);
    if (idempotencyKey !== undefined)
      await client.query(storeResponseQuery(context.keyId, idempotencyKey, 201, body));
    return { statusCode: 201, body, replayed: false };
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

function traceHeaders(context: TradeContext): { traceparent?: string; tracestate?: string } {
  if (context.traceparent === undefined) return {};
  if (context.tracestate === undefined) return { traceparent: context.traceparent };
  return { traceparent: context.traceparent, tracestate: context.tracestate };
}
