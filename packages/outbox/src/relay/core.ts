import type { EventEmitter } from 'node:events';
import { backoffDelay } from '../backoff.ts';
import {
  compareEntryIds,
  type LostOutcome,
  type PublishFence,
  type PublishOutcome,
  type StreamCheck,
  type StreamVerdict,
} from '../publisher.ts';
import { type RepairResult, type StreamRepair, streamKey } from '../recovery.ts';
import { PARTITION_COUNT } from '../schema.ts';
import type { ClaimedRow, StreamRecord, StreamRecordRow } from '../sql/relayQueries.ts';
import type { ResolvedRelayOptions } from './options.ts';
import type { MarkBatch, Rebalance, Rejection } from './session.ts';

/** What the relay reports; the Prometheus adapter and logs subscribe. */
export interface RelayEvents {
  /** A batch went out (entirely or in part). `createdAt` is each published event's write time. */
  published: [{ events: { type: string; stream: string; createdAt: Date }[]; ackedAt: Date }];
  /** Size of each claimed batch. */
  batch: [{ size: number }];
  /**
   * Something went wrong; `kind` says whose fault: broker (unreachable), event (refused), database.
   * (Not called 'error', which EventEmitter throws when nobody listens.)
   */
  fault: [{ kind: 'broker' | 'event' | 'database'; error: Error; count: number }];
  /** Events that used their last attempt and are now FAILED. */
  failed: [{ rowIds: string[] }];
  /** The broker no longer holds entries it acknowledged: found, and (as far as the outbox still can) repaired. */
  dataLoss: [StreamRepair];
  /** The broker refused this relay's call: another relay owns one of its partitions now. */
  fenced: [{ partitions: number[] }];
  /** This relay ended a frozen relay's session to take its partitions over. */
  takeover: [{ pid: number; partitions: number[] }];
  broker: [{ up: boolean }];
  partitions: [{ partitions: number[]; leader: boolean }];
  retention: [{ deleted: number }];
  running: [{ running: boolean }];
}

/** Where the core reports: the relay's own `emit`. */
export type Emit = EventEmitter<RelayEvents>['emit'];

type ConfirmedEvent = { eventId: string; stream: string };

/**
 * What the relay's I/O shell does next. The shell runs one command at a time and hands its result to
 * the matching method of the core: `connect` → `connected`, `rebalance` → `rebalanced`, and so on.
 */
export type RelayCommand =
  | { kind: 'connect' }
  | { kind: 'disconnect' }
  /** Wait `ms`; with `byNotify` a NOTIFY or `wake()` ends the wait early. */
  | { kind: 'sleep'; ms: number; byNotify: boolean }
  | { kind: 'rebalance'; stallTimeoutMs: number }
  /** Fences and markers of the streams held, after a rebalance → `verified`. */
  | { kind: 'verify'; checks: StreamCheck[] }
  | { kind: 'retain' }
  /** Not awaited: the publisher may forget these ids. No result. */
  | { kind: 'confirm'; events: ConfirmedEvent[] }
  | { kind: 'ping' }
  /** Check the losses again and read their durable records → `rechecked`. */
  | { kind: 'recheck'; checks: StreamCheck[]; partitions: number[] }
  /** Set markers the broker lost while keeping the stream → `restored`. */
  | { kind: 'restore'; checks: StreamCheck[] }
  | { kind: 'repair'; losses: LostOutcome[] }
  | { kind: 'claim'; partitions: number[]; limit: number; exclude: string[] }
  /** Publish the rows while marking the last batch, both at once → `marked` and `published`. */
  | { kind: 'publish'; rows: ClaimedRow[]; mark: MarkBatch | undefined }
  | { kind: 'mark'; batch: MarkBatch }
  | { kind: 'reject'; rejections: Rejection[] }
  | { kind: 'stop' };

/** The broker refused a call: this relay lost a partition it believed it owned. */
export class FencedError extends Error {
  constructor(readonly partitions: number[]) {
    super(
      `the broker fenced this relay off partitions ${partitions.join(', ')}: another relay owns them now`,
    );
  }
}

/**
 * Confirmations go out at most this often: at low rates every round publishes a few events, and one
 * confirmation call per round would double the relay's calls to the broker.
 */
export const CONFIRM_INTERVAL_MS = 1000;

type CoreOptions = Pick<
  ResolvedRelayOptions,
  | 'batchSize'
  | 'pollIntervalMs'
  | 'retryBackoff'
  | 'outageBackoff'
  | 'rebalanceIntervalMs'
  | 'retentionSeconds'
  | 'retentionIntervalMs'
  | 'retentionBatchSize'
  | 'confirmDelayMs'
  | 'stallTimeoutMs'
>;

/**
 * The relay's decisions, without I/O: it holds what the relay knows (partitions, epochs, what the
 * broker acknowledged, the batch awaiting its mark, ids awaiting confirmation), says what to do next,
 * and learns from each result. Time comes in as `now`; nothing here waits, so any interleaving of
 * results, wake-ups and clock readings can be replayed in a test.
 *
 * One round: rebalance when due (after marking), verify, retention when due, confirmations, a ping
 * while the broker is down, repairs of lost data, then claim and publish a batch while the last one
 * is marked. After a full batch, or a wake-up during the round, the next round starts at once;
 * otherwise the relay marks what it holds and sleeps until a NOTIFY, the poll or the next rebalance.
 */
export class RelayCore {
  private connectedNow = false;
  private stopping = false;
  private woken = false;
  private brokerUp = true;
  private outageCount = 0;
  private databaseFailures = 0;
  private nextRebalance = 0;
  private nextRetention = 0;
  private nextConfirm = 0;
  private rotation = 0;
  /** Rounds end after a publish, a failed ping or repair, or a failure: rebalance and retention run once per round. */
  private round = 0;
  private rebalancedInRound = -1;
  private retainedInRound = -1;
  /** The round ended without more to do at once: mark, then sleep. */
  private roundEnded = false;
  private held: number[] = [];
  private leader = false;
  /** Commands a result called for; they run before the next round goes on. */
  private followUps: RelayCommand[] = [];
  /** The last batch's acknowledged events: their mark runs while the next batch is with the broker. */
  private unmarked: MarkBatch | undefined;
  /** Published ids waiting for `confirmDelayMs` before the publisher may forget them, oldest first. */
  private readonly unconfirmed: { due: number; events: ConfirmedEvent[] }[] = [];
  /** The ownership epoch of each partition held: carried with every publish, checked by the broker. */
  private readonly epochs = new Map<number, number>();
  /**
   * Per stream and partition held, the newest entry id the broker acknowledged: a broker whose marker
   * is older has lost data since. Starts from the durable record when a partition is taken.
   */
  private readonly acknowledged = new Map<string, string>();
  /** Streams and partitions where the broker lost data, waiting for their repair. */
  private readonly losses = new Map<string, LostOutcome>();

  /** What every publish carries; the publisher reads it at call time. */
  readonly fence: PublishFence = {
    epochs: this.epochs,
    expected: (stream, partition) => this.acknowledged.get(streamKey(stream, partition)),
  };

  constructor(
    private readonly options: CoreOptions,
    private readonly emit: Emit,
    private readonly random: () => number = Math.random,
  ) {}

  get partitions(): number[] {
    return this.held;
  }

  get isLeader(): boolean {
    return this.leader;
  }

  get ownsAllPartitions(): boolean {
    return this.held.length === PARTITION_COUNT;
  }

  get isBrokerUp(): boolean {
    return this.brokerUp;
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  start(): void {
    this.stopping = false;
  }

  /** Finish the batch in hand, then `stop`. */
  stop(): void {
    this.stopping = true;
  }

  wake(): void {
    this.woken = true;
  }

  next(now: number): RelayCommand {
    for (;;) {
      const followUp = this.followUps.shift();
      if (followUp === undefined) break;
      if (!(this.stopping && followUp.kind === 'sleep')) return followUp;
    }
    if (this.stopping)
      return this.unmarked !== undefined && this.connectedNow ? this.markCommand() : { kind: 'stop' };
    if (!this.connectedNow) return { kind: 'connect' };
    if (this.roundEnded) {
      if (this.unmarked !== undefined) return this.markCommand();
      this.roundEnded = false;
      if (!this.woken) {
        return {
          kind: 'sleep',
          ms: Math.min(this.options.pollIntervalMs, Math.max(0, this.nextRebalance - now)),
          byNotify: true,
        };
      }
      this.woken = false;
    }
    if (now >= this.nextRebalance && this.rebalancedInRound !== this.round) {
      // Partitions may change hands: their events must be marked first.
      if (this.unmarked !== undefined) return this.markCommand();
      this.rebalancedInRound = this.round;
      return { kind: 'rebalance', stallTimeoutMs: this.options.stallTimeoutMs };
    }
    const { retentionSeconds } = this.options;
    if (
      this.leader &&
      retentionSeconds > 0 &&
      now >= this.nextRetention &&
      this.retainedInRound !== this.round
    ) {
      this.retainedInRound = this.round;
      return { kind: 'retain' };
    }
    const confirm = this.dueConfirmations(now, false);
    if (confirm !== undefined) return confirm;
    if (!this.brokerUp) return { kind: 'ping' };
    if (this.losses.size > 0) {
      if (this.unmarked !== undefined) return this.markCommand();
      const losses = [...this.losses.values()];
      return {
        kind: 'recheck',
        // Look again: the marker may be gone while the stream is whole (only the state key was lost).
        checks: losses.map(({ stream, partition }) => ({
          stream,
          partition,
          expected: this.acknowledged.get(streamKey(stream, partition)),
        })),
        partitions: losses.map((loss) => loss.partition),
      };
    }
    if (this.held.length === 0) {
      this.endRound(false);
      return this.next(now);
    }
    // Each claim starts at the next partition, so a busy partition cannot starve the others.
    const start = this.rotation++ % this.held.length;
    return {
      kind: 'claim',
      partitions: [...this.held.slice(start), ...this.held.slice(0, start)],
      limit: this.options.batchSize,
      // The last batch is acknowledged but not marked yet: leave its events out of this claim.
      exclude: this.unmarked?.acks.map((ack) => ack.rowId) ?? [],
    };
  }

  /** A new session starts a round of its own, with its rebalance due at once. */
  connected(): void {
    this.connectedNow = true;
    this.nextRebalance = 0;
    this.round++;
  }

  /** The command failed (the database, or the broker's fence): drop the session and back off. */
  fail(error: unknown): void {
    if (error instanceof FencedError) this.emit('fenced', { partitions: error.partitions });
    else this.emit('fault', { kind: 'database', error: asError(error), count: 1 });
    // Unmarked events stay PENDING and are offered again; the publisher's dedupe drops them.
    this.unmarked = undefined;
    this.roundEnded = false;
    this.round++;
    this.sessionClosed();
    this.followUps = [
      { kind: 'disconnect' },
      {
        kind: 'sleep',
        ms: backoffDelay(this.options.outageBackoff, this.databaseFailures++, this.random),
        byNotify: false,
      },
    ];
  }

  /** The session is gone, and the partitions with it: whoever takes them next starts from the durable records. */
  sessionClosed(): void {
    this.connectedNow = false;
    this.held = [];
    this.leader = false;
    this.epochs.clear();
    this.acknowledged.clear();
    this.losses.clear();
  }

  slept(byNotify: boolean): void {
    if (byNotify) this.woken = false;
  }

  rebalanced(result: Rebalance, now: number): void {
    for (const takeover of result.takeovers) this.emit('takeover', takeover);
    this.release(result.released);
    for (const { partition, epoch } of result.epochs) this.epochs.set(partition, epoch);
    for (const record of result.records)
      this.acknowledged.set(streamKey(record.stream, record.partition), record.last_entry_id);
    this.held = result.partitions;
    this.leader = result.leader;
    this.databaseFailures = 0;
    this.nextRebalance = now + this.options.rebalanceIntervalMs;
    this.emit('partitions', { partitions: this.held, leader: this.leader });
    // Quiet streams too: a loss is found within a rebalance interval, not at the next event.
    if (this.brokerUp && this.acknowledged.size > 0) {
      const checks = [...this.acknowledged].map(([key, expected]) => {
        const [partition = '', stream = ''] = key.split('\n');
        return { stream, partition: Number(partition), expected };
      });
      this.followUps.push({ kind: 'verify', checks });
    }
  }

  verified(checks: StreamCheck[], verdicts: StreamVerdict[]): void {
    const fenced: number[] = [];
    verdicts.forEach((verdict, index) => {
      const check = checks[index] as StreamCheck;
      if (verdict.status === 'fenced') fenced.push(check.partition);
      else if (verdict.status === 'lost' || verdict.status === 'unmarked')
        this.losses.set(streamKey(check.stream, check.partition), asLoss(check, verdict));
    });
    if (fenced.length > 0) this.fail(new FencedError(fenced));
  }

  retained(deleted: number, now: number): void {
    if (deleted > 0) this.emit('retention', { deleted });
    // A full batch: more is due at once (one statement per round).
    this.nextRetention =
      deleted < this.options.retentionBatchSize ? now + this.options.retentionIntervalMs : 0;
  }

  pinged(answered: boolean): void {
    if (answered) {
      this.setBroker(true);
      return;
    }
    this.round++;
    this.followUps.push({
      kind: 'sleep',
      ms: backoffDelay(this.options.outageBackoff, this.outageCount++, this.random),
      byNotify: false,
    });
  }

  rechecked(checks: StreamCheck[], verdicts: StreamVerdict[], records: StreamRecordRow[]): void {
    const published = new Map(records.map((r) => [streamKey(r.stream, r.partition), Number(r.published)]));
    const confirmed: LostOutcome[] = [];
    const restores: StreamCheck[] = [];
    for (const [index, verdict] of verdicts.entries()) {
      const check = checks[index] as StreamCheck;
      const key = streamKey(check.stream, check.partition);
      if (verdict.status === 'fenced') {
        this.fail(new FencedError([check.partition]));
        return;
      }
      if (verdict.status === 'unavailable') {
        this.brokerTrouble(verdict.error, 1);
        return;
      }
      if (verdict.status === 'lost') confirmed.push(verdict);
      else if (verdict.status === 'unmarked') restores.push({ ...check, count: published.get(key) ?? 0 });
      else this.losses.delete(key);
    }
    if (restores.length > 0) this.followUps.push({ kind: 'restore', checks: restores });
    if (confirmed.length > 0) this.followUps.push({ kind: 'repair', losses: confirmed });
  }

  restored(checks: StreamCheck[], verdicts: StreamVerdict[]): void {
    if (verdicts.some((verdict) => verdict.status !== 'ok')) {
      this.brokerTrouble('the marker could not be restored', 1);
      return;
    }
    for (const check of checks) this.losses.delete(streamKey(check.stream, check.partition));
  }

  repaired(losses: LostOutcome[], result: RepairResult, now: number): void {
    if (result.status === 'fenced') {
      this.fail(new FencedError(losses.map((loss) => loss.partition)));
      return;
    }
    if (result.status === 'unavailable') {
      this.brokerTrouble(result.error, losses.length);
      return;
    }
    for (const repaired of result.repairs) {
      const key = streamKey(repaired.stream, repaired.partition);
      this.acknowledged.set(key, repaired.marker);
      this.losses.delete(key);
      this.emit('dataLoss', repaired);
    }
    if (result.republished.length > 0)
      this.unconfirmed.push({ due: now + this.options.confirmDelayMs, events: result.republished });
  }

  claimed(rows: ClaimedRow[]): void {
    this.databaseFailures = 0;
    if (rows.length === 0) {
      this.endRound(false);
      return;
    }
    this.emit('batch', { size: rows.length });
    // The broker publishes this batch while the database marks the last one. Redis runs one
    // connection's calls in order, so this batch still lands after the last.
    const mark = this.unmarked;
    this.unmarked = undefined;
    this.followUps.push({ kind: 'publish', rows, mark });
  }

  /**
   * Sorts a publish's outcomes. Returns nothing; a stale owner drops its batch whole (the new owner
   * publishes it, and the journal drops repeats).
   */
  published(rows: ClaimedRow[], outcomes: PublishOutcome[], ackedAt: Date): void {
    const acks: MarkBatch['acks'] = [];
    const rejections: Rejection[] = [];
    const fenced = new Set<number>();
    let unavailable: string | undefined;
    let unavailableCount = 0;
    let held = 0;
    outcomes.forEach((outcome, index) => {
      const row = rows[index] as ClaimedRow;
      switch (outcome.status) {
        case 'published':
          acks.push({
            rowId: row.id,
            entryId: outcome.entryId,
            eventId: row.event_id,
            stream: outcome.stream,
            row,
          });
          break;
        case 'fenced':
          fenced.add(row.partition);
          break;
        case 'lost':
          this.losses.set(streamKey(outcome.stream, outcome.partition), outcome);
          held++;
          break;
        case 'rejected':
          rejections.push({
            rowId: row.id,
            error: outcome.error,
            delayMs: backoffDelay(this.options.retryBackoff, row.attempts, this.random),
          });
          break;
        case 'unavailable':
          unavailable = outcome.error;
          unavailableCount++;
          break;
        case 'held':
          held++;
      }
    });
    if (fenced.size > 0) {
      this.fail(new FencedError([...fenced]));
      return;
    }
    if (acks.length > 0) {
      // One record per stream and partition, not per event: it feeds both the mark and the fence.
      const records = streamRecords(acks);
      for (const record of records) {
        const key = streamKey(record.stream, record.partition);
        const known = this.acknowledged.get(key);
        if (known === undefined || compareEntryIds(record.lastEntryId, known) > 0)
          this.acknowledged.set(key, record.lastEntryId);
      }
      this.unmarked = { acks, records, ackedAt };
    }
    // Refusals are recorded before the next claim, which must see their aggregates as held back.
    if (rejections.length > 0) this.followUps.push({ kind: 'reject', rejections });
    if (unavailable !== undefined) {
      this.emit('fault', { kind: 'broker', error: new Error(unavailable), count: unavailableCount });
      this.setBroker(false);
      this.endRound(false);
      return;
    }
    this.setBroker(true);
    // More is ready at once after a full batch, or when the publisher held events back behind an
    // earlier event of their aggregate that went out in this call (in a cluster, an aggregate whose
    // events span slots advances one slot per call). Events held behind a refusal wait for its retry.
    this.endRound(rows.length === this.options.batchSize || held > 0);
  }

  marked(batch: MarkBatch, now: number): void {
    this.emit('published', {
      events: batch.acks.map((ack) => ({
        type: ack.row.event_type,
        stream: ack.stream,
        createdAt: ack.row.created_at,
      })),
      ackedAt: batch.ackedAt,
    });
    // The marks are committed (synchronously: a mark lost in a database crash after the journal forgot
    // its id would mean a second entry), so the publisher may forget these ids after the delay.
    this.unconfirmed.push({
      due: now + this.options.confirmDelayMs,
      events: batch.acks.map(({ eventId, stream }) => ({ eventId, stream })),
    });
  }

  rejected(rejections: Rejection[], statuses: { id: string; status: string }[]): void {
    this.emit('fault', {
      kind: 'event',
      error: new Error(rejections[0]?.error ?? 'rejected'),
      count: rejections.length,
    });
    const failed = statuses.filter((row) => row.status === 'FAILED').map((row) => row.id);
    if (failed.length > 0) this.emit('failed', { rowIds: failed });
  }

  /**
   * The confirmations due, at most once per CONFIRM_INTERVAL_MS; with `all` (on stop) every
   * unconfirmed id, due or not.
   */
  dueConfirmations(now: number, all: boolean): { kind: 'confirm'; events: ConfirmedEvent[] } | undefined {
    if (!all && now < this.nextConfirm) return undefined;
    this.nextConfirm = now + CONFIRM_INTERVAL_MS;
    const dueBy = all ? Infinity : now;
    const events: ConfirmedEvent[] = [];
    while (this.unconfirmed.length > 0 && (this.unconfirmed[0]?.due ?? Infinity) <= dueBy) {
      events.push(...(this.unconfirmed.shift()?.events ?? []));
    }
    return events.length > 0 ? { kind: 'confirm', events } : undefined;
  }

  private markCommand(): RelayCommand {
    const batch = this.unmarked as MarkBatch;
    this.unmarked = undefined;
    return { kind: 'mark', batch };
  }

  /** Woken during the round, the commit may be one the claim missed: claim again at once, as after a full batch. */
  private endRound(more: boolean): void {
    this.round++;
    if (more && this.brokerUp) return;
    if (this.woken && this.brokerUp && this.unmarked !== undefined) {
      this.woken = false;
      return;
    }
    this.roundEnded = true;
  }

  private release(partitions: number[]): void {
    const released = new Set(partitions);
    for (const partition of partitions) this.epochs.delete(partition);
    for (const map of [this.acknowledged, this.losses]) {
      for (const key of map.keys()) if (released.has(Number(key.split('\n')[0]))) map.delete(key);
    }
  }

  /** The broker failed a repair step: back off as for an outage and try again. */
  private brokerTrouble(error: string, count: number): void {
    this.followUps = this.followUps.filter(
      (command) => command.kind !== 'restore' && command.kind !== 'repair',
    );
    this.emit('fault', { kind: 'broker', error: new Error(error), count });
    this.setBroker(false);
    this.round++;
  }

  private setBroker(up: boolean): void {
    if (up) this.outageCount = 0;
    if (up === this.brokerUp) return;
    this.brokerUp = up;
    this.emit('broker', { up });
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function asLoss(check: StreamCheck, verdict: LostOutcome | { status: 'unmarked' }): LostOutcome {
  if (verdict.status === 'lost') return verdict;
  return { status: 'lost', stream: check.stream, partition: check.partition, marker: null, count: 0 };
}

/** Per stream and partition, the newest of a batch's acknowledged entries, and how many there were. */
function streamRecords(acks: MarkBatch['acks']): StreamRecord[] {
  const records = new Map<string, StreamRecord>();
  for (const ack of acks) {
    const key = streamKey(ack.stream, ack.row.partition);
    const record = records.get(key);
    if (record === undefined) {
      records.set(key, {
        stream: ack.stream,
        partition: ack.row.partition,
        lastEntryId: ack.entryId,
        lastEventId: ack.eventId,
        count: 1,
      });
      continue;
    }
    record.count++;
    if (compareEntryIds(ack.entryId, record.lastEntryId) > 0) {
      record.lastEntryId = ack.entryId;
      record.lastEventId = ack.eventId;
    }
  }
  return [...records.values()];
}
