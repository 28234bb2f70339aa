import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { freePort, type ManagedProcess } from '@astra/test-support';
import { MAIN, startNode, testEnv } from './process.ts';
import { createTestDatabase, type TestDatabase } from './support.ts';

const RELAY_MAIN = 'services/trading/src/relay-main.ts';

describe('operating the processes', () => {
  let db: TestDatabase;
  const spawned: ManagedProcess[] = [];
  const start = (main: string, env: Record<string, string>) => {
    const child = startNode(
      main,
      testEnv({ DATABASE_URL: db.url, HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env }),
    );
    spawned.push(child);
    return child;
  };
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await Promise.all(spawned.map((child) => child.kill()));
    await db.drop();
  });

  test('a second relay on one host: METRICS_PORT=0 picks a free port; a clash is one line naming it', async () => {
    // Redis is never reached here: no event is written.
    const first = start(RELAY_MAIN, { METRICS_PORT: '0', REDIS_URL: 'redis://127.0.0.1:1' });
    const started = await first.waitForStdout(/"metricsPort":(\d+)[^\n]*"msg":"relay started"/, 60_000);
    const port = Number(started[1]);
    assert.ok(port > 0, first.output);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(health.status, 200);

    const second = start(RELAY_MAIN, { METRICS_PORT: String(port), REDIS_URL: 'redis://127.0.0.1:1' });
    const exit = await second.exitWithin(60_000);
    assert.equal(exit.code, 1, second.output);
    const lines = second.stderr.trim().split('\n');
    assert.equal(lines.length, 1, second.output);
    assert.match(lines[0] ?? '', /^failed to start: METRICS_PORT: 127\.0\.0\.1:\d+ is in use/);
    first.signalGroup('SIGTERM');
    assert.deepEqual(await first.exitWithin(15_000), { code: 0, signal: null }, first.output);
  });

  test('with OTEL_EXPORTER_OTLP_ENDPOINT the service exports its spans over OTLP/HTTP', async () => {
    const received: string[] = [];
    const collector: Server = createServer((request, response) => {
      let body = '';
      request.setEncoding('latin1').on('data', (chunk: string) => {
        body += chunk;
      });
      request.on('end', () => {
        received.push(`${request.url} ${body}`);
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const address = collector.address();
    assert.ok(address !== null && typeof address === 'object');
    try {
      const port = await freePort();
      const service = start(MAIN, {
        PORT: String(port),
        METRICS_PORT: '0',
        RELAY_ENABLED: 'false',
        DEMO_KEY: 'false',
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${address.port}`,
      });
      await service.waitForStdout(/"msg":"listening"/, 60_000);
      const response = await fetch(`http://127.0.0.1:${port}/v1/accounts/x/trades`, {
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(response.status, 401);
      // The batch processor exports within its 5 s delay, or at shutdown.
      service.signalGroup('SIGTERM');
      assert.deepEqual(await service.exitWithin(20_000), { code: 0, signal: null }, service.output);
      const exported = received.filter((entry) => entry.startsWith('/v1/traces '));
      assert.ok(exported.length > 0, `nothing exported: ${received.join('\n').slice(0, 500)}`);
      assert.match(exported.join('\n'), /GET \/v1\/accounts\/:accountId\/trades/);
    } finally {
      collector.close();
    }
  });
});
