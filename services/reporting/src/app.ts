import { ApiError, errorBody, registerErrorHandling } from '@astra/service-support';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type pg from 'pg';
import { Type } from 'typebox';
import { authorize, type TradingKeyVerifier } from './keys.ts';

export interface AppOptions {
  /** The reporting database. */
  pool: pg.Pool;
  keys: TradingKeyVerifier;
  logger?: FastifyBaseLogger;
}

const ACCOUNT_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';
/** The trading service's position shape, so a client reads both services alike. */
const Position = Type.Object({
  accountId: Type.String(),
  symbol: Type.String(),
  quantity: Type.String(),
  averagePrice: Type.String(),
  version: Type.Integer(),
  updatedAt: Type.String({ format: 'date-time' }),
});
/** A ledger entry: the trading service's trade shape. */
const LedgerEntry = Type.Object({
  id: Type.String(),
  accountId: Type.String(),
  symbol: Type.String(),
  side: Type.String(),
  quantity: Type.String(),
  price: Type.String(),
  positionVersion: Type.Integer(),
  executedAt: Type.String({ format: 'date-time' }),
});
const ErrorResponse = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    field: Type.Union([Type.String(), Type.Null()]),
  }),
});
const errors = { 400: ErrorResponse, 401: ErrorResponse, 403: ErrorResponse };

/** A ledger cursor: the (transaction, seq) of the last entry returned, opaque to clients. */
function encodeCursor(tx: string, seq: string): string {
  return Buffer.from(`${tx}.${seq}`).toString('base64url');
}

function decodeCursor(cursor: string): [string, string] {
  const match = /^(\d{1,20})\.(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (match === null)
    throw new ApiError(400, 'INVALID_FIELD', 'cursor is not one this service gave out', 'cursor');
  return [match[1] as string, match[2] as string];
}

interface PositionRow {
  account_id: string;
  symbol: string;
  quantity: string;
  average_price: string;
  version: string;
  updated_at: Date;
}

interface LedgerRow {
  tx: string;
  seq: string;
  trade_id: string;
  account_id: string;
  symbol: string;
  side: string;
  quantity: string;
  price: string;
  position_version: string;
  executed_at: Date;
}

/** Builds the HTTP application without listening, so tests drive it with `inject()`. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    logController: new LogController({ disableRequestLogging: true }),
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: true, useDefaults: true, allErrors: false },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  registerErrorHandling(app);
  const { pool, keys } = options;

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    try {
      await pool.query('SELECT 1');
      return { status: 'ready' };
    } catch {
      return reply.status(503).send(errorBody('DATABASE_UNAVAILABLE', 'the database is not reachable'));
    }
  });

  app.addHook('preHandler', async (request) => {
    if (!request.url.startsWith('/v1/')) return;
    const principal = await keys.authenticate(request.headers.authorization);
    const { accountId } = request.params as { accountId?: string };
    if (accountId !== undefined) authorize(principal, accountId);
  });

  app.get(
    '/v1/accounts/:accountId/positions',
    {
      schema: {
        params: Type.Object({ accountId: Type.String({ pattern: ACCOUNT_ID_PATTERN }) }),
        // The trading service's page: by symbol, `cursor` the last symbol of the previous page.
        querystring: Type.Object(
          {
            limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
            cursor: Type.Optional(Type.String({ pattern: '^[A-Z][A-Z0-9.]{0,11}$' })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            positions: Type.Array(Position),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const { limit, cursor } = request.query;
      // One row more than asked: whether there is a next page, without a count.
      const { rows: found } = await pool.query<PositionRow>({
        name: 'positions_by_account',
        text: `SELECT account_id, symbol, trim_scale(quantity)::text AS quantity,
                      trim_scale(average_price)::text AS average_price, version::text, updated_at
               FROM positions WHERE account_id = $1 AND symbol > $2 ORDER BY symbol LIMIT $3`,
        values: [request.params.accountId, cursor ?? '', limit + 1],
      });
      const rows = found.slice(0, limit);
      return {
        nextCursor: found.length > limit ? (rows.at(-1)?.symbol ?? null) : null,
        positions: rows.map((row) => ({
          accountId: row.account_id,
          symbol: row.symbol,
          quantity: row.quantity,
          averagePrice: row.average_price,
          version: Number(row.version),
          updatedAt: row.updated_at.toISOString(),
        })),
      };
    },
  );

  app.get(
    '/v1/accounts/:accountId/ledger',
    {
      schema: {
        params: Type.Object({ accountId: Type.String({ pattern: ACCOUNT_ID_PATTERN }) }),
        querystring: Type.Object(
          {
            limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
            cursor: Type.Optional(Type.String({ maxLength: 100 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            entries: Type.Array(LedgerEntry),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
            hasMore: Type.Boolean(),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const { limit, cursor } = request.query;
      const [tx, seq] = cursor === undefined ? ['0', '0'] : decodeCursor(cursor);
      // Only rows whose transaction is older than every transaction still running: a row committed
      // late cannot then appear behind a cursor a client has already passed.
      const { rows } = await pool.query<LedgerRow>({
        name: 'ledger_page',
        text: `SELECT tx::text, seq::text, trade_id, account_id, symbol, side, trim_scale(quantity)::text AS quantity,
                      trim_scale(price)::text AS price, position_version::text, executed_at
               FROM ledger
               WHERE account_id = $1 AND tx < pg_snapshot_xmin(pg_current_snapshot())
                 AND (tx, seq) > ($2::xid8, $3::bigint)
               ORDER BY tx, seq LIMIT $4`,
        values: [request.params.accountId, tx, seq, limit],
      });
      const last = rows[rows.length - 1];
      return {
        entries: rows.map((row) => ({
          id: row.trade_id,
          accountId: row.account_id,
          symbol: row.symbol,
          side: row.side,
          quantity: row.quantity,
          price: row.price,
          positionVersion: Number(row.position_version),
          executedAt: row.executed_at.toISOString(),
        })),
        // Always resumable: a client that reached the end polls again later with the same cursor.
        nextCursor: last === undefined ? (cursor ?? null) : encodeCursor(last.tx, last.seq),
        hasMore: rows.length === limit,
      };
    },
  );
  return app;
}
