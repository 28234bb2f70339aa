import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { runOk, waitFor } from '@astra/test-support';
import { createClient, createCluster } from '@redis/client';
import pg from 'pg';
import type { CloudEvent } from '../src/cloudevents.ts';
import { inboxSchema } from '../src/consumer/schema.ts';
import { outboxSchema } from '../src/migrations.ts';
import type { PublishableEvent, PublishOutcome } from '../src/publisher.ts';
import type { RedisStreamsPublisher } from '../src/redis/publisher.ts';
import { newEventId } from '../src/writer.ts';

/** The server every test database is created on; override with TEST_DATABASE_URL. */
export const SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface OutboxDatabase {
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

async function onServer<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** An empty database with a random name on the test server; `dropDatabase` removes it. */
export async function createScratchDatabase(
  prefix: string,
): Promise<{ name: string; url: string; dropDatabase(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await onServer((client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    dropDatabase: () =>
      onServer((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => {}),
  };
}

/** A scratch database with `statements` run in it, and a pool on it that `drop` ends first. */
async function createDatabaseWith(prefix: string, statements: readonly string[]): Promise<OutboxDatabase> {
  const { url, dropDatabase } = await createScratchDatabase(prefix);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on('error', () => {});
  for (const statement of statements) await pool.query(statement);
  return {
    url,
    pool,
    async drop() {
      await pool.end();
      await dropDatabase();
    },
  };
}

/** The statements of migration steps, in order. */
function stepStatements(steps: readonly { up(builder: { sql(statement: string): void }): void }[]): string[] {
  const statements: string[] = [];
  for (const step of steps) step.up({ sql: (statement) => statements.push(statement) });
  return statements;
}

/** A fresh database holding just the outbox table, for one test file. */
export function createOutboxDatabase(): Promise<OutboxDatabase> {
  return createDatabaseWith('outbox_test', stepStatements(outboxSchema()));
}

/** Waits until no event that `where` (SQL over event_outbox) selects is left unpublished. */
export async function waitAllPublished(
  pool: pg.Pool,
  where: string,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  await waitFor(
    what,
    async () =>
      (await pool.query(`SELECT 1 FROM event_outbox WHERE (${where}) AND status <> 'PUBLISHED' LIMIT 1`))
        .rowCount === 0,
    timeoutMs,
  );
}

/** Runs a command to completion and returns its trimmed stdout; fails on a non-zero exit. */
export async function runCommand(command: string, args: string[]): Promise<string> {
  return (await runOk(command, args)).trim();
}

export interface StreamEntry {
  entryId: string;
  fields: Record<string, string>;
}

/** Every entry of a stream, in stream order, from one Redis (`url`) or a cluster (its nodes, host:port). */
export async function readStream(
  from: string | { clusterNodes: string[] },
  stream: string,
): Promise<StreamEntry[]> {
  const client =
    typeof from === 'string'
      ? createClient({ url: from })
      : createCluster({ rootNodes: from.clusterNodes.map((node) => ({ url: `redis://${node}` })) });
  client.on('error', () => {});
  await client.connect();
  try {
    const entries = await client.xRange(stream, '-', '+');
    return (entries ?? []).map((entry) => ({
      entryId: entry.id,
      fields: entry.message as Record<string, string>,
    }));
  } finally {
    client.destroy();
  }
}

/** A fresh database holding the consumer inbox and an `applied` table that records every apply. */
export function createInboxDatabase(): Promise<OutboxDatabase> {
  // Each apply in commit order per key: a key's row lock orders its applies, so ids rise with commits.
  return createDatabaseWith('inbox_test', [
    ...stepStatements(inboxSchema()),
    `CREATE TABLE applied (
    id           bigserial PRIMARY KEY,
    event_id     text   NOT NULL,
    ordering_key text,
    sequence     bigint,
    consumer     text   NOT NULL
  )`,
  ]);
}

export interface TestEvent {
  id: string;
  subject: string;
  data: Record<string, unknown>;
}

/** A position-like event: subject `key`, data.version `version`. */
export const versioned = (key: string, version: number): TestEvent => ({
  id: newEventId(),
  subject: key,
  data: { key, version, quantity: `${version}.50` },
});

export const unordered = (subject: string): TestEvent => ({
  id: newEventId(),
  subject,
  data: { note: subject },
});

/** Adds the events to `stream` through the relay's own publisher and entry format. */
export async function publishEvents(
  publisher: RedisStreamsPublisher,
  stream: string,
  events: TestEvent[],
): Promise<void> {
  const publishable: PublishableEvent[] = events.map((event, i) => ({
    rowId: String(i),
    partition: 0,
    eventId: event.id,
    type: stream,
    source: '/test',
    aggregateType: 'thing',
    aggregateId: event.subject,
    time: new Date().toISOString(),
    data: JSON.stringify(event.data),
    traceparent: null,
    tracestate: null,
  }));
  // 'replay' adds every event as given, as an operator's republish does: duplicates included. After
  // a Redis restart the publisher reports `unavailable` until it has reconnected: try again.
  let outcomes: PublishOutcome[] = [];
  await waitFor(
    'Redis to take the events',
    async () => {
      outcomes = await publisher.publish(publishable, { mode: 'replay' });
      return outcomes.some((outcome) => outcome.status !== 'unavailable');
    },
    10_000,
  );
  assert.ok(
    outcomes.every((outcome) => outcome.status === 'published'),
    JSON.stringify(outcomes),
  );
}

/** A test handler's write: one `applied` row per apply (see createInboxDatabase). */
export async function recordApply(db: pg.ClientBase, event: CloudEvent, consumer: string): Promise<void> {
  const data = event.data as { version?: number };
  await db.query('INSERT INTO applied (event_id, ordering_key, sequence, consumer) VALUES ($1, $2, $3, $4)', [
    event.id,
    event.subject,
    data.version ?? null,
    consumer,
  ]);
}

/**
 * Fails unless every event was applied exactly once (per the `applied` table) and each ordering key's
 * versions were applied 1, 2, 3... in commit order.
 */
export async function assertAppliedOnceInOrder(pool: pg.Pool, events: TestEvent[]): Promise<void> {
  const { rows } = await pool.query<{ event_id: string; ordering_key: string; sequence: string | null }>(
    'SELECT event_id, ordering_key, sequence FROM applied WHERE event_id = ANY($1) ORDER BY id',
    [events.map((event) => event.id)],
  );
  const times = new Map<string, number>();
  for (const row of rows) times.set(row.event_id, (times.get(row.event_id) ?? 0) + 1);
  const wrong = events
    .filter((event) => times.get(event.id) !== 1)
    .map((e) => `${e.id}×${times.get(e.id) ?? 0}`);
  assert.deepEqual(wrong.slice(0, 10), [], 'each event applied exactly once');
  const byKey = new Map<string, number[]>();
  for (const row of rows) {
    if (row.sequence === null) continue;
    byKey.set(row.ordering_key, [...(byKey.get(row.ordering_key) ?? []), Number(row.sequence)]);
  }
  for (const [key, sequences] of byKey)
    assert.deepEqual(
      sequences,
      sequences.map((_, i) => i + 1),
      `${key} applied in order`,
    );
}

/** Polls until `check` stops throwing; then fails with its last error if it never did. */
export async function eventually(check: () => Promise<void>, timeoutMs: number, what: string): Promise<void> {
  let last: unknown;
  try {
    await waitFor(
      what,
      () =>
        check().then(
          () => true,
          (error: unknown) => {
            last = error;
            return false;
          },
        ),
      timeoutMs,
    );
  } catch (error) {
    throw last ?? error;
  }
}
