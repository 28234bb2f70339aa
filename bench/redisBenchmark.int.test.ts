import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withRedis } from './lib/infra.ts';
import { parseRedisBenchmarkCsv, runRedisBenchmark } from './lib/redisBenchmark.ts';

test('reads the rate from a line whose command holds quotes and commas', () => {
  const output = [
    '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"',
    '"XADD s * data {"a":"1,5","b":2}","262812.09","0.643","0.216","0.655","0.863","1.039","4.151"',
    '',
  ].join('\n');
  assert.equal(parseRedisBenchmarkCsv(output), 262812.09);
  assert.throws(() => parseRedisBenchmarkCsv('Could not connect to Redis at 127.0.0.1:1'), /could not read/);
});

test('redis-benchmark runs the command as many times as asked, after a warm-up of a tenth', async () => {
  await withRedis(async (redis) => {
    const run = await runRedisBenchmark(
      redis.port,
      redis.child.pid,
      ['XADD', 'limit', '*', 'data', '{"a":1}'],
      2000,
    );
    assert.ok(run.requestsPerSecond > 0);
    assert.ok(run.redisMicrosPerRequest !== null && run.redisMicrosPerRequest >= 0);
    // Each client sends whole pipelines (8 clients x 128 here), so each run may round up by one.
    const entries = await redis.client.xLen('limit');
    assert.ok(entries >= 2200 && entries <= 2200 + 2 * 8 * 128, `${entries} entries`);
  });
});
