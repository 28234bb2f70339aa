import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { run } from '@astra/test-support';
import { MAIN, NPM, ROOT, testEnv } from './process.ts';

// The start must stop on the configuration alone, before it touches a database: these point at
// a server that does not exist, so getting past the configuration would fail differently (exit 1).
const UNREACHABLE = 'postgres://postgres@127.0.0.1:1/never';

describe('an invalid configuration stops the start with exit code 2 and names the variable', {
  concurrency: true,
}, () => {
  // [variable, value, shown]: a URL's value is never repeated, since it may hold a password.
  const cases: Array<[string, string, boolean]> = [
    ['PORT', 'abc', true],
    ['DATABASE_URL', 'postgres://admin:hunter2@db:5432:1/x', false],
    ['RELAY_ENABLED', 'maybe', true],
  ];
  for (const [variable, value, shown] of cases) {
    test(`${variable}=${value}`, async () => {
      const env = testEnv({ DATABASE_URL: UNREACHABLE, [variable]: value });
      const result = await run(process.execPath, ['--import', 'tsx', MAIN], {
        env,
        cwd: ROOT,
        timeoutMs: 30_000,
      });
      assert.equal(result.code, 2, result.output);
      assert.match(result.stderr, new RegExp(`^invalid configuration: ${variable}: `), result.output);
      if (shown) assert.ok(result.stderr.includes(`"${value}"`), result.output);
      else assert.doesNotMatch(result.output, /hunter2/);
    });
  }

  test('npm start passes the exit code on', async () => {
    const result = await run(NPM, ['start'], {
      env: testEnv({ DATABASE_URL: UNREACHABLE, PORT: 'abc' }),
      cwd: ROOT,
      timeoutMs: 30_000,
    });
    assert.equal(result.code, 2, result.output);
    assert.match(result.stderr, /invalid configuration: PORT: /, result.output);
  });
});
