import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backoffDelay } from '../src/backoff.ts';
import { OutboxError } from '../src/errors.ts';
import { resolveOutboxOptions } from '../src/options.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { hashTag, journalKey, keySlot } from '../src/redis/slot.ts';
import { resolveRelayOptions } from '../src/relay.ts';
import { createOutboxWriter, newEventId } from '../src/writer.ts';

describe('cluster key slots', () => {
  test('match what CLUSTER KEYSLOT answers', () => {
    // Each pair is the answer of CLUSTER KEYSLOT on a cluster-enabled redis-server 7.0.15 (the int
    // tier, cluster.int.test.ts, compares many more keys with a live one).
    const fromRedis: [string, number][] = [
      ['123456789', 12739],
      ['foo', 12182],
      ['', 0],
      ['{user1000}.following', 3443],
      ['user1000', 3443],
      ['foo{}{bar}', 8363],
      ['foo{{bar}}zap', 4015],
      ['{bar', 4015],
      ['foo{bar}{zap}', 5061],
      ['a{b}c', 3300],
      ['{}', 15257],
      ['{', 4092],
      ['}', 12090],
      ['héllo', 11061],
      ['日本', 10949],
      ['astra.trading.trade_executed.v1', 4793],
      ['astra.trading.position_updated.v1', 14457],
      ['{astra.trading.trade_executed.v1}:outbox-journal', 4793],
    ];
    for (const [key, slot] of fromRedis) assert.equal(keySlot(key), slot, JSON.stringify(key));
    assert.equal(hashTag('foo{}{bar}'), 'foo{}{bar}', 'an empty tag means no tag');
    assert.equal(hashTag('foo{{bar}}zap'), '{bar');
  });

  test('a journal lives in the slot of its stream', () => {
    for (const stream of ['astra.trading.trade_executed.v1', '{orders}.created', 'a{b}c']) {
      assert.equal(keySlot(journalKey(stream)), keySlot(stream), stream);
      assert.notEqual(journalKey(stream), stream);
    }
    assert.throws(
      () => journalKey('x{}y'),
      (error: unknown) =>
        error instanceof OutboxError &&
        error.code === 'OUTBOX_INVALID_OPTION' &&
        error.field === 'stream' &&
        /braces/.test(error.message),
    );
  });
});

describe('backoff', () => {
  test('doubles from the initial delay, stays within [d/2, d], and is capped', () => {
    const backoff = { initialMs: 100, maxMs: 1000 };
    assert.equal(
      backoffDelay(backoff, 0, () => 0),
      50,
    );
    assert.equal(
      backoffDelay(backoff, 0, () => 1),
      100,
    );
    assert.equal(
      backoffDelay(backoff, 3, () => 1),
      800,
    );
    assert.equal(
      backoffDelay(backoff, 30, () => 1),
      1000,
    );
    assert.equal(
      backoffDelay(backoff, 30, () => 0),
      500,
    );
  });
});

describe('options are checked when built', () => {
  test('table and channel must be plain identifiers', () => {
    assert.throws(() => resolveOutboxOptions({ table: 'event_outbox; DROP TABLE x' }), {
      code: 'OUTBOX_INVALID_OPTION',
      field: 'table',
    });
    assert.throws(() => resolveOutboxOptions({ channel: 'Bad-Channel' }), {
      code: 'OUTBOX_INVALID_OPTION',
      field: 'channel',
    });
    assert.deepEqual(resolveOutboxOptions({ table: 'app.outbox' }), {
      table: 'app.outbox',
      channel: 'app_outbox',
      notify: true,
    });
  });

  test('relay options have defaults and reject nonsense', () => {
    const publisher = new RedisStreamsPublisher({ url: 'redis://127.0.0.1:1', timeoutMs: 10 });
    try {
      const resolved = resolveRelayOptions({ connectionString: 'postgres://x/y', publisher });
      assert.equal(resolved.batchSize, 500);
      assert.equal(resolved.maxAttempts, 10);
      assert.equal(resolved.pollIntervalMs, 1000);
      assert.throws(
        () => resolveRelayOptions({ connectionString: 'postgres://x/y', publisher, batchSize: 0 }),
        { field: 'batchSize' },
      );
      assert.throws(
        () => resolveRelayOptions({ connectionString: 'postgres://x/y', publisher, maxAttempts: 1.5 }),
        { field: 'maxAttempts' },
      );
      assert.throws(
        () =>
          resolveRelayOptions({
            connectionString: 'postgres://x/y',
            publisher,
            retryBackoff: { initialMs: 10, maxMs: 5 },
          }),
        { field: 'retryBackoff.maxMs' },
      );
      assert.throws(() => resolveRelayOptions({ connectionString: '', publisher }), {
        field: 'connectionString',
      });
    } finally {
      void publisher.close();
    }
  });

  test('a publisher takes one Redis or one cluster', () => {
    assert.throws(() => new RedisStreamsPublisher({ url: 'redis://a', clusterNodes: ['b:1'] }), {
      field: 'clusterNodes',
    });
    assert.throws(() => new RedisStreamsPublisher({ url: 'redis://a', timeoutMs: 0 }), {
      field: 'timeoutMs',
    });
  });
});

describe('the writer refuses bad events before touching the database', () => {
  const writer = createOutboxWriter({ source: '/test' });
  const untouchable = {
    query: () => {
      throw new Error('the database must not be reached');
    },
  };
  const good = { type: 't.v1', aggregateType: 'thing', aggregateId: 'a', data: {} };

  for (const [field, bad] of [
    ['type', { ...good, type: 'has space' }],
    ['aggregateId', { ...good, aggregateId: '' }],
    ['aggregateType', { ...good, aggregateType: 'x'.repeat(201) }],
    ['data', { ...good, data: undefined }],
    ['id', { ...good, id: 'not-a-uuid' }],
    ['traceparent', { ...good, traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' }],
  ] as const) {
    test(`bad ${field}`, async () => {
      await assert.rejects(writer.write(untouchable, [good, bad]), (error: unknown) => {
        assert.ok(error instanceof OutboxError);
        assert.equal(error.code, 'OUTBOX_INVALID_EVENT');
        assert.equal(error.field, field);
        assert.match(error.message, /^events\[1\]\./);
        return true;
      });
    });
  }

  test('no events: no query', async () => {
    assert.deepEqual(await writer.write(untouchable, []), []);
  });

  test('a source is required', () => {
    assert.throws(() => createOutboxWriter({ source: '' }), { field: 'source' });
  });
});

describe('event ids', () => {
  test('are UUIDv7: the time in milliseconds first, so they rise with time and sort as text', () => {
    const before = Date.now();
    const ids = Array.from({ length: 1000 }, () => newEventId());
    const after = Date.now();
    for (const id of ids) {
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const ms = Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16);
      assert.ok(ms >= before && ms <= after, `${id} carries ${ms}, outside ${before}..${after}`);
    }
    assert.deepEqual([...ids].sort(), ids, 'in the order they were made');
    assert.equal(new Set(ids).size, ids.length);
  });
});

test('the publisher checks its Sentinel and WAIT options', () => {
  for (const options of [
    { sentinel: { nodes: [], name: 'm' } },
    { sentinel: { nodes: ['localhost'], name: 'm' } },
    { sentinel: { nodes: ['localhost:26379'], name: '' } },
    { sentinel: { nodes: ['localhost:26379'], name: 'm' }, url: 'redis://a' },
    { waitReplicas: -1 },
    { waitReplicas: 1, timeoutMs: 1000, waitTimeoutMs: 1000 },
  ]) {
    assert.throws(
      () => new RedisStreamsPublisher(options),
      { code: 'OUTBOX_INVALID_OPTION' },
      JSON.stringify(options),
    );
  }
});
