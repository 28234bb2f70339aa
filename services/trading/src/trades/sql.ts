import { newEventId, type OutboxWriter } from '@astra/outbox';
import type { QueryConfig } from 'pg';
import { v7 as uuidV7 } from 'uuid';
import { POSITION_UPDATED, POSITION_UPDATED_SQL, TRADE_EXECUTED, TRADE_EXECUTED_SQL } from './events.ts';
import type { TradeResult } from './schema.ts';
import { jsonbObject, positionSql, selectList, tradeSql } from './shapes.ts';

/**
 * A new trade id: time-ordered (UUIDv7), so the trades primary key grows at its right edge rather than
 * dirtying a random leaf page per trade, as the outbox's event ids do (see newEventId).
 */
export const newTradeId = (): string => uuidV7();

export type Side = 'BUY' | 'SELL';

/** A trade as the API answers it, over `trades t`: reading queries return the shape itself. */
const TRADE_COLUMNS = selectList(tradeSql('t'));

/** The trade statement's inputs, by name: decimals as strings, exact. */
export interface TradeParams {
  tradeId: string;
  accountId: string;
  symbol: string;
  side: Side;
  quantity: string;
  price: string;
}

/** The one place the trade's inputs become positions: $1 trade id, $2 account, $3 symbol, $4 quantity, $5 price. */
const tradeValues = (p: TradeParams): string[] => [p.tradeId, p.accountId, p.symbol, p.quantity, p.price];

/**
 * The position change, taking the position's row lock. A BUY upserts; a SELL updates only when the
 * position holds enough, so it yields no row (and writes nothing) otherwise.
 */
const POSITION_CHANGE: Record<Side, string> = {
  BUY: `
  INSERT INTO positions AS p (account_id, symbol, quantity, average_price, version)
  VALUES ($2, $3, $4::numeric, $5::numeric, 1)
  ON CONFLICT (account_id, symbol) DO UPDATE SET
    -- Weighted average of the held lot and the new one, rounded once, half up, to 8 decimals:
    -- div() is exact integer division, so round(cost / qty, 8) = div(2 * 10^8 * cost + qty, 2 * qty) / 10^8.
    -- (round(cost / qty, 8) would round twice: numeric division first rounds to its own scale.)
    average_price = div((p.quantity * p.average_price + EXCLUDED.quantity * EXCLUDED.average_price) * 200000000
                        + (p.quantity + EXCLUDED.quantity),
                        2 * (p.quantity + EXCLUDED.quantity)) / 100000000,
    quantity = p.quantity + EXCLUDED.quantity,
    version = p.version + 1,
    updated_at = now()
  RETURNING account_id, symbol, quantity, average_price, version, updated_at`,
  SELL: `
  UPDATE positions p SET
    quantity = p.quantity - $4::numeric,
    -- A closed position has no cost basis left.
    average_price = CASE WHEN p.quantity = $4::numeric THEN 0 ELSE p.average_price END,
    version = p.version + 1,
    updated_at = now()
  WHERE p.account_id = $2 AND p.symbol = $3 AND p.quantity >= $4::numeric
  RETURNING account_id, symbol, quantity, average_price, version, updated_at`,
};

/**
 * Both events of a trade, as rows for the outbox writer's insertFrom(); their data (defined in
 * events.ts) is what the API answers (the trade; the position plus the trade's id). $6 the events' trace headers (jsonb), $7 and $8
 * their ids.
 */
const TRADE_EVENTS = `
  SELECT $7::uuid AS event_id, '${TRADE_EXECUTED}' AS event_type, 'trade' AS aggregate_type,
         trade.id::text AS aggregate_id,
         ${jsonbObject(TRADE_EXECUTED_SQL)} AS data,
         $6::jsonb AS headers
  FROM trade
  UNION ALL
  SELECT $8::uuid, '${POSITION_UPDATED}', 'position', trade.account_id || ':' || trade.symbol,
         ${jsonbObject(POSITION_UPDATED_SQL)},
         $6::jsonb
  FROM pos, trade`;

/**
 * The trade's writes in one statement: the position change under its row lock, the trade row stamped
 * with the position's new version and, given `insertEvents` (the outbox writer's insertFrom), both
 * events: one round trip, atomic without BEGIN/COMMIT. Values are exact `numeric` throughout; the
 * database does all arithmetic. Returns no row when a SELL exceeds the held quantity (or there is no
 * position), which writes nothing.
 */
function tradeStatement(side: Side, insertEvents?: (select: string) => string): string {
  const events = insertEvents === undefined ? '' : `,\nevents AS (\n  ${insertEvents(TRADE_EVENTS)}\n)`;
  return `
WITH pos AS (${POSITION_CHANGE[side]}
),
trade AS (
  INSERT INTO trades (id, account_id, symbol, side, quantity, price, position_version)
  SELECT $1, $2, $3, '${side}', $4, $5, pos.version FROM pos
  RETURNING *
)${events}
SELECT ${jsonbObject(tradeSql('trade'))} AS trade, ${jsonbObject(positionSql('pos'))} AS position
FROM pos, trade`;
}

/** The trade and its two events. $6 the events' trace headers (a JSON object), $7 and $8 new event ids. */
export function tradeWithEventsQuery(
  params: TradeParams,
  headers: Record<string, string>,
  outbox: OutboxWriter,
): QueryConfig {
  return {
    name: `trade_${params.side.toLowerCase()}_with_events`,
    text: tradeStatement(params.side, (select) => outbox.insertFrom(select)),
    values: [...tradeValues(params), JSON.stringify(headers), newEventId(), newEventId()],
  };
}

/** The trade alone, without events: what the old direct-publish design (a bench contender) ran. */
export function tradeQuery(params: TradeParams): QueryConfig {
  return {
    name: `trade_${params.side.toLowerCase()}`,
    text: tradeStatement(params.side),
    values: tradeValues(params),
  };
}

/** The row the BUY or SELL statement returns: the API's answer, built by the same SQL as the events. */
export type TradeRow = TradeResult;

/** $1 trade id. */
export const tradeByIdQuery = (id: string): QueryConfig => ({
  name: 'trade_by_id',
  text: `SELECT ${TRADE_COLUMNS} FROM trades t WHERE id = $1`,
  values: [id],
});

/**
 * A page of an account's positions by symbol, on the primary key. $1 account id, $2 the last symbol of
 * the previous page ('' for the first: every symbol sorts after it), $3 rows.
 */
export const positionsQuery = (accountId: string, after: string, limit: number): QueryConfig => ({
  name: 'positions_by_account',
  text: `SELECT ${selectList(positionSql('p'))}
         FROM positions p WHERE account_id = $1 AND symbol > $2 ORDER BY symbol LIMIT $3`,
  values: [accountId, after, limit],
});

/**
 * A page of an account's trades, newest first, on trades_account_idx (account_id, executed_at); the
 * id breaks ties of one timestamp. $1 account id, $2 rows.
 */
export const tradesFirstPageQuery = (accountId: string, limit: number): QueryConfig => ({
  name: 'trades_by_account_first',
  text: `SELECT ${TRADE_COLUMNS} FROM trades t WHERE account_id = $1
         ORDER BY executed_at DESC, id DESC LIMIT $2`,
  values: [accountId, limit],
});

/**
 * The page after trade $2 (the cursor: the last trade of the previous page, of account $1), $3 rows.
 * The cursor's exact timestamp comes from the row itself (a JavaScript date would lose microseconds);
 * `executed_at <=` gives the index its bound. No row when the cursor is not a trade of the account.
 */
export const tradesNextPageQuery = (accountId: string, cursor: string, limit: number): QueryConfig => ({
  name: 'trades_by_account_next',
  text: `WITH c AS (SELECT executed_at, id FROM trades WHERE id = $2 AND account_id = $1)
         SELECT ${TRADE_COLUMNS} FROM trades t
         WHERE t.account_id = $1 AND t.executed_at <= (SELECT executed_at FROM c)
           AND (t.executed_at, t.id) < (SELECT executed_at, id FROM c)
         ORDER BY t.executed_at DESC, t.id DESC LIMIT $3`,
  values: [accountId, cursor, limit],
});

/** $1 trade id, $2 account id: is the cursor a trade of this account? */
export const tradeOfAccountQuery = (id: string, accountId: string): QueryConfig => ({
  name: 'trade_of_account',
  text: 'SELECT 1 FROM trades WHERE id = $1 AND account_id = $2',
  values: [id, accountId],
});

/**
 * Claims an Idempotency-Key for this transaction. A concurrent request with the same key waits on the
 * primary key until this one commits or rolls back. $1 api key id, $2 key, $3 request hash.
 * Returns a row only when the key was new.
 */
export const claimIdempotencyKeyQuery = (keyId: number, key: string, hash: Buffer): QueryConfig => ({
  name: 'idempotency_claim',
  text: `INSERT INTO idempotency_keys (api_key_id, key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT (api_key_id, key) DO NOTHING RETURNING 1`,
  values: [keyId, key, hash],
});

export const storedResponseQuery = (keyId: number, key: string): QueryConfig => ({
  name: 'idempotency_lookup',
  text: 'SELECT request_hash, status_code, response FROM idempotency_keys WHERE api_key_id = $1 AND key = $2',
  values: [keyId, key],
});

export const storeResponseQuery = (
  keyId: number,
  key: string,
  status: number,
  body: unknown,
): QueryConfig => ({
  name: 'idempotency_store',
  text: 'UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE api_key_id = $1 AND key = $2',
  values: [keyId, key, status, JSON.stringify(body)],
});

/** Deletes up to $2 idempotency keys older than $1 seconds, oldest first. */
export const purgeIdempotencyKeysQuery = (olderThanSeconds: number, limit: number): QueryConfig => ({
  name: 'idempotency_purge',
  text: `DELETE FROM idempotency_keys k USING (
           SELECT api_key_id, key FROM idempotency_keys
           WHERE created_at < now() - $1 * interval '1 second'
           ORDER BY created_at LIMIT $2
         ) old
         WHERE k.api_key_id = old.api_key_id AND k.key = old.key`,
  values: [olderThanSeconds, limit],
});
