import assert from 'node:assert/strict';
import type pg from 'pg';
import { createOutboxWriter, type NewEvent } from '../src/writer.ts';
import type { StreamEntry } from './support.ts';

/**
 * Test helpers for the relay's delivery guarantees: a concurrent workload that writes numbered events
 * the way a real service must (one writer at a time per aggregate), and a check that the streams hold
 * each of them exactly once, in order per aggregate.
 */

export interface WorkloadOptions {
  pool: pg.Pool;
  /** Prefixes aggregate ids, so several workloads can share a table. */
  prefix: string;
  /** Event types; aggregate i writes `types[i % types.length]`, or every type in turn with `mixedTypes`. */
  types: string[];
  aggregates: number;
  eventsPerAggregate: number;
  /** Concurrent writer tasks; each owns the aggregates i with i % writers === its index. */
  writers: number;
  /** Events of one aggregate switch type with every seq (they then span several streams). */
  mixedTypes?: boolean;
  /** Pause after each transaction of one writer, to spread the writes over time. */
  pauseMs?: number;
  /**
   * One transaction in ten waits up to this long between its insert and its commit: its ids were taken
   * before those of transactions that commit meanwhile (late commits).
   */
  lingerMs?: number;
  /** Stops writing early (the workload then reports what it wrote). */
  signal?: AbortSignal;
}

const writer = createOutboxWriter({ source: '/test' });

/**
 * Writes `aggregates * eventsPerAggregate` events with `seq` 1, 2, ... per aggregate in the payload.
 * Each transaction writes 1-3 events to each of 1-3 aggregates of its writer task, so single- and
 * multi-event transactions mix. Resolves with the number of events committed.
 */
export async function writeWorkload(options: WorkloadOptions): Promise<number> {
  const { pool, prefix, types, aggregates, eventsPerAggregate, writers } = options;
  let committed = 0;
  const task = async (index: number) => {
    const next = new Map<string, number>();
    for (let i = index; i < aggregates; i += writers) next.set(`${prefix}-${i}`, 1);
    const typeOf = (aggregateId: string, seq: number) => {
      const i = Number(aggregateId.slice(prefix.length + 1));
      return types[(options.mixedTypes ? i + seq : i) % types.length] as string;
    };
    const client = await pool.connect();
    try {
      while (next.size > 0 && options.signal?.aborted !== true) {
        const open = [...next.keys()];
        const chosen = new Set<string>();
        const wanted = 1 + Math.floor(Math.random() * 3);
        while (chosen.size < Math.min(wanted, open.length))
          chosen.add(open[Math.floor(Math.random() * open.length)] as string);
        const events: NewEvent[] = [];
        for (const aggregateId of chosen) {
          const first = next.get(aggregateId) as number;
          const count = Math.min(1 + Math.floor(Math.random() * 3), eventsPerAggregate - first + 1);
          for (let seq = first; seq < first + count; seq++) {
            events.push({
              type: typeOf(aggregateId, seq),
              aggregateType: 'thing',
              aggregateId,
              data: { aggregateId, seq },
            });
          }
          if (first + count > eventsPerAggregate) next.delete(aggregateId);
          else next.set(aggregateId, first + count);
        }
        await client.query('BEGIN');
        await writer.write(client, events);
        if (options.lingerMs !== undefined && Math.random() < 0.1)
          await new Promise((r) => setTimeout(r, Math.random() * (options.lingerMs as number)));
        await client.query('COMMIT');
        committed += events.length;
        if (options.pauseMs !== undefined) await new Promise((r) => setTimeout(r, options.pauseMs));
      }
    } finally {
      client.release();
    }
  };
  await Promise.all(Array.from({ length: writers }, (_, index) => task(index)));
  return committed;
}

interface OutboxRow {
  event_id: string;
  event_type: string;
  aggregate_id: string;
  status: string;
  stream_entry_id: string | null;
  seq: number | null;
}

export interface DeliveryCheck {
  /** The outbox database. */
  pool: pg.Pool;
  /** Every entry of one stream, in stream order. */
  read: (stream: string) => Promise<StreamEntry[]>;
  /** Which events to check: `aggregate_id LIKE` this (default: all). */
  aggregateLike?: string;
  /** Which events to check: only these types (default: all). */
  types?: string[];
  /**
   * Events expected in the table (a guard against a workload that wrote less than planned, and against
   * a selection that matches nothing, which would otherwise pass every check). Must be above zero.
   */
  expected: number;
  /** Maps an event type to its stream. @defaultValue the type itself */
  stream?: (type: string) => string;
  /**
   * The payload field that numbers an aggregate's events (events without it must be alone in their
   * aggregate). @defaultValue 'seq'
   */
  seqField?: string;
  table?: string;
  /**
   * Also check that across streams an aggregate's entries were added in its order. Off after one
   * cluster shard lost data: its events are published again after the other streams' later ones.
   * @defaultValue true
   */
  crossStreamOrder?: boolean;
}

function entryTime(entryId: string): number {
  return Number(entryId.split('-')[0]);
}

/**
 * Asserts the relay's promises for the selected events: every row is PUBLISHED with the id of its one
 * stream entry; the streams hold each event exactly once and nothing else of these aggregates; per
 * aggregate and stream, the entries' `seq` are the aggregate's writes in commit (id) order; and across
 * streams an aggregate's entries were added no earlier than its previous events (entry ids are the
 * Redis servers' clocks: the test's servers share one host). Returns the number of events checked.
 */
export async function assertDelivered(check: DeliveryCheck): Promise<number> {
  const table = check.table ?? 'event_outbox';
  const streamOf = check.stream ?? ((type: string) => type);
  const seqField = check.seqField ?? 'seq';
  const { rows } = await check.pool.query<OutboxRow>(
    `SELECT event_id::text AS event_id, event_type, aggregate_id, status, stream_entry_id,
            (payload->>$2)::int AS seq
     FROM ${table} WHERE aggregate_id LIKE $1 AND ($3::text[] IS NULL OR event_type = ANY($3)) ORDER BY id`,
    [check.aggregateLike ?? '%', seqField, check.types ?? null],
  );
  assert.ok(check.expected > 0, 'assertDelivered needs the number of events it expects, above zero');
  assert.equal(rows.length, check.expected, 'events in the table');
  const notPublished = rows.filter((row) => row.status !== 'PUBLISHED');
  assert.equal(notPublished.length, 0, `not PUBLISHED: ${JSON.stringify(notPublished.slice(0, 5))}`);

  const aggregates = new Set(rows.map((row) => row.aggregate_id));
  const streams = [...new Set(rows.map((row) => streamOf(row.event_type)))];
  // Every entry of these aggregates, by event id; a second entry for one id is a duplicate.
  const entries = new Map<string, { stream: string; entryId: string; subject: string; seq: number | null }>();
  const perStream = new Map<string, (number | null)[]>(); // "aggregate stream" -> seqs in stream order
  for (const stream of streams) {
    for (const entry of await check.read(stream)) {
      const subject = entry.fields.subject ?? '';
      if (!aggregates.has(subject)) continue;
      const id = entry.fields.id ?? '';
      const data = JSON.parse(entry.fields.data ?? '{}') as Record<string, unknown>;
      const value = data[seqField];
      const seq = typeof value === 'number' ? value : null;
      const seen = entries.get(id);
      assert.equal(
        seen,
        undefined,
        `event ${id} is in the streams twice: ${seen?.entryId} and ${entry.entryId}`,
      );
      entries.set(id, { stream, entryId: entry.entryId, subject, seq });
      const key = `${subject} ${stream}`;
      const seqs = perStream.get(key) ?? [];
      seqs.push(seq);
      perStream.set(key, seqs);
    }
  }
  assert.equal(entries.size, rows.length, 'stream entries for these aggregates');

  const written = new Map<string, (number | null)[]>();
  const lastTime = new Map<string, number>();
  for (const row of rows) {
    const entry = entries.get(row.event_id);
    assert.ok(entry !== undefined, `event ${row.event_id} (${row.aggregate_id} #${row.seq}) is in no stream`);
    assert.equal(entry.stream, streamOf(row.event_type), `stream of ${row.event_id}`);
    assert.equal(entry.subject, row.aggregate_id);
    assert.equal(entry.seq, row.seq);
    assert.equal(row.stream_entry_id, entry.entryId, `row of ${row.event_id} marked with its entry id`);
    const key = `${row.aggregate_id} ${entry.stream}`;
    const seqs = written.get(key) ?? [];
    seqs.push(row.seq);
    written.set(key, seqs);
    const time = entryTime(entry.entryId);
    assert.ok(
      check.crossStreamOrder === false || time >= (lastTime.get(row.aggregate_id) ?? 0),
      `${row.aggregate_id} #${row.seq} was added to its stream before an earlier event of its aggregate`,
    );
    lastTime.set(row.aggregate_id, time);
  }
  for (const [key, seqs] of written) {
    assert.deepEqual(perStream.get(key), seqs, `order of ${key}`);
    for (let i = 1; i < seqs.length; i++)
      assert.ok((seqs[i] ?? 0) > (seqs[i - 1] ?? 0), `${seqField} rises in commit order for ${key}`);
  }
  return rows.length;
}
