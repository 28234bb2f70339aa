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

export const IDEMPOTENCY_KEY_PATTERN = '^[\\x21-\\x7e]{1,255}$';

/** The request headers POST /v1/trades reads, for validation and the OpenAPI document. */
export const TradeHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      pattern: IDEMPOTENCY_KEY_PATTERN,
      description:
        'Makes retries safe: the same key and body get the first answer (a 201 or a 422) again, ' +
        'with idempotent-replayed: true. 1-255 visible ASCII characters.',
    }),
  ),
  traceparent: Type.Optional(
    Type.String({
      description: 'W3C trace context, carried into the events; an invalid value is ignored.',
      examples: ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    }),
  ),
  tracestate: Type.Optional(
    Type.String({
      description: 'W3C tracestate (at most 512 characters, 32 members); an invalid value is dropped.',
    }),
  ),
  'x-request-id': Type.Optional(
    Type.String({ description: 'Echoed in the response and logged; 1-128 visible ASCII characters.' }),
  ),
});

export const PAGE_LIMIT_MAX = 500;
// Query values are strings and nothing is coerced (see app.ts), hence a pattern for 1-500.
export const PageLimit = Type.String({
  pattern: '^(?:[1-9][0-9]?|[1-4][0-9]{2}|500)$',
  description: `Items per page, 1-${PAGE_LIMIT_MAX} (default 100).`,
  examples: ['100'],
});

export const NextCursor = Type.Union([Type.String(), Type.Null()], {
  description: 'Pass as `cursor` for the next page; null on the last page.',
});

/** Messages for pattern failures, which Ajv would otherwise report as a raw regular expression. */
export const FIELD_RULES: Record<string, string> = {
  accountId: 'must be 1-64 letters, digits, _ or -',
  symbol: 'must be an upper-case ticker: a letter then up to 11 letters, digits or dots',
  side: 'must be BUY or SELL',
  quantity: 'must be a positive decimal string with at most 16 integer digits and 8 decimals',
  price: 'must be a positive decimal string with at most 16 integer digits and 8 decimals',
  'idempotency-key': 'must be 1-255 visible ASCII characters',
  limit: `must be a whole number from 1 to ${PAGE_LIMIT_MAX}`,
  cursor: 'must be the nextCursor of the previous page',
};
