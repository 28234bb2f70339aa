import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StreamEntry } from '../e2e/streams.ts';
import type { AcceptedTrade } from './load.ts';
import {
  type ApplyRow,
  checkRun,
  type LedgerRow,
  type OutboxRow,
  POSITION_UPDATED,
  type PositionRow,
  type ReportingRecord,
  type RunRecord,
  TRADE_EXECUTED,
  type TradeRow,
  type Verification,
} from './verify.ts';

/**
 * Negative controls for the chaos verifier: a run that is right in every respect passes, and each
 * doctored copy of it (an entry lost, duplicated or reordered, an oversell, a mark without its entry,
 * a phantom entry, a 5xx outside any fault...) is reported by the check meant to catch it. Without
 * these, a verifier that checks nothing would pass every chaos run.
 */

interface Step {
  account: string;
  symbol: string;
  side: 'BUY' | 'SELL';
  quantity: string;
  price: string;
  /** The position after this trade, as the service computes it (worked out by hand). */
  after: { quantity: string; average: string };
}

// Averages by hand: (10 * 100 + 5 * 130) / 15 = 110; selling everything clears the average; 11 / 3
// rounds half up to 3.66666667.
const STEPS: Step[] = [
  {
    account: 'alice',
    symbol: 'AAPL',
    side: 'BUY',
    quantity: '10',
    price: '100',
    after: { quantity: '10', average: '100' },
  },
  {
    account: 'bob',
    symbol: 'MSFT',
    side: 'BUY',
    quantity: '1',
    price: '3',
    after: { quantity: '1', average: '3' },
  },
  {
    account: 'alice',
    symbol: 'AAPL',
    side: 'BUY',
    quantity: '5',
    price: '130',
    after: { quantity: '15', average: '110' },
  },
  {
    account: 'bob',
    symbol: 'MSFT',
    side: 'BUY',
    quantity: '2',
    price: '4',
    after: { quantity: '3', average: '3.66666667' },
  },
  {
    account: 'alice',
    symbol: 'AAPL',
    side: 'SELL',
    quantity: '15',
    price: '120',
    after: { quantity: '0', average: '0' },
  },
  {
    account: 'alice',
    symbol: 'AAPL',
    side: 'BUY',
    quantity: '2',
    price: '7.5',
    after: { quantity: '2', average: '7.5' },
  },
];

const uuid = (n: number) => `00000000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;

/** A run of STEPS that a correct system would leave behind: every trade answered, stored and published. */
function correctRun(steps: readonly Step[] = STEPS, options: { deletePublished?: boolean } = {}): RunRecord {
  const trades: TradeRow[] = [];
  const outbox: OutboxRow[] = [];
  const accepted: AcceptedTrade[] = [];
  const executed: StreamEntry[] = [];
  const updated: StreamEntry[] = [];
  const positions = new Map<string, PositionRow>();
  let clock = 1_700_000_000_000;
  steps.forEach((step, index) => {
    const key = `${step.account}:${step.symbol}`;
    const version = (positions.get(key)?.version ?? 0) + 1;
    positions.set(key, {
      account_id: step.account,
      symbol: step.symbol,
      quantity: step.after.quantity,
      average_price: step.after.average,
      version,
    });
    const id = uuid(1000 + index);
    trades.push({
      id,
      account_id: step.account,
      symbol: step.symbol,
      side: step.side,
      quantity: step.quantity,
      price: step.price,
      position_version: version,
    });
    accepted.push({
      id,
      accountId: step.account,
      symbol: step.symbol,
      positionVersion: version,
      side: step.side,
      quantity: step.quantity,
      price: step.price,
    });
    const events = [
      {
        type: TRADE_EXECUTED,
        subject: id,
        payload: { id, accountId: step.account, symbol: step.symbol, positionVersion: version },
        stream: executed,
      },
      {
        type: POSITION_UPDATED,
        subject: key,
        payload: {
          accountId: step.account,
          symbol: step.symbol,
          quantity: step.after.quantity,
          averagePrice: step.after.average,
          version,
          tradeId: id,
        },
        stream: updated,
      },
    ];
    for (const [n, event] of events.entries()) {
      const eventId = uuid(2 * index + n + 1);
      const entryId = `${clock++}-0`;
      event.stream.push({
        entryId,
        fields: {
          id: eventId,
          type: event.type,
          subject: event.subject,
          data: JSON.stringify(event.payload),
        },
      });
      if (!options.deletePublished) {
        outbox.push({
          event_id: eventId,
          event_type: event.type,
          aggregate_id: event.subject,
          status: 'PUBLISHED',
          stream_entry_id: entryId,
          payload: event.payload,
        });
      }
    }
  });
  return {
    trades,
    positions: [...positions.values()],
    outbox,
    streams: new Map([
      [TRADE_EXECUTED, executed],
      [POSITION_UPDATED, updated],
    ]),
    accepted,
    unknownOutcomes: 0,
    deletePublished: options.deletePublished ?? false,
  };
}

/** A deep copy to doctor, so no control leaks into another. */
function copy(run: RunRecord) {
  return structuredClone({
    ...run,
    trades: [...run.trades],
    positions: [...run.positions],
    outbox: [...run.outbox],
    accepted: [...run.accepted],
    streams: new Map([...run.streams].map(([name, entries]) => [name, [...entries]])),
  });
}

function stream(run: ReturnType<typeof copy>, name: string): StreamEntry[] {
  const entries = run.streams.get(name);
  assert.ok(entries !== undefined);
  return entries;
}

/** Asserts the run was reported, by the named counter (when given) and a problem line with `title`. */
function assertReported(result: Verification, title: RegExp, counter?: keyof Verification): void {
  assert.ok(
    result.problems.some((problem) => title.test(problem)),
    `no problem matching ${title}; got ${JSON.stringify(result.problems)}`,
  );
  if (counter !== undefined) assert.ok(Number(result[counter]) > 0, `${counter} is ${result[counter]}`);
}

const updatedEntryOf = (run: ReturnType<typeof copy>, subject: string, version: number) => {
  const entries = stream(run, POSITION_UPDATED);
  const index = entries.findIndex(
    (entry) => entry.fields.subject === subject && JSON.parse(entry.fields.data ?? '{}').version === version,
  );
  assert.ok(index >= 0);
  return index;
};

for (const deletePublished of [false, true]) {
  const mode = deletePublished ? 'deletePublished (streams only)' : 'rows kept';
  describe(`chaos verifier, ${mode}`, () => {
    const base = () => copy(correctRun(STEPS, { deletePublished }));

    test('a correct run passes (the positive control)', () => {
      const result = checkRun(base());
      assert.deepEqual(result.problems, []);
      assert.equal(result.streamEntries, 2 * STEPS.length);
    });

    test('a lost entry is reported', () => {
      const run = base();
      stream(run, POSITION_UPDATED).splice(updatedEntryOf(run, 'alice:AAPL', 2), 1);
      const result = checkRun(run);
      assertReported(result, /^committed events missing from the streams: 1 /, 'lost');
      assertReported(result, /^versions missing from a position stream: 1 /, 'gaps');
      assertReported(result, /^201 trades not exactly once in each stream/);
    });

    test('a duplicate entry is reported', () => {
      const run = base();
      const entries = stream(run, TRADE_EXECUTED);
      const first = entries[0] as StreamEntry;
      entries.push({ entryId: '1800000000000-0', fields: { ...first.fields } });
      const result = checkRun(run);
      assertReported(result, /^events in the streams more than once: 1 /, 'duplicated');
    });

    test('two events of one position in the wrong order are reported', () => {
      const run = base();
      const entries = stream(run, POSITION_UPDATED);
      const [a, b] = [updatedEntryOf(run, 'alice:AAPL', 1), updatedEntryOf(run, 'alice:AAPL', 2)];
      // Swap their contents, keeping the entry ids rising as Redis would.
      const fa = (entries[a] as StreamEntry).fields;
      (entries[a] as StreamEntry).fields = (entries[b] as StreamEntry).fields;
      (entries[b] as StreamEntry).fields = fa;
      const result = checkRun(run);
      assertReported(result, /^position_updated entries not above the previous version/, 'outOfOrder');
    });

    test('a phantom entry (no trade, no row) is reported', () => {
      const run = base();
      stream(run, TRADE_EXECUTED).push({
        entryId: '1800000000001-0',
        fields: {
          id: uuid(999_999),
          type: TRADE_EXECUTED,
          subject: uuid(888_888),
          data: JSON.stringify({ id: uuid(888_888), positionVersion: 1 }),
        },
      });
      const result = checkRun(run);
      assertReported(
        result,
        /^stream entries (without a committed outbox row|that belong to no trade): 1 /,
        'orphans',
      );
    });

    test('an oversell (BUY 1, then two SELL 5) is reported, even with everything else consistent', () => {
      // What a broken SELL guard would leave: versions, events and streams all agree with each other.
      const oversell: Step[] = [
        {
          account: 'carol',
          symbol: 'NVDA',
          side: 'BUY',
          quantity: '1',
          price: '10',
          after: { quantity: '1', average: '10' },
        },
        {
          account: 'carol',
          symbol: 'NVDA',
          side: 'SELL',
          quantity: '5',
          price: '10',
          after: { quantity: '-4', average: '10' },
        },
        {
          account: 'carol',
          symbol: 'NVDA',
          side: 'SELL',
          quantity: '5',
          price: '10',
          after: { quantity: '-9', average: '10' },
        },
      ];
      const result = checkRun(copy(correctRun([...STEPS, ...oversell], { deletePublished })));
      assertReported(result, /^SELLs beyond the quantity held \(oversell\): 2 /, 'oversold');
    });

    test('a position whose average price is not what its trades give is reported', () => {
      const run = base();
      const bob = run.positions.find((position) => position.account_id === 'bob');
      assert.ok(bob !== undefined);
      // 3.66666666: rounded down instead of half up.
      run.positions[run.positions.indexOf(bob)] = { ...bob, average_price: '3.66666666' };
      const result = checkRun(run);
      assertReported(
        result,
        /^positions whose quantity or average price differs from their trades: 1 /,
        'wrongPositions',
      );
    });

    test('a position_updated event with a wrong quantity is reported', () => {
      const run = base();
      const entries = stream(run, POSITION_UPDATED);
      const index = updatedEntryOf(run, 'alice:AAPL', 2);
      const entry = entries[index] as StreamEntry;
      const data = JSON.parse(entry.fields.data ?? '{}');
      entries[index] = {
        ...entry,
        fields: { ...entry.fields, data: JSON.stringify({ ...data, quantity: '16' }) },
      };
      const result = checkRun(run);
      assertReported(
        result,
        /^position_updated events whose quantity or average differs from the replay/,
        'wrongPositions',
      );
    });

    test('a 201 for a trade that was not stored is reported as lost', () => {
      const run = base();
      run.accepted.push({ id: uuid(777_777), accountId: 'alice', symbol: 'AAPL', positionVersion: 5 });
      const result = checkRun(run);
      assertReported(result, /^201 trades missing from the trades table: 1 /);
      assertReported(result, /^committed events missing from the streams/, 'lost');
    });

    test('a 201 whose answer differs from the stored trade is reported', () => {
      const run = base();
      run.accepted[0] = { ...(run.accepted[0] as AcceptedTrade), quantity: '11' };
      assertReported(checkRun(run), /^201 trades whose row differs from the answer: 1 /);
    });

    test('a stored trade nobody was told about, beyond the unknown outcomes, is reported', () => {
      const run = base();
      run.accepted.pop();
      assertReported(checkRun(run), /^1 trades exist that no client got a 201 for, but only 0 /);
      run.unknownOutcomes = 1;
      assert.deepEqual(checkRun(run).problems, [], 'one unknown outcome explains it');
    });

    test('a 5xx outside every fault window is reported; one during a fault is not', () => {
      const run = base();
      const at = 1_700_000_100_000;
      run.faultWindows = [{ kind: 'pgTerminate', start: at, end: at + 200 }];
      run.serverErrors = [{ status: 500, sentAt: at + 100, answeredAt: at + 300 }];
      assert.deepEqual(checkRun(run).problems, [], 'during the fault');
      run.serverErrors = [{ status: 500, sentAt: at + 60_000, answeredAt: at + 60_050 }];
      assertReported(
        checkRun(run),
        /^5xx answers outside every fault window: 1 /,
        'serverErrorsOutsideFaults',
      );
      run.faultWindows = [];
      run.serverErrors = [{ status: 503, sentAt: at, answeredAt: at + 1 }];
      assertReported(
        checkRun(run),
        /^5xx answers outside every fault window: 1 /,
        'serverErrorsOutsideFaults',
      );
    });

    test('a PENDING or FAILED row left behind is reported', () => {
      const run = base();
      run.outbox.push({
        event_id: uuid(555_555),
        event_type: TRADE_EXECUTED,
        aggregate_id: uuid(1000),
        status: 'FAILED',
        stream_entry_id: null,
        payload: { id: uuid(1000) },
      });
      assertReported(checkRun(run), /^1 outbox rows FAILED$/);
    });
  });
}

describe('chaos verifier, rows kept: marks', () => {
  test('a row marked PUBLISHED whose entry never reached the stream is reported', () => {
    const run = copy(correctRun());
    const entries = stream(run, TRADE_EXECUTED);
    const row = run.outbox.find((r) => r.event_type === TRADE_EXECUTED);
    assert.ok(row !== undefined && row.status === 'PUBLISHED');
    entries.splice(
      entries.findIndex((entry) => entry.fields.id === row.event_id),
      1,
    );
    const result = checkRun(run);
    assertReported(
      result,
      /^committed events missing from the streams: 1 \(e\.g\. .*\(PUBLISHED\)\)/,
      'lost',
    );
  });

  test('a row marked with another entry id than its own is reported', () => {
    const run = copy(correctRun());
    const index = run.outbox.findIndex((r) => r.event_type === POSITION_UPDATED);
    const row = run.outbox[index] as OutboxRow;
    run.outbox[index] = { ...row, stream_entry_id: '1-0' };
    assertReported(checkRun(run), /^stream entries that differ from their outbox row: 1 /);
  });

  test('a trade with only one of its two events is reported', () => {
    const run = copy(correctRun());
    const index = run.outbox.findIndex((r) => r.event_type === POSITION_UPDATED);
    const [row] = run.outbox.splice(index, 1);
    assert.ok(row !== undefined);
    const result = checkRun(run);
    assertReported(result, /^trades without exactly one trade_executed and one position_updated row: 1 /);
    assertReported(result, /^stream entries without a committed outbox row: 1 /, 'orphans');
  });
});

/**
 * What a reporting service that kept up would hold after `run`: its positions, a ledger row per trade,
 * and the applies of each position in version order (interleaved across positions as the trades came).
 */
function reportingOf(run: RunRecord): ReportingRecord {
  return {
    positions: run.positions.map((position) => ({ ...position })),
    ledger: run.trades.map((trade) => ({
      trade_id: trade.id,
      account_id: trade.account_id,
      symbol: trade.symbol,
      side: trade.side,
      quantity: trade.quantity,
      price: trade.price,
      position_version: trade.position_version,
    })),
    applies: run.trades.map((trade, i) => ({
      account_id: trade.account_id,
      symbol: trade.symbol,
      version: trade.position_version,
      consumer: `reporting-${i % 3}`,
    })),
  };
}

describe('chaos verifier: the reporting service against the trading database', () => {
  /** A correct run with its reporting record as plain arrays, to doctor. */
  const base = () => {
    const run = copy(correctRun());
    const reporting = structuredClone(reportingOf(run));
    return {
      ...run,
      reporting: {
        positions: [...reporting.positions],
        ledger: [...reporting.ledger],
        applies: [...reporting.applies],
      },
    };
  };

  test('a reporting service that kept up passes (the positive control)', () => {
    const result = checkRun(base());
    assert.deepEqual(result.problems, []);
    assert.deepEqual(result.reporting, {
      positions: 2,
      ledgerRows: STEPS.length,
      applies: STEPS.length,
      consumersApplying: 3,
      positionsDiffering: 0,
      ledgerMissing: 0,
      ledgerDuplicated: 0,
      ledgerWrong: 0,
      appliedOutOfTurn: 0,
      applyRecordIncomplete: 0,
    });
  });

  test('a reporting position that differs in quantity, average price or version is reported', () => {
    for (const change of [{ quantity: '2.00000001' }, { average_price: '7.49999999' }, { version: 3 }]) {
      const run = base();
      const positions = run.reporting.positions;
      const index = positions.findIndex((p) => p.account_id === 'alice');
      positions[index] = { ...(positions[index] as PositionRow), ...change };
      const result = checkRun(run);
      assertReported(result, /^reporting positions that differ from the trading positions: 1 /);
      assert.equal(result.reporting?.positionsDiffering, 1, JSON.stringify(change));
    }
  });

  test('a position reporting lacks, or one only reporting has, is reported', () => {
    const run = base();
    const positions = run.reporting.positions;
    const bob = positions.findIndex((p) => p.account_id === 'bob');
    positions.splice(bob, 1);
    positions.push({ account_id: 'erin', symbol: 'V', quantity: '1', average_price: '1', version: 1 });
    const result = checkRun(run);
    assertReported(result, /^reporting positions that differ from the trading positions: 2 /);
    assert.equal(result.reporting?.positionsDiffering, 2);
  });

  test('a trade missing from the ledger is reported', () => {
    const run = base();
    run.reporting.ledger.splice(2, 1);
    const result = checkRun(run);
    assertReported(result, /^trades missing from the reporting ledger: 1 /);
    assert.equal(result.reporting?.ledgerMissing, 1);
  });

  test('a trade in the ledger twice is reported', () => {
    const run = base();
    const ledger = run.reporting.ledger;
    ledger.push({ ...(ledger[0] as LedgerRow) });
    const result = checkRun(run);
    assertReported(result, /^trades in the reporting ledger more than once: 1 /);
    assert.equal(result.reporting?.ledgerDuplicated, 1);
  });

  test('a ledger row unlike its trade, or of no trade, is reported', () => {
    const run = base();
    const ledger = run.reporting.ledger;
    ledger[0] = { ...(ledger[0] as LedgerRow), quantity: '10.00000001' };
    ledger[1] = { ...(ledger[1] as LedgerRow), trade_id: uuid(424_242) };
    const result = checkRun(run);
    assertReported(result, /^reporting ledger rows of no trade or unlike their trade: 2 /);
    assertReported(result, /^trades missing from the reporting ledger: 1 /);
    assert.equal(result.reporting?.ledgerWrong, 2);
  });

  test('a version applied out of turn is reported, even when the view ends right', () => {
    // alice:AAPL applied v1, v3, v2, v4: the same four applies and final version, in the wrong order.
    const run = base();
    const applies = run.reporting.applies;
    const alice = applies.flatMap((apply, i) => (apply.account_id === 'alice' ? [i] : []));
    const [second, third] = [alice[1] as number, alice[2] as number];
    [applies[second], applies[third]] = [applies[third] as ApplyRow, applies[second] as ApplyRow];
    const result = checkRun(run);
    assertReported(
      result,
      /^position versions applied out of turn .*: 2 \(e\.g\. alice:AAPL: apply 2 was v3, by /,
    );
    assert.equal(result.reporting?.appliedOutOfTurn, 2);
    assert.equal(result.reporting?.positionsDiffering, 0);
  });

  test('a version applied twice, or an apply not recorded, is reported', () => {
    // bob:MSFT applied v1, v1, v2.
    const run = base();
    const applies = run.reporting.applies;
    const first = applies.findIndex((apply) => apply.account_id === 'bob' && apply.version === 1);
    applies.splice(first + 1, 0, { ...(applies[first] as ApplyRow) });
    const twice = checkRun(run);
    assertReported(twice, /^position versions applied out of turn .*: 2 /);
    assertReported(twice, /^reporting positions whose apply record does not run 1\.\.their version: 1 /);

    // alice:AAPL's v4 applied (the view is at v4) but not recorded.
    const unrecorded = base();
    const record = unrecorded.reporting.applies;
    record.splice(
      record.findIndex((apply) => apply.account_id === 'alice' && apply.version === 4),
      1,
    );
    const result = checkRun(unrecorded);
    assertReported(result, /^reporting positions whose apply record does not run 1\.\.their version: 1 /);
    assert.equal(result.reporting?.applyRecordIncomplete, 1);
    assert.equal(result.reporting?.appliedOutOfTurn, 0);
  });
});
