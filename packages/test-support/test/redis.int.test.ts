import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { freePort, type RedisServer, startRedisServer } from '../src/index.ts';

describe('startRedisServer', () => {
  const servers: RedisServer[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(servers.map((server) => server.kill()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('answers on its port; a restart after a SIGKILL comes back empty, in a fresh directory', async () => {
    const server = await startRedisServer();
    servers.push(server);
    assert.equal(server.url, `redis://127.0.0.1:${server.port}`);
    assert.equal(await server.cli(['SET', 'k', 'v']), 'OK');
    assert.equal(await server.cli(['CONFIG', 'GET', 'appendonly']), 'appendonly\nno');
    const firstDir = (await server.cli(['CONFIG', 'GET', 'dir'])).split('\n')[1] ?? '';
    const firstPid = server.process.pid;

    await server.kill();
    assert.equal(server.running, false);
    assert.equal(existsSync(firstDir), false, 'the directory of a default start goes with its server');
    await server.restart();
    assert.notEqual(server.process.pid, firstPid);
    assert.equal(await server.cli(['EXISTS', 'k']), '0');
  });

  test('appendOnly in a given directory: an acknowledged write survives a SIGKILL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'test-support-redis-'));
    dirs.push(dir);
    const port = await freePort();
    const server = await startRedisServer({ port, dir, appendOnly: true, args: ['--maxmemory', '64mb'] });
    servers.push(server);
    assert.equal(server.port, port);
    assert.equal(await server.cli(['CONFIG', 'GET', 'appendfsync']), 'appendfsync\nalways');
    assert.equal(await server.cli(['CONFIG', 'GET', 'maxmemory']), `maxmemory\n${64 * 1024 * 1024}`);
    await server.cli(['SET', 'k', 'v']);
    await server.kill();
    await server.restart();
    assert.equal(await server.cli(['GET', 'k']), 'v');
    await assert.rejects(server.restart(), /running already/);
  });

  test('a server that cannot start fails at once with its output, not at the timeout', async () => {
    const started = Date.now();
    await assert.rejects(
      startRedisServer({ args: ['--no-such-option', 'x'], readyTimeoutMs: 60_000 }),
      /exited:[\s\S]*no-such-option/,
    );
    assert.ok(Date.now() - started < 30_000, 'failed before its ready timeout');
  });
});
