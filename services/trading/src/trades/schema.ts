import { type Static, Type } from 'typebox';

// numeric(24,8): up to 16 integer digits and 8 decimals, strictly positive, as a string so no float
// ever touches it. The lookahead rejects zero in every spelling (0, 0.0, 000.00000000 is not allowed
// anyway: no leading zeros).
export const DECIMAL_PATTERN = '^(?!0(\\.0{1,8})?$)(0|[1-9][0-9]{0,15})(\\.[0-9]{1,8})?$';
export const SYMBOL_PATTERN = '^[A-Z][A-Z0-9.]{0,11}$';
export const ACCOUNT_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';

const Decimal = (description: string) =>
  Type.String({ pattern: DECIMAL_PATTERN, maxLength: 25, description, examples: ['10.5'] });

export const TradeRequest = Type.Object(
  {
    accountId: Type.String({ pattern: ACCOUNT_ID_PATTERN, maxLength: 64, examples: ['demo'] }),
    symbol: Type.String({ pattern: SYMBOL_PATTERN, maxLength: 12, examples: ['AAPL'] }),
    side: Type.Union([Type.Literal('BUY'), Type.Literal('SELL')]),
    quantity: Decimal('positive decimal string, at most 16 integer digits and 8 decimals'),
    price: Decimal('positive decimal string, at most 16 integer digits and 8 decimals'),
  },
  { additionalProperties: false },
);
export type TradeRequest = Static<typeof TradeRequest>;

export const Trade = Type.Object({
  id: Type.String({ format: 'uuid' }),
  accountId: Type.String(),
  symbol: Type.String(),
  side: Type.Union([Type.Literal('BUY'), Type.Literal('SELL')]),
  quantity: Type.String(),
  price: Type.String(),
  positionVersion: Type.Integer(),
  executedAt: Type.String({ format: 'date-time' }),
});
export type Trade = Static<typeof Trade>;

export const Position = Type.Object({
  accountId: Type.String(),
  symbol: Type.String(),
  quantity: Type.String(),
  averagePrice: Type.String(),
  version: Type.Integer(),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type Position = Static<typeof Position>;

export const TradeResult = Type.Object({ trade: Trade, position: Position });
export type TradeResult = Static<typeof TradeResult>;

export const ErrorResponse = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    field: Type.Union([Type.String(), Type.Null()]),
  }),
});

/** Messages for pattern failures, which Ajv would otherwise report as a raw regular expression. */
export const FIELD_RULES: Record<string, string> = {
  accountId: 'must be 1-64 letters, digits, _ or -',
  symbol: 'must be an upper-case ticker: a letter then up to 11 letters, digits or dots',
  side: 'must be BUY or SELL',
  quantity: 'must be a positive decimal string with at most 16 integer digits and 8 decimals',
  price: 'must be a positive decimal string with at most 16 integer digits and 8 decimals',
};
