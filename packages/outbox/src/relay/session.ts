import pg from 'pg';
import { lockNamespace, PartitionOwnership } from '../partitions.ts';
import type { LostOutcome, Publisher, PublishFence } from '../publisher.ts';
import { type RepairResult, repairStreams } from '../recovery.ts';
import { queryRows } from '../sql/client.ts';
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
} from '../sql/relayQueries.ts';
import type { ResolvedRelayOptions } from './options.ts';

/** What one rebalance changed, with what the relay needs to start on the partitions it took. */
export interface Rebalance {
  /** Frozen relays whose sessions were ended first. */
  takeovers: { pid: number; partitions: number[] }[];
  taken: number[];
  released: number[];
  /** Every partition held afterwards, ascending. */
  partitions: number[];
  leader: boolean;
  /** The raised ownership epoch of each partition taken. */
  epochs: { partition: number; epoch: number }[];
  /** The durable record of what the broker acknowledged on the partitions taken. */
  records: StreamRecordRow[];
}

/** A batch the broker acknowledged, to be marked PUBLISHED with its entry ids. */
export interface MarkBatch {
  acks: { rowId: string; entryId: string; eventId: string; stream: string; row: ClaimedRow }[];
  /** Per stream and partition, the newest entry acknowledged and how many. */
  records: StreamRecord[];
  ackedAt: Date;
}

export interface Rejection {
  rowId: string;
  error: string;
  delayMs: number;
}

/**
 * The relay's database side: one session that holds its partition locks and runs every statement of
 * the relay. The relay's loop reaches the database only through this, so tests can run the loop
 * against an in-memory one.
 */
export interface RelaySession {
  rebalance(stallTimeoutMs: number): Promise<Rebalance>;
  claim(partitions: number[], limit: number, exclude: string[]): Promise<ClaimedRow[]>;
  mark(batch: MarkBatch): Promise<void>;
  /** Records refusals; returns each event's status afterwards (FAILED once out of attempts). */
  reject(rejections: Rejection[]): Promise<{ id: string; status: string }[]>;
  streamRecords(partitions: number[]): Promise<StreamRecordRow[]>;
  /** Publishes again what the broker lost, from the outbox, then moves the markers. */
  repair(publisher: Publisher, fence: PublishFence, losses: LostOutcome[]): Promise<RepairResult>;
  /** Deletes one batch of old PUBLISHED events; returns how many went. */
  retain(): Promise<number>;
  /** Ends the session, and with it the partition locks. */
  close(): Promise<void>;
}

/** Opens a session; `wake` is called on each NOTIFY from the writers. */
export type RelayConnector = (wake: () => void) => Promise<RelaySession>;

/** The PostgreSQL session of the relay's options. */
export function postgresConnector(options: ResolvedRelayOptions): RelayConnector {
  return async (wake) => {
    const client = new pg.Client({
      connectionString: options.connectionString,
      application_name: 'outbox-relay',
      statement_timeout: options.statementTimeoutMs,
      // The client gives up a little after the server would, so a vanished server cannot hang us.
      query_timeout: options.statementTimeoutMs + 5000,
      connectionTimeoutMillis: 10_000,
      keepAlive: true,
    });
    // A dead connection rejects its queries; the relay then reconnects. The listener keeps the
    // 'error' event from crashing the process.
    client.on('error', () => {});
    client.on('notification', wake);
    try {
      await client.connect();
      if (options.listen) await client.query(`LISTEN ${options.channel}`);
      const ownership = new PartitionOwnership(client, lockNamespace(options.table));
      await ownership.join();
      return new PostgresRelaySession(client, ownership, options);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
  };
}

class PostgresRelaySession implements RelaySession {
  constructor(
    private readonly client: pg.Client,
    private readonly ownership: PartitionOwnership,
    private readonly options: ResolvedRelayOptions,
  ) {}

  async rebalance(stallTimeoutMs: number): Promise<Rebalance> {
    const { client, ownership } = this;
    const { table } = this.options;
    const takeovers = stallTimeoutMs > 0 ? await ownership.endStalled(table, stallTimeoutMs) : [];
    const { taken, released } = await ownership.rebalance();
    const epochs: Rebalance['epochs'] = [];
    let records: StreamRecordRow[] = [];
    if (taken.length > 0) {
      const raised = await queryRows<{ partition: number; epoch: string }>(
        client,
        takePartitionsQuery(table, taken),
      );
      for (const row of raised) epochs.push({ partition: row.partition, epoch: Number(row.epoch) });
      records = await this.streamRecords(taken);
    }
    return {
      takeovers,
      taken,
      released,
      partitions: ownership.partitions,
      leader: ownership.isLeader,
      epochs,
      records,
    };
  }

  claim(partitions: number[], limit: number, exclude: string[]): Promise<ClaimedRow[]> {
    return queryRows<ClaimedRow>(
      this.client,
      claimEventsQuery(this.options.table, partitions, limit, exclude),
    );
  }

  async mark(batch: MarkBatch): Promise<void> {
    const { table, deletePublished } = this.options;
    const rowIds = batch.acks.map((ack) => ack.rowId);
    const entryIds = batch.acks.map((ack) => ack.entryId);
    await this.client.query(
      deletePublished
        ? deleteOnPublishQuery(table, rowIds, batch.records)
        : markPublishedQuery(table, rowIds, entryIds, batch.records),
    );
  }

  reject(rejections: Rejection[]): Promise<{ id: string; status: string }[]> {
    return queryRows<{ id: string; status: string }>(
      this.client,
      markRejectedQuery(
        this.options.table,
        rejections.map((r) => r.rowId),
        rejections.map((r) => r.error),
        rejections.map((r) => r.delayMs),
        this.options.maxAttempts,
      ),
    );
  }

  streamRecords(partitions: number[]): Promise<StreamRecordRow[]> {
    return queryRows<StreamRecordRow>(this.client, streamRecordsQuery(this.options.table, partitions));
  }

  repair(publisher: Publisher, fence: PublishFence, losses: LostOutcome[]): Promise<RepairResult> {
    return repairStreams(this.client, this.options.table, publisher, fence, losses);
  }

  async retain(): Promise<number> {
    const { table, retentionSeconds, retentionBatchSize } = this.options;
    const result = await this.client.query(deletePublishedQuery(table, retentionSeconds, retentionBatchSize));
    return result.rowCount ?? 0;
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => {});
  }
}
