import {
  compareEntryIds,
  type LostOutcome,
  type PublishableEvent,
  type Publisher,
  type PublishFence,
  type StreamCheck,
} from './publisher.ts';
import { queryRows, type SqlClient } from './sql/client.ts';
import {
  type PublishedRow,
  publishedEventsQuery,
  repairedStreamQuery,
  type StreamRecordRow,
  streamRecordsQuery,
  updateEntryIdsQuery,
} from './sql/relayQueries.ts';

/** Events read and published again per round trip during a repair. */
const REPAIR_PAGE = 2000;

/** What the repair of one stream and partition found and did. */
export interface StreamRepair {
  stream: string;
  partition: number;
  /** Events the broker had acknowledged and no longer holds. */
  lost: number;
  /** Of those, published again from the outbox, in their original order and with their ids. */
  republished: number;
  /**
   * Lost events the outbox no longer has (past retention, or deleted on publish): the broker held
   * everything up to `afterEntryId` (null: nothing of this partition), and these follow it, up to
   * `lastEntryId` / `lastEventId` when none could be published again, else up to the entry before
   * `firstRepublishedEntryId` (the lost event's original entry id).
   */
  unrecoverable: number;
  afterEntryId: string | null;
  firstRepublishedEntryId: string | null;
  lastEntryId: string;
  lastEventId: string;
  /** The marker the stream has now. */
  marker: string;
}

export type RepairResult =
  | { status: 'done'; repairs: StreamRepair[]; republished: { eventId: string; stream: string }[] }
  | { status: 'fenced' }
  | { status: 'unavailable'; error: string };

export function streamKey(stream: string, partition: number): string {
  return `${partition}\n${stream}`;
}

export function toPublishable(row: Omit<PublishedRow, 'stream_entry_id'>): PublishableEvent {
  return {
    rowId: row.id,
    partition: row.partition,
    eventId: row.event_id,
    type: row.event_type,
    source: row.source,
    aggregateType: row.aggregate_type,
    aggregateId: row.aggregate_id,
    time: row.created_at.toISOString(),
    data: row.data,
    traceparent: row.traceparent,
    tracestate: row.tracestate,
  };
}

interface Progress {
  loss: LostOutcome;
  record: StreamRecordRow;
  republished: number;
  firstRepublishedEntryId: string | null;
  newest: { entryId: string; eventId: string } | undefined;
}

/**
 * Publishes again what the broker lost on some streams and partitions, then moves their markers.
 *
 * Lost are the partition's PUBLISHED events on the stream newer than the broker's marker (all of them
 * when the broker has none). They go out in id order, which is each aggregate's original order, with
 * their CloudEvents ids, through the dedupe journal: a relay that dies halfway leaves the marker where
 * it was, so the next owner repeats the repair and the journal answers what already went out again.
 * Only once every lost event is back does the marker move (and the durable record with it).
 * The caller owns the partitions and has marked everything it had acknowledged.
 */
export async function repairStreams(
  db: SqlClient,
  table: string,
  publisher: Publisher,
  fence: PublishFence,
  losses: readonly LostOutcome[],
): Promise<RepairResult> {
  const partitions = [...new Set(losses.map((loss) => loss.partition))];
  const records = new Map(
    (await queryRows<StreamRecordRow>(db, streamRecordsQuery(table, partitions))).map((record) => [
      streamKey(record.stream, record.partition),
      record,
    ]),
  );
  const progress = new Map<string, Progress>();
  for (const loss of losses) {
    const record = records.get(streamKey(loss.stream, loss.partition));
    // No record: nothing acknowledged there was ever marked, so nothing marked can be lost.
    if (record === undefined) continue;
    progress.set(streamKey(loss.stream, loss.partition), {
      loss,
      record,
      republished: 0,
      firstRepublishedEntryId: null,
      newest: undefined,
    });
  }

  const republished: { eventId: string; stream: string }[] = [];
  let after = '0';
  for (;;) {
    const rows = await queryRows<PublishedRow>(
      db,
      publishedEventsQuery(table, partitions, after, REPAIR_PAGE),
    );
    if (rows.length === 0) break;
    after = (rows.at(-1) as PublishedRow).id;
    const lostRows = rows.filter((row) => {
      const entry = progress.get(streamKey(publisher.stream(row.event_type), row.partition));
      return (
        entry !== undefined &&
        (entry.loss.marker === null ||
          row.stream_entry_id === null ||
          compareEntryIds(row.stream_entry_id, entry.loss.marker) > 0)
      );
    });
    if (lostRows.length === 0) continue;
    const rowIds: string[] = [];
    const entryIds: string[] = [];
    // In a cluster an aggregate whose lost events span slots goes out one slot per call: the events
    // held back behind an earlier one of their aggregate go in the next call, in order.
    for (let batch = lostRows; batch.length > 0; ) {
      const outcomes = await publisher.publish(batch.map(toPublishable), { fence, mode: 'repair' });
      const held: PublishedRow[] = [];
      for (const [index, outcome] of outcomes.entries()) {
        const row = batch[index] as PublishedRow;
        if (outcome.status === 'fenced') return { status: 'fenced' };
        if (outcome.status === 'held' && index > 0) {
          held.push(row);
          continue;
        }
        if (outcome.status !== 'published') {
          return { status: 'unavailable', error: 'error' in outcome ? outcome.error : outcome.status };
        }
        const entry = progress.get(streamKey(outcome.stream, row.partition)) as Progress;
        entry.republished++;
        entry.firstRepublishedEntryId ??= row.stream_entry_id;
        entry.newest = { entryId: outcome.entryId, eventId: row.event_id };
        rowIds.push(row.id);
        entryIds.push(outcome.entryId);
        republished.push({ eventId: row.event_id, stream: outcome.stream });
      }
      batch = held;
    }
    await db.query(updateEntryIdsQuery(table, rowIds, entryIds));
  }

  const repairs: StreamRepair[] = [];
  for (const { loss, record, ...done } of progress.values()) {
    const published = Number(record.published);
    const base = Number(record.base_count);
    const lost = loss.marker === null ? published - base : published - loss.count;
    const marker = done.newest?.entryId ?? record.last_entry_id;
    const check: StreamCheck = {
      stream: loss.stream,
      partition: loss.partition,
      expected: marker,
      count: published,
    };
    const [verdict] = await publisher.check([check], fence.epochs, true);
    if (verdict?.status === 'fenced') return { status: 'fenced' };
    if (verdict?.status !== 'ok') return { status: 'unavailable', error: 'the marker could not be set' };
    await db.query(
      repairedStreamQuery(table, {
        stream: loss.stream,
        partition: loss.partition,
        lastEntryId: marker,
        lastEventId: done.newest?.eventId ?? record.last_event_id,
        // A stream that lost everything now starts with what was published again.
        baseCount: loss.marker === null ? published - done.republished : base,
      }),
    );
    repairs.push({
      stream: loss.stream,
      partition: loss.partition,
      lost,
      republished: done.republished,
      unrecoverable: Math.max(0, lost - done.republished),
      afterEntryId: loss.marker,
      firstRepublishedEntryId: done.firstRepublishedEntryId,
      lastEntryId: record.last_entry_id,
      lastEventId: record.last_event_id,
      marker,
    });
  }
  return { status: 'done', repairs, republished };
}
