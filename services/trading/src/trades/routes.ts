import { isValidTraceparent, isValidTracestate } from '@astra/outbox';
import { ApiError } from '@astra/service-support';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type pg from 'pg';
import { Type } from 'typebox';
import { type ApiKeyVerifier, authorize, type Principal } from '../http/auth.ts';
import { limitBy, type RateLimits } from '../http/rate-limit.ts';
import { requestContext } from '../tracing.ts';
import {
  ACCOUNT_ID_PATTERN,
  ErrorResponse,
  NextCursor,
  PageLimit,
  Position,
  SYMBOL_PATTERN,
  Trade,
  TradeHeaders,
  TradeRequest,
  TradeResult,
} from './schema.ts';
import type { TradeService } from './service.ts';
import {
  positionsQuery,
  tradeByIdQuery,
  tradeOfAccountQuery,
  tradesFirstPageQuery,
  tradesNextPageQuery,
} from './sql.ts';

/** ErrorResponse with what the status means, for the OpenAPI document. */
const described = (description: string) => Type.Object(ErrorResponse.properties, { description });

export interface TradeRoutesOptions {
  pool: pg.Pool;
  trades: TradeService;
  keys: ApiKeyVerifier;
  onTradeExecuted?: (side: 'BUY' | 'SELL') => void;
  /** Off when absent (tests); the service always passes its configured limits. */
  rateLimits?: RateLimits;
}

/** Every error any route may answer, in the one error format, so the document matches the service. */
const errors = {
  400: described('Invalid input: body, parameter or header (code and field say which)'),
  401: described('No, unknown, revoked or expired API key'),
  403: described('The key may not act for that account'),
  404: described('No such resource (or not visible to this key)'),
  408: described('The request was not received in time'),
  413: described('The body is larger than allowed'),
  415: described('The body is not application/json'),
  429: described('Rate limited: see the Retry-After header'),
  500: described('The service failed'),
  503: described('The database is unavailable or busy; retry later'),
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
        headers: TradeHeaders,
        body: TradeRequest,
        response: {
          201: TradeResult,
          ...errors,
          409: described('A request with this Idempotency-Key is still running'),
          422: described(
            'Refused: INSUFFICIENT_POSITION, POSITION_LIMIT_EXCEEDED (stored under the Idempotency-Key ' +
              'and replayed), or IDEMPOTENCY_KEY_REUSED with another body',
          ),
        },
      },
    },
    async (request, reply) => {
      const { principal } = request;
      authorize(principal, request.body.accountId);
      // Checked by the headers schema.
      const idempotencyKey = request.headers['idempotency-key'];
      const traceparent = request.headers.traceparent;
      const tracestate = request.headers.tracestate;
      // W3C: an invalid traceparent or tracestate is ignored, not an error; an unbounded tracestate
      // would otherwise be stored twice and copied into Redis.
      const traced = typeof traceparent === 'string' && isValidTraceparent(traceparent);
      const stated = traced && typeof tracestate === 'string' && isValidTracestate(tracestate);
      const parent = requestContext(request.span);
      const outcome = await trades.execute(request.body, {
        keyId: principal.keyId,
        ...(parent === undefined ? {} : { parent }),
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
      const result = await pool.query<Trade>(tradeByIdQuery(request.params.id));
      const row = result.rows[0];
      // A trade of another account is reported as missing, so ids cannot be probed.
      if (row === undefined || !(principal.isAdmin || principal.accountId === row.accountId)) {
        throw new ApiError(404, 'TRADE_NOT_FOUND', 'no such trade', 'id');
      }
      return row;
    },
  );

  app.get(
    '/v1/accounts/:accountId/positions',
    {
      schema: {
        summary: "List an account's positions, by symbol",
        security,
        params: Type.Object({ accountId: Type.String({ pattern: ACCOUNT_ID_PATTERN }) }),
        querystring: Type.Object(
          {
            limit: Type.Optional(PageLimit),
            cursor: Type.Optional(
              Type.String({ pattern: SYMBOL_PATTERN, description: 'nextCursor of the previous page' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ positions: Type.Array(Position), nextCursor: NextCursor }),
          ...errors,
        },
      },
    },
    async (request) => {
      const { principal } = request;
      const { accountId } = request.params;
      authorize(principal, accountId);
      const limit = Number(request.query.limit ?? 100);
      // One row more than asked: whether there is a next page, without a count.
      const result = await pool.query<Position>(
        positionsQuery(accountId, request.query.cursor ?? '', limit + 1),
      );
      const page = result.rows.slice(0, limit);
      return {
        positions: page,
        nextCursor: result.rows.length > limit ? (page.at(-1)?.symbol ?? null) : null,
      };
    },
  );

  app.get(
    '/v1/accounts/:accountId/trades',
    {
      schema: {
        summary: "List an account's trades, newest first",
        security,
        params: Type.Object({ accountId: Type.String({ pattern: ACCOUNT_ID_PATTERN }) }),
        querystring: Type.Object(
          {
            limit: Type.Optional(PageLimit),
            cursor: Type.Optional(
              Type.String({ format: 'uuid', description: 'nextCursor of the previous page' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ trades: Type.Array(Trade), nextCursor: NextCursor }), ...errors },
      },
    },
    async (request) => {
      const { principal } = request;
      const { accountId } = request.params;
      authorize(principal, accountId);
      const limit = Number(request.query.limit ?? 100);
      const { cursor } = request.query;
      const query =
        cursor === undefined
          ? tradesFirstPageQuery(accountId, limit + 1)
          : tradesNextPageQuery(accountId, cursor, limit + 1);
      const result = await pool.query<Trade>(query);
      if (result.rows.length === 0 && cursor !== undefined) {
        const known = await pool.query(tradeOfAccountQuery(cursor, accountId));
        if (known.rowCount === 0) {
          throw new ApiError(400, 'INVALID_CURSOR', 'cursor is not a nextCursor of this list', 'cursor');
        }
      }
      const page = result.rows.slice(0, limit);
      return {
        trades: page,
        nextCursor: result.rows.length > limit ? (page.at(-1)?.id ?? null) : null,
      };
    },
  );
};
