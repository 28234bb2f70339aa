import { invalidOption, OutboxError } from './errors.ts';
import { type OutboxOptions, resolveOutboxOptions } from './options.ts';
import { failedEventsQuery, publishedCountQuery, replayQuery, statusQuery } from './sql/adminQueries.ts';
import { queryRows, type SqlClient } from './sql/client.ts';

export interface OutboxStatus {
  pending: number;
  failed: number;
  /** Aggregates whose later events wait behind a FAILED one. */
  blockedAggregates: number;
  /** Age of the oldest PENDING event not held back by a FAILED event of its aggregate, 0 when none. */
  oldestPendingAgeSeconds: number;
}

export interface FailedEvent {
  id: string;
  eventId: string;
  eventType: string;
  aggregateId: string;
  attempts: number;
  lastError: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** Operator tools over the outbox table: what the CLI and the metrics gauges use. */
export class OutboxAdmin {
  private readonly table: string;
  private readonly channel: string;

  constructor(
    private readonly db: SqlClient,
    options: OutboxOptions = {},
  ) {
    ({ table: this.table, channel: this.channel } = resolveOutboxOptions(options));
  }

  /**
   * Table-wide gauges. Each part reads a partial index (PENDING, or FAILED and retrying), so the cost
   * follows the backlog, not the table; run it from one process (the leader relay), not every replica.
   */
  async status(): Promise<OutboxStatus> {
    const [row] = await queryRows<{
      pending: string;
      failed: string;
      blocked_aggregates: string;
      oldest_pending_age_seconds: number;
    }>(this.db, statusQuery(this.table));
    return {
      pending: Number(row?.pending ?? 0),
      failed: Number(row?.failed ?? 0),
      blockedAggregates: Number(row?.blocked_aggregates ?? 0),
      oldestPendingAgeSeconds: row?.oldest_pending_age_seconds ?? 0,
    };
  }

  async publishedCount(): Promise<number> {
    const [row] = await queryRows<{ published: string }>(this.db, publishedCountQuery(this.table));
    return Number(row?.published ?? 0);
  }

  async failed(limit = 100): Promise<FailedEvent[]> {
    if (!Number.isInteger(limit) || limit < 1)
      throw invalidOption('limit', 'must be a whole number of 1 or more');
    const rows = await queryRows<{
      id: string;
      event_id: string;
      event_type: string;
      aggregate_id: string;
      attempts: number;
      last_error: string | null;
      created_at: Date;
      updated_at: Date;
    }>(this.db, failedEventsQuery(this.table, limit));
    return rows.map((row) => ({
      id: row.id,
      eventId: row.event_id,
      eventType: row.event_type,
      aggregateId: row.aggregate_id,
      attempts: row.attempts,
      lastError: row.last_error,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    }));
  }

  /** Puts one FAILED event (by row id), or all of them, back to PENDING. Returns how many. */
  async replay(rowId: string | 'all'): Promise<number> {
    if (rowId !== 'all' && !/^[1-9]\d{0,18}$/.test(rowId)) {
      throw new OutboxError('OUTBOX_EVENT_NOT_FOUND', `"${rowId}" is not an outbox event id`, {
        field: 'id',
      });
    }
    const [row] = await queryRows<{ replayed: number }>(
      this.db,
      replayQuery(this.table, rowId === 'all' ? null : rowId, this.channel),
    );
    const replayed = row?.replayed ?? 0;
    if (rowId !== 'all' && replayed === 0) {
      throw new OutboxError('OUTBOX_EVENT_NOT_FOUND', `no FAILED outbox event with id ${rowId}`, {
        field: 'id',
      });
    }
    return replayed;
  }
}
