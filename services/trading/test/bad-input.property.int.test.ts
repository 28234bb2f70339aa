import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { notAString } from './generators.ts';
import { assertError, createTestApp, postTrade, type TestApp, writeCounts } from './support.ts';

const FIELDS = ['accountId', 'symbol', 'side', 'quantity', 'price'] as const;

/**
 * Every generated body starts from a SELL of a symbol alice does not hold: even a mutation that
 * happens to be valid cannot write anything (it is refused with 422). Only `side: "BUY"` could turn
 * it into a real trade, so bodies carrying it are filtered out.
 */
const BASE = { accountId: 'alice', symbol: 'NOPE', side: 'SELL', quantity: '1', price: '1' };

const SQL_STRINGS = [
  "AAPL'; DROP TABLE trades;--",
  "' OR '1'='1",
  '1; DELETE FROM positions',
  "alice'--",
  '$1',
  "'); TRUNCATE event_outbox; --",
];

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom(...SQL_STRINGS),
);
/** Things that look like decimals but break a rule: sign, zero, exponent, digits, decimals. */
const decimalish = fc.oneof(
  fc.constantFrom('0', '0.0', '0.00000000', '-1', '+1', '1e3', '.5', '1.', '00.5', 'NaN', 'Infinity', ' 1'),
  fc.double().map(String),
  fc.integer({ min: -1_000_000, max: 0 }).map(String),
  fc
    .tuple(fc.bigInt({ min: 0n, max: 10n ** 20n }), fc.stringMatching(/^[0-9]{9,12}$/))
    .map(([whole, fraction]) => `${whole}.${fraction}`),
  fc.bigInt({ min: 10n ** 16n, max: 10n ** 30n }).map(String),
);
const badValue = fc.oneof(text, notAString, decimalish);
const unknownKey = fc
  .oneof(fc.string({ maxLength: 12 }), fc.constantFrom('id', 'Side', 'QUANTITY', 'account_id', 'constructor'))
  .filter((key) => !(FIELDS as readonly string[]).includes(key));

/** A semantically invalid body: fields replaced by bad values, fields missing, unknown fields. */
const badBody = fc
  .record({
    replaced: fc.array(fc.tuple(fc.constantFrom(...FIELDS), badValue), { minLength: 1, maxLength: 3 }),
    // Mostly nothing removed or added, so the value checks behind them get exercised too.
    removed: fc.oneof(
      { weight: 4, arbitrary: fc.constant([]) },
      { weight: 1, arbitrary: fc.subarray([...FIELDS]) },
    ),
    extra: fc.oneof(
      { weight: 3, arbitrary: fc.constant({}) },
      {
        weight: 1,
        arbitrary: fc.dictionary(unknownKey, fc.jsonValue({ maxDepth: 2 }), { minKeys: 1, maxKeys: 2 }),
      },
    ),
  })
  .map(({ replaced, removed, extra }) => {
    const body: Record<string, unknown> = { ...BASE, ...extra };
    for (const [field, value] of replaced) body[field] = value;
    for (const field of removed) delete body[field];
    return JSON.stringify(body);
  });

/** Structurally broken bodies: not JSON, truncated or corrupted JSON, JSON that is not an object. */
const brokenBody = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  badBody.chain((json) => fc.nat({ max: json.length - 1 }).map((end) => json.slice(0, end))),
  badBody.chain((json) =>
    fc
      .tuple(fc.nat({ max: json.length - 1 }), fc.string({ minLength: 1, maxLength: 3 }))
      .map(([at, junk]) => json.slice(0, at) + junk + json.slice(at + 1)),
  ),
  fc
    .jsonValue({ maxDepth: 3 })
    .filter((value) => typeof value !== 'object' || value === null || Array.isArray(value))
    .map((value) => JSON.stringify(value)),
);

function couldTrade(body: string): boolean {
  try {
    const parsed: unknown = JSON.parse(body);
    return typeof parsed === 'object' && parsed !== null && (parsed as { side?: unknown }).side === 'BUY';
  } catch {
    return false;
  }
}

const anyBadBody = fc.oneof(badBody, brokenBody).filter((body) => !couldTrade(body));

/** Every code a bad body may get, with the one status that goes with it. */
const CLIENT_ERRORS = new Map([
  ['MALFORMED_JSON', 400],
  ['INVALID_BODY', 400],
  ['UNKNOWN_FIELD', 400],
  ['MISSING_FIELD', 400],
  ['INVALID_FIELD', 400],
  ['INSUFFICIENT_POSITION', 422],
  ['FORBIDDEN', 403],
  ['BODY_TOO_LARGE', 413],
]);
const FIELD_ERRORS = new Set(['UNKNOWN_FIELD', 'MISSING_FIELD', 'INVALID_FIELD', 'INSUFFICIENT_POSITION']);

describe('property: generated bad bodies', () => {
  let t: TestApp;
  let auth: string;
  before(async () => {
    t = await createTestApp();
    auth = await t.accountKey('alice');
    await t.accountKey('bob');
  });
  after(() => t.close());

  test('1,200 bad bodies: never a 5xx, always the error shape, nothing written', async () => {
    const counts = await writeCounts(t.db.pool);
    const seen = new Map<string, number>();
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(anyBadBody, async (body) => {
        const response = await postTrade(t.app, auth, body);
        sent++;
        const error = assertError(response);
        assert.ok(CLIENT_ERRORS.has(error.code), `unexpected code ${error.code} for ${body}`);
        // The code is known, so its status is too: not merely "some 4xx".
        assert.equal(
          response.statusCode,
          CLIENT_ERRORS.get(error.code),
          `status of ${error.code} for ${body}`,
        );
        if (FIELD_ERRORS.has(error.code)) assert.notEqual(error.field, null, `no field for ${body}`);
        seen.set(error.code, (seen.get(error.code) ?? 0) + 1);
      }),
      { numRuns: 1200 },
    );
    assert.ok(sent >= 1000, `only ${sent} bodies sent`);
    assert.deepEqual(await writeCounts(t.db.pool), counts);
    const keys = await t.db.pool.query('SELECT count(*)::int AS n FROM idempotency_keys');
    assert.deepEqual(keys.rows, [{ n: 0 }]);
    // Both kinds of bad input were exercised, not just one.
    for (const code of [
      'MALFORMED_JSON',
      'INVALID_BODY',
      'UNKNOWN_FIELD',
      'MISSING_FIELD',
      'INVALID_FIELD',
    ]) {
      assert.ok((seen.get(code) ?? 0) > 0, `no ${code} in ${JSON.stringify([...seen])}`);
    }
  });
});
