import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { killLeftovers } from '../e2e/stack.ts';
import { runChaos } from './harness.ts';

after(killLeftovers);

test('chaos: 5,000 trades while relays, Redis, the service and their database sessions are killed lose, duplicate and reorder nothing', {
  // Bounded: the load stops at its deadline and the drain at its timeout; this is the backstop.
  timeout: 10 * 60_000,
}, async (t) => {
  const lines: string[] = [];
  const summary = await runChaos({
    trades: 5000,
    durationSeconds: 45,
    concurrency: 16,
    accounts: 40,
    symbols: 10,
    relays: 2,
    faults: { relayKill: 3, redisKill: 1, pgTerminate: 2, serviceKill: 1 },
    drainTimeoutSeconds: 120,
    ...(process.env.CHAOS_SEED === undefined ? {} : { seed: Number(process.env.CHAOS_SEED) }),
    log: (line) => lines.push(line),
  });
  for (const line of lines) t.diagnostic(line);
  t.diagnostic(JSON.stringify({ ...summary, faultLog: undefined }));

  assert.deepEqual(summary.problems, [], `seed ${summary.seed}; logs in ${summary.logs}`);
  assert.equal(summary.trades.attempted, 5000);
  assert.ok(summary.trades.accepted > 0);
  assert.ok(summary.faults.relayKill >= 2, 'at least two relay SIGKILLs');
  assert.ok(summary.faults.redisKill >= 1, 'at least one Redis kill');
  assert.ok(summary.faults.pgTerminate >= 2, 'at least two rounds of pg_terminate_backend');
  assert.ok(summary.faults.pgBackendsTerminated > 0);
  assert.deepEqual(
    {
      lost: summary.events.lost,
      duplicated: summary.events.duplicated,
      outOfOrder: summary.events.outOfOrder,
      gaps: summary.events.gaps,
      orphans: summary.events.orphans,
      pending: summary.events.pending,
      failed: summary.events.failed,
    },
    { lost: 0, duplicated: 0, outOfOrder: 0, gaps: 0, orphans: 0, pending: 0, failed: 0 },
  );
  // Every committed trade has its two events, each published.
  assert.equal(summary.events.outbox, 2 * summary.trades.inDatabase);
  assert.equal(summary.events.published, summary.events.outbox);
  assert.ok(summary.trades.inDatabase >= summary.trades.accepted);
  assert.ok(summary.trades.inDatabase <= summary.trades.accepted + summary.trades.unknownTotal);
  assert.equal(summary.ok, true);
});
