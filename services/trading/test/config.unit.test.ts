import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig, redactUrl } from '../src/config.ts';

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
    ['DOCS_ENABLED', 'on'],
    ['DEMO_KEY', 'no'],
    ['RATE_LIMIT_PER_KEY', '-5'],
    ['RATE_LIMIT_WINDOW_MS', '0'],
    ['DB_STATEMENT_TIMEOUT_MS', 'forever'],
    ['DB_CONNECT_TIMEOUT_MS', '0'],
    ['HTTP_REQUEST_TIMEOUT_MS', '1.5'],
    ['SHUTDOWN_TIMEOUT_MS', ''.padStart(3, 'x')],
    ['OTEL_EXPORTER_OTLP_ENDPOINT', 'collector:4318'],
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

  test('a malformed DATABASE_URL or REDIS_URL is refused without printing its password', () => {
    for (const [variable, value] of [
      ['DATABASE_URL', 'postgres://admin:hunter2@db.example:5432:6543/trading'],
      ['DATABASE_URL', 'postgres://admin:hunter2@[db.example/trading'],
      ['REDIS_URL', 'redis://:hunter2@cache example:6379'],
    ] as const) {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.equal(error.variable, variable);
          assert.doesNotMatch(error.message, /hunter2/);
          return true;
        },
      );
    }
    assert.equal(redactUrl('postgres://admin:hunter2@db:5432/x'), 'postgres://admin:***@db:5432/x');
    assert.doesNotMatch(redactUrl('postgres://admin:hunter2@[db/x'), /hunter2/);
  });

  test('hardening defaults: metrics on loopback, docs on, demo key on except in production', () => {
    const config = loadConfig({});
    assert.equal(config.metricsPort, 9464);
    assert.equal(config.metricsHost, '127.0.0.1');
    assert.equal(config.docsEnabled, true);
    assert.equal(config.demoKey, true);
    assert.equal(config.rateLimitPerKey, 5000);
    assert.equal(config.rateLimitPerAddress, 100);
    assert.equal(config.dbStatementTimeoutMs, 5000);
    assert.equal(config.otlpEndpoint, undefined);
    assert.equal(loadConfig({ NODE_ENV: 'production' }).demoKey, false);
    assert.equal(loadConfig({ NODE_ENV: 'production', DEMO_KEY: 'true' }).demoKey, false);
    assert.equal(loadConfig({ DEMO_KEY: 'false' }).demoKey, false);
    assert.equal(loadConfig({ DOCS_ENABLED: 'false' }).docsEnabled, false);
    assert.equal(loadConfig({ METRICS_PORT: '0' }).metricsPort, 0);
    assert.equal(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).otlpEndpoint,
      'http://collector:4318',
    );
  });
});
