/**
 * The relay's loop with no server: the real OutboxRelay and RelayCore run against an in-memory outbox,
 * broker and clock (test/fakes/relay.ts), so the interleavings that only the chaos suite reached
 * (a mark still running while the next batch publishes, a wake-up mid-round, confirmations, partitions
 * changing hands, a frozen relay waking up) are replayed step by step and deterministically.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { CONFIRM_INTERVAL_MS, FencedError, RelayCore } from '../src/relay/core.ts';
import { resolveRelayOptions } from '../src/relay/options.ts';
import { OutboxRelay, type RelayEvents, type RelayOptions } from '../src/relay.ts';
import { PARTITION_COUNT } from '../src/schema.ts';
import type { ClaimedRow } from '../src/sql/relayQueries.ts';
import { FakeClock, FakeDatabase, FakePublisher, settle } from './fakes/relay.ts';

const POLL_MS = 1000;
const REBALANCE_MS = 2000;

function world(maxAttempts = 10) {
  const clock = new FakeClock();
  const db = new FakeDatabase(clock, maxAttempts);
  const publisher = new FakePublisher(clock);
  const relays: OutboxRelay[] = [];
  const relay = (options: Partial<RelayOptions> = {}): OutboxRelay => {
    const created = new OutboxRelay(
      {
        connectionString: 'postgres://fake',
        publisher,
        batchSize: 10,
        pollIntervalMs: POLL_MS,
        rebalanceIntervalMs: REBALANCE_MS,
        confirmDelayMs: 5000,
        maxAttempts,
        outageBackoff: { initialMs: 100, maxMs: 800 },
        retryBackoff: { initialMs: 1000, maxMs: 4000 },
        retentionSeconds: 0,
        ...options,
      },
      { connect: db.connector(), clock, random: () => 1 },
    );
    relays.push(created);
    return created;
  };
  /** A relay that has connected, taken its partitions and gone idle. */
  const start = async (options: Partial<RelayOptions> = {}): Promise<OutboxRelay> => {
    const started = relay(options);
    started.start();
    await settle();
    return started;
  };
  const stopAll = async () => {
    for (const created of relays) await created.stop();
  };
  return { clock, db, publisher, relay, start, stopAll };
}

function record<K extends keyof RelayEvents>(relay: OutboxRelay, name: K): RelayEvents[K][0][] {
  const seen: RelayEvents[K][0][] = [];
  relay.on(name, ((payload: RelayEvents[K][0]) => seen.push(payload)) as never);
  return seen;
}

/** Every event written is in the stream exactly once, each aggregate's in write order, and marked with its entry. */
function assertDelivered(db: FakeDatabase, publisher: FakePublisher): void {
  assert.deepEqual(db.violations, []);
  const entries = publisher.entries.map((entry) => entry.eventId);
  assert.equal(new Set(entries).size, entries.length, 'an event reached the stream twice');
  for (const row of db.rows) {
    if (row.status === 'FAILED') continue;
    assert.equal(row.status, 'PUBLISHED', `${row.eventId} is ${row.status}`);
    const entry = publisher.entries.find((e) => e.eventId === row.eventId);
    assert.equal(row.entryId, entry?.entryId, `${row.eventId} is marked with another entry`);
  }
  const byAggregate = new Map<string, number[]>();
  for (const entry of publisher.entries) {
    const ids = byAggregate.get(entry.aggregateId) ?? [];
    ids.push(Number(entry.eventId.replace('event-', '')));
    byAggregate.set(entry.aggregateId, ids);
  }
  for (const [aggregate, ids] of byAggregate)
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
      `${aggregate} went out of order`,
    );
}

describe('relay loop (in-memory outbox, broker and clock)', () => {
  test('marks the last batch while the next one is with the broker, and never claims it twice', async () => {
    const { clock, db, publisher, start, stopAll } = world();
    db.write(1, 25);
    const markHeld = db.hold('mark');
    await start();

    // Batch 1 went out; its mark is running (held) while batch 2 is already with the broker.
    assert.equal(markHeld.entered, true);
    assert.equal(publisher.calls.length, 2);
    const [first, second] = publisher.calls;
    assert.deepEqual(
      first?.events,
      db.rows.slice(0, 10).map((r) => r.eventId),
    );
    assert.deepEqual(
      second?.events,
      db.rows.slice(10, 20).map((r) => r.eventId),
    );
    markHeld.release();
    await clock.advance(0);
    assert.equal(publisher.calls.length, 3);
    assert.ok(db.log.indexOf('mark end') > db.log.indexOf('claim start'));
    assertDelivered(db, publisher);
    await stopAll();
  });

  test('a wake-up during a round claims again at once; without one the relay sleeps until the poll', async () => {
    const { clock, db, publisher, start, stopAll } = world();
    await start();
    assert.deepEqual(clock.waits, [POLL_MS]);

    // A commit arrives while the relay publishes another: claimed right after, no wait.
    db.write(1);
    const publishing = publisher.hold();
    db.notify();
    await settle();
    db.write(2);
    db.notify();
    const before = db.log.length;
    publishing.release();
    await settle();
    assert.equal(publisher.entries.length, 2);
    // The first batch's mark runs beside the second publish, not before its claim.
    const after = db.log.slice(before);
    assert.ok(after.indexOf('claim start') < after.indexOf('mark start'), after.join(', '));

    // The same commit without a NOTIFY waits for the poll.
    db.write(3);
    await clock.advance(POLL_MS - 1);
    assert.equal(publisher.entries.length, 2);
    await clock.advance(1);
    assert.equal(publisher.entries.length, 3);
    assertDelivered(db, publisher);
    await stopAll();
  });

  test('a relay stopped during its rebalance and started again takes its partitions and publishes at once', async () => {
    const { db, publisher, start, stopAll } = world();
    const rebalancing = db.hold('rebalance');
    const restarted = await start();
    const stopping = restarted.stop();
    rebalancing.release();
    await stopping;
    assert.deepEqual(restarted.partitions, []);
    db.write(1, 3);
    restarted.start();
    await settle();
    assert.equal(restarted.partitions.length, PARTITION_COUNT);
    assert.equal(publisher.entries.length, 3);
    assertDelivered(db, publisher);
    await stopAll();
  });

  test('the idle wait ends at the next rebalance when that comes before the poll', async () => {
    const { clock, start, stopAll } = world();
    await start({ pollIntervalMs: 5000 });
    assert.deepEqual(clock.waits, [REBALANCE_MS]);
    await clock.advance(500);
    await stopAll();
  });

  test('confirms ids only once marked and confirmDelayMs old, at most once a second, and all on stop', async () => {
    const { clock, db, publisher, start } = world();
    const started = await start();
    db.write(1, 3);
    db.notify();
    await settle();
    const markedAt = clock.now();
    assert.equal(publisher.entries.length, 3);
    assert.equal(publisher.confirmed.length, 0);

    // The loop confirms at its rounds, here one per poll: the fourth is under 5 s after the mark.
    for (let i = 0; i < 4; i++) await clock.advance(POLL_MS);
    assert.equal(publisher.confirmed.length, 0);
    await clock.advance(POLL_MS);
    assert.deepEqual(
      publisher.confirmed.map((c) => c.eventId),
      ['event-1', 'event-2', 'event-3'],
    );
    assert.ok(publisher.confirmed.every((c) => c.at >= markedAt + 5000));

    // Published now, due in 5 s: a stop confirms them at once, as nothing of ours is in flight.
    db.write(2);
    db.notify();
    await settle();
    await clock.advance(CONFIRM_INTERVAL_MS);
    assert.equal(publisher.confirmed.length, 3);
    await started.stop();
    assert.deepEqual(
      publisher.confirmed.map((c) => c.eventId),
      ['event-1', 'event-2', 'event-3', 'event-4'],
    );
  });

  test('hands partitions over: the holder marks, then releases; the taker raises their epochs', async () => {
    const { clock, db, publisher, start, stopAll } = world();
    const first = await start();
    assert.equal(first.partitions.length, PARTITION_COUNT);
    const second = await start();
    assert.equal(second.partitions.length, 0, 'nothing is free until the holder releases');

    // The rebalance comes due while the first relay's second batch is with the broker: that batch
    // is marked before any partition is released (the upper half goes, so the events are there).
    for (let aggregate = PARTITION_COUNT / 2; aggregate < PARTITION_COUNT; aggregate++)
      db.write(aggregate, 2);
    const publishing = publisher.hold(1);
    db.notify();
    await settle();
    await clock.advance(REBALANCE_MS);
    publishing.release();
    await settle();
    assert.equal(first.partitions.length, PARTITION_COUNT / 2);
    await clock.advance(REBALANCE_MS);
    assert.equal(second.partitions.length, PARTITION_COUNT / 2);
    // The taker publishes with epochs the broker has not seen: the first relay's old fence is stale there.
    for (const partition of second.partitions) assert.equal(db.epochs.get(partition), 2);
    for (let aggregate = 0; aggregate < PARTITION_COUNT; aggregate++) db.write(aggregate);
    db.notify();
    await clock.advance(POLL_MS);
    assertDelivered(db, publisher);
    await stopAll();
  });

  test('a frozen relay that wakes after a takeover is fenced, drops its batch and rejoins', async () => {
    const { clock, db, publisher, start, stopAll } = world();
    const frozen = await start();
    const fenced = record(frozen, 'fenced');
    db.write(7, 3);
    const publishing = publisher.hold();
    db.notify();
    await settle();

    // Its session ends (another relay's stall check) and another relay takes partition 7 and publishes.
    const [session] = db.sessions;
    db.terminate(session as never);
    const taker = await start();
    assert.ok(taker.partitions.includes(7));
    assert.equal(publisher.entries.length, 3);

    publishing.release();
    await settle();
    assert.deepEqual(fenced, [{ partitions: [7] }]);
    assert.equal(publisher.entries.length, 3, 'the stale publish added nothing');
    assertDelivered(db, publisher);

    // It backs off, reconnects and takes its share again from the durable records.
    await clock.advance(1000);
    await clock.advance(REBALANCE_MS);
    await clock.advance(REBALANCE_MS);
    assert.ok(frozen.partitions.length > 0);
    assert.equal(frozen.partitions.length + taker.partitions.length, PARTITION_COUNT);
    await stopAll();
  });

  test('during a broker outage it pings with a growing backoff instead of claiming, then resumes', async () => {
    const { clock, db, publisher, start, stopAll } = world();
    const started = await start();
    const broker = record(started, 'broker');
    publisher.down = true;
    db.write(1, 2);
    db.notify();
    await settle();
    assert.deepEqual(broker, [{ up: false }]);
    const publishesWhileDown = publisher.calls.length;

    // Poll, then pings at 100, 200, 400, 800, 800 ms (random pinned to the top of the range).
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      waits.push(...clock.waits);
      await clock.advance(clock.waits[0] ?? 0);
    }
    assert.deepEqual(waits, [POLL_MS, 100, 200, 400, 800, 800]);
    assert.equal(publisher.calls.length, publishesWhileDown, 'no claim while the broker is down');

    publisher.down = false;
    await clock.advance(800);
    assert.deepEqual(broker, [{ up: false }, { up: true }]);
    assertDelivered(db, publisher);
    await stopAll();
  });

  test('a refused event waits out its backoff with its aggregate behind it, then FAILED after maxAttempts', async () => {
    const { clock, db, publisher, start, stopAll } = world(2);
    const started = await start();
    const failed = record(started, 'failed');
    const [refused, behind] = db.write(1, 2);
    const [other] = db.write(2);
    publisher.refuse.set(refused?.eventId ?? '', 2);
    db.notify();
    await settle();
    assert.equal(refused?.attempts, 1);
    assert.equal(behind?.status, 'PENDING');
    assert.equal(other?.status, 'PUBLISHED', 'another aggregate does not wait');

    await clock.advance(999);
    assert.equal(refused?.attempts, 1);
    await clock.advance(1);
    await clock.advance(POLL_MS);
    assert.equal(refused?.status, 'FAILED');
    assert.deepEqual(failed, [{ rowIds: [refused?.id] }]);
    assert.equal(behind?.status, 'PENDING', 'an aggregate stays behind its failed event');
    await stopAll();
  });

  test('a failed mark leaves its batch PENDING; the next session offers it again and the broker drops the repeat', async () => {
    const { clock, db, publisher, start, stopAll } = world();
    const started = await start();
    const faults = record(started, 'fault');
    db.write(1, 4);
    db.failNext('mark');
    db.notify();
    await settle();
    assert.equal(faults.length, 1);
    assert.equal(db.rows.filter((r) => r.status === 'PUBLISHED').length, 0);
    await clock.advance(100);
    await settle();
    assert.equal(publisher.calls.length, 2, 'offered again after reconnecting');
    assertDelivered(db, publisher);
    await stopAll();
  });

  test('any interleaving of commits, wake-ups, time, outages and failures delivers each event once, in order', async () => {
    type Step =
      | { kind: 'write'; aggregate: number; count: number }
      | { kind: 'notify' }
      | { kind: 'advance'; ms: number }
      | { kind: 'brokerDown' | 'brokerUp' }
      | { kind: 'fail'; call: 'claim' | 'mark' | 'rebalance' | 'reject' }
      | { kind: 'refuse'; nth: number }
      | { kind: 'relays'; count: 1 | 2 };
    const step = fc.oneof(
      fc.record({
        kind: fc.constant('write' as const),
        aggregate: fc.integer({ min: 0, max: 200 }),
        count: fc.integer({ min: 1, max: 12 }),
      }),
      fc.constant({ kind: 'notify' as const }),
      fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 3000 }) }),
      fc.constant({ kind: 'brokerDown' as const }),
      fc.constant({ kind: 'brokerUp' as const }),
      fc.record({
        kind: fc.constant('fail' as const),
        call: fc.constantFrom('claim', 'mark', 'rebalance', 'reject'),
      }),
      fc.record({ kind: fc.constant('refuse' as const), nth: fc.nat() }),
      fc.record({ kind: fc.constant('relays' as const), count: fc.constantFrom(1 as const, 2 as const) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 40 }), async (steps: Step[]) => {
        const { clock, db, publisher, relay } = world(1000);
        const running = [relay()];
        running[0]?.start();
        for (const s of steps) {
          if (s.kind === 'write') db.write(s.aggregate, s.count);
          else if (s.kind === 'notify') db.notify();
          else if (s.kind === 'advance') await clock.advance(s.ms);
          else if (s.kind === 'brokerDown') publisher.down = true;
          else if (s.kind === 'brokerUp') publisher.down = false;
          else if (s.kind === 'fail') db.failNext(s.call);
          else if (s.kind === 'refuse' && db.rows.length > 0)
            publisher.refuse.set(db.rows[s.nth % db.rows.length]?.eventId ?? '', 1);
          else if (s.kind === 'relays' && s.count !== running.length) {
            if (s.count === 2) {
              const added = relay();
              added.start();
              running.push(added);
            } else await running.pop()?.stop();
          }
          await settle();
        }
        publisher.down = false;
        for (let i = 0; i < 40 && db.rows.some((row) => row.status === 'PENDING'); i++)
          await clock.advance(1000);
        for (const r of running) await r.stop();
        assertDelivered(db, publisher);
      }),
      { numRuns: 300, seed: 20261203 },
    );
  });
});

describe('relay core decisions', () => {
  const options = resolveRelayOptions({
    connectionString: 'postgres://fake',
    publisher: new FakePublisher(new FakeClock()),
    batchSize: 10,
  });
  const connectedCore = (now: number) => {
    const emitted: string[] = [];
    const core = new RelayCore(options, ((name: string) => emitted.push(name)) as never, () => 1);
    assert.deepEqual(core.next(now), { kind: 'connect' });
    core.connected();
    assert.equal(core.next(now).kind, 'rebalance');
    core.rebalanced(
      {
        takeovers: [],
        taken: [3],
        released: [],
        partitions: [3],
        leader: false,
        epochs: [{ partition: 3, epoch: 4 }],
        records: [
          {
            stream: 's',
            partition: 3,
            last_entry_id: '5-0',
            last_event_id: 'e',
            published: '7',
            base_count: '0',
          },
        ],
      },
      now,
    );
    return { core, emitted };
  };

  test('a rebalance checks what the broker acknowledged, and a lost stream is repaired before any claim', () => {
    const { core, emitted } = connectedCore(0);
    const verify = core.next(1);
    assert.deepEqual(verify, { kind: 'verify', checks: [{ stream: 's', partition: 3, expected: '5-0' }] });
    core.verified(verify.kind === 'verify' ? verify.checks : [], [
      { status: 'lost', stream: 's', partition: 3, marker: '2-0', count: 2 },
    ]);
    const recheck = core.next(2);
    assert.equal(recheck.kind, 'recheck');
    core.rechecked(
      [{ stream: 's', partition: 3, expected: '5-0' }],
      [{ status: 'lost', stream: 's', partition: 3, marker: '2-0', count: 2 }],
      [],
    );
    const repair = core.next(3);
    assert.equal(repair.kind, 'repair');
    core.repaired(
      repair.kind === 'repair' ? repair.losses : [],
      {
        status: 'done',
        repairs: [
          {
            stream: 's',
            partition: 3,
            lost: 3,
            republished: 3,
            unrecoverable: 0,
            afterEntryId: '2-0',
            firstRepublishedEntryId: '3-0',
            lastEntryId: '9-2',
            lastEventId: 'e9',
            marker: '9-2',
          },
        ],
        republished: [],
      },
      4,
    );
    assert.ok(emitted.includes('dataLoss'));
    assert.equal(core.fence.expected('s', 3), '9-2');
    assert.equal(core.next(5).kind, 'claim');
  });

  test('a marker lost with its stream whole is restored, and a broker that cannot restore it is an outage', () => {
    const { core, emitted } = connectedCore(0);
    core.next(1);
    const check = { stream: 's', partition: 3, expected: '5-0' };
    core.verified([check], [{ status: 'unmarked' }]);
    assert.equal(core.next(2).kind, 'recheck');
    core.rechecked(
      [check],
      [{ status: 'unmarked' }],
      [
        {
          stream: 's',
          partition: 3,
          last_entry_id: '5-0',
          last_event_id: 'e',
          published: '7',
          base_count: '0',
        },
      ],
    );
    assert.deepEqual(core.next(3), { kind: 'restore', checks: [{ ...check, count: 7 }] });
    core.restored([{ ...check, count: 7 }], [{ status: 'unavailable', error: 'down' }]);
    assert.equal(core.isBrokerUp, false);
    assert.ok(emitted.includes('broker'));
    assert.equal(core.next(4).kind, 'ping', 'no repair and no claim while the broker is out');
  });

  test('a fenced verdict drops the session: disconnect, then back off, then connect', () => {
    const { core, emitted } = connectedCore(0);
    core.next(1);
    core.verified([{ stream: 's', partition: 3, expected: '5-0' }], [{ status: 'fenced' }]);
    assert.ok(emitted.includes('fenced'));
    assert.deepEqual(core.next(2), { kind: 'disconnect' });
    assert.deepEqual(core.next(2), { kind: 'sleep', ms: 100, byNotify: false });
    assert.deepEqual(core.partitions, []);
    assert.equal(core.fence.epochs.size, 0);
    assert.deepEqual(core.next(3), { kind: 'connect' });
  });

  test('rebalances once per round: a slow verify cannot starve the claim, and an outage still rebalances', () => {
    const { core } = connectedCore(0);
    const check = { stream: 's', partition: 3, expected: '5-0' };
    assert.equal(core.next(1).kind, 'verify');
    core.verified([check], [{ status: 'unavailable', error: 'timed out' }]);
    // The verify outlasted the rebalance interval: this round still claims.
    const claim = core.next(options.rebalanceIntervalMs + 1);
    assert.equal(claim.kind, 'claim');
    core.claimed([claimedRow('1', 3)]);
    const publish = core.next(options.rebalanceIntervalMs + 1);
    core.published(
      publish.kind === 'publish' ? publish.rows : [],
      [{ status: 'unavailable', error: 'down' }],
      new Date(),
    );
    assert.deepEqual(core.next(options.rebalanceIntervalMs + 2), { kind: 'sleep', ms: 0, byNotify: true });
    core.slept(true);
    // Broker down: each round is a rebalance (which keeps the session alive) and a ping.
    for (let round = 1; round <= 3; round++) {
      const now = round * 10 * options.rebalanceIntervalMs;
      assert.equal(core.next(now).kind, 'rebalance');
      core.rebalanced(
        { takeovers: [], taken: [], released: [], partitions: [3], leader: false, epochs: [], records: [] },
        now,
      );
      assert.equal(core.next(now).kind, 'ping');
      core.pinged(false);
      assert.equal(core.next(now).kind, 'sleep');
    }
  });

  test('a stop finishes the mark in hand and skips any backoff', () => {
    const { core } = connectedCore(0);
    core.next(1);
    core.verified([{ stream: 's', partition: 3, expected: '5-0' }], [{ status: 'ok' }]);
    const claim = core.next(2);
    assert.equal(claim.kind, 'claim');
    core.claimed([claimedRow('1', 3)]);
    const publish = core.next(3);
    assert.equal(publish.kind, 'publish');
    core.published(
      publish.kind === 'publish' ? publish.rows : [],
      [{ status: 'published', stream: 's', entryId: '6-0' }],
      new Date(3),
    );
    core.stop();
    assert.equal(core.next(4).kind, 'mark');
    assert.deepEqual(core.next(4), { kind: 'stop' });
    core.fail(new FencedError([3]));
    assert.deepEqual(core.next(5), { kind: 'disconnect' });
    assert.deepEqual(core.next(5), { kind: 'stop' });
  });
});

function claimedRow(id: string, partition: number): ClaimedRow {
  return {
    id,
    partition,
    event_id: `event-${id}`,
    event_type: 't',
    source: 'x',
    aggregate_type: 'a',
    aggregate_id: 'a1',
    data: '{}',
    traceparent: null,
    tracestate: null,
    created_at: new Date(0),
    attempts: 0,
  };
}
