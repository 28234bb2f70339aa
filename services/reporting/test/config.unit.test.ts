import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

test('defaults work on a developer machine', () => {
  const config = loadConfig({});
  assert.equal(config.port, 3001);
  assert.equal(config.databaseUrl, 'postgres://postgres@127.0.0.1:5432/astra_reporting');
  assert.equal(config.redisUrl, 'redis://127.0.0.1:6379');
  assert.equal(config.tradingDatabaseUrl, 'postgres://postgres@127.0.0.1:5432/astra_trading');
  assert.equal(config.group, 'reporting');
  assert.equal(loadConfig({ REPORTING_PORT: '0' }).port, 0, '0 picks a free port');
  assert.equal(config.inboxRetentionSeconds, 7 * 24 * 3600);
  assert.equal(
    loadConfig({ REPORTING_INBOX_RETENTION_HOURS: '0' }).inboxRetentionSeconds,
    0,
    '0 keeps every row',
  );
  assert.deepEqual(config.redis, { url: 'redis://127.0.0.1:6379' });
});

test('Redis Cluster and Sentinel are named as for the trading service', () => {
  const cluster = loadConfig({ REDIS_CLUSTER_NODES: 'a:7000, b:7001' });
  assert.deepEqual(cluster.redis, { clusterNodes: ['a:7000', 'b:7001'] });
  const sentinel = loadConfig({ REDIS_SENTINEL_NODES: 's1:26379,s2:26379', REDIS_SENTINEL_NAME: 'main' });
  assert.deepEqual(sentinel.redis, { sentinel: { nodes: ['s1:26379', 's2:26379'], name: 'main' } });
});

test('metrics listen apart from the API, on loopback, beside trading (9464) and a relay (9465)', () => {
  const config = loadConfig({});
  assert.equal(config.metricsPort, 9466);
  assert.equal(config.metricsHost, '127.0.0.1');
  assert.notEqual(config.metricsPort, config.port);
  const set = loadConfig({ REPORTING_METRICS_PORT: '0', METRICS_HOST: '0.0.0.0' });
  assert.equal(set.metricsPort, 0, '0 picks a free port');
  assert.equal(set.metricsHost, '0.0.0.0');
});

test('an invalid value names its variable', () => {
  const bad: [Record<string, string>, string][] = [
    [{ REPORTING_PORT: '70000' }, 'REPORTING_PORT'],
    [{ REPORTING_PORT: '3001a' }, 'REPORTING_PORT'],
    [{ REPORTING_METRICS_PORT: '65536' }, 'REPORTING_METRICS_PORT'],
    [{ REPORTING_METRICS_PORT: '-1' }, 'REPORTING_METRICS_PORT'],
    [{ REPORTING_METRICS_PORT: '9466 ' }, 'REPORTING_METRICS_PORT'],
    [{ REPORTING_DATABASE_URL: 'mysql://x/y' }, 'REPORTING_DATABASE_URL'],
    [{ REDIS_URL: 'not a url' }, 'REDIS_URL'],
    [{ TRADING_DATABASE_URL: 'http://x' }, 'TRADING_DATABASE_URL'],
    [{ REPORTING_GROUP: 'a b' }, 'REPORTING_GROUP'],
    [{ DB_POOL_SIZE: '1' }, 'DB_POOL_SIZE'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ REDIS_CLUSTER_NODES: 'a:1,b' }, 'REDIS_CLUSTER_NODES'],
    [{ REDIS_SENTINEL_NODES: 's:26379' }, 'REDIS_SENTINEL_NAME'],
    [
      { REDIS_SENTINEL_NODES: 's:1', REDIS_SENTINEL_NAME: 'm', REDIS_CLUSTER_NODES: 'a:1' },
      'REDIS_CLUSTER_NODES',
    ],
    [{ REDIS_SENTINEL_NODES: 'no-port', REDIS_SENTINEL_NAME: 'm' }, 'REDIS_SENTINEL_NODES'],
    [{ REPORTING_INBOX_RETENTION_HOURS: '-1' }, 'REPORTING_INBOX_RETENTION_HOURS'],
    [{ REPORTING_INBOX_RETENTION_HOURS: '1.5' }, 'REPORTING_INBOX_RETENTION_HOURS'],
  ];
  for (const [env, variable] of bad) {
    assert.throws(
      () => loadConfig(env),
      (error: unknown) => error instanceof ConfigError && error.variable === variable,
      JSON.stringify(env),
    );
  }
});
