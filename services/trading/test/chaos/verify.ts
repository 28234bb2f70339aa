import { isDeepStrictEqual } from 'node:util';
import type pg from 'pg';
import { averagePriceAfterBuy } from '../decimal.ts';
import { readStreams, type StreamEntry } from '../e2e/streams.ts';
import type { AcceptedTrade, ServerError } from './load.ts';

/**
 * The checks after a chaos run, from the database, the streams and what the clients were told.
 * Each check counts what breaks it and keeps a few examples; nothing stops at the first problem, so a
 * broken build shows the whole damage. `checkRun` is pure (a run's records in, findings out), so its
 * negative controls (verify.unit.test.ts) feed it doctored runs; `verifyRun` reads a real run.
 */

export const TRADE_EXECUTED = 'astra.trading.trade_executed.v1';
export const POSITION_UPDATED = 'astra.trading.position_updated.v1';

export interface Verification {
  tradesInDatabase: number;
  positions: number;
  outboxRows: number;
  outboxByStatus: Record<string, number>;
  streamEntries: number;
  /** Committed events missing from the streams, plus two for every 201 trade missing from the database. */
  lost: number;
  /** Stream entries beyond the first for one event id. */
  duplicated: number;
  /** position_updated entries whose version is not above the previous entry of the same position. */
  outOfOrder: number;
  /** Versions missing from a position's stream relative to the database (1..final version). */
  gaps: number;
  /** Stream entries for which no committed outbox row exists (with deletePublished: no trade). */
  orphans: number;
  /** Positions whose quantity or average price is not what their trades, replayed in version order, give. */
  wrongPositions: number;
  /** SELLs that took a position below zero, in the replay of its trades. */
  oversold: number;
  /** 5xx answers to requests that overlapped no fault (with its grace period). */
  serverErrorsOutsideFaults: number;
  /** The reporting service's view, when the run had reporting consumers. */
  reporting?: ReportingVerification;
  /** Human-readable failed checks, with examples. */
  problems: string[];
}

export interface ReportingVerification {
  positions: number;
  ledgerRows: number;
  applies: number;
  /** Distinct consumer names in the apply record (each restart is a new name). */
  consumersApplying: number;
  /** Positions whose quantity, average price or version differs from the trading service's (or that only one side has). */
  positionsDiffering: number;
  /** Trades in the trading database with no ledger row. */
  ledgerMissing: number;
  /** Ledger rows beyond the first for one trade. */
  ledgerDuplicated: number;
  /** Ledger rows of no trade, or whose content differs from their trade. */
  ledgerWrong: number;
  /** Applies not at their turn: the i-th apply of a position (in apply order) was not version i. */
  appliedOutOfTurn: number;
  /** Positions whose apply record does not run 1..their reporting version. */
  applyRecordIncomplete: number;
}

export interface TradeRow {
  id: string;
  account_id: string;
  symbol: string;
  side: 'BUY' | 'SELL';
  /** Decimal text without trailing zeros, as trim_scale(x)::text gives it. */
  quantity: string;
  price: string;
  position_version: number;
}

export interface PositionRow {
  account_id: string;
  symbol: string;
  /** Decimal text without trailing zeros. */
  quantity: string;
  average_price: string;
  version: number;
}

/** A row of the reporting service's ledger (decimals as trim_scale(x)::text). */
export interface LedgerRow {
  trade_id: string;
  account_id: string;
  symbol: string;
  side: string;
  quantity: string;
  price: string;
  position_version: number;
}

/** One applied position version, from reporting's position_applies. */
export interface ApplyRow {
  account_id: string;
  symbol: string;
  version: number;
  consumer: string;
}

/** What the reporting service holds after a run. */
export interface ReportingRecord {
  positions: readonly PositionRow[];
  ledger: readonly LedgerRow[];
  /** Every apply, in apply order (position_applies.seq). */
  applies: readonly ApplyRow[];
}

export interface OutboxRow {
  event_id: string;
  event_type: string;
  aggregate_id: string;
  status: string;
  stream_entry_id: string | null;
  payload: Record<string, unknown>;
}

/** When a fault was under way (epoch ms): a 5xx to a request overlapping it is expected. */
export interface FaultWindow {
  kind: string;
  start: number;
  end: number;
}

/** A fault's effects outlast it a little: a pool finds its killed sessions on their next use. */
export const FAULT_GRACE_MS = 5000;

/** Everything the checks look at, as read after a run (or made up by a negative control). */
export interface RunRecord {
  trades: readonly TradeRow[];
  positions: readonly PositionRow[];
  /** Every outbox row, in id order. */
  outbox: readonly OutboxRow[];
  /** Every entry of the two streams, in stream order. */
  streams: ReadonlyMap<string, readonly StreamEntry[]>;
  /** What the clients were told: the 201s. */
  accepted: readonly AcceptedTrade[];
  /** Requests whose outcome the client never learnt. */
  unknownOutcomes: number;
  /** Every 5xx answer, with when its request was sent and answered. @defaultValue none */
  serverErrors?: readonly ServerError[];
  /** When faults were injected. @defaultValue none */
  faultWindows?: readonly FaultWindow[];
  /**
   * The relays delete each event as they publish it: the streams are then the events' only record,
   * and what they must hold is derived from the trades. @defaultValue false
   */
  deletePublished?: boolean;
  /** The reporting service's view, checked against the trading database. @defaultValue none */
  reporting?: ReportingRecord;
}

/** Options of a real run's check beyond what the database and Redis hold. */
export interface VerifyOptions {
  serverErrors?: readonly ServerError[];
  faultWindows?: readonly FaultWindow[];
  deletePublished?: boolean;
  /** The reporting service's database, when the run had reporting consumers. */
  reportingPool?: pg.Pool;
}

/** Positions as exact decimal text; the same query reads the trading and the reporting database. */
const POSITIONS_SQL = `SELECT account_id, symbol, trim_scale(quantity)::text AS quantity,
  trim_scale(average_price)::text AS average_price, version::int FROM positions`;

/** Reads what the reporting service holds, for checkRun. */
export async function readReporting(pool: pg.Pool): Promise<ReportingRecord> {
  const [positions, ledger, applies] = await Promise.all([
    pool.query<PositionRow>(POSITIONS_SQL),
    pool.query<LedgerRow>(
      `SELECT trade_id::text, account_id, symbol, side, trim_scale(quantity)::text AS quantity,
              trim_scale(price)::text AS price, position_version::int FROM ledger`,
    ),
    pool.query<ApplyRow>(
      'SELECT account_id, symbol, version::int, consumer FROM position_applies ORDER BY seq',
    ),
  ]);
  return { positions: positions.rows, ledger: ledger.rows, applies: applies.rows };
}

/** Units of 10^-8, signed: a doctored or broken position may hold a negative quantity. */
function units(text: string): bigint {
  const match = /^(-)?(\d+)(?:\.(\d{1,8}))?$/.exec(text);
  if (match === null) throw new Error(`not a decimal with at most 8 decimals: ${text}`);
  const [, minus, whole = '', fraction = ''] = match;
  const value = BigInt(whole) * 100_000_000n + BigInt(fraction.padEnd(8, '0'));
  return minus === undefined ? value : -value;
}

function decimalText(value: bigint): string {
  const sign = value < 0n ? '-' : '';
  const abs = value < 0n ? -value : value;
  const fraction = (abs % 100_000_000n).toString().padStart(8, '0').replace(/0+$/, '');
  return `${sign}${abs / 100_000_000n}${fraction === '' ? '' : `.${fraction}`}`;
}

/** Collects examples of one kind of problem and reports it once with its count. */
class Finding {
  count = 0;
  private readonly examples: string[] = [];
  constructor(private readonly title: string) {}
  add(example: string, weight = 1): void {
    this.count += weight;
    if (this.examples.length < 5) this.examples.push(example);
  }
  report(problems: string[]): void {
    if (this.count > 0) problems.push(`${this.title}: ${this.count} (e.g. ${this.examples.join('; ')})`);
  }
}

const positionKey = (accountId: string, symbol: string) => `${accountId}:${symbol}`;

function parseData(entry: StreamEntry): Record<string, unknown> | undefined {
  try {
    const data: unknown = JSON.parse(entry.fields.data ?? '');
    return typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export async function verifyRun(
  pool: pg.Pool,
  redisUrl: string,
  accepted: readonly AcceptedTrade[],
  unknownOutcomes: number,
  options: VerifyOptions = {},
): Promise<Verification> {
  const [trades, positions, outbox] = await Promise.all([
    pool.query<TradeRow>(
      `SELECT id::text, account_id, symbol, side, trim_scale(quantity)::text AS quantity,
              trim_scale(price)::text AS price, position_version::int FROM trades`,
    ),
    pool.query<PositionRow>(POSITIONS_SQL),
    pool.query<OutboxRow>(
      'SELECT event_id::text, event_type, aggregate_id, status, stream_entry_id, payload FROM event_outbox ORDER BY id',
    ),
  ]);
  const streams = await readStreams(redisUrl, [TRADE_EXECUTED, POSITION_UPDATED]);
  const { reportingPool, ...rest } = options;
  return checkRun({
    trades: trades.rows,
    positions: positions.rows,
    outbox: outbox.rows,
    streams,
    accepted,
    unknownOutcomes,
    ...rest,
    ...(reportingPool === undefined ? {} : { reporting: await readReporting(reportingPool) }),
  });
}

/** The checks themselves: pure, so a doctored run can show that each one fires. */
export function checkRun(run: RunRecord): Verification {
  const { accepted, unknownOutcomes } = run;
  const trades = { rows: run.trades };
  const positions = { rows: run.positions };
  const outbox = { rows: run.outbox };
  const streams = run.streams;
  const deletePublished = run.deletePublished ?? false;
  const problems: string[] = [];

  // --- What the clients were told against the trades table.
  const tradeById = new Map(trades.rows.map((row) => [row.id, row]));
  const acceptedIds = new Set<string>();
  const acceptedMissing = new Finding('201 trades missing from the trades table');
  const acceptedWrong = new Finding('201 trades whose row differs from the answer');
  const acceptedTwice = new Finding('trade ids answered by two different 201s');
  for (const trade of accepted) {
    if (acceptedIds.has(trade.id)) acceptedTwice.add(trade.id);
    acceptedIds.add(trade.id);
    const row = tradeById.get(trade.id);
    if (row === undefined) acceptedMissing.add(trade.id);
    else if (
      row.account_id !== trade.accountId ||
      row.symbol !== trade.symbol ||
      row.position_version !== trade.positionVersion ||
      (trade.side !== undefined && row.side !== trade.side) ||
      (trade.quantity !== undefined && units(row.quantity) !== units(trade.quantity)) ||
      (trade.price !== undefined && units(row.price) !== units(trade.price))
    ) {
      acceptedWrong.add(
        `${trade.id}: answered ${trade.side ?? '?'} ${trade.quantity ?? '?'} v${trade.positionVersion}, stored ${row.side} ${row.quantity} v${row.position_version}`,
      );
    }
  }
  const unanswered = trades.rows.length - acceptedIds.size + acceptedMissing.count;
  if (unanswered > unknownOutcomes) {
    problems.push(
      `${unanswered} trades exist that no client got a 201 for, but only ${unknownOutcomes} requests had an unknown outcome`,
    );
  }

  // --- Every trade row is whole: its position version and exactly its two events.
  const executedOf = new Map<string, OutboxRow[]>();
  const updatedOf = new Map<string, OutboxRow[]>();
  const strayRows = new Finding('outbox rows that belong to no trade');
  for (const row of outbox.rows) {
    const tradeId =
      row.event_type === TRADE_EXECUTED
        ? row.aggregate_id
        : row.event_type === POSITION_UPDATED
          ? String(row.payload.tradeId)
          : undefined;
    const trade = tradeId === undefined ? undefined : tradeById.get(tradeId);
    if (tradeId === undefined || trade === undefined) {
      strayRows.add(`${row.event_type} ${row.event_id}`);
      continue;
    }
    const index = row.event_type === TRADE_EXECUTED ? executedOf : updatedOf;
    index.set(tradeId, [...(index.get(tradeId) ?? []), row]);
  }
  const partialTrades = new Finding('trades without exactly one trade_executed and one position_updated row');
  const wrongEvents = new Finding('events whose content does not match their trade');
  // With deletePublished the published rows are gone: the streams are checked against the trades below.
  for (const trade of deletePublished ? [] : trades.rows) {
    const executed = executedOf.get(trade.id) ?? [];
    const updated = updatedOf.get(trade.id) ?? [];
    if (executed.length !== 1 || updated.length !== 1) {
      partialTrades.add(`${trade.id}: ${executed.length} executed, ${updated.length} updated`);
      continue;
    }
    const [e, u] = [executed[0] as OutboxRow, updated[0] as OutboxRow];
    if (e.payload.id !== trade.id || e.payload.positionVersion !== trade.position_version) {
      wrongEvents.add(`trade_executed ${e.event_id}`);
    }
    if (
      u.aggregate_id !== positionKey(trade.account_id, trade.symbol) ||
      u.payload.version !== trade.position_version
    ) {
      wrongEvents.add(`position_updated ${u.event_id}`);
    }
  }

  // --- Positions: version n means exactly the trades stamped 1..n.
  const versionsOf = new Map<string, number[]>();
  for (const trade of trades.rows) {
    const key = positionKey(trade.account_id, trade.symbol);
    versionsOf.set(key, [...(versionsOf.get(key) ?? []), trade.position_version]);
  }
  const finalVersion = new Map<string, number>();
  const badPositions = new Finding('positions whose version is not the count of their trades (1..n)');
  for (const position of positions.rows) {
    const key = positionKey(position.account_id, position.symbol);
    finalVersion.set(key, position.version);
    const versions = (versionsOf.get(key) ?? []).sort((a, b) => a - b);
    if (versions.length !== position.version || versions.some((v, i) => v !== i + 1)) {
      badPositions.add(`${key}: version ${position.version}, ${versions.length} trades`);
    }
    versionsOf.delete(key);
  }
  for (const key of versionsOf.keys()) badPositions.add(`${key}: trades but no position`);

  // --- Statuses.
  const outboxByStatus: Record<string, number> = { PENDING: 0, PUBLISHED: 0, FAILED: 0 };
  for (const row of outbox.rows) outboxByStatus[row.status] = (outboxByStatus[row.status] ?? 0) + 1;
  if (outboxByStatus.PENDING !== 0) problems.push(`${outboxByStatus.PENDING} outbox rows still PENDING`);
  if (outboxByStatus.FAILED !== 0) problems.push(`${outboxByStatus.FAILED} outbox rows FAILED`);

  // --- Streams against the outbox: each committed event exactly once, where the row says.
  const entriesById = new Map<string, { stream: string; entry: StreamEntry }[]>();
  let streamEntries = 0;
  for (const [stream, entries] of streams) {
    streamEntries += entries.length;
    for (const entry of entries) {
      const id = entry.fields.id ?? '';
      entriesById.set(id, [...(entriesById.get(id) ?? []), { stream, entry }]);
    }
  }
  const lost = new Finding('committed events missing from the streams');
  const duplicated = new Finding('events in the streams more than once');
  const misplaced = new Finding('stream entries that differ from their outbox row');
  for (const row of deletePublished ? [] : outbox.rows) {
    const found = entriesById.get(row.event_id) ?? [];
    if (found.length === 0) lost.add(`${row.event_type} ${row.event_id} (${row.status})`);
    if (found.length > 1) duplicated.add(`${row.event_id} x${found.length}`, found.length - 1);
    const first = found[0];
    if (first === undefined) continue;
    if (
      first.stream !== row.event_type ||
      first.entry.fields.type !== row.event_type ||
      first.entry.fields.subject !== row.aggregate_id ||
      (row.status === 'PUBLISHED' && first.entry.entryId !== row.stream_entry_id) ||
      !isDeepStrictEqual(parseData(first.entry), row.payload)
    ) {
      misplaced.add(`${row.event_id} in ${first.stream} at ${first.entry.entryId}`);
    }
  }
  // Accepted trades whose row is missing lost both their events too.
  if (acceptedMissing.count > 0)
    lost.add(`${acceptedMissing.count} trades answered 201 but not stored`, 2 * acceptedMissing.count);
  const outboxIds = new Set(outbox.rows.map((row) => row.event_id));
  const orphans = new Finding(
    deletePublished
      ? 'stream entries that belong to no trade'
      : 'stream entries without a committed outbox row',
  );
  if (!deletePublished) {
    for (const [id, found] of entriesById) {
      if (!outboxIds.has(id)) orphans.add(`${id} at ${found[0]?.entry.entryId}`, found.length);
    }
  } else {
    // No rows to match: every trade must have its two entries, once each and as the trade says, and
    // every entry must belong to a trade.
    const executedByTrade = new Map<string, StreamEntry[]>();
    const updatedByTrade = new Map<string, StreamEntry[]>();
    for (const [stream, entries] of streams) {
      for (const entry of entries) {
        const tradeId =
          stream === TRADE_EXECUTED
            ? (entry.fields.subject ?? '')
            : stream === POSITION_UPDATED
              ? String(parseData(entry)?.tradeId)
              : '';
        const index = stream === TRADE_EXECUTED ? executedByTrade : updatedByTrade;
        if (!tradeById.has(tradeId)) orphans.add(`${stream} ${entry.fields.id} at ${entry.entryId}`);
        else index.set(tradeId, [...(index.get(tradeId) ?? []), entry]);
      }
    }
    for (const [id, found] of entriesById) {
      if (found.length > 1) duplicated.add(`${id} x${found.length}`, found.length - 1);
    }
    for (const trade of trades.rows) {
      for (const [type, index] of [
        [TRADE_EXECUTED, executedByTrade],
        [POSITION_UPDATED, updatedByTrade],
      ] as const) {
        const found = index.get(trade.id) ?? [];
        if (found.length === 0) lost.add(`${type} of trade ${trade.id}`);
        const ids = new Set(found.map((entry) => entry.fields.id));
        // Two entries with one event id are a duplicate (counted above); two event ids, a second event.
        if (ids.size > 1) partialTrades.add(`${trade.id}: ${ids.size} ${type} events`);
        const first = found[0];
        if (first === undefined) continue;
        const data = parseData(first);
        const right =
          first.fields.type === type &&
          (type === TRADE_EXECUTED
            ? data?.id === trade.id && data?.positionVersion === trade.position_version
            : first.fields.subject === positionKey(trade.account_id, trade.symbol) &&
              data?.version === trade.position_version);
        if (!right) misplaced.add(`${type} ${first.fields.id} at ${first.entryId}`);
      }
    }
  }

  // --- By subject and tradeId, straight from the streams: each 201 trade once in each stream.
  const executedBySubject = new Map<string, number>();
  for (const entry of streams.get(TRADE_EXECUTED) ?? []) {
    const subject = entry.fields.subject ?? '';
    executedBySubject.set(subject, (executedBySubject.get(subject) ?? 0) + 1);
  }
  const updatedByTrade = new Map<string, number>();
  const streamVersions = new Map<string, number[]>();
  for (const entry of streams.get(POSITION_UPDATED) ?? []) {
    const data = parseData(entry);
    const tradeId = String(data?.tradeId);
    updatedByTrade.set(tradeId, (updatedByTrade.get(tradeId) ?? 0) + 1);
    const subject = entry.fields.subject ?? '';
    streamVersions.set(subject, [...(streamVersions.get(subject) ?? []), Number(data?.version)]);
  }
  const notOnce = new Finding('201 trades not exactly once in each stream (by subject / data.tradeId)');
  for (const id of acceptedIds) {
    const executed = executedBySubject.get(id) ?? 0;
    const updated = updatedByTrade.get(id) ?? 0;
    if (executed !== 1 || updated !== 1) notOnce.add(`${id}: ${executed} executed, ${updated} updated`);
  }

  // --- Order: per position, versions strictly rise in stream order and cover 1..final.
  const outOfOrder = new Finding('position_updated entries not above the previous version of their position');
  const gaps = new Finding('versions missing from a position stream');
  for (const [subject, versions] of streamVersions) {
    for (let i = 1; i < versions.length; i++) {
      if (!((versions[i] as number) > (versions[i - 1] as number))) {
        outOfOrder.add(`${subject}: v${versions[i]} after v${versions[i - 1]}`);
      }
    }
  }
  for (const [subject, final] of finalVersion) {
    const seen = new Set(streamVersions.get(subject) ?? []);
    let missing = 0;
    for (let v = 1; v <= final; v++) if (!seen.has(v)) missing++;
    if (missing > 0) gaps.add(`${subject}: ${missing} of 1..${final} missing`, missing);
  }

  // --- Quantities: replay each position's trades in version order with exact arithmetic (the same
  // rounding as the BUY statement); the position row and every position_updated event must agree, and
  // no SELL may take more than the position holds.
  const tradesOf = new Map<string, TradeRow[]>();
  for (const trade of trades.rows) {
    const key = positionKey(trade.account_id, trade.symbol);
    tradesOf.set(key, [...(tradesOf.get(key) ?? []), trade]);
  }
  const replayed = new Map<string, { quantity: bigint; average: bigint }[]>(); // index: version - 1
  const oversold = new Finding('SELLs beyond the quantity held (oversell)');
  for (const [key, list] of tradesOf) {
    let quantity = 0n;
    let average = 0n;
    const steps: { quantity: bigint; average: bigint }[] = [];
    for (const trade of [...list].sort((a, b) => a.position_version - b.position_version)) {
      const amount = units(trade.quantity);
      if (trade.side === 'BUY') {
        average = averagePriceAfterBuy(quantity, average, amount, units(trade.price));
        quantity += amount;
      } else {
        if (amount > quantity)
          oversold.add(
            `${key} v${trade.position_version}: SELL ${trade.quantity} of ${decimalText(quantity)}`,
          );
        quantity -= amount;
        if (quantity === 0n) average = 0n;
      }
      steps[trade.position_version - 1] = { quantity, average };
    }
    replayed.set(key, steps);
  }
  const wrongPositions = new Finding('positions whose quantity or average price differs from their trades');
  for (const position of positions.rows) {
    const key = positionKey(position.account_id, position.symbol);
    const last = replayed.get(key)?.[position.version - 1];
    if (
      last === undefined ||
      units(position.quantity) !== last.quantity ||
      units(position.average_price) !== last.average
    ) {
      wrongPositions.add(
        `${key} v${position.version}: ${position.quantity} @ ${position.average_price}, trades give ${
          last === undefined ? 'nothing' : `${decimalText(last.quantity)} @ ${decimalText(last.average)}`
        }`,
      );
    }
  }
  const wrongAmounts = new Finding(
    'position_updated events whose quantity or average differs from the replay',
  );
  const updates: { where: string; subject: string; data: Record<string, unknown> | undefined }[] = [
    ...outbox.rows
      .filter((row) => row.event_type === POSITION_UPDATED)
      .map((row) => ({ where: `row ${row.event_id}`, subject: row.aggregate_id, data: row.payload })),
    ...(streams.get(POSITION_UPDATED) ?? []).map((entry) => ({
      where: `entry ${entry.entryId}`,
      subject: entry.fields.subject ?? '',
      data: parseData(entry),
    })),
  ];
  for (const { where, subject, data } of updates) {
    const step = replayed.get(subject)?.[Number(data?.version) - 1];
    if (step === undefined) continue; // a version without its trade is reported above
    const quantity = typeof data?.quantity === 'string' ? data.quantity : '';
    const average = typeof data?.averagePrice === 'string' ? data.averagePrice : '';
    if (
      !/^-?\d+(\.\d{1,8})?$/.test(quantity) ||
      !/^-?\d+(\.\d{1,8})?$/.test(average) ||
      units(quantity) !== step.quantity ||
      units(average) !== step.average
    ) {
      wrongAmounts.add(`${where} ${subject} v${String(data?.version)}: ${quantity} @ ${average}`);
    }
  }

  // --- Server errors: a 5xx is expected only from a request that overlapped a fault (or its grace).
  const serverErrorsOutside = new Finding('5xx answers outside every fault window');
  for (const error of run.serverErrors ?? []) {
    const inFault = (run.faultWindows ?? []).some(
      (fault) => error.sentAt <= fault.end + FAULT_GRACE_MS && error.answeredAt >= fault.start,
    );
    if (!inFault)
      serverErrorsOutside.add(`${error.status} to a request sent at ${new Date(error.sentAt).toISOString()}`);
  }

  for (const finding of [
    acceptedMissing,
    acceptedWrong,
    acceptedTwice,
    strayRows,
    partialTrades,
    wrongEvents,
    badPositions,
    lost,
    duplicated,
    orphans,
    misplaced,
    notOnce,
    outOfOrder,
    gaps,
    oversold,
    wrongPositions,
    wrongAmounts,
    serverErrorsOutside,
  ]) {
    finding.report(problems);
  }
  const reporting =
    run.reporting === undefined
      ? undefined
      : checkReporting(run.trades, run.positions, run.reporting, problems);

  return {
    tradesInDatabase: trades.rows.length,
    positions: positions.rows.length,
    outboxRows: outbox.rows.length,
    outboxByStatus,
    streamEntries,
    lost: lost.count,
    duplicated: duplicated.count,
    outOfOrder: outOfOrder.count,
    gaps: gaps.count,
    orphans: orphans.count,
    wrongPositions: wrongPositions.count + wrongAmounts.count,
    oversold: oversold.count,
    serverErrorsOutsideFaults: serverErrorsOutside.count,
    ...(reporting === undefined ? {} : { reporting }),
    problems,
  };
}

/**
 * The reporting service against the trading database: every position equal (quantity, average price,
 * version, as exact decimal text), every trade in the ledger exactly once and as traded, and per
 * position the versions applied in apply order exactly 1, 2, 3, ... up to the view's version.
 */
export function checkReporting(
  trades: readonly TradeRow[],
  positions: readonly PositionRow[],
  reporting: ReportingRecord,
  problems: string[],
): ReportingVerification {
  const differing = new Finding('reporting positions that differ from the trading positions');
  const reported = new Map(reporting.positions.map((row) => [positionKey(row.account_id, row.symbol), row]));
  for (const position of positions) {
    const key = positionKey(position.account_id, position.symbol);
    const view = reported.get(key);
    reported.delete(key);
    const show = (row: PositionRow) => `${row.quantity} @ ${row.average_price} v${row.version}`;
    if (view === undefined) differing.add(`${key}: trading ${show(position)}, reporting none`);
    else if (
      view.quantity !== position.quantity ||
      view.average_price !== position.average_price ||
      view.version !== position.version
    )
      differing.add(`${key}: trading ${show(position)}, reporting ${show(view)}`);
  }
  for (const [key, view] of reported)
    differing.add(
      `${key}: trading none, reporting ${view.quantity} @ ${view.average_price} v${view.version}`,
    );

  const ledgerOf = new Map<string, LedgerRow[]>();
  for (const row of reporting.ledger)
    ledgerOf.set(row.trade_id, [...(ledgerOf.get(row.trade_id) ?? []), row]);
  const missing = new Finding('trades missing from the reporting ledger');
  const duplicated = new Finding('trades in the reporting ledger more than once');
  const wrong = new Finding('reporting ledger rows of no trade or unlike their trade');
  for (const trade of trades) {
    const rows = ledgerOf.get(trade.id) ?? [];
    ledgerOf.delete(trade.id);
    const [row] = rows;
    if (row === undefined) {
      missing.add(trade.id);
      continue;
    }
    if (rows.length > 1) duplicated.add(`${trade.id} x${rows.length}`, rows.length - 1);
    if (
      row.account_id !== trade.account_id ||
      row.symbol !== trade.symbol ||
      row.side !== trade.side ||
      units(row.quantity) !== units(trade.quantity) ||
      units(row.price) !== units(trade.price) ||
      row.position_version !== trade.position_version
    )
      wrong.add(`${trade.id}: ledger ${row.side} ${row.quantity} @ ${row.price} v${row.position_version}`);
  }
  for (const [id, rows] of ledgerOf) wrong.add(`${id}: no such trade`, rows.length);

  const appliesOf = new Map<string, ApplyRow[]>();
  for (const apply of reporting.applies) {
    const key = positionKey(apply.account_id, apply.symbol);
    appliesOf.set(key, [...(appliesOf.get(key) ?? []), apply]);
  }
  const outOfTurn = new Finding(
    'position versions applied out of turn (the i-th apply of a position not version i)',
  );
  for (const [key, applies] of appliesOf) {
    applies.forEach((apply, i) => {
      if (apply.version !== i + 1)
        outOfTurn.add(`${key}: apply ${i + 1} was v${apply.version}, by ${apply.consumer}`);
    });
  }
  const incomplete = new Finding('reporting positions whose apply record does not run 1..their version');
  for (const view of reporting.positions) {
    const key = positionKey(view.account_id, view.symbol);
    const count = appliesOf.get(key)?.length ?? 0;
    if (count !== view.version) incomplete.add(`${key}: v${view.version}, ${count} applies recorded`);
  }

  for (const finding of [differing, missing, duplicated, wrong, outOfTurn, incomplete])
    finding.report(problems);
  return {
    positions: reporting.positions.length,
    ledgerRows: reporting.ledger.length,
    applies: reporting.applies.length,
    consumersApplying: new Set(reporting.applies.map((apply) => apply.consumer)).size,
    positionsDiffering: differing.count,
    ledgerMissing: missing.count,
    ledgerDuplicated: duplicated.count,
    ledgerWrong: wrong.count,
    appliedOutOfTurn: outOfTurn.count,
    applyRecordIncomplete: incomplete.count,
  };
}
