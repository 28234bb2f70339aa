import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '@astra/test-support';
import fc from 'fast-check';
import { notAString } from '../generators.ts';
import { HttpClient, type HttpRequest, NoAnswerError } from './http.ts';
import { killLeftovers, type ServiceHandle, Stack } from './stack.ts';
import { readStreams } from './streams.ts';

// Black-box: 10,000+ generated malformed or hostile requests over real HTTP to the real service
// process. None may get a 5xx or write anything, and the process must survive all of them.

const REQUESTS = 10_000;
const CONCURRENCY = 16;
const BODY_LIMIT = 16 * 1024;
const FIELDS = ['accountId', 'symbol', 'side', 'quantity', 'price'] as const;

/** A valid trade: a hostile request built on it is invalid only by what the category changes. */
const VALID_BUY = { accountId: 'alice', symbol: 'AAPL', side: 'BUY', quantity: '1', price: '100' };
/**
 * Body mutations start from a SELL of a symbol alice does not hold, so a mutation that happens to be
 * valid is still refused (422) and cannot write: the count check stays meaningful.
 */
const UNHELD_SELL = { accountId: 'alice', symbol: 'NOPE', side: 'SELL', quantity: '1', price: '1' };

const SQL = [
  "'; DROP TABLE trades; --",
  "' OR '1'='1",
  '1; DELETE FROM positions',
  "alice' --",
  "'); TRUNCATE event_outbox; --",
  '$1',
  "1' UNION SELECT key_hash FROM api_keys --",
  'pg_sleep(10)',
];

interface Keys {
  alice: string;
  bob: string;
  admin: string;
}

type Category =
  | 'auth'
  | 'body'
  | 'json'
  | 'contentType'
  | 'idempotency'
  | 'oversized'
  | 'method'
  | 'path'
  | 'hugeNumber';

interface Hostile extends HttpRequest {
  category: Category;
}

function arbitraries(keys: Keys) {
  const validAuth = fc.constantFrom(`Bearer ${keys.alice}`, `Bearer ${keys.admin}`);
  const anyText = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'grapheme', maxLength: 20 }),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.constantFrom(...SQL),
    fc.nat({ max: 5000 }).map((n) => 'A'.repeat(n + 100)),
  );
  const decimalish = fc.oneof(
    fc.constantFrom('0', '0.0', '-1', '+1', '1e3', '.5', '1.', 'NaN', 'Infinity', ' 1', '1,5', '0x10', '١٢'),
    fc.bigInt({ min: 10n ** 16n, max: 10n ** 40n }).map(String),
    fc.stringMatching(/^[1-9][0-9]{0,3}\.[0-9]{9,20}$/),
    fc.double().map(String),
  );
  const unknownKey = fc
    .oneof(
      fc.string({ maxLength: 12 }),
      fc.constantFrom('__proto__', 'constructor', 'id', 'account_id', 'Side', 'status', 'version'),
    )
    .filter((key) => !(FIELDS as readonly string[]).includes(key));

  // JSON objects that break the schema: replaced values, missing fields, unknown fields.
  const badObject = fc
    .record({
      replaced: fc.array(fc.tuple(fc.constantFrom(...FIELDS), fc.oneof(anyText, notAString, decimalish)), {
        minLength: 0,
        maxLength: 3,
      }),
      removed: fc.subarray([...FIELDS]),
      extra: fc.dictionary(unknownKey, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 2 }),
    })
    .filter(
      ({ replaced, removed, extra }) => replaced.length + removed.length + Object.keys(extra).length > 0,
    )
    .map(({ replaced, removed, extra }) => {
      // __proto__ as an own key needs JSON text; JSON.stringify of an object literal would drop it.
      const body: Record<string, unknown> = { ...UNHELD_SELL };
      for (const [field, value] of replaced) body[field] = value;
      for (const field of removed) delete body[field];
      const json = JSON.stringify(body);
      const extras = Object.entries(extra).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
      if (extras.length === 0) return json;
      return json === '{}' ? `{${extras.join(',')}}` : `${json.slice(0, -1)},${extras.join(',')}}`;
    });
  const notAnObject = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)),
    fc.array(fc.constant(UNHELD_SELL), { minLength: 1, maxLength: 3 }),
  );

  const body = fc.record({
    category: fc.constant<Category>('body'),
    method: fc.constant('POST'),
    path: fc.constant('/v1/trades'),
    headers: validAuth.map((authorization) => ({ authorization, 'content-type': 'application/json' })),
    body: fc.oneof(
      { weight: 4, arbitrary: badObject },
      { weight: 1, arbitrary: notAnObject.map((v) => JSON.stringify(v)) },
    ),
  });

  const brokenJson = fc.oneof(
    fc.string({ maxLength: 60 }).filter((text) => {
      try {
        JSON.parse(text);
        return false;
      } catch {
        return true;
      }
    }),
    fc.nat({ max: 60 }).map((end) => JSON.stringify(UNHELD_SELL).slice(0, end)),
    fc.constantFrom(
      '',
      '{',
      '{"accountId":}',
      "{'accountId':'alice'}",
      '{"accountId":"alice",}',
      '{"accountId":"alice"}{"x":1}',
      'null null',
      '\u0000',
      '{"quantity":"1"\u0000}',
      `${'['.repeat(3000)}${']'.repeat(3000)}`,
      `${'{"a":'.repeat(2000)}1${'}'.repeat(2000)}`,
    ),
  );
  const json = fc.record({
    category: fc.constant<Category>('json'),
    method: fc.constant('POST'),
    path: fc.constant('/v1/trades'),
    headers: validAuth.map((authorization) => ({ authorization, 'content-type': 'application/json' })),
    body: brokenJson,
  });

  // Numbers no decimal column holds, as JSON numbers (a wrong type) or as strings (too many digits).
  const hugeNumber = fc.record({
    category: fc.constant<Category>('hugeNumber'),
    method: fc.constant('POST'),
    path: fc.constant('/v1/trades'),
    headers: validAuth.map((authorization) => ({ authorization, 'content-type': 'application/json' })),
    body: fc
      .tuple(
        fc.constantFrom('quantity', 'price'),
        fc.oneof(
          fc.constantFrom('1e400', '-1e400', '1e-400', '123456789012345678901234567890', '9'.repeat(400)),
          fc.bigInt({ min: 10n ** 20n, max: 10n ** 300n }).map(String),
          fc.bigInt({ min: 10n ** 16n, max: 10n ** 300n }).map((n) => JSON.stringify(String(n))),
        ),
      )
      .map(([field, number]) => {
        const body = JSON.stringify({ ...VALID_BUY, [field]: '__N__' });
        return body.replace('"__N__"', number);
      }),
  });

  const badAuthorization = fc.oneof(
    fc.constant(undefined),
    fc.constantFrom(
      '',
      'Bearer',
      'Bearer ',
      'Bearer  ',
      `Basic ${Buffer.from('alice:secret').toString('base64')}`,
      `Token ${keys.alice}`,
      `Bearer ${keys.alice}x`,
      `Bearer ${keys.alice.slice(0, -1)}`,
      `Bearer ${keys.alice} ${keys.admin}`,
      `Bearer ${'a'.repeat(201)}`,
      `Bearer ${keys.bob}`,
      "Bearer ' OR '1'='1",
      'Bearer astra_',
      'Bearer ../../etc/passwd',
    ),
    fc.stringMatching(/^[A-Za-z0-9_-]{43}$/).map((token) => `Bearer astra_${token}`),
    fc.string({ unit: 'binary-ascii', maxLength: 60 }).map((s) => `Bearer ${s.replace(/[^\x20-\x7e]/g, '')}`),
  );
  const auth = fc.record({
    category: fc.constant<Category>('auth'),
    method: fc.constant('POST'),
    path: fc.constant('/v1/trades'),
    headers: badAuthorization.map((authorization) => ({
      'content-type': 'application/json',
      ...(authorization === undefined ? {} : { authorization }),
    })),
    body: fc.constant(JSON.stringify(VALID_BUY)),
  });

  const contentType = fc.record({
    category: fc.constant<Category>('contentType'),
    method: fc.constant('POST'),
    path: fc.constant('/v1/trades'),
    headers: fc
      .tuple(
        validAuth,
        fc.constantFrom(
          undefined,
          'text/plain',
          'text/html',
          'application/xml',
          'application/x-www-form-urlencoded',
          'multipart/form-data; boundary=xyz',
          'application/octet-stream',
          'application/jsonp',
          'application/json-seq',
          'image/png',
          'json',
          '*/*',
        ),
      )
      .map(([authorization, type]) => ({
        authorization,
        ...(type === undefined ? {} : { 'content-type': type }),
      })),
    body: fc.constantFrom(
      JSON.stringify(VALID_BUY),
      'accountId=alice&symbol=AAPL&side=BUY&quantity=1&price=100',
    ),
  });

  const badIdempotencyKey = fc.oneof(
    fc.constantFrom(
      '',
      ' ',
      'has space',
      'tab\there',
      '\u00e9t\u00e9',
      `${'k'.repeat(256)}`,
      "'; DROP TABLE idempotency_keys; --",
    ),
    fc.nat({ max: 2000 }).map((n) => 'x'.repeat(256 + n)),
    fc
      .string({ unit: 'binary', minLength: 1, maxLength: 30 })
      // Only bytes node:http will send (no control characters), with at least one the key forbids.
      .map((s) => `${s.replace(/[^\t\x20-\x7e\x80-\xff]/g, '')} \u00ff`),
  );
  const idempotency = fc.record({
    category: fc.constant<Category>('idempotency'),
    method: fc.constant('POST'),
    path: fc.constant('/v1/trades'),
    headers: fc.tuple(validAuth, badIdempotencyKey).map(([authorization, key]) => ({
      authorization,
      'content-type': 'application/json',
      'idempotency-key': key,
    })),
    body: fc.constant(JSON.stringify(VALID_BUY)),
  });

  const oversized = fc.record({
    category: fc.constant<Category>('oversized'),
    method: fc.constant('POST'),
    path: fc.constant('/v1/trades'),
    headers: validAuth.map((authorization) => ({ authorization, 'content-type': 'application/json' })),
    body: fc
      .integer({ min: BODY_LIMIT + 1, max: 4 * BODY_LIMIT })
      .map((size) => JSON.stringify({ ...VALID_BUY, padding: 'p'.repeat(size) })),
  });

  const method = fc.record({
    category: fc.constant<Category>('method'),
    method: fc.constantFrom('PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND'),
    path: fc.constantFrom('/v1/trades', '/v1/trades/', '/v1/accounts/alice/positions', '/healthz'),
    headers: validAuth.map((authorization) => ({ authorization, 'content-type': 'application/json' })),
    body: fc.constant(JSON.stringify(VALID_BUY)),
  });

  const segment = fc.oneof(
    fc.constantFrom('..', '.', '%2e%2e', '%2E%2E', '..%2f', '..%5c', '%252e%252e', '%00', '%ff', '~', '*'),
    fc.string({ maxLength: 12 }).map(encodeURIComponent),
    fc.constantFrom(...SQL).map(encodeURIComponent),
    fc.constantFrom(
      'v1',
      'trades',
      'accounts',
      'positions',
      'docs',
      'static',
      'etc',
      'passwd',
      'package.json',
    ),
  );
  const hostilePath = fc.oneof(
    fc.constantFrom(
      '/../../etc/passwd',
      '/v1/../../etc/passwd',
      '/v1/trades/../../../etc/passwd',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/v1/trades/..%2f..%2f..%2fetc%2fpasswd',
      '/docs/../../../../etc/passwd',
      '/docs/static/..%2f..%2f..%2f..%2fpackage.json',
      '/docs/static/%2e%2e/%2e%2e/%2e%2e/package.json',
      '/docs/static/....//....//package.json',
      '//etc/passwd',
      '/v1/accounts/..%2f..%2f/positions',
      '/v1/accounts/alice%00/positions',
      '/v1/accounts/alice/../bob/positions',
      '/v1/trades/%00',
      "/v1/trades/1'%20OR%20'1'='1",
      '/v1/trades?id=1%27%20OR%201=1',
      '/v1/trades/00000000-0000-0000-0000-000000000000/../../accounts/bob/positions',
      '/v1//trades',
      '/V1/TRADES',
      '/v1/trades;jsessionid=1',
      '/%u002e%u002e/etc/passwd',
      '*',
    ),
    fc.array(segment, { minLength: 1, maxLength: 8 }).map((parts) => `/${parts.join('/')}`),
    fc.array(segment, { minLength: 0, maxLength: 3 }).map((parts) => `/v1/trades/${parts.join('/')}`),
    fc
      .array(segment, { minLength: 1, maxLength: 2 })
      .map((parts) => `/v1/accounts/${parts.join('/')}/positions`),
    fc.nat({ max: 6000 }).map((n) => `/v1/trades/${'a'.repeat(n + 100)}`),
  );
  const path = fc.record({
    category: fc.constant<Category>('path'),
    method: fc.constantFrom('GET', 'POST', 'DELETE', 'HEAD'),
    path: hostilePath,
    headers: fc.oneof(validAuth, badAuthorization).map((authorization) => ({
      'content-type': 'application/json',
      ...(authorization === undefined ? {} : { authorization }),
    })),
    // A path that still reaches POST /v1/trades (a query string) meets a SELL that cannot execute.
    body: fc.constant(JSON.stringify(UNHELD_SELL)),
  });

  return fc.oneof(
    { weight: 3, arbitrary: body },
    { weight: 2, arbitrary: json },
    { weight: 1, arbitrary: hugeNumber },
    { weight: 2, arbitrary: auth },
    { weight: 1, arbitrary: contentType },
    { weight: 1, arbitrary: idempotency },
    { weight: 1, arbitrary: oversized },
    { weight: 1, arbitrary: method },
    { weight: 2, arbitrary: path },
  );
}

/** Statuses each category may get; a path outside the API may also be answered by the docs UI. */
const EXPECTED: Record<Category, (status: number) => boolean> = {
  auth: (status) => status === 401 || status === 403,
  body: (status) => [400, 403, 404, 422].includes(status),
  json: (status) => status === 400,
  hugeNumber: (status) => status === 400,
  contentType: (status) => status === 415,
  idempotency: (status) => status === 400,
  oversized: (status) => status === 413,
  method: (status) => status === 404 || status === 405,
  // A hostile path lands somewhere known: the docs UI (200, or a redirect to it), a refused parameter
  // (400), the auth checks (401, 403), no route (404), a refused SELL (422) or a refused request line.
  path: (status) => [200, 301, 302, 400, 401, 403, 404, 405, 414, 422, 431].includes(status),
};

/** Categories answered by the API's own error handler, which always sends { error: { code, ... } }. */
const API_ERRORS: ReadonlySet<Category> = new Set([
  'auth',
  'body',
  'json',
  'hugeNumber',
  'contentType',
  'idempotency',
  'oversized',
]);

/** What a path traversal that worked would send back: /etc/passwd or a package.json. */
const LEAKED_FILE = /root:x:0:0|"devDependencies"|"workspaces"/;

interface Counts {
  trades: number;
  positions: number;
  versions: number;
  outbox: number;
  idempotency: number;
  accounts: number;
  keys: number;
}

describe('bad input over HTTP to the real service process', { timeout: 300_000 }, () => {
  let stack: Stack;
  let service: ServiceHandle;
  let http: HttpClient;
  let keys: Keys;

  async function counts(): Promise<Counts> {
    const result = await stack.db.pool.query<Counts>(
      `SELECT (SELECT count(*) FROM trades)::int AS trades,
              (SELECT count(*) FROM positions)::int AS positions,
              (SELECT coalesce(sum(version), 0) FROM positions)::int AS versions,
              (SELECT count(*) FROM event_outbox)::int AS outbox,
              (SELECT count(*) FROM idempotency_keys)::int AS idempotency,
              (SELECT count(*) FROM accounts)::int AS accounts,
              (SELECT count(*) FROM api_keys)::int AS keys`,
    );
    const row = result.rows[0];
    assert.ok(row !== undefined);
    return row;
  }

  before(async () => {
    stack = await Stack.create({ label: 'bad-input' });
    // Limits out of the way: this run is about answers to bad input; the limits have their own tests.
    service = await stack.startService({
      relay: false,
      env: { RATE_LIMIT_PER_KEY: '1000000', RATE_LIMIT_PER_ADDRESS: '1000000' },
    });
    const [alice, bob, admin] = await Promise.all([
      stack.createKey({ account: 'alice' }),
      stack.createKey({ account: 'bob' }),
      stack.createKey({ admin: true }),
    ]);
    keys = { alice, bob, admin };
    http = new HttpClient(service.port, { maxSockets: CONCURRENCY, defaultTimeoutMs: 15_000 });
    // One real trade, so positions and the outbox are not empty and SELLs meet a real position.
    const first = await http.postJson('/v1/trades', VALID_BUY, { authorization: `Bearer ${keys.alice}` });
    assert.equal(first.status, 201, first.body);
  });

  after(async () => {
    http?.close();
    await stack?.close();
    await killLeftovers();
  });

  test(`${REQUESTS.toLocaleString('en')} generated hostile requests: never a 5xx, never a write, the process survives`, async (t) => {
    const seed = Number(process.env.BAD_INPUT_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const requests = fc.sample(arbitraries(keys), { numRuns: REQUESTS, seed }) as Hostile[];
    const before = await counts();

    const byCategory = new Map<Category, Record<string, number>>();
    const answered = new Set<string>();
    const problems: string[] = [];
    const problem = (request: Hostile, what: string) => {
      if (problems.length < 20) {
        problems.push(
          `${what}: ${request.method} ${request.path.slice(0, 120)} ${JSON.stringify(request.headers).slice(0, 200)} ${String(request.body ?? '').slice(0, 200)}`,
        );
      } else problems.push('...');
    };
    let next = 0;
    async function worker(): Promise<void> {
      for (let index = next++; index < requests.length; index = next++) {
        const request = requests[index] as Hostile;
        const tally = byCategory.get(request.category) ?? {};
        byCategory.set(request.category, tally);
        let outcome: string;
        try {
          const response = await http.send(request);
          outcome = String(response.status);
          if (response.status >= 200 && response.status < 300)
            answered.add(`${request.method} ${request.path}`);
          if (response.status >= 500) problem(request, `${response.status} ${response.body.slice(0, 200)}`);
          else if (LEAKED_FILE.test(response.body))
            problem(request, `file content in the answer: ${response.body.slice(0, 200)}`);
          else if (!EXPECTED[request.category](response.status)) {
            problem(request, `unexpected ${response.status} ${response.body.slice(0, 200)}`);
          } else if (API_ERRORS.has(request.category)) {
            const parsed = JSON.parse(response.body) as { error?: { code?: unknown; message?: unknown } };
            if (typeof parsed.error?.code !== 'string' || typeof parsed.error.message !== 'string') {
              problem(request, `error body without code and message: ${response.body.slice(0, 200)}`);
            }
          }
        } catch (error) {
          if (!(error instanceof NoAnswerError)) throw error;
          outcome = error.code;
          // The server may close the connection on a body it will not read; nothing else goes unanswered.
          if (request.category !== 'oversized' || error.code === 'TIMEOUT') {
            problem(request, `no answer (${error.code}: ${error.message})`);
          }
        }
        tally[outcome] = (tally[outcome] ?? 0) + 1;
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, () => worker()));

    for (const [category, tally] of byCategory) t.diagnostic(`${category}: ${JSON.stringify(tally)}`);
    t.diagnostic(`2xx answers: ${[...answered].join(', ') || 'none'}`);
    t.diagnostic(`seed ${seed} (BAD_INPUT_SEED=${seed} replays this run)`);
    assert.deepEqual(problems, [], `seed ${seed}`);
    assert.equal(
      [...byCategory.values()].reduce(
        (sum, tally) => sum + Object.values(tally).reduce((a, b) => a + b, 0),
        0,
      ),
      REQUESTS,
    );
    assert.deepEqual(await counts(), before, 'hostile requests changed the database');
    assert.deepEqual(stack.crashes, []);
    // Still serving: a valid request works after all that.
    const health = await http.send({ method: 'GET', path: '/readyz' });
    assert.equal(health.status, 200);
  });
});

/**
 * The hardening findings against the real process: an oversized tracestate (1), internal endpoints
 * on the API port (2), floods of one key and of unknown keys (4), a revoked key (5).
 */
describe('hostile use of a hardened service process', { timeout: 300_000 }, () => {
  const WINDOW_MS = 60_000;
  const PER_KEY = 20;
  const PER_ADDRESS = 40;
  let stack: Stack;
  let service: ServiceHandle;
  let http: HttpClient;

  before(async () => {
    stack = await Stack.create({ label: 'hardening' });
    service = await stack.startService({
      relay: true,
      env: {
        DOCS_ENABLED: 'false',
        RATE_LIMIT_PER_KEY: String(PER_KEY),
        RATE_LIMIT_PER_ADDRESS: String(PER_ADDRESS),
        RATE_LIMIT_WINDOW_MS: String(WINDOW_MS),
        RELAY_POLL_INTERVAL_MS: '100',
      },
    });
    http = new HttpClient(service.port, { maxSockets: 8, defaultTimeoutMs: 15_000 });
  });
  after(async () => {
    http?.close();
    await stack?.close();
    await killLeftovers();
  });

  const count = async (sql: string) =>
    (await stack.db.pool.query<{ n: number }>(sql)).rows[0]?.n ?? Number.NaN;

  test('1: an 8 KB tracestate is neither stored nor copied into Redis; the traceparent is', async () => {
    const key = await stack.createKey({ account: 'tracer' });
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const response = await http.postJson(
      '/v1/trades',
      { accountId: 'tracer', symbol: 'AAPL', side: 'BUY', quantity: '1', price: '1' },
      { authorization: `Bearer ${key}`, traceparent, tracestate: `congo=${'x'.repeat(8000)}` },
    );
    assert.equal(response.status, 201, response.body);
    await waitFor(
      'both events published',
      async () =>
        (await count("SELECT count(*)::int AS n FROM event_outbox WHERE status = 'PUBLISHED'")) === 2,
      30_000,
    );
    const rows = await stack.db.pool.query<{ headers: Record<string, string> }>(
      'SELECT headers FROM event_outbox',
    );
    for (const row of rows.rows) assert.deepEqual(row.headers, { traceparent });
    const streams = await readStreams(stack.redis.url, [
      'astra.trading.trade_executed.v1',
      'astra.trading.position_updated.v1',
    ]);
    const entries = [...streams.values()].flat();
    assert.equal(entries.length, 2);
    for (const entry of entries) {
      assert.equal(entry.fields.traceparent, traceparent);
      assert.equal(entry.fields.tracestate ?? '', '');
    }
  });

  test('2: the API port serves no /metrics and (DOCS_ENABLED=false) no /docs; METRICS_PORT does', async () => {
    for (const path of ['/metrics', '/docs', '/docs/json', '/docs/static/index.html']) {
      const response = await http.send({ method: 'GET', path });
      assert.equal(response.status, 404, `${path}: ${response.body.slice(0, 200)}`);
    }
    const metrics = new HttpClient(service.metricsPort, { maxSockets: 1, defaultTimeoutMs: 10_000 });
    try {
      const response = await metrics.send({ method: 'GET', path: '/metrics' });
      assert.equal(response.status, 200);
      assert.match(response.body, /^trades_executed_total\{side="BUY"\} \d+$/m);
    } finally {
      metrics.close();
    }
  });

  test('4: one key past its limit gets 429s with Retry-After and writes nothing more', async () => {
    const key = await stack.createKey({ account: 'flooder' });
    const body = { accountId: 'flooder', symbol: 'AAPL', side: 'BUY', quantity: '1', price: '1' };
    const responses = await Promise.all(
      Array.from({ length: PER_KEY + 10 }, () =>
        http.postJson('/v1/trades', body, { authorization: `Bearer ${key}` }),
      ),
    );
    const statuses = responses.map((response) => response.status);
    assert.equal(statuses.filter((status) => status === 201).length, PER_KEY, String(statuses));
    assert.equal(statuses.filter((status) => status === 429).length, 10, String(statuses));
    for (const response of responses.filter((r) => r.status === 429)) {
      assert.match(String(response.headers['retry-after']), /^[1-9]\d*$/);
      assert.equal(JSON.parse(response.body).error.code, 'RATE_LIMITED');
    }
    assert.equal(await count("SELECT count(*)::int AS n FROM trades WHERE account_id = 'flooder'"), PER_KEY);
  });

  test('5: a key revoked with the CLI is refused by the running service within 5 seconds', async () => {
    const created = await stack.cli(['keys', 'create', '--account', 'leaver']);
    const key = created.trim().split('\n').at(-1)?.trim() ?? '';
    const id = /\(id (\d+)\)/.exec(created)?.[1];
    assert.ok(id !== undefined, created);
    // Refused as a SELL of nothing (422), so the key is verified and cached by the running service.
    const trade = () =>
      http.postJson(
        '/v1/trades',
        { accountId: 'leaver', symbol: 'AAPL', side: 'SELL', quantity: '1', price: '1' },
        { authorization: `Bearer ${key}` },
      );
    const before = await trade();
    assert.equal(before.status, 422, before.body);
    assert.match(await stack.cli(['keys', 'revoke', id]), new RegExp(`revoked key ${id}`));
    const revokedAt = Date.now();
    await waitFor(
      'the revoked key to be refused',
      async () => {
        const response = await trade();
        return (
          response.status === 401 && JSON.parse(response.body).error.message === 'this API key is revoked'
        );
      },
      5000,
      200,
    );
    assert.ok(Date.now() - revokedAt <= 5000);
  });
  test('4: a flood of unknown keys from one address is cut off before any key lookup', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < PER_ADDRESS + 10; i++) {
      const response = await http.postJson(
        '/v1/trades',
        { accountId: 'x', symbol: 'AAPL', side: 'BUY', quantity: '1', price: '1' },
        { authorization: `Bearer astra_guess_${i}` },
      );
      statuses.push(response.status);
      assert.equal(typeof JSON.parse(response.body).error.code, 'string');
    }
    // Earlier tests spent part of this address's budget on lookups of keys not (or no longer) cached.
    assert.ok(
      statuses.every((status) => status === 401 || status === 429),
      String(statuses),
    );
    assert.equal(statuses.at(-1), 429, String(statuses));
    assert.ok(statuses.filter((status) => status === 401).length <= PER_ADDRESS, String(statuses));
  });
});
