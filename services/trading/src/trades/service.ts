import { createHash } from 'node:crypto';
import type { OutboxWriter, RelayWaker } from '@astra/outbox';
import { ApiError, errorBody } from '@astra/service-support';
import { type Context, SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import type pg from 'pg';
import { traceparentOf } from '../tracing.ts';
import type { TradeRequest, TradeResult } from './schema.ts';
import {
  claimIdempotencyKeyQuery,
  newTradeId,
  storedResponseQuery,
  storeResponseQuery,
  type TradeRow,
  tradeWithEventsQuery,
} from './sql.ts';

export interface TradeContext {
  /** The caller's API key id: idempotency keys are scoped to it. */
  keyId: number;
  idempotencyKey?: string;
  traceparent?: string;
  tracestate?: string;
  /** The request's span context while tracing is on: the trade statement's span is its child. */
  parent?: Context;
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

/**
 * A 422: the request was valid and the answer is no. Stored under its Idempotency-Key and replayed,
 * unlike 400s (nothing was decided), 401/403, 429 and 5xx (a retry may rightly get another answer).
 */
export class RefusedTrade extends ApiError {
  constructor(
    code: string,
    message: string,
    field: string,
    /** True when the database raised it: the transaction it ran in can do nothing more. */
    readonly transactionAborted = false,
  ) {
    super(422, code, message, field);
  }
}

function isBusinessRefusal(error: unknown): error is RefusedTrade {
  return error instanceof RefusedTrade;
}

function refusalOutcome(refusal: ApiError): TradeOutcome {
  return {
    statusCode: refusal.statusCode,
    body: errorBody(refusal.code, refusal.message, refusal.field),
    replayed: false,
  };
}

function databaseError(error: unknown): ApiError | undefined {
  switch ((error as { code?: string }).code) {
    case '23503':
      return new ApiError(404, 'ACCOUNT_NOT_FOUND', 'the account does not exist', 'accountId');
    case '22003':
      return new RefusedTrade(
        'POSITION_LIMIT_EXCEEDED',
        'the position would exceed 16 integer digits',
        'quantity',
        true,
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
    /** Absent when tracing is off: then no span is made at all. */
    private readonly tracer?: Tracer,
  ) {}

  /**
   * Executes a trade: the trade row, the position change and both events commit together, or none of
   * them does. Without an Idempotency-Key that is one statement (atomic on its own, one round trip);
   * with one, the key's claim and stored answer join it in a transaction. Nothing here talks to Redis.
   */
  async execute(request: TradeRequest, context: TradeContext): Promise<TradeOutcome> {
    const key = context.idempotencyKey;
    if (key === undefined) {
      const outcome = await this.trade(this.pool, request, context);
      this.relays.wake();
      return outcome;
    }
    let outcome: TradeOutcome;
    try {
      outcome = await this.inTransaction((client) => this.idempotentTrade(client, request, context, key));
    } catch (error) {
      // A refusal the database raised (a position past 16 digits) aborted the transaction that held
      // the key: record it in a new one, unless another request took the key meanwhile.
      if (!isBusinessRefusal(error)) throw error;
      outcome = await this.inTransaction((client) =>
        this.recordRefusal(client, context.keyId, key, requestHash(request), error),
      );
    }
    if (!outcome.replayed && outcome.statusCode === 201) this.relays.wake();
    return outcome;
  }

  private async inTransaction(work: (client: pg.PoolClient) => Promise<TradeOutcome>): Promise<TradeOutcome> {
    const client = await this.pool.connect();
    let release: boolean | Error = false;
    try {
      await client.query('BEGIN');
      try {
        const outcome = await work(client);
        // A refusal wrote nothing but its key's answer: committed like a trade.
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
    let outcome: TradeOutcome;
    try {
      outcome = await this.trade(client, request, context);
    } catch (error) {
      // A business refusal is the answer to this key like a 201: a retried SELL must not succeed
      // later, after a BUY, by surprise. Errors that leave the transaction aborted are rethrown.
      if (!(error instanceof RefusedTrade) || error.transactionAborted) throw error;
      outcome = refusalOutcome(error);
    }
    await client.query(storeResponseQuery(keyId, idempotencyKey, outcome.statusCode, outcome.body));
    return outcome;
  }

  /** Stores a refusal as the key's answer in its own transaction (see execute). */
  private async recordRefusal(
    client: pg.PoolClient,
    keyId: number,
    idempotencyKey: string,
    hash: Buffer,
    refusal: ApiError,
  ): Promise<TradeOutcome> {
    const claimed = await client.query(claimIdempotencyKeyQuery(keyId, idempotencyKey, hash));
    if (claimed.rowCount === 0) return this.replay(client, keyId, idempotencyKey, hash);
    const outcome = refusalOutcome(refusal);
    await client.query(storeResponseQuery(keyId, idempotencyKey, outcome.statusCode, outcome.body));
    return outcome;
  }

  /** The trade statement (trade, position and both events) on a pool or in the caller's transaction. */
  private async trade(
    db: pg.Pool | pg.PoolClient,
    request: TradeRequest,
    context: TradeContext,
  ): Promise<TradeOutcome> {
    const params = {
      tradeId: newTradeId(),
      accountId: request.accountId,
      symbol: request.symbol,
      side: request.side,
      quantity: request.quantity,
      price: request.price,
    };
    const span = this.tracer?.startSpan(
      'trade statement',
      {
        kind: SpanKind.CLIENT,
        attributes: { 'db.system.name': 'postgresql', 'db.query.summary': `trade ${request.side}` },
      },
      context.parent,
    );
    // While tracing, the events carry the statement's own span: the relay's publish span links to it.
    const headers =
      span === undefined
        ? traceHeaders(context)
        : traceHeaders({ ...context, traceparent: traceparentOf(span) });
    const query = tradeWithEventsQuery(params, headers, this.outbox);
    let row: TradeRow | undefined;
    try {
      row = (await db.query<TradeRow>(query)).rows[0];
    } catch (error) {
      span?.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw databaseError(error) ?? error;
    } finally {
      span?.end();
    }
    if (row === undefined) {
      throw new RefusedTrade(
        'INSUFFICIENT_POSITION',
        'cannot sell more than the position holds (no short selling)',
        'quantity',
      );
    }
    return { statusCode: 201, body: row, replayed: false };
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
