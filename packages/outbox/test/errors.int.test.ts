import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RedisServer, startRedisServer } from '@astra/test-support';
import { ErrorReply } from '@redis/client';
import pg from 'pg';
import { OutboxAdmin } from '../src/admin.ts';
import { isTransientDatabaseError } from '../src/consumer/consumer.ts';
import { DeadLetters } from '../src/consumer/dead-letters.ts';
import { driverCode, OutboxError, type OutboxErrorCode } from '../src/errors.ts';
import { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { journalKey } from '../src/redis/slot.ts';
import { createOutboxWriter, newEventId } from '../src/writer.ts';
import { createOutboxDatabase, type OutboxDatabase } from './support.ts';

/** Asserts an OutboxError with `code`, and returns its cause for further checks. */
function outboxError(error: unknown, code: OutboxErrorCode): unknown {
  assert.ok(error instanceof OutboxError, `an OutboxError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return error.cause;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail('expected a rejection');
}

const event = (id = newEventId()) => ({
  id,
  type: 'test.errors.v1',
  aggregateType: 't',
  aggregateId: '1',
  data: {},
});

describe('PostgreSQL failures reach callers as OutboxErrors with pg error as cause', () => {
  let db: OutboxDatabase;
  const writer = createOutboxWriter({ source: '/test/errors' });
  before(async () => {
    db = await createOutboxDatabase();
  });
  after(() => db.drop());

  const count = async () =>
    (await db.pool.query('SELECT count(*)::int AS n FROM event_outbox')).rows[0].n as number;

  test('write() of an event id already written: OUTBOX_DUPLICATE_EVENT, 23505 in the cause', async () => {
    const id = newEventId();
    await writer.write(db.pool, [event(id)]);
    const error = await rejection(writer.write(db.pool, [event(), event(id)]));
    const cause = outboxError(error, 'OUTBOX_DUPLICATE_EVENT');
    assert.ok(cause instanceof pg.DatabaseError);
    assert.equal(cause.code, '23505');
    assert.equal((error as OutboxError).field, 'id');
    assert.equal(driverCode(error), '23505');
    assert.equal(await count(), 1, 'the other event of the failed write is not written either');
  });

  test('write() cut short by statement_timeout: OUTBOX_DATABASE_ERROR with 57014 readable', async () => {
    const locker = await db.pool.connect();
    const writing = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE event_outbox IN ACCESS EXCLUSIVE MODE');
      await writing.query('BEGIN');
      await writing.query("SET LOCAL statement_timeout = '200ms'");
      const error = await rejection(writer.write(writing, [event()]));
      const cause = outboxError(error, 'OUTBOX_DATABASE_ERROR');
      assert.ok(cause instanceof pg.DatabaseError);
      assert.equal(driverCode(error), '57014');
      assert.equal((error as Error).message, cause.message, 'the message is pg’s own');
    } finally {
      await writing.query('ROLLBACK');
      await locker.query('ROLLBACK');
      writing.release();
      locker.release();
    }
  });

  test('OutboxAdmin.status(), failed() and replay() on a missing table: OUTBOX_DATABASE_ERROR, 42P01', async () => {
    const admin = new OutboxAdmin(db.pool, { table: 'no_such_outbox' });
    // One call at a time: a call rejecting while an earlier one is awaited would be unhandled.
    for (const call of [() => admin.status(), () => admin.failed(), () => admin.replay('all')]) {
      const error = await rejection(call());
      outboxError(error, 'OUTBOX_DATABASE_ERROR');
      assert.equal(driverCode(error), '42P01');
    }
  });

  test("a consumer's retry rule reads a wrapped pg error as it reads a bare one", () => {
    const serialization = Object.assign(new Error('could not serialize access'), { code: '40001' });
    const wrapped = new OutboxError('OUTBOX_DATABASE_ERROR', serialization.message, { cause: serialization });
    assert.equal(isTransientDatabaseError(serialization), true);
    assert.equal(isTransientDatabaseError(wrapped), true);
    assert.equal(isTransientDatabaseError(new OutboxError('OUTBOX_INVALID_EVENT', 'bad')), false);
  });
});

describe('Redis failures reach callers as OutboxErrors', () => {
  let redis: RedisServer;
  let publisher: RedisStreamsPublisher;
  let deadLetters: DeadLetters;
  before(async () => {
    redis = await startRedisServer();
    publisher = new RedisStreamsPublisher({ url: redis.url, timeoutMs: 300 });
    deadLetters = new DeadLetters({ url: redis.url, timeoutMs: 300 });
  });
  after(async () => {
    await publisher.close();
    deadLetters.close();
    await redis.kill();
  });

  test('a Redis that does not answer: OUTBOX_BROKER_TIMEOUT from confirm() and DeadLetters', async () => {
    assert.equal(await publisher.ping(), true);
    redis.signal('SIGSTOP');
    try {
      const confirm = await rejection(publisher.confirm([{ eventId: newEventId(), stream: 's' }]));
      outboxError(confirm, 'OUTBOX_BROKER_TIMEOUT');
      assert.match((confirm as Error).message, /did not answer within 300 ms/);
      outboxError(await rejection(deadLetters.list('s.dead')), 'OUTBOX_BROKER_TIMEOUT');
    } finally {
      redis.signal('SIGCONT');
    }
  });

  test('a Redis that refuses a command: OUTBOX_BROKER_ERROR, its reply as the cause', async () => {
    // The journal's buckets (by default a week each) held by strings: the confirm script's HDEL fails.
    const bucket = Math.floor(Date.now() / 1000 / 604_800);
    for (const b of [bucket, bucket + 1]) await redis.cli(['SET', `${journalKey('refused')}:${b}`, 'x']);
    const confirm = await rejection(publisher.confirm([{ eventId: newEventId(), stream: 'refused' }]));
    assert.ok(outboxError(confirm, 'OUTBOX_BROKER_ERROR') instanceof ErrorReply);
    assert.match((confirm as Error).message, /WRONGTYPE/);

    await redis.cli(['SET', 'not-a-stream', 'x']);
    const list = await rejection(deadLetters.list('not-a-stream'));
    assert.ok(outboxError(list, 'OUTBOX_BROKER_ERROR') instanceof ErrorReply);
  });

  test('a stream name that cannot share a slot with its journal: OUTBOX_INVALID_OPTION on stream', async () => {
    const check = await rejection(
      publisher.check([{ stream: 'x{}y', partition: 0, expected: undefined }], new Map()),
    );
    outboxError(check, 'OUTBOX_INVALID_OPTION');
    assert.equal((check as OutboxError).field, 'stream');
  });
});
