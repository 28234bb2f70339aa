import type { CloudEvent, HandlerContext } from '@astra/outbox/consumer';
import { OutboxError } from '@astra/outbox/consumer';

export const TRADE_EXECUTED = 'astra.trading.trade_executed.v1';
export const POSITION_UPDATED = 'astra.trading.position_updated.v1';
export const STREAMS = [TRADE_EXECUTED, POSITION_UPDATED];

/** The data of the trading service's events (services/trading/src/trades/events.ts), decimals as strings. */
export interface TradeExecuted {
  id: string;
  accountId: string;
  symbol: string;
  side: 'BUY' | 'SELL';
  quantity: string;
  price: string;
  positionVersion: number;
  executedAt: string;
}

export interface PositionUpdated {
  accountId: string;
  symbol: string;
  quantity: string;
  averagePrice: string;
  version: number;
  updatedAt: string;
  tradeId: string;
}

export type ReportingEvent =
  | (CloudEvent<TradeExecuted> & { type: typeof TRADE_EXECUTED })
  | (CloudEvent<PositionUpdated> & { type: typeof POSITION_UPDATED });

const DECIMAL = /^\d{1,16}(\.\d{1,8})?$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function check(ok: boolean, field: string, event: CloudEvent): void {
  if (!ok)
    throw new OutboxError(
      'OUTBOX_INVALID_EVENT',
      `${event.type} ${event.id}: data.${field} is missing or invalid`,
      {
        field: `data.${field}`,
      },
    );
}

/**
 * Checks an event's data before it is applied: anything else is a poison event (dead-lettered at once
 * by the consumer), never a half-applied row. Exact decimals stay strings; SQL casts them to numeric.
 */
export function parseReportingEvent(event: CloudEvent): ReportingEvent {
  const data = event.data as Record<string, unknown> | null;
  check(typeof data === 'object' && data !== null && !Array.isArray(data), '', event);
  const d = data as Record<string, unknown>;
  const str = (name: string, pattern?: RegExp) =>
    check(
      typeof d[name] === 'string' &&
        d[name] !== '' &&
        (pattern === undefined || pattern.test(d[name] as string)),
      name,
      event,
    );
  const version = (name: string) =>
    check(Number.isSafeInteger(d[name]) && (d[name] as number) >= 1, name, event);
  str('accountId');
  str('symbol');
  if (event.type === TRADE_EXECUTED) {
    str('id');
    check(d.side === 'BUY' || d.side === 'SELL', 'side', event);
    str('quantity', DECIMAL);
    str('price', DECIMAL);
    version('positionVersion');
    str('executedAt', TIME);
    return event as ReportingEvent;
  }
  if (event.type === POSITION_UPDATED) {
    str('quantity', DECIMAL);
    str('averagePrice', DECIMAL);
    version('version');
    str('updatedAt', TIME);
    check(event.subject === `${d.accountId}:${d.symbol}`, 'accountId', event);
    return event as ReportingEvent;
  }
  throw new OutboxError('OUTBOX_INVALID_EVENT', `unknown event type ${event.type}`, { field: 'type' });
}

/**
 * Applies one event inside the consumer's inbox transaction. The consumer has already ordered
 * position_updated events by version per position (subject, data.version); the upsert checks that the
 * version follows the stored one and fails loudly otherwise. Each applied version is recorded with the
 * name of the consumer that applied it (`position_applies`).
 */
export async function applyReportingEvent(
  event: ReportingEvent,
  { db }: HandlerContext,
  consumer: string,
): Promise<void> {
  if (event.type === TRADE_EXECUTED) {
    // No ON CONFLICT: the inbox applies each event once, and a second insert of a trade would be a bug
    // to see (the handler fails, the event is retried and dead-lettered), not to hide.
    const t = event.data;
    await db.query({
      name: 'ledger_insert',
      text: `INSERT INTO ledger (trade_id, event_id, account_id, symbol, side, quantity, price, position_version, executed_at)
             VALUES ($1, $2, $3, $4, $5, $6::numeric, $7::numeric, $8, $9::timestamptz)`,
      values: [
        t.id,
        event.id,
        t.accountId,
        t.symbol,
        t.side,
        t.quantity,
        t.price,
        t.positionVersion,
        t.executedAt,
      ],
    });
    return;
  }
  const p = event.data;
  const result = await db.query<{ inserted: boolean }>({
    name: 'position_upsert',
    text: `INSERT INTO positions AS p (account_id, symbol, quantity, average_price, version, updated_at)
           VALUES ($1, $2, $3::numeric, $4::numeric, $5, $6::timestamptz)
           ON CONFLICT (account_id, symbol) DO UPDATE SET
             quantity = EXCLUDED.quantity, average_price = EXCLUDED.average_price,
             version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
           WHERE p.version = EXCLUDED.version - 1
           RETURNING (xmax = 0) AS inserted`,
    values: [p.accountId, p.symbol, p.quantity, p.averagePrice, p.version, p.updatedAt],
  });
  // The consumer applies versions in turn; anything else is a bug to see, not a row to skip.
  const row = result.rows[0];
  if (row === undefined || (row.inserted && p.version !== 1))
    throw new Error(`position ${event.subject}: version ${p.version} does not follow the view's version`);
  await db.query({
    name: 'position_apply_record',
    text: `INSERT INTO position_applies (account_id, symbol, version, consumer, event_id)
           VALUES ($1, $2, $3, $4, $5)`,
    values: [p.accountId, p.symbol, p.version, consumer, event.id],
  });
}
