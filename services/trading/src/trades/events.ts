import type { Position, Trade } from './schema.ts';
import { positionSql, type SqlFields, tradeSql } from './shapes.ts';

/** The trading service's event types; each names its Redis stream. */
export const TRADE_EXECUTED = 'astra.trading.trade_executed.v1';
export const POSITION_UPDATED = 'astra.trading.position_updated.v1';
export const EVENT_TYPES = [TRADE_EXECUTED, POSITION_UPDATED] as const;

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
 * The events' data in the trade statement, over its `trade` row and `pos` (the changed position). The
 * payload is built in SQL so the trade stays one round trip: the position's values come from the
 * database's arithmetic.
 */
export const TRADE_EXECUTED_SQL: SqlFields<TradeExecutedData> = tradeSql('trade');
export const POSITION_UPDATED_SQL: SqlFields<PositionUpdatedData> = {
  ...positionSql('pos'),
  tradeId: 'trade.id',
};
