import { isValidTraceparent, isValidTracestate } from '@astra/outbox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type pg from 'pg';
import { Type } from 'typebox';
import { type ApiKeyVerifier, authorize, type Principal } from '../http/auth.ts';
import { ApiError } from '../http/errors.ts';
import { limitBy, type RateLimits } from '../http/rate-limit.ts';
import { ACCOUNT_ID_PATTERN, ErrorResponse, Position, Trade, TradeRequest, TradeResult } from './schema.ts';
import type { TradeService } from './service.ts';
import {
  type PositionRow,
  positionFromRow,
  positionsQuery,
  type TradeRecordRow,
  tradeByIdQuery,
  tradeFromRow,
} from './sql.ts';

export interface TradeRoutesOptions {
  pool: pg.Pool;
  trades: TradeService;
  keys: ApiKeyVerifier;
  onTradeExecuted?: (side: 'BUY' | 'SELL') => void;
  /** Off when absent (tests); the service always passes its configured limits. */
  rateLimits?: RateLimits;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
const errors = {
  400: ErrorResponse,
  401: ErrorResponse,
  403: ErrorResponse,
  404: ErrorResponse,
  422: ErrorResponse,
};
const security = [{ bearerAuth: [] }];

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

export const tradeRoutes: FastifyPluginAsyncTypebox<TradeRoutesOptions> = async (
  app,
  { pool, trades, keys, onTradeExecuted, rateLimits },
) => {
  // Per client address before authentication, for requests whose key is not cached as valid: a flood
  // of unknown keys cannot cost a database query each.
  if (rateLimits !== undefined && rateLimits.perAddress > 0) {
    app.addHook(
      'onRequest',
      limitBy(app, {
        max: rateLimits.perAddress,
        windowMs: rateLimits.windowMs,
        keyOf: (request) => `address:${request.ip}`,
        skip: (request) => keys.knows(request),
        what: 'from this address with keys not yet verified',
      }),
    );
  }
  // Authenticate before the body is even read: an unauthenticated caller learns nothing from validation.
  app.decorateRequest('principal', null as unknown as Principal);
  app.addHook('onRequest', async (request) => {
    request.principal = await keys.authenticate(request);
  });
  if (rateLimits !== undefined && rateLimits.perKey > 0) {
    app.addHook(
      'onRequest',
      limitBy(app, {
        max: rateLimits.perKey,
        windowMs: rateLimits.windowMs,
        keyOf: (request) => `key:${request.principal.keyId}`,
        what: 'for this API key',
      }),
    );
  }

  app.post(
    '/v1/trades',
    {
      schema: {
        summary: 'Execute a trade',
        description:
          'Writes the trade, the position change and two outbox events in one transaction. ' +
          'Send an Idempotency-Key header to make retries safe.',
        security,
        body: TradeRequest,
        response: { 201: TradeResult, 409: ErrorResponse, ...errors },
      },
    },
    async (request, reply) => {
      const { principal } = request;
      authorize(principal, request.body.accountId);
      const idempotencyKey = request.headers['idempotency-key'];
      if (
        idempotencyKey !== undefined &&
        (typeof idempotencyKey !== 'string' || !IDEMPOTENCY_KEY.test(idempotencyKey))
      ) {
        throw new ApiError(
          400,
          'INVALID_HEADER',
          'Idempotency-Key must be 1-255 visible ASCII characters',
          'idempotency-key',
        );
      }
      const traceparent = request.headers.traceparent;
      const tracestate = request.headers.tracestate;
      // W3C: an invalid traceparent or tracestate is ignored, not an error; an unbounded tracestate
      // would otherwise be stored twice and copied into Redis.
      const traced = typeof traceparent === 'string' && isValidTraceparent(traceparent);
      const stated = traced && typeof tracestate === 'string' && isValidTracestate(tracestate);
      const outcome = await trades.execute(request.body, {
        keyId: principal.keyId,
        ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
        ...(traced ? { traceparent } : {}),
        ...(stated ? { tracestate } : {}),
      });
      if (outcome.replayed) reply.header('idempotent-replayed', 'true');
      else if (outcome.statusCode === 201) onTradeExecuted?.(request.body.side);
      return reply.status(outcome.statusCode).send(outcome.body as TradeResult);
    },
  );

  app.get(
    '/v1/trades/:id',
    {
      schema: {
        summary: 'Read a trade',
        security,
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 200: Trade, ...errors },
      },
    },
    async (request) => {
      const { principal } = request;
      const result = await pool.query<TradeRecordRow>(tradeByIdQuery(request.params.id));
      const row = result.rows[0];
      // A trade of another account is reported as missing, so ids cannot be probed.
      if (row === undefined || !(principal.isAdmin || principal.accountId === row.account_id)) {
        throw new ApiError(404, 'TRADE_NOT_FOUND', 'no such trade', 'id');
      }
      return tradeFromRow(row);
    },
  );

  app.get(
    '/v1/accounts/:accountId/positions',
    {
      schema: {
        summary: "List an account's positions",
        security,
        params: Type.Object({ accountId: Type.String({ pattern: ACCOUNT_ID_PATTERN }) }),
        response: { 200: Type.Object({ positions: Type.Array(Position) }), ...errors },
      },
    },
    async (request) => {
      const { principal } = request;
      authorize(principal, request.params.accountId);
      const result = await pool.query<PositionRow>(positionsQuery(request.params.accountId));
      return {
        positions: result.rows.map(positionFromRow),
      };
    },
  );
};
