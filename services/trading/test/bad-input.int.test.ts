import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertError, createTestApp, postTrade, type TestApp, tradeBody, writeCounts } from './support.ts';

interface BadCase {
  name: string;
  /** An object is sent as JSON; a string is sent as it is. */
  payload: unknown;
  headers?: Record<string, string>;
  status?: number;
  code: string;
  /** The field at fault, or null when the body as a whole is. */
  field: string | null;
}

const SQL = "AAPL'; DROP TABLE trades;--";

function fieldCases(field: string, values: unknown[], code = 'INVALID_FIELD'): BadCase[] {
  return values.map((value) => ({
    name: `${field} = ${JSON.stringify(value)}`,
    payload: tradeBody({ [field]: value }),
    code,
    field,
  }));
}

const BAD_DECIMALS: unknown[] = [
  // zero, negative, not a number
  '0',
  '0.0',
  '0.00000000',
  '-1',
  '-0.5',
  'abc',
  '',
  'NaN',
  'Infinity',
  '1e5',
  '0x10',
  '1,5',
  '+1',
  '1.',
  '.5',
  ' 1',
  '1 ',
  '1\n',
  '١٢',
  '00001',
  // more decimals or integer digits than numeric(24,8) holds
  '1.123456789',
  '0.000000001',
  '12345678901234567',
  '99999999999999999.5',
  // SQL in a decimal
  '1; DROP TABLE trades',
  "1' OR '1'='1",
  // wrong JSON types
  10,
  0.5,
  -1,
  true,
  null,
  ['1'],
  { value: '1' },
];

const CASES: BadCase[] = [
  // malformed JSON
  { name: 'truncated JSON', payload: '{"accountId":"alice",', code: 'MALFORMED_JSON', field: null },
  { name: 'unquoted keys', payload: '{accountId:"alice"}', code: 'MALFORMED_JSON', field: null },
  { name: 'single quotes', payload: "{'accountId':'alice'}", code: 'MALFORMED_JSON', field: null },
  {
    name: 'trailing comma',
    payload: `${JSON.stringify(tradeBody()).slice(0, -1)},}`,
    code: 'MALFORMED_JSON',
    field: null,
  },
  {
    name: 'trailing garbage',
    payload: `${JSON.stringify(tradeBody())} x`,
    code: 'MALFORMED_JSON',
    field: null,
  },
  { name: 'empty body', payload: '', code: 'MALFORMED_JSON', field: null },
  { name: 'NaN literal', payload: '{"quantity": NaN}', code: 'MALFORMED_JSON', field: null },
  {
    name: '__proto__ pollution',
    payload: `{"__proto__":{"admin":true},${JSON.stringify(tradeBody()).slice(1)}`,
    code: 'MALFORMED_JSON',
    field: null,
  },
  // not an object
  { name: 'JSON array', payload: '[]', code: 'INVALID_BODY', field: null },
  {
    name: 'array of a valid body',
    payload: JSON.stringify([tradeBody()]),
    code: 'INVALID_BODY',
    field: null,
  },
  { name: 'JSON null', payload: 'null', code: 'INVALID_BODY', field: null },
  { name: 'JSON number', payload: '42', code: 'INVALID_BODY', field: null },
  { name: 'JSON string', payload: '"AAPL"', code: 'INVALID_BODY', field: null },
  { name: 'JSON true', payload: 'true', code: 'INVALID_BODY', field: null },
  // unknown fields
  { name: 'unknown field', payload: tradeBody({ note: 'hi' }), code: 'UNKNOWN_FIELD', field: 'note' },
  { name: 'unknown field with SQL', payload: tradeBody({ [SQL]: 1 }), code: 'UNKNOWN_FIELD', field: SQL },
  {
    name: 'a client-chosen id',
    payload: tradeBody({ id: crypto.randomUUID() }),
    code: 'UNKNOWN_FIELD',
    field: 'id',
  },
  {
    name: 'constructor field',
    payload: tradeBody({ constructor: 'x' }),
    code: 'UNKNOWN_FIELD',
    field: 'constructor',
  },
  {
    name: 'deeply nested arrays',
    payload: `${'['.repeat(5000)}${']'.repeat(5000)}`,
    code: 'INVALID_BODY',
    field: null,
  },
  // missing fields
  { name: 'empty object', payload: {}, code: 'MISSING_FIELD', field: 'accountId' },
  ...['accountId', 'symbol', 'side', 'quantity', 'price'].map((field) => {
    const body = tradeBody();
    delete body[field];
    return { name: `missing ${field}`, payload: body, code: 'MISSING_FIELD', field };
  }),
  // numbers
  ...fieldCases('quantity', BAD_DECIMALS),
  ...fieldCases('price', BAD_DECIMALS),
  // side
  ...fieldCases('side', ['buy', 'Sell', 'HOLD', 'SHORT', '', 'BUY ', 1, null, ['BUY']]),
  // symbol format
  ...fieldCases('symbol', [
    'aapl',
    '',
    SQL,
    'AAPL OR 1=1',
    '1ABC',
    '.AAPL',
    'AA PL',
    'ÄPPL',
    'ABCDEFGHIJKLM',
    'AAPL\n',
    42,
    null,
  ]),
  // accountId format
  ...fieldCases('accountId', [
    '',
    'a b',
    'x'.repeat(65),
    "alice' OR '1'='1",
    'alice;--',
    'alice\u0000',
    'alicé',
    '../bob',
    7,
    null,
    { id: 'alice' },
  ]),
  // size and content type
  {
    name: 'oversized body',
    payload: JSON.stringify(tradeBody({ note: 'x'.repeat(20_000) })),
    status: 413,
    code: 'BODY_TOO_LARGE',
    field: null,
  },
  {
    name: 'oversized value in a known field',
    payload: JSON.stringify(tradeBody({ symbol: 'A'.repeat(20_000) })),
    status: 413,
    code: 'BODY_TOO_LARGE',
    field: null,
  },
  ...[
    'text/plain',
    'application/xml',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/json-patch+json',
  ].map((contentType) => ({
    name: `content type ${contentType}`,
    payload: JSON.stringify(tradeBody()),
    headers: { 'content-type': contentType },
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
    field: null,
  })),
];

describe('bad input: a 4xx error body, and nothing written', () => {
  let t: TestApp;
  let auth: string;
  before(async () => {
    t = await createTestApp();
    auth = await t.accountKey('alice');
    // A position to sell from, so that writes would be visible for SELLs too.
    const bought = await postTrade(t.app, auth, tradeBody());
    assert.equal(bought.statusCode, 201, bought.body);
  });
  after(() => t.close());

  for (const bad of CASES) {
    test(bad.name, async () => {
      const counts = await writeCounts(t.db.pool);
      const response = await postTrade(t.app, auth, bad.payload, bad.headers);
      const error = assertError(response, { status: bad.status ?? 400, code: bad.code, field: bad.field });
      if (bad.field !== null) assert.ok(error.message.includes(bad.field), error.message);
      assert.deepEqual(await writeCounts(t.db.pool), counts);
    });
  }

  test('a POST without a body is refused with 400', async () => {
    const counts = await writeCounts(t.db.pool);
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/trades',
      headers: { authorization: auth },
    });
    assertError(response, { status: 400, code: 'INVALID_BODY', field: null });
    assert.deepEqual(await writeCounts(t.db.pool), counts);
  });

  test('bad path parameters are 400 with the field named', async () => {
    for (const [url, field] of [
      ['/v1/trades/not-a-uuid', 'id'],
      [`/v1/trades/${encodeURIComponent("1' OR '1'='1")}`, 'id'],
      ['/v1/accounts/a%20b/positions', 'accountId'],
      [`/v1/accounts/${encodeURIComponent(SQL)}/positions`, 'accountId'],
    ] as const) {
      const response = await t.app.inject({ method: 'GET', url, headers: { authorization: auth } });
      assertError(response, { status: 400, code: 'INVALID_FIELD', field });
    }
  });

  test('an unknown route is a 404 in the same error shape', async () => {
    const response = await t.app.inject({
      method: 'DELETE',
      url: '/v1/trades',
      headers: { authorization: auth },
    });
    assertError(response, { status: 404, code: 'NOT_FOUND', field: null });
  });

  test('the SQL carried in strings reached nothing: every table is still there', async () => {
    const tables = await t.db.pool.query<{ name: string }>(
      `SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`,
    );
    assert.deepEqual(
      tables.rows.map((row) => row.name),
      [
        'accounts',
        'api_keys',
        'event_outbox',
        'event_outbox_partitions',
        'event_outbox_streams',
        'idempotency_keys',
        'pgmigrations',
        'positions',
        'trades',
      ],
    );
    assert.deepEqual(await writeCounts(t.db.pool), { trades: 1, positions: 1, outbox: 2, versions: 1 });
  });
});
