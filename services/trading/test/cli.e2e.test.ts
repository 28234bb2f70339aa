import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { run } from '@astra/test-support';
import { buildApp } from '../src/app.ts';
import { NPM, ROOT, testEnv } from './process.ts';
import { assertError, createTestApp, postTrade, type TestApp, tradeBody } from './support.ts';

const KEY = /^astra_[A-Za-z0-9_-]{43}$/;

let t: TestApp;
before(async () => {
  t = await createTestApp();
});
after(() => t.close());

const cli = (args: string[]) =>
  run(NPM, ['run', 'cli', '--', ...args], {
    env: testEnv({ DATABASE_URL: t.db.url }),
    cwd: ROOT,
    timeoutMs: 60_000,
  });

function lastLine(stdout: string): string {
  return stdout.trimEnd().split('\n').at(-1) ?? '';
}

describe('npm run cli -- keys create: a bad command line', () => {
  test('is refused with exit code 2 and creates nothing', async () => {
    const results = await Promise.all([
      cli(['keys', 'create']),
      cli(['keys', 'create', '--account', "x'; DROP TABLE api_keys;--"]),
      cli(['keys', 'create', '--account', 'erin', '--admin']),
      cli(['keys', 'create', '--account', 'erin', '--expires', 'tomorrow']),
      cli(['keys', 'create', '--account', 'erin', '--expires', '2001-01-01T00:00:00Z']),
      cli(['keys', 'revoke', 'x; DROP TABLE api_keys']),
    ]);
    for (const result of results) {
      assert.equal(result.code, 2, result.output);
      assert.match(result.stderr, /usage:/, result.output);
    }
    const rows = await t.db.pool.query(
      'SELECT (SELECT count(*) FROM api_keys)::int AS keys, (SELECT count(*) FROM accounts)::int AS accounts',
    );
    assert.deepEqual(rows.rows, [{ keys: 0, accounts: 0 }]);
  });
});

describe('npm run cli -- keys create', { concurrency: true }, () => {
  test('--account prints a key on the last line that trades for that account only', async () => {
    const result = await cli(['keys', 'create', '--account', 'carol']);
    assert.equal(result.code, 0, result.output);
    const key = lastLine(result.stdout);
    assert.match(key, KEY, result.output);

    const traded = await postTrade(t.app, `Bearer ${key}`, tradeBody({ accountId: 'carol' }));
    assert.equal(traded.statusCode, 201, traded.body);
    assert.equal(traded.json().trade.accountId, 'carol');
    const other = await postTrade(t.app, `Bearer ${key}`, tradeBody({ accountId: 'alice' }));
    assertError(other, { status: 403, code: 'FORBIDDEN' });
  });

  test('--admin prints a key that acts for any account', async () => {
    await t.accountKey('dave');
    const result = await cli(['keys', 'create', '--admin']);
    assert.equal(result.code, 0, result.output);
    const key = lastLine(result.stdout);
    assert.match(key, KEY, result.output);
    const traded = await postTrade(t.app, `Bearer ${key}`, tradeBody({ accountId: 'dave' }));
    assert.equal(traded.statusCode, 201, traded.body);
  });
});

describe('npm run cli -- outbox republish', () => {
  test('without --since, or with a time that is not one, is refused with exit code 2', async () => {
    const results = await Promise.all([
      cli(['outbox', 'republish']),
      cli(['outbox', 'republish', '--since', 'yesterday']),
    ]);
    for (const result of results) {
      assert.equal(result.code, 2, result.output);
      assert.match(result.stderr, /--since/, result.output);
    }
  });

  test('--dry-run reports the PUBLISHED events it would send, per stream, and sends nothing', async () => {
    const key = await t.accountKey('erin');
    for (let i = 0; i < 3; i++) {
      const traded = await postTrade(t.app, key, tradeBody({ accountId: 'erin' }));
      assert.equal(traded.statusCode, 201, traded.body);
    }
    // As the relay would have left them.
    await t.db.pool.query(
      "UPDATE event_outbox SET status = 'PUBLISHED', published_at = now(), stream_entry_id = '1-1' WHERE aggregate_id LIKE 'erin:%' OR payload->>'accountId' = 'erin'",
    );
    const result = await cli([
      'outbox',
      'republish',
      '--since',
      '2000-01-01T00:00:00Z',
      '--type',
      'astra.trading.position_updated.v1',
      '--dry-run',
    ]);
    assert.equal(result.code, 0, result.output);
    assert.match(result.stdout, /would republish 3 events/, result.output);
    assert.match(result.stdout, /astra\.trading\.position_updated\.v1: 3/, result.output);
  });
});

describe('npm run cli -- keys list and keys revoke', () => {
  test('list shows ids and status, never a key; revoke refuses the key; an expiry is kept', async () => {
    const created = await cli(['keys', 'create', '--account', 'frank', '--expires', '2999-01-01T00:00:00Z']);
    assert.equal(created.code, 0, created.output);
    const key = lastLine(created.stdout);
    const id = /\(id (\d+), expires 2999-01-01T00:00:00\.000Z\)/.exec(created.stdout)?.[1];
    assert.ok(id !== undefined, created.output);

    const listed = await cli(['keys', 'list']);
    assert.equal(listed.code, 0, listed.output);
    assert.match(
      listed.stdout,
      new RegExp(`^id=${id}\taccount=frank\tactive\t.*expires=2999-01-01T00:00:00.000Z`, 'm'),
    );
    assert.doesNotMatch(listed.stdout, /astra_/, 'keys are never shown again');

    const revoked = await cli(['keys', 'revoke', id]);
    assert.equal(revoked.code, 0, revoked.output);
    assert.match(revoked.stdout, new RegExp(`revoked key ${id}`));
    assert.match(
      (await cli(['keys', 'list'])).stdout,
      new RegExp(`^id=${id}\taccount=frank\trevoked\t`, 'm'),
    );
    // A fresh app has an empty key cache: the revocation is seen at once.
    const fresh = await buildApp({ pool: t.db.pool, eventSource: '/astra/trading-service/test' });
    try {
      const response = await postTrade(fresh, `Bearer ${key}`, tradeBody({ accountId: 'frank' }));
      const error = assertError(response, { status: 401, code: 'UNAUTHENTICATED' });
      assert.equal(error.message, 'this API key is revoked');
    } finally {
      await fresh.close();
    }
    const missing = await cli(['keys', 'revoke', '987654']);
    assert.equal(missing.code, 1, missing.output);
    assert.match(missing.stderr, /no key with id 987654/);
  });
});
