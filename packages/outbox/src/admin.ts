import { databaseError, invalidOption, OutboxError } from './errors.ts';
import { type OutboxOptions, resolveOutboxOptions } from './options.ts';
import type { Publisher } from './publisher.ts';
import { toPublishable } from './recovery.ts';
import {
  failedEventsQuery,
  publishedCountQuery,
  replayQuery,
  republishCandidatesQuery,
  statusQuery,
} from './sql/adminQueries.ts';
import { queryRows, type SqlClient, type SqlQuery } from './sql/client.ts';
import type { ClaimedRow } from './sql/relayQueries.ts';

/** Which PUBLISHED events an operator publishes again. */
export interface RepublishFilter {
  since: Date;
  until?: Date;
  type?: string;
  aggregateId?: string;
}

export interface RepublishReport {
  events: number;
  first: { eventId: string; time: Date } | undefined;
  last: { eventId: string; time: Date } | undefined;
  /** Events per stream. */
  streams: Record<string, number>;
}

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

/**
 * Operator tools over the outbox table: what the CLI and the metrics gauges use. A failed query throws
 * OUTBOX_DATABASE_ERROR with pg's error as `cause`.
 */
export class OutboxAdmin {
  private readonly table: string;
  private readonly channel: string;

  constructor(
    private readonly db: SqlClient,
    options: OutboxOptions = {},
  ) {
    ({ table: this.table, channel: this.channel } = resolveOutboxOptions(options));
  }

  private rows<Row>(query: SqlQuery): Promise<Row[]> {
    return queryRows<Row>(this.db, query).catch((error: unknown) => {
      throw databaseError(error);
    });
  }

  /**
   * Table-wide gauges. Each part reads a partial index (PENDING, or FAILED and retrying), so the cost
   * follows the backlog, not the table; run it from one process (the leader relay), not every replica.
   */
  async status(): Promise<OutboxStatus> {
    const [row] = await this.rows<{
      pending: string;
      failed: string;
      blocked_aggregates: string;
      oldest_pending_age_seconds: number;
    }>(statusQuery(this.table));
    return {
      pending: Number(row?.pending ?? 0),
      failed: Number(row?.failed ?? 0),
      blockedAggregates: Number(row?.blocked_aggregates ?? 0),
      oldestPendingAgeSeconds: row?.oldest_pending_age_seconds ?? 0,
    };
  }

  async publishedCount(): Promise<number> {
    const [row] = await this.rows<{ published: string }>(publishedCountQuery(this.table));
    return Number(row?.published ?? 0);
  }

  async failed(limit = 100): Promise<FailedEvent[]> {
    if (!Number.isInteger(limit) || limit < 1)
      throw invalidOption('limit', 'must be a whole number of 1 or more');
    const rows = await this.rows<{
      id: string;
      event_id: string;
      event_type: string;
      aggregate_id: string;
      attempts: number;
      last_error: string | null;
      created_at: Date;
      updated_at: Date;
    }>(failedEventsQuery(this.table, limit));
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

  /**
   * Publishes PUBLISHED events again, in order, with their ids, for a consumer that must rebuild or
   * entries trimmed by MAXLEN. Deliberately past the dedupe journal: every event is added again, after
   * newer ones, so consumers must dedupe by id and ignore versions they have passed. With `dryRun`,
   * only reports what it would publish. Throws when the broker refuses a page (what went out is counted).
   */
  async republish(publisher: Publisher, filter: RepublishFilter, dryRun = false): Promise<RepublishReport> {
    for (const [field, value] of [
      ['since', filter.since],
      ['until', filter.until],
    ] as const) {
      if (value !== undefined && !(value instanceof Date && Number.isFinite(value.getTime())))
        throw invalidOption(field, 'must be a valid time');
    }
    const report: RepublishReport = { events: 0, first: undefined, last: undefined, streams: {} };
    let afterRowId = '0';
    for (;;) {
      const rows = await this.rows<ClaimedRow>(
        republishCandidatesQuery(this.table, {
          afterRowId,
          limit: 1000,
          since: filter.since,
          until: filter.until ?? null,
          type: filter.type ?? null,
          aggregateId: filter.aggregateId ?? null,
        }),
      );
      if (rows.length === 0) return report;
      afterRowId = (rows.at(-1) as ClaimedRow).id;
      if (!dryRun) {
        const outcomes = await publisher.publish(rows.map(toPublishable), { mode: 'replay' });
        const refused = outcomes.find((outcome) => outcome.status !== 'published');
        if (refused !== undefined)
          throw new OutboxError(
            'OUTBOX_BROKER_ERROR',
            `the broker refused a republish after ${report.events} events: ${'error' in refused ? refused.error : refused.status}`,
          );
      }
      for (const row of rows) {
        const stream = publisher.stream(row.event_type);
        report.streams[stream] = (report.streams[stream] ?? 0) + 1;
        report.first ??= { eventId: row.event_id, time: row.created_at };
        report.last = { eventId: row.event_id, time: row.created_at };
      }
      report.events += rows.length;
    }
  }

  /** Puts one FAILED event (by row id), or all of them, back to PENDING. Returns how many. */
  async replay(rowId: string | 'all'): Promise<number> {
    if (rowId !== 'all' && !/^[1-9]\d{0,18}$/.test(rowId)) {
      throw new OutboxError('OUTBOX_EVENT_NOT_FOUND', `"${rowId}" is not an outbox event id`, {
        field: 'id',
      });
    }
    const [row] = await this.rows<{ replayed: number }>(
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
