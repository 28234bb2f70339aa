import type { Position, Trade } from './schema.ts';

/** The trading service's event types; each names its Redis stream. */
export const TRADE_EXECUTED = 'astra.trading.trade_executed.v1';
export const POSITION_UPDATED = 'astra.trading.position_updated.v1';
export const EVENT_TYPES = [TRADE_EXECUTED, POSITION_UPDATED] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** trade_executed's data: the trade exactly as the API answers it. */
export type TradeExecutedData = Trade;

/** position_updated's data: the position as the API answers it, plus the trade that changed it. */
export type PositionUpdatedData = Position & { tradeId: string };

export const tradeExecutedData = (trade: Trade): TradeExecutedData => ({ ...trade });

export const positionUpdatedData = (position: Position, tradeId: string): PositionUpdatedData => ({
  ...position,
  tradeId,
});

/**
 * A payload's keys and the SQL expression of each. The trade statement builds the payload in SQL so the
 * trade stays one round trip (the position's values come from the database's arithmetic); typing the
 * keys by the payload type makes a key missing from, or added to, the SQL a compile error.
 */
type SqlFields<T> = { readonly [K in keyof T]-?: string };

/** A timestamp as JavaScript's toISOString() writes it (UTC, milliseconds), so API and events agree. */
const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** trade_executed's data over the trade statement's `trade` row. */
export const TRADE_EXECUTED_SQL: SqlFields<TradeExecutedData> = {
  id: 'trade.id',
  accountId: 'trade.account_id',
  symbol: 'trade.symbol',
  side: 'trade.side',
  quantity: 'trim_scale(trade.quantity)::text',
  price: 'trim_scale(trade.price)::text',
  positionVersion: 'trade.position_version',
  executedAt: iso('trade.executed_at'),
};

/** position_updated's data over the trade statement's `pos` (changed position) and `trade` rows. */
export const POSITION_UPDATED_SQL: SqlFields<PositionUpdatedData> = {
  accountId: 'trade.account_id',
  symbol: 'trade.symbol',
  quantity: 'trim_scale(pos.quantity)::text',
  averagePrice: 'trim_scale(pos.average_price)::text',
  version: 'pos.version',
  updatedAt: iso('pos.updated_at'),
  tradeId: 'trade.id',
};

/** `jsonb_build_object(...)` of a payload's fields. */
export const jsonbObject = (fields: Readonly<Record<string, string>>): string =>
  `jsonb_build_object(${Object.entries(fields)
    .map(([key, expression]) => `'${key}', ${expression}`)
    .join(', ')})`;
