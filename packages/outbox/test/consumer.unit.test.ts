import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import type { CloudEvent } from '../src/cloudevents.ts';
import { isTransientDatabaseError, resolveConsumerOptions } from '../src/consumer/consumer.ts';
import {
  deliveriesUsed,
  HeldEntries,
  sequenceVerdict,
  shouldDeadLetter,
  subjectVersionOrdering,
} from '../src/consumer/decisions.ts';
import { inboxSchema } from '../src/consumer/schema.ts';

const event = (subject: string, data: unknown): CloudEvent => ({
  specversion: '1.0',
  id: 'e1',
  source: '/t',
  type: 't.v1',
  subject,
  time: '2026-12-03T00:00:00.000Z',
  datacontenttype: 'application/json',
  data,
});

describe('ordering rules', () => {
  test('only the next sequence applies; passed ones are stale, later ones wait', () => {
    assert.equal(sequenceVerdict(0n, 1n), 'apply');
    assert.equal(sequenceVerdict(4n, 5n), 'apply');
    assert.equal(sequenceVerdict(4n, 4n), 'stale', 'the same version delivered again');
    assert.equal(sequenceVerdict(4n, 2n), 'stale', 'an older version republished after a newer one');
    assert.equal(sequenceVerdict(4n, 6n), 'defer', 'N+2 before N+1');
    assert.equal(sequenceVerdict(0n, 2n), 'defer', 'an unseen key waits for its first event');
    // Sequences beyond 2^53 still compare exactly.
    assert.equal(sequenceVerdict(9007199254740993n, 9007199254740994n), 'apply');
  });

  test('the default ordering reads subject and a numeric data.version, nothing else', () => {
    assert.deepEqual(subjectVersionOrdering(event('acct:AAPL', { version: 3, quantity: '1' })), {
      key: 'acct:AAPL',
      sequence: 3,
    });
    assert.equal(subjectVersionOrdering(event('t-1', { positionVersion: 3 })), undefined);
    assert.equal(subjectVersionOrdering(event('t-1', { version: '3' })), undefined);
    assert.equal(subjectVersionOrdering(event('t-1', null)), undefined);
    assert.equal(subjectVersionOrdering(event('t-1', [1, 2])), undefined);
  });
});

describe('redelivery rules', () => {
  test('deliveries used count handler failures and deliveries to consumers that died', () => {
    assert.equal(deliveriesUsed(1, 0), 0, 'first delivery, nothing failed yet');
    assert.equal(deliveriesUsed(1, 2), 2);
    assert.equal(deliveriesUsed(3, 0), 2, 'claimed twice from consumers that stopped');
    assert.equal(deliveriesUsed(3, 1), 3);
  });

  test('an event is dead-lettered once it has used maxDeliveries, not before', () => {
    assert.equal(shouldDeadLetter(1, 4, 5), false);
    assert.equal(shouldDeadLetter(1, 5, 5), true);
    assert.equal(shouldDeadLetter(5, 0, 5), false, 'four consumers died holding it: one more try');
    assert.equal(shouldDeadLetter(6, 0, 5), true);
    assert.equal(shouldDeadLetter(2, 0, 1), true);
  });
});

describe('held entries (fake clock)', () => {
  const backoffs = {
    deferBackoff: { initialMs: 20, maxMs: 1000 },
    retryBackoff: { initialMs: 200, maxMs: 10_000 },
    outageBackoff: { initialMs: 100, maxMs: 5000 },
    // Jitter at its top: delays are the full exponential step.
    random: () => 1,
  };

  test('a deferred entry backs off exponentially up to the cap, separately from failures', () => {
    const held = new HeldEntries<string>(backoffs);
    let now = 1000;
    assert.equal(held.hold('a', 'k', 'deferred', 'A', now), 1020);
    assert.deepEqual(held.takeDue(1019), []);
    assert.deepEqual(held.takeDue(1020), ['A']);
    now = 1020;
    assert.equal(held.hold('a', 'k', 'deferred', 'A', now), 1060, 'second deferral: 40 ms');
    assert.equal(held.hold('a', 'k', 'deferred', 'A', now), 1100, 'third: 80 ms');
    for (let i = 0; i < 20; i++) held.hold('a', 'k', 'deferred', 'A', now);
    assert.equal(held.hold('a', 'k', 'deferred', 'A', now), 2020, 'capped at maxMs');
    assert.equal(held.hold('a', 'k', 'failed', 'A', now), 1220, 'a failure starts its own backoff');
    assert.equal(held.size, 1);
  });

  test('an applied predecessor makes the waiting entries of its key due at once, and only those', () => {
    const held = new HeldEntries<string>(backoffs);
    held.hold('n2', 'acct:A', 'deferred', 'N2', 0);
    held.hold('n3', 'acct:A', 'deferred', 'N3', 0);
    held.hold('other', 'acct:B', 'deferred', 'B', 0);
    held.hold('loose', undefined, 'failed', 'L', 0);
    assert.deepEqual(held.takeDue(5), []);
    held.wake('acct:A', 5);
    assert.deepEqual(held.takeDue(5), ['N2', 'N3'], 'in the order first held');
    assert.equal(held.nextDue(), 20, 'B is next; N2 and N3 are in flight');
    held.release('n2');
    held.hold('n3', 'acct:A', 'deferred', 'N3', 5);
    assert.equal(held.size, 3);
    assert.ok(held.has('n3') && !held.has('n2'));
  });

  test('entries in flight are never due and are not woken', () => {
    const held = new HeldEntries<string>(backoffs);
    held.hold('x', 'k', 'unavailable', 'X', 0);
    assert.deepEqual(held.takeDue(100), ['X']);
    held.wake('k', 200);
    assert.equal(held.nextDue(), undefined);
    assert.deepEqual(held.takeDue(10_000), []);
    assert.deepEqual(held.ids(), ['x']);
  });
});

describe('consumer options are checked when built', () => {
  const pool = new pg.Pool({ connectionString: 'postgres://x@127.0.0.1:1/none' });
  const base = { pool, group: 'reporting', streams: ['s1'], handler: async () => {} };

  test('defaults are filled in', () => {
    const resolved = resolveConsumerOptions(base);
    assert.deepEqual(resolved.redis, { kind: 'server', url: 'redis://127.0.0.1:6379' });
    assert.equal(resolved.inboxRetentionSeconds, 604_800);
    assert.equal(resolved.inboxPruneBatchSize, 1000);
    assert.equal(resolved.batchSize, 100);
    assert.equal(resolved.blockMs, 2000);
    assert.equal(resolved.claimIdleMs, 30_000);
    assert.equal(resolved.maxDeliveries, 5);
    assert.equal(resolved.inboxTable, 'event_inbox');
    assert.equal(resolved.firstSequence, 1);
    assert.equal(resolved.ordering, subjectVersionOrdering);
    assert.equal(resolved.deadLetterStream('s1', 'reporting'), '{s1}:dead-letter:reporting');
    assert.equal(resolved.deadLetterStream('{s}.1', 'reporting'), '{s}.1:dead-letter:reporting');
    assert.match(resolved.consumer, /-\d+-[0-9a-f]{6}$/);
    assert.equal(resolveConsumerOptions({ ...base, ordering: false }).ordering, undefined);
  });

  test('bad values are refused with the field at fault', () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ pool: undefined }, 'pool'],
      [{ handler: 'no' }, 'handler'],
      [{ group: '' }, 'group'],
      [{ group: 'a b' }, 'group'],
      [{ streams: [] }, 'streams'],
      [{ streams: ['a', 'a'] }, 'streams'],
      [{ consumer: 'x y' }, 'consumer'],
      [{ url: 'http://x' }, 'url'],
      [{ batchSize: 0 }, 'batchSize'],
      [{ blockMs: 1.5 }, 'blockMs'],
      [{ claimIdleMs: 100 }, 'claimIdleMs'],
      [{ maxDeliveries: 0 }, 'maxDeliveries'],
      [{ firstSequence: -1 }, 'firstSequence'],
      [{ inboxTable: 'inbox; DROP TABLE x' }, 'inboxTable'],
      [{ deadLetterStream: () => 's1' }, 'deadLetterStream'],
      [{ retryBackoff: { initialMs: 10, maxMs: 5 } }, 'retryBackoff.maxMs'],
      [{ ordering: 'subject' }, 'ordering'],
      [{ url: 'redis://a', clusterNodes: ['b:1'] }, 'clusterNodes'],
      [{ sentinel: { nodes: ['a:1'], name: '' } }, 'sentinel.name'],
      [{ clusterNodes: ['a:1'], deadLetterStream: (s: string) => `${s}:dead` }, 'deadLetterStream'],
      [{ streams: ['a{b'] }, 'deadLetterStream'],
      [{ inboxRetentionSeconds: -1 }, 'inboxRetentionSeconds'],
      [{ inboxRetentionSeconds: 1.5 }, 'inboxRetentionSeconds'],
      [{ inboxPruneBatchSize: 0 }, 'inboxPruneBatchSize'],
    ];
    for (const [change, field] of bad) {
      assert.throws(
        () => resolveConsumerOptions({ ...base, ...change } as never),
        { name: 'OutboxError', code: 'OUTBOX_INVALID_OPTION', field },
        JSON.stringify(change),
      );
    }
  });

  test('the inbox schema takes a table name and refuses anything else', () => {
    const statements: string[] = [];
    inboxSchema({ table: 'app.inbox' })[0].up({ sql: (s) => statements.push(s) });
    assert.match(statements.join(''), /CREATE TABLE app\.inbox \(/);
    assert.match(statements.join(''), /CREATE TABLE app\.inbox_sequences \(/);
    assert.throws(() => inboxSchema({ table: 'Inbox' }), { code: 'OUTBOX_INVALID_OPTION' });
  });

  test('outages of PostgreSQL are told apart from handler errors', () => {
    assert.equal(isTransientDatabaseError(Object.assign(new Error('x'), { code: '57P01' })), true);
    assert.equal(isTransientDatabaseError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), true);
    assert.equal(isTransientDatabaseError(new Error('Connection terminated unexpectedly')), true);
    assert.equal(isTransientDatabaseError(Object.assign(new Error('x'), { code: '23505' })), false);
    assert.equal(isTransientDatabaseError(new Error('bad data')), false);
  });
});
