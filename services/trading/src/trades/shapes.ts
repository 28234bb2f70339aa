import type { Position, Trade } from './schema.ts';

/**
 * A shape's keys and the SQL expression of each, typed by the shape so a key missing from, or added
 * to, the SQL is a compile error. The API's trade and position and both events' data are read through
 * these, so each shape has one definition in TypeScript and one in SQL.
 */
export type SqlFields<T> = { readonly [K in keyof T]-?: string };

/** A timestamp as JavaScript's toISOString() writes it (UTC, milliseconds), so API and events agree. */
const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** The API's trade over a row of `trades` named `alias`; decimals as text, so no float touches them. */
export const tradeSql = (alias: string): SqlFields<Trade> => ({
  id: `${alias}.id`,
  accountId: `${alias}.account_id`,
  symbol: `${alias}.symbol`,
  side: `${alias}.side`,
  quantity: `trim_scale(${alias}.quantity)::text`,
  price: `trim_scale(${alias}.price)::text`,
  positionVersion: `${alias}.position_version`,
  executedAt: iso(`${alias}.executed_at`),
});

/** The API's position over a row of `positions` named `alias`. */
export const positionSql = (alias: string): SqlFields<Position> => ({
  accountId: `${alias}.account_id`,
  symbol: `${alias}.symbol`,
  quantity: `trim_scale(${alias}.quantity)::text`,
  averagePrice: `trim_scale(${alias}.average_price)::text`,
  version: `${alias}.version`,
  updatedAt: iso(`${alias}.updated_at`),
});

/** `jsonb_build_object(...)` of a shape's fields. */
export const jsonbObject = (fields: Readonly<Record<string, string>>): string =>
  `jsonb_build_object(${Object.entries(fields)
    .map(([key, expression]) => `'${key}', ${expression}`)
    .join(', ')})`;

/** A select list naming each column for its key, so a row is the shape itself. */
export const selectList = (fields: Readonly<Record<string, string>>): string =>
  Object.entries(fields)
    .map(([key, expression]) => `${expression} AS "${key}"`)
    .join(', ');
