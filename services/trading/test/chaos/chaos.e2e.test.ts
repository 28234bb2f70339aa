import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { killLeftovers } from '../e2e/stack.ts';
import { CHAOS_MODES, CHAOS_STALL_TIMEOUT_MS, type ChaosSummary, runChaos } from './harness.ts';

after(killLeftovers);

// A fixed seed: the same trades and fault plan on every run, so a failure can be replayed with it.
// CHAOS_SEED=<n> runs another plan.
const SEED = process.env.CHAOS_SEED === undefined ? 20_261_203 : Number(process.env.CHAOS_SEED);
const replay = (summary: ChaosSummary) =>
  `seed ${summary.seed} (replay: CHAOS_SEED=${summary.seed}); logs in ${summary.logs}`;

/** What every mode must show: no check failed, every trade accounted for, most of them accepted. */
function assertSound(summary: ChaosSummary, trades: number): void {
  const context = replay(summary);
  assert.deepEqual(summary.problems, [], context);
  assert.equal(summary.trades.attempted, trades, context);
  // Every attempted trade ended one way: 201, a final 4xx, or an outcome the client never learnt.
  assert.equal(
    summary.trades.accepted + summary.trades.rejectedTotal + summary.trades.unknownTotal,
    summary.trades.attempted,
    context,
  );
  // Four trades in five are BUYs, which only a fault can stop: at least half must have executed.
  assert.ok(summary.trades.accepted >= trades / 2, `${summary.trades.accepted} accepted; ${context}`);
  assert.deepEqual(
    {
      wrongPositions: summary.events.wrongPositions,
      oversold: summary.events.oversold,
      serverErrorsOutsideFaults: summary.events.serverErrorsOutsideFaults,
    },
    { wrongPositions: 0, oversold: 0, serverErrorsOutsideFaults: 0 },
    context,
  );
  assert.ok(summary.trades.inDatabase >= summary.trades.accepted, context);
  assert.ok(summary.trades.inDatabase <= summary.trades.accepted + summary.trades.unknownTotal, context);
}

/**
 * Reporting, after catching up, equals trading: every position (quantity, average price, version), every
 * trade in the ledger once, and per position each version applied in its turn, by several consumers.
 */
function assertReportingSound(summary: ChaosSummary, consumers: number): void {
  const context = replay(summary);
  const reporting = summary.reporting;
  assert.ok(reporting !== undefined, context);
  assert.equal(reporting.consumers, consumers, context);
  const failures = [
    'positionsDiffering',
    'ledgerMissing',
    'ledgerDuplicated',
    'ledgerWrong',
    'appliedOutOfTurn',
    'applyRecordIncomplete',
  ] as const;
  assert.deepEqual(
    Object.fromEntries(failures.map((name) => [name, reporting[name]])),
    Object.fromEntries(failures.map((name) => [name, 0])),
    context,
  );
  // One ledger row and one applied version per committed trade.
  assert.equal(reporting.ledgerRows, summary.trades.inDatabase, context);
  assert.equal(reporting.applies, summary.trades.inDatabase, context);
  // The work was shared, and killed consumers' replacements took part (each start is a new name).
  assert.ok(reporting.consumersApplying >= 2, `${reporting.consumersApplying} consumers applied; ${context}`);
}

test('chaos: 5,000 trades while relays, Redis, the service, reporting consumers and their database sessions are killed lose, duplicate and reorder nothing; reporting ends equal to trading', {
  // Bounded: the load stops at its deadline and the drain at its timeout; this is the backstop.
  timeout: 15 * 60_000,
}, async (t) => {
  const lines: string[] = [];
  const summary = await runChaos({
    trades: 5000,
    durationSeconds: 45,
    concurrency: 16,
    accounts: 40,
    symbols: 10,
    relays: 2,
    reportingConsumers: 3,
    faults: { relayKill: 3, redisKill: 1, pgTerminate: 2, serviceKill: 1, reportingKill: 3 },
    drainTimeoutSeconds: 300,
    seed: SEED,
    log: (line) => lines.push(line),
  });
  for (const line of lines) t.diagnostic(line);
  t.diagnostic(JSON.stringify({ ...summary, faultLog: undefined }));

  assert.deepEqual(summary.problems, [], replay(summary));
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
  assertSound(summary, 5000);
  assertReportingSound(summary, 3);
  // Every planned fault fired (they follow the load's progress, so a slow host cannot skip them).
  assert.deepEqual(
    {
      relayKill: summary.faults.relayKill,
      redisKill: summary.faults.redisKill,
      pgTerminate: summary.faults.pgTerminate,
      serviceKill: summary.faults.serviceKill,
      reportingKill: summary.faults.reportingKill,
    },
    { relayKill: 3, redisKill: 1, pgTerminate: 2, serviceKill: 1, reportingKill: 3 },
  );
});

// The other setups, smaller: each proves its own path (the relay inside the service, woken by the
// service's own trades and killed with it; relays that delete what they publish; a Redis that keeps
// nothing on disk, with reporting consumers that recreate their group from 0 and rely on their inbox;
// relays frozen and woken) under the same faults. Reporting runs where it adds a path (volatile Redis)
// and not elsewhere, to keep CI time.
const MODE_RUNS = [
  {
    mode: 'service-relay',
    reportingConsumers: 0,
    faults: { relayKill: 1, redisKill: 1, pgTerminate: 1, serviceKill: 2, relayFreeze: 0, reportingKill: 0 },
  },
  {
    mode: 'delete-published',
    reportingConsumers: 0,
    faults: { relayKill: 2, redisKill: 1, pgTerminate: 1, serviceKill: 1, relayFreeze: 0, reportingKill: 0 },
  },
  {
    mode: 'volatile-redis',
    reportingConsumers: 2,
    faults: { relayKill: 1, redisKill: 2, pgTerminate: 1, serviceKill: 1, relayFreeze: 0, reportingKill: 1 },
  },
  {
    // One freeze with the sessions ended meanwhile, one with the session left open past the stall timeout.
    mode: 'standalone-relays',
    reportingConsumers: 0,
    faults: { relayKill: 1, redisKill: 0, pgTerminate: 0, serviceKill: 0, relayFreeze: 2, reportingKill: 0 },
    durationSeconds: 45,
  },
] as const;

for (const run of MODE_RUNS) {
  const { mode, faults, reportingConsumers } = run;
  const durationSeconds = 'durationSeconds' in run ? run.durationSeconds : 20;
  const name = faults.relayFreeze > 0 ? `${mode}, frozen relays` : mode;
  const reportingTitle = reportingConsumers > 0 ? '; reporting ends equal to trading' : '';
  test(`chaos, ${name}: 1,500 trades under faults lose, duplicate and reorder nothing${reportingTitle}`, {
    timeout: 10 * 60_000,
  }, async (t) => {
    const lines: string[] = [];
    const trades = 1500;
    const summary = await runChaos({
      ...CHAOS_MODES[mode],
      trades,
      durationSeconds,
      concurrency: 8,
      accounts: 20,
      symbols: 5,
      reportingConsumers,
      faults,
      drainTimeoutSeconds: 300,
      seed: SEED,
      log: (line) => lines.push(line),
    });
    for (const line of lines) t.diagnostic(line);
    t.diagnostic(JSON.stringify({ ...summary, faultLog: undefined }));

    assertSound(summary, trades);
    assert.deepEqual(summary.setup, { ...CHAOS_MODES[mode] });
    assert.deepEqual(
      {
        relayKill: summary.faults.relayKill,
        redisKill: summary.faults.redisKill,
        pgTerminate: summary.faults.pgTerminate,
        serviceKill: summary.faults.serviceKill,
        relayFreeze: summary.faults.relayFreeze,
        reportingKill: summary.faults.reportingKill,
      },
      faults,
      replay(summary),
    );
    if (reportingConsumers > 0) assertReportingSound(summary, reportingConsumers);
    else assert.equal(summary.reporting, undefined);
    // A relay frozen with its session open held its partitions for the stall timeout, not longer
    // (plus a rebalance, a claim and the load's own pace: generous, it is a bound, not a timing).
    if (faults.relayFreeze > 1)
      assert.ok(
        summary.faults.frozenMaxPendingSeconds < CHAOS_STALL_TIMEOUT_MS / 1000 + 8,
        `oldest pending event while frozen: ${summary.faults.frozenMaxPendingSeconds} s; ${replay(summary)}`,
      );
    assert.ok(summary.faults.pgBackendsTerminated > 0, 'sessions were ended (a pgTerminate or a freeze)');
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
      replay(summary),
    );
    // Two entries per committed trade; with deletePublished the outbox keeps none of them.
    assert.equal(summary.events.published, 2 * summary.trades.inDatabase, replay(summary));
    assert.equal(
      summary.events.outbox,
      CHAOS_MODES[mode].deletePublished ? 0 : summary.events.published,
      replay(summary),
    );
    assert.equal(summary.ok, true);
  });
}
