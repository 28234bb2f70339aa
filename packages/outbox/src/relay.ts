import { EventEmitter } from 'node:events';
import pg from 'pg';
import { type Backoff, backoffDelay } from './backoff.ts';
import { invalidOption } from './errors.ts';
import {
  booleanOption,
  nonNegativeInteger,
  type OutboxOptions,
  positiveInteger,
  type ResolvedOutboxOptions,
  resolveOutboxOptions,
} from './options.ts';
import { lockNamespace, PartitionOwnership } from './partitions.ts';
import { compareEntryIds, type LostOutcome, type Publisher, type PublishFence } from './publisher.ts';
import { repairStreams, type StreamRepair, streamKey, toPublishable } from './recovery.ts';
import { queryRows } from './sql/client.ts';
import {
  type ClaimedRow,
  claimEventsQuery,
  deleteOnPublishQuery,
  deletePublishedQuery,
  markPublishedQuery,
  markRejectedQuery,
  type StreamRecord,
  type StreamRecordRow,
  streamRecordsQuery,
  takePartitionsQuery,
} from './sql/relayQueries.ts';

export interface RelayOptions extends OutboxOptions {
  /** PostgreSQL connection string for the relay's own session (it holds its partition locks). */
  connectionString: string;
  /** Where events go. */
  publisher: Publisher;
  /**
   * Events claimed and published per round trip.
   * @defaultValue 500
   */
  batchSize?: number;
  /**
   * Longest wait between two looks at the table when no NOTIFY arrives (lost notifications, or a
   * pooler without LISTEN). After a full batch the relay looks again at once.
   * @defaultValue 1000
   */
  pollIntervalMs?: number;
  /**
   * LISTEN for the writer's NOTIFY to publish right after each commit.
   * @defaultValue true
   */
  listen?: boolean;
  /**
   * Attempts an event the broker refuses gets before it becomes FAILED. Broker outages spend none.
   * @defaultValue 10
   */
  maxAttempts?: number;
  /**
   * Delay before retrying an event the broker refused, growing with its attempts.
   * @defaultValue { initialMs: 1000, maxMs: 300000 }
   */
  retryBackoff?: Backoff;
  /**
   * Delay between tries while the broker or the database is unreachable.
   * @defaultValue { initialMs: 100, maxMs: 5000 }
   */
  outageBackoff?: Backoff;
  /**
   * How often the relay recounts the live relays and moves towards its fair share of partitions.
   * @defaultValue 2000
   */
  rebalanceIntervalMs?: number;
  /**
   * Delete each event in the statement that would mark it PUBLISHED, instead of keeping it for
   * `retentionSeconds`. The stream entry is then the event's only record (no `stream_entry_id`, no
   * PUBLISHED count), and the database does about half the work per event: a delete writes no
   * new row version and no index entries. Ordering and dedupe are unchanged; retention still removes
   * rows published before the switch.
   * @defaultValue false
   */
  deletePublished?: boolean;
  /**
   * PUBLISHED events older than this are deleted (by the leader relay, in small batches). 0 keeps them.
   * @defaultValue 604800 (7 days)
   */
  retentionSeconds?: number;
  /**
   * Rows deleted per retention statement; one statement runs between two publish rounds.
   * @defaultValue 2000
   */
  retentionBatchSize?: number;
  /**
   * Pause between retention sweeps once nothing old is left.
   * @defaultValue 60000
   */
  retentionIntervalMs?: number;
  /**
   * How long after its PUBLISHED mark committed an event id stays at least in the publisher's dedupe
   * journal before the relay tells the publisher to forget it (confirmations go out once a second, so
   * up to a second longer). The delay covers a publish still in flight from a relay that lost its
   * session (its call times out long before); ids never confirmed expire with the journal's window.
   * @defaultValue 5000
   */
  confirmDelayMs?: number;
  /**
   * Server-side limit for any one relay statement.
   * @defaultValue 30000
   */
  statementTimeoutMs?: number;
  /**
   * A relay whose database session has been idle this long while its partitions have events due for
   * as long (a frozen process: GC pause, SIGSTOP, paused VM) has its session ended by another relay,
   * which takes the partitions over; the broker's fence refuses whatever the frozen one sends when it
   * wakes. Must exceed twice the longest pause of a live relay (rebalance interval, outage backoff).
   * Ending another session needs the same database role or `pg_signal_backend`. 0 turns it off.
   * @defaultValue 15000, or twice the longest pause when that is more
   */
  stallTimeoutMs?: number;
}

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

interface ResolvedRelayOptions extends ResolvedOutboxOptions {
  connectionString: string;
  publisher: Publisher;
  batchSize: number;
  pollIntervalMs: number;
  listen: boolean;
  maxAttempts: number;
  retryBackoff: Backoff;
  outageBackoff: Backoff;
  rebalanceIntervalMs: number;
  deletePublished: boolean;
  retentionSeconds: number;
  retentionBatchSize: number;
  retentionIntervalMs: number;
  confirmDelayMs: number;
  statementTimeoutMs: number;
  stallTimeoutMs: number;
}

function resolveBackoff(field: string, value: Backoff | undefined, fallback: Backoff): Backoff {
  const initialMs = positiveInteger(`${field}.initialMs`, value?.initialMs, fallback.initialMs);
  const maxMs = positiveInteger(`${field}.maxMs`, value?.maxMs, fallback.maxMs);
  if (maxMs < initialMs) throw invalidOption(`${field}.maxMs`, 'must not be below initialMs');
  return { initialMs, maxMs };
}

export function resolveRelayOptions(options: RelayOptions): ResolvedRelayOptions {
  if (typeof options.connectionString !== 'string' || options.connectionString === '') {
    throw invalidOption('connectionString', 'is required');
  }
  if (options.publisher === undefined || typeof options.publisher.publish !== 'function') {
    throw invalidOption('publisher', 'is required');
  }
  const resolved: ResolvedRelayOptions = {
    ...resolveOutboxOptions(options),
    connectionString: options.connectionString,
    publisher: options.publisher,
    batchSize: positiveInteger('batchSize', options.batchSize, 500, 10_000),
    pollIntervalMs: positiveInteger('pollIntervalMs', options.pollIntervalMs, 1000),
    listen: booleanOption('listen', options.listen, true),
    maxAttempts: positiveInteger('maxAttempts', options.maxAttempts, 10),
    retryBackoff: resolveBackoff('retryBackoff', options.retryBackoff, { initialMs: 1000, maxMs: 300_000 }),
    outageBackoff: resolveBackoff('outageBackoff', options.outageBackoff, { initialMs: 100, maxMs: 5000 }),
    rebalanceIntervalMs: positiveInteger('rebalanceIntervalMs', options.rebalanceIntervalMs, 2000),
    deletePublished: booleanOption('deletePublished', options.deletePublished, false),
    retentionSeconds: nonNegativeInteger('retentionSeconds', options.retentionSeconds, 7 * 24 * 3600),
    retentionBatchSize: positiveInteger('retentionBatchSize', options.retentionBatchSize, 2000),
    retentionIntervalMs: positiveInteger('retentionIntervalMs', options.retentionIntervalMs, 60_000),
    confirmDelayMs: nonNegativeInteger('confirmDelayMs', options.confirmDelayMs, 5000),
    statementTimeoutMs: positiveInteger('statementTimeoutMs', options.statementTimeoutMs, 30_000),
    stallTimeoutMs: 0,
  };
  // A live relay can leave its session idle for a rebalance interval or an outage backoff step.
  const longestPause = Math.max(resolved.rebalanceIntervalMs, resolved.outageBackoff.maxMs);
  resolved.stallTimeoutMs = nonNegativeInteger(
    'stallTimeoutMs',
    options.stallTimeoutMs,
    Math.max(15_000, 2 * longestPause),
  );
  if (resolved.stallTimeoutMs > 0 && resolved.stallTimeoutMs < 2 * longestPause) {
    throw invalidOption(
      'stallTimeoutMs',
      `must be 0 or at least twice the longer of rebalanceIntervalMs and outageBackoff.maxMs (${2 * longestPause})`,
    );
  }
  return resolved;
}

/**
 * Confirmations go out at most this often: at low rates every round publishes a few events, and one
 * confirmation call per round would double the relay's calls to the broker.
 */
const CONFIRM_INTERVAL_MS = 1000;

/** An event the broker acknowledged, with what its mark needs. */
interface Acknowledged {
  rowId: string;
  entryId: string;
  eventId: string;
  stream: string;
  row: ClaimedRow;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** The broker refused a call: this relay lost a partition it believed it owned. */
class FencedError extends Error {
  constructor(readonly partitions: number[]) {
    super(
      `the broker fenced this relay off partitions ${partitions.join(', ')}: another relay owns them now`,
    );
  }
}

/** Per stream and partition, the newest of a batch's acknowledged entries, and how many there were. */
function streamRecords(acks: Acknowledged[]): StreamRecord[] {
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

/**
 * Moves outbox events to the broker: claim a batch from the partitions this relay owns, publish it in
 * one call, mark what the broker acknowledged. Survives broker and database outages by backing off
 * and retrying; never marks an event it has not seen acknowledged.
 */
export class OutboxRelay extends EventEmitter<RelayEvents> {
  private readonly options: ResolvedRelayOptions;
  private client: pg.Client | undefined;
  private ownership: PartitionOwnership | undefined;
  private loop: Promise<void> | undefined;
  private stopping = false;
  /** Ends the current idle wait early; set while the loop idles. */
  private interruptIdle: (() => void) | undefined;
  private woken = false;
  private brokerUp = true;
  private outageCount = 0;
  private databaseFailures = 0;
  private nextRebalance = 0;
  private nextRetention = 0;
  /**
   * The last batch's acknowledged events, not yet marked PUBLISHED: their mark runs on the database
   * while the next batch is with the broker.
   */
  private unmarked: { acks: Acknowledged[]; records: StreamRecord[]; ackedAt: Date } | undefined;
  /** Published ids waiting for `confirmDelayMs` before the publisher may forget them, oldest first. */
  private readonly unconfirmed: { due: number; events: { eventId: string; stream: string }[] }[] = [];
  private confirming: Promise<void> = Promise.resolve();
  private nextConfirm = 0;
  private rotation = 0;
  /** The ownership epoch of each partition held: carried with every publish, checked by the broker. */
  private readonly epochs = new Map<number, number>();
  /**
   * Per stream and partition held, the newest entry id the broker acknowledged: a broker whose marker
   * is older has lost data since. Starts from the durable record when a partition is taken.
   */
  private readonly acknowledged = new Map<string, string>();
  /** Streams and partitions where the broker lost data, waiting for their repair. */
  private readonly losses = new Map<string, LostOutcome>();
  private readonly fence: PublishFence = {
    epochs: this.epochs,
    expected: (stream, partition) => this.acknowledged.get(streamKey(stream, partition)),
  };

  constructor(options: RelayOptions) {
    super();
    this.options = resolveRelayOptions(options);
  }

  get running(): boolean {
    return this.loop !== undefined && !this.stopping;
  }

  get partitions(): number[] {
    return this.ownership?.partitions ?? [];
  }

  /** One relay at a time is the leader: it runs retention and reports the table-wide gauges. */
  get isLeader(): boolean {
    return this.ownership?.isLeader ?? false;
  }

  get isBrokerUp(): boolean {
    return this.brokerUp;
  }

  start(): void {
    if (this.loop !== undefined) return;
    this.stopping = false;
    this.loop = this.run();
    this.emit('running', { running: true });
  }

  /** Finishes the batch in hand, releases the partitions (by ending the session) and returns. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loop;
    this.loop = undefined;
    // Our own publishes have all returned, so nothing of ours is in flight: forget our ids now
    // rather than leave them to the journal's window.
    this.confirmDue(true);
    await this.confirming;
    await this.disconnect();
    this.emit('running', { running: false });
  }

  /**
   * Looks at the outbox now instead of at the next poll: what a NOTIFY does, without the round trip
   * through PostgreSQL. For writers in this relay's own process (createRelayWaker's `localRelay`).
   */
  wake(): void {
    this.woken = true;
    this.interruptIdle?.();
  }

  /** True while this relay owns every partition, so that waking it alone wakes every relay needed. */
  get ownsAllPartitions(): boolean {
    return this.ownership?.ownsAll ?? false;
  }

  /**
   * Waits for the timeout or a stop, and with `byNotify` also for a NOTIFY. Backoff waits are not
   * cut short by notifications, which keep coming during an outage.
   */
  private async idle(ms: number, byNotify = true): Promise<void> {
    if (this.stopping || (byNotify && this.woken)) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.interruptIdle = () => {
        if (!byNotify && !this.stopping) return;
        clearTimeout(timer);
        resolve();
      };
    });
    this.interruptIdle = undefined;
    if (byNotify) this.woken = false;
  }

  private async connect(): Promise<PartitionOwnership> {
    const { options } = this;
    const client = new pg.Client({
      connectionString: options.connectionString,
      application_name: 'outbox-relay',
      statement_timeout: options.statementTimeoutMs,
      // The client gives up a little after the server would, so a vanished server cannot hang us.
      query_timeout: options.statementTimeoutMs + 5000,
      connectionTimeoutMillis: 10_000,
      keepAlive: true,
    });
    // A dead connection rejects its queries; the loop then reconnects. The listener keeps the
    // 'error' event from crashing the process.
    client.on('error', () => {});
    client.on('notification', () => this.wake());
    this.client = client;
    await client.connect();
    if (options.listen) await client.query(`LISTEN ${options.channel}`);
    const ownership = new PartitionOwnership(client, lockNamespace(options.table));
    await ownership.join();
    this.ownership = ownership;
    this.nextRebalance = 0;
    return ownership;
  }

  private async disconnect(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.ownership?.reset();
    this.ownership = undefined;
    // The partitions go with the session; whoever takes them next starts from the durable records.
    this.epochs.clear();
    this.acknowledged.clear();
    this.losses.clear();
    if (client !== undefined) await client.end().catch(() => {});
  }

  private async run(): Promise<void> {
    const { options } = this;
    while (!this.stopping) {
      try {
        const ownership = this.ownership ?? (await this.connect());
        const now = Date.now();
        if (now >= this.nextRebalance) {
          // Partitions may change hands: their events must be marked first.
          await this.markUnmarked();
          if (options.stallTimeoutMs > 0) {
            for (const ended of await ownership.endStalled(options.table, options.stallTimeoutMs))
              this.emit('takeover', ended);
          }
          const { taken, released } = await ownership.rebalance();
          this.release(released);
          if (taken.length > 0) await this.take(taken);
          this.nextRebalance = now + options.rebalanceIntervalMs;
          this.emit('partitions', { partitions: ownership.partitions, leader: ownership.isLeader });
          // Quiet streams too: a loss is found within a rebalance interval, not at the next event.
          if (this.brokerUp) await this.verify();
        }
        if (ownership.isLeader && options.retentionSeconds > 0 && now >= this.nextRetention)
          await this.retain();
        this.databaseFailures = 0;

        this.confirmDue();
        if (!this.brokerUp && !(await this.brokerAnswers())) continue;
        if (this.losses.size > 0 && !(await this.repair())) continue;
        const more = ownership.partitions.length > 0 && (await this.publishBatch(ownership.partitions));
        if (more && this.brokerUp) continue;
        // Woken during this round: the commit may be one the claim missed. Claim again at once and
        // let this round's mark run beside the next publish, as after a full batch, instead of
        // making the new events wait for its commit.
        if (this.woken && this.brokerUp && this.unmarked !== undefined) {
          this.woken = false;
          continue;
        }
        await this.markUnmarked();
        await this.idle(Math.min(options.pollIntervalMs, Math.max(0, this.nextRebalance - Date.now())));
      } catch (error) {
        if (error instanceof FencedError) this.emit('fenced', { partitions: error.partitions });
        else this.emit('fault', { kind: 'database', error: asError(error), count: 1 });
        // Unmarked events stay PENDING and are offered again; the publisher's dedupe drops them.
        this.unmarked = undefined;
        await this.disconnect();
        if (!this.stopping)
          await this.idle(backoffDelay(options.outageBackoff, this.databaseFailures++), false);
      }
    }
    // Stopping after a full batch: mark it before the session (and the partitions) go.
    await this.markUnmarked().catch((error: unknown) => {
      this.unmarked = undefined;
      this.emit('fault', { kind: 'database', error: asError(error), count: 1 });
    });
  }

  /** Raises the epochs of partitions just taken and loads what the broker acknowledged there. */
  private async take(partitions: number[]): Promise<void> {
    const client = this.client as pg.Client;
    const { table } = this.options;
    for (const row of await queryRows<{ partition: number; epoch: string }>(
      client,
      takePartitionsQuery(table, partitions),
    ))
      this.epochs.set(row.partition, Number(row.epoch));
    for (const record of await queryRows<StreamRecordRow>(client, streamRecordsQuery(table, partitions)))
      this.acknowledged.set(streamKey(record.stream, record.partition), record.last_entry_id);
  }

  private release(partitions: number[]): void {
    const released = new Set(partitions);
    for (const partition of partitions) this.epochs.delete(partition);
    for (const map of [this.acknowledged, this.losses]) {
      for (const key of map.keys()) if (released.has(Number(key.split('\n')[0]))) map.delete(key);
    }
  }

  /** Checks fences and markers of every stream and partition held where the broker acknowledged something. */
  private async verify(): Promise<void> {
    const checks = [...this.acknowledged].map(([key, expected]) => {
      const [partition = '', stream = ''] = key.split('\n');
      return { stream, partition: Number(partition), expected };
    });
    if (checks.length === 0) return;
    const verdicts = await this.options.publisher.check(checks, this.epochs);
    const fenced: number[] = [];
    verdicts.forEach((verdict, index) => {
      const check = checks[index] as (typeof checks)[number];
      if (verdict.status === 'fenced') fenced.push(check.partition);
      else if (verdict.status === 'lost') this.losses.set(streamKey(check.stream, check.partition), verdict);
      else if (verdict.status === 'unmarked')
        this.losses.set(streamKey(check.stream, check.partition), {
          status: 'lost',
          stream: check.stream,
          partition: check.partition,
          marker: null,
          count: 0,
        });
    });
    if (fenced.length > 0) throw new FencedError(fenced);
  }

  /**
   * Publishes again what the broker lost, before anything newer of those partitions goes out (their
   * events are refused by the broker until then). Returns false when the broker could not finish it.
   */
  private async repair(): Promise<boolean> {
    await this.markUnmarked();
    const { publisher, table } = this.options;
    const client = this.client as pg.Client;
    const losses = [...this.losses.values()];
    // Look again: the marker may be gone while the stream is whole (only the state key was lost).
    const checks = losses.map(({ stream, partition }) => ({
      stream,
      partition,
      expected: this.acknowledged.get(streamKey(stream, partition)),
    }));
    const verdicts = await publisher.check(checks, this.epochs);
    const confirmed: LostOutcome[] = [];
    const records = new Map(
      (
        await queryRows<StreamRecordRow>(
          client,
          streamRecordsQuery(
            table,
            losses.map((loss) => loss.partition),
          ),
        )
      ).map((record) => [streamKey(record.stream, record.partition), record]),
    );
    for (const [index, verdict] of verdicts.entries()) {
      const check = checks[index] as (typeof checks)[number];
      const key = streamKey(check.stream, check.partition);
      if (verdict.status === 'fenced') throw new FencedError([check.partition]);
      if (verdict.status === 'unavailable') return this.brokerTrouble(verdict.error, 1);
      if (verdict.status === 'lost') confirmed.push(verdict);
      else if (verdict.status === 'unmarked') {
        const record = records.get(key);
        const restore = { ...check, count: Number(record?.published ?? 0) };
        const [restored] = await publisher.check([restore], this.epochs, true);
        if (restored?.status !== 'ok') return this.brokerTrouble('the marker could not be restored', 1);
        this.losses.delete(key);
      } else this.losses.delete(key);
    }
    if (confirmed.length === 0) return true;

    const result = await repairStreams(client, table, publisher, this.fence, confirmed);
    if (result.status === 'fenced') throw new FencedError(confirmed.map((loss) => loss.partition));
    if (result.status === 'unavailable') return this.brokerTrouble(result.error, confirmed.length);
    for (const repaired of result.repairs) {
      const key = streamKey(repaired.stream, repaired.partition);
      this.acknowledged.set(key, repaired.marker);
      this.losses.delete(key);
      this.emit('dataLoss', repaired);
    }
    if (result.republished.length > 0)
      this.unconfirmed.push({ due: Date.now() + this.options.confirmDelayMs, events: result.republished });
    return true;
  }

  /** The broker failed a repair step: back off as for an outage and try again. */
  private async brokerTrouble(error: string, count: number): Promise<boolean> {
    this.emit('fault', { kind: 'broker', error: new Error(error), count });
    this.setBroker(false);
    return false;
  }

  /** While the broker is down: one ping per backoff step instead of claiming batches. */
  private async brokerAnswers(): Promise<boolean> {
    if (await this.options.publisher.ping()) {
      this.setBroker(true);
      return true;
    }
    await this.idle(backoffDelay(this.options.outageBackoff, this.outageCount++), false);
    return false;
  }

  private setBroker(up: boolean): void {
    if (up) this.outageCount = 0;
    if (up === this.brokerUp) return;
    this.brokerUp = up;
    this.emit('broker', { up });
  }

  /**
   * Publishes one batch. Returns true when more events are ready at once: the batch was full, or the
   * publisher held some back behind an earlier event of their aggregate that went out in this call
   * (in a cluster, an aggregate whose events span slots advances one slot per call). Held events whose
   * predecessor was refused instead wait for its retry, so looking again cannot spin.
   */
  private async publishBatch(partitions: number[]): Promise<boolean> {
    const client = this.client as pg.Client;
    const { options } = this;
    // The last batch is acknowledged but not marked yet: leave its events out of this claim.
    const inFlight = this.unmarked?.acks.map((ack) => ack.rowId) ?? [];
    // Each claim starts at the next partition, so a busy partition cannot starve the others.
    const start = this.rotation++ % partitions.length;
    const order = [...partitions.slice(start), ...partitions.slice(0, start)];
    const rows = await queryRows<ClaimedRow>(
      client,
      claimEventsQuery(options.table, order, options.batchSize, inFlight),
    );
    if (rows.length === 0) {
      // Nothing new to publish beside it: mark the last batch now.
      await this.markUnmarked();
      return false;
    }
    this.emit('batch', { size: rows.length });
    // The broker publishes this batch while the database marks the last one. Redis runs one
    // connection's calls in order, so this batch still lands after the last.
    const publishing = options.publisher.publish(rows.map(toPublishable), { fence: this.fence });
    const marking = this.markUnmarked();
    const [outcomes] = await Promise.all([publishing, marking]);
    const ackedAt = new Date();

    const acks: Acknowledged[] = [];
    const rejected: { rowId: string; error: string; delayMs: number }[] = [];
    let unavailable: string | undefined;
    let unavailableCount = 0;
    let held = 0;
    const fenced = new Set<number>();
    outcomes.forEach((outcome, index) => {
      const row = rows[index] as ClaimedRow;
      if (outcome.status === 'published') {
        acks.push({
          rowId: row.id,
          entryId: outcome.entryId,
          eventId: row.event_id,
          stream: outcome.stream,
          row,
        });
      } else if (outcome.status === 'fenced') fenced.add(row.partition);
      else if (outcome.status === 'lost') {
        this.losses.set(streamKey(outcome.stream, outcome.partition), outcome);
        held++;
      } else if (outcome.status === 'rejected') {
        rejected.push({
          rowId: row.id,
          error: outcome.error,
          delayMs: backoffDelay(options.retryBackoff, row.attempts),
        });
      } else if (outcome.status === 'unavailable') {
        unavailable = outcome.error;
        unavailableCount++;
      } else {
        held++;
      }
    });
    // A stale owner drops its batch whole: the new owner publishes it (the journal drops repeats).
    if (fenced.size > 0) throw new FencedError([...fenced]);
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
    if (rejected.length > 0) {
      const marked = await queryRows<{ id: string; status: string }>(
        client,
        markRejectedQuery(
          options.table,
          rejected.map((r) => r.rowId),
          rejected.map((r) => r.error),
          rejected.map((r) => r.delayMs),
          options.maxAttempts,
        ),
      );
      this.emit('fault', {
        kind: 'event',
        error: new Error(rejected[0]?.error ?? 'rejected'),
        count: rejected.length,
      });
      const failed = marked.filter((row) => row.status === 'FAILED').map((row) => row.id);
      if (failed.length > 0) this.emit('failed', { rowIds: failed });
    }
    if (unavailable !== undefined) {
      this.emit('fault', { kind: 'broker', error: new Error(unavailable), count: unavailableCount });
      this.setBroker(false);
      await this.markUnmarked();
      return false;
    }
    this.setBroker(true);
    return rows.length === options.batchSize || held > 0;
  }

  /** Marks the last batch's acknowledged events PUBLISHED with their entry ids. */
  private async markUnmarked(): Promise<void> {
    const batch = this.unmarked;
    if (batch === undefined) return;
    this.unmarked = undefined;
    const { options } = this;
    const rowIds = batch.acks.map((ack) => ack.rowId);
    const { records } = batch;
    await (this.client as pg.Client).query(
      options.deletePublished
        ? deleteOnPublishQuery(options.table, rowIds, records)
        : markPublishedQuery(
            options.table,
            rowIds,
            batch.acks.map((ack) => ack.entryId),
            records,
          ),
    );
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
      due: Date.now() + options.confirmDelayMs,
      events: batch.acks.map(({ eventId, stream }) => ({ eventId, stream })),
    });
  }

  /**
   * Hands the due confirmations to the publisher, at most once per CONFIRM_INTERVAL_MS; with `all`
   * (on stop) every unconfirmed id at once, due or not.
   * Not awaited on the hot path, but chained so at most one confirmation call is in flight; a failed
   * one is dropped (the journal's window expires it).
   */
  private confirmDue(all = false): void {
    const now = Date.now();
    if (!all && now < this.nextConfirm) return;
    this.nextConfirm = now + CONFIRM_INTERVAL_MS;
    const dueBy = all ? Infinity : now;
    const due: { eventId: string; stream: string }[] = [];
    while (this.unconfirmed.length > 0 && (this.unconfirmed[0]?.due ?? Infinity) <= dueBy) {
      due.push(...(this.unconfirmed.shift()?.events ?? []));
    }
    if (due.length === 0) return;
    const { publisher } = this.options;
    this.confirming = this.confirming.then(() => publisher.confirm(due)).catch(() => {});
  }

  /** Deletes one batch of old PUBLISHED events; stays due while there is more. */
  private async retain(): Promise<void> {
    const { options } = this;
    const client = this.client as pg.Client;
    const result = await client.query(
      deletePublishedQuery(options.table, options.retentionSeconds, options.retentionBatchSize),
    );
    const deleted = result.rowCount ?? 0;
    if (deleted > 0) this.emit('retention', { deleted });
    this.nextRetention = deleted < options.retentionBatchSize ? Date.now() + options.retentionIntervalMs : 0;
  }
}
