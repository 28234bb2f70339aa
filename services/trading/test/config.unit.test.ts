import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

describe('loadConfig', () => {
  test('works with an empty environment: every variable has a default', () => {
    const config = loadConfig({});
    assert.equal(config.databaseUrl, 'postgres://postgres@127.0.0.1:5432/astra_trading');
    assert.equal(config.redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(config.port, 3000);
    assert.equal(config.relayEnabled, true);
    assert.equal(config.logLevel, 'info');
    assert.deepEqual(config.redisClusterNodes, []);
    assert.equal(config.relayStreamMaxLen, undefined);
    assert.equal(config.deletePublished, false);
  });

  test('an empty value means the default', () => {
    assert.deepEqual(loadConfig({ PORT: '', DATABASE_URL: '', RELAY_ENABLED: '' }), loadConfig({}));
  });

  test('reads valid values', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgresql://user:secret@db.example:6543/trading?sslmode=require',
      REDIS_URL: 'rediss://cache.example:6380',
      REDIS_CLUSTER_NODES: 'r1:7000, r2:7001',
      PORT: '0',
      RELAY_ENABLED: 'false',
      LOG_LEVEL: 'silent',
      DB_POOL_SIZE: '25',
      RELAY_STREAM_MAXLEN: '100000',
      OUTBOX_DELETE_PUBLISHED: 'true',
    });
    assert.equal(config.deletePublished, true);
    assert.equal(config.databaseUrl, 'postgresql://user:secret@db.example:6543/trading?sslmode=require');
    assert.equal(config.redisUrl, 'rediss://cache.example:6380');
    assert.deepEqual(config.redisClusterNodes, ['r1:7000', 'r2:7001']);
    assert.equal(config.port, 0);
    assert.equal(config.relayEnabled, false);
    assert.equal(config.logLevel, 'silent');
    assert.equal(config.dbPoolSize, 25);
    assert.equal(config.relayStreamMaxLen, 100000);
    for (const [raw, value] of [
      ['true', true],
      ['1', true],
      ['false', false],
      ['0', false],
    ] as const) {
      assert.equal(loadConfig({ RELAY_ENABLED: raw }).relayEnabled, value);
    }
  });

  const invalid: Array<[string, string]> = [
    ['PORT', 'abc'],
    ['PORT', '-1'],
    ['PORT', '65536'],
    ['PORT', '3000.5'],
    ['PORT', ' 3000'],
    ['PORT', '1e3'],
    ['DATABASE_URL', 'nope'],
    ['DATABASE_URL', 'mysql://root@localhost/db'],
    ['DATABASE_URL', 'http://localhost:5432/db'],
    ['REDIS_URL', 'localhost:6379'],
    ['OUTBOX_DELETE_PUBLISHED', 'yes'],
    ['REDIS_URL', 'postgres://localhost'],
    ['RELAY_ENABLED', 'maybe'],
    ['RELAY_ENABLED', 'TRUE'],
    ['RELAY_ENABLED', 'yes'],
    ['LOG_LEVEL', 'verbose'],
    ['DB_POOL_SIZE', '0'],
    ['BODY_LIMIT_BYTES', '10'],
    ['REDIS_CLUSTER_NODES', 'r1'],
    ['REDIS_CLUSTER_NODES', 'r1:7000,r2 :7001'],
    ['RELAY_BATCH_SIZE', 'many'],
    ['METRICS_PORT', '99999'],
    ['RELAY_REDIS_WAIT_REPLICAS', '-1'],
    ['RELAY_STALL_TIMEOUT_MS', 'soon'],
    ['REDIS_SENTINEL_NODES', 's1'],
  ];
  for (const [variable, value] of invalid) {
    test(`${variable}=${JSON.stringify(value)} is refused with an error naming ${variable}`, () => {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.equal(error.variable, variable);
          assert.ok(error.message.startsWith(`${variable}: `), error.message);
          return true;
        },
      );
    });
  }

  test('Sentinel: nodes and name together, never with a cluster', () => {
    const config = loadConfig({ REDIS_SENTINEL_NODES: 's1:26379,s2:26379', REDIS_SENTINEL_NAME: 'primary' });
    assert.deepEqual(config.redisSentinel, { nodes: ['s1:26379', 's2:26379'], name: 'primary' });
    assert.equal(loadConfig({}).redisSentinel, undefined);
    assert.throws(() => loadConfig({ REDIS_SENTINEL_NODES: 's1:26379' }), {
      variable: 'REDIS_SENTINEL_NAME',
    });
    assert.throws(
      () =>
        loadConfig({
          REDIS_SENTINEL_NODES: 's1:26379',
          REDIS_SENTINEL_NAME: 'p',
          REDIS_CLUSTER_NODES: 'r1:7000',
        }),
      { variable: 'REDIS_SENTINEL_NODES' },
    );
  });
});
