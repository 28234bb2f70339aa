import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import { freePort, liveProcesses, run, runOk, spawnManaged, TimeoutError, waitFor } from '../src/index.ts';

describe('waitFor', () => {
  test('returns the first value that is neither false nor undefined', async () => {
    let calls = 0;
    const value = await waitFor('the third call', () => (++calls === 3 ? { calls } : undefined), 2000, 1);
    assert.deepEqual(value, { calls: 3 });
  });

  test('on timeout says what it awaited, for how long, and the last error', async () => {
    await assert.rejects(
      waitFor(
        'the moon',
        () => {
          throw new Error('still night');
        },
        30,
        5,
      ),
      (error: unknown) =>
        error instanceof TimeoutError &&
        error.message === 'timed out after 30 ms waiting for the moon (last error: still night)',
    );
  });
});

test('freePort gives a loopback port that can be listened on', async () => {
  const port = await freePort();
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(port > 0);
});

describe('processes', () => {
  test('run collects both streams and the exit code', async () => {
    const result = await run(process.execPath, [
      '-e',
      'console.log("out"); console.error("err"); process.exit(3)',
    ]);
    assert.deepEqual([result.code, result.stdout, result.stderr], [3, 'out\n', 'err\n']);
  });

  test('runOk fails on a non-zero exit with the command and its stderr', async () => {
    await assert.rejects(
      runOk(process.execPath, ['-e', 'console.error("broken"); process.exit(1)']),
      /exited 1: broken/,
    );
  });

  test('a process that ignores SIGTERM gets SIGKILL after the grace period and leaves the live set', async () => {
    const child = spawnManaged('stubborn', process.execPath, [
      '-e',
      'process.on("SIGTERM", () => {}); console.log("ready"); setInterval(() => {}, 1000)',
    ]);
    await child.waitForStdout(/ready/, 10_000);
    assert.ok(liveProcesses().includes(child));
    const exit = await child.kill('SIGTERM', 100);
    assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
    assert.equal(child.running, false);
    assert.ok(!liveProcesses().includes(child));
  });

  test('exitWithin kills a process that outlives it and rejects with its name', async () => {
    const child = spawnManaged('sleeper', process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    await assert.rejects(child.exitWithin(100), /sleeper did not exit within 100 ms/);
    assert.equal((await child.exited).signal, 'SIGKILL');
  });
});
