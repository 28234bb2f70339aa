import { type OutboxOptions, resolveOutboxOptions } from './options.ts';

/**
 * Number of relay partitions. Every aggregate hashes to one partition and every partition is owned by
 * one relay at a time, which is what keeps an aggregate's events in order across many relays.
 * Fixed by the schema (it is a stored column), so it can only change through a migration.
 */
export const PARTITION_COUNT = 64;

/** The subset of node-pg-migrate's MigrationBuilder the schema needs. */
export interface SqlMigrationBuilder {
  sql(statement: string): void;
}

/**
 * The outbox schema as numbered, append-only steps. A service adds one migration per step to its own
 * migration folder (`outboxSchema[0].up(pgm)`); a later library version appends steps, never edits one.
 */
export function outboxSchema(options: OutboxOptions = {}) {
  const { table } = resolveOutboxOptions(options);
  const bare = table.includes('.') ? table.slice(table.indexOf('.') + 1) : table;
  return [
    {
      name: 'outbox-0001-create',
      up(pgm: SqlMigrationBuilder) {
        pgm.sql(`
CREATE TABLE ${table} (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id        uuid        NOT NULL,
  event_type      text        NOT NULL,
  source          text        NOT NULL,
  aggregate_type  text        NOT NULL,
  aggregate_id    text        NOT NULL,
  -- hashtext & 63 is always 0..63, even for negative hashes (abs() would overflow on INT_MIN).
  partition_no    smallint    GENERATED ALWAYS AS ((hashtext(aggregate_id) & ${PARTITION_COUNT - 1})::smallint) STORED,
  payload         jsonb       NOT NULL,
  headers         jsonb       NOT NULL DEFAULT '{}'::jsonb,
  status          text        NOT NULL DEFAULT 'PENDING',
  attempts        integer     NOT NULL DEFAULT 0,
  last_error      text,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  published_at    timestamptz,
  stream_entry_id text,
  CONSTRAINT ${bare}_event_id_key UNIQUE (event_id),
  CONSTRAINT ${bare}_status_check CHECK (status IN ('PENDING', 'PUBLISHED', 'FAILED')),
  CONSTRAINT ${bare}_attempts_check CHECK (attempts >= 0),
  CONSTRAINT ${bare}_published_check CHECK ((status = 'PUBLISHED') = (published_at IS NOT NULL))
) WITH (
  -- A queue table: every row is updated once and deleted later. Vacuum it early and often so dead
  -- tuples and index entries do not pile up between autovacuum runs.
  fillfactor = 85,
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_vacuum_insert_scale_factor = 0.05,
  autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 1
);

-- The relay's claim (a partition's PENDING events in id order: each relay reads only the partitions
-- it owns), the pending count and the oldest pending event (the oldest of each partition's first).
CREATE INDEX ${bare}_pending_idx ON ${table} (partition_no, id) WHERE status = 'PENDING';

-- Events that hold back their aggregate: FAILED ones and PENDING ones waiting for a retry.
-- Normally empty, so the claim's "no earlier blocker" probe costs next to nothing.
CREATE INDEX ${bare}_blocking_idx ON ${table} (aggregate_id, id)
  WHERE status = 'FAILED' OR (status = 'PENDING' AND attempts > 0);

-- Retention deletes the oldest PUBLISHED rows first.
CREATE INDEX ${bare}_published_idx ON ${table} (published_at) WHERE status = 'PUBLISHED';
`);
      },
      down(pgm: SqlMigrationBuilder) {
        pgm.sql(`DROP TABLE ${table};`);
      },
    },
    {
      name: 'outbox-0002-relay-state',
      up(pgm: SqlMigrationBuilder) {
        pgm.sql(`
-- Who may publish for a partition: each relay that takes one raises its epoch, and the broker refuses
-- calls carrying an older one (fencing a relay that was paused while its partitions moved on).
CREATE TABLE ${table}_partitions (
  partition_no smallint PRIMARY KEY,
  epoch        bigint   NOT NULL DEFAULT 0
);
INSERT INTO ${table}_partitions (partition_no) SELECT generate_series(0, ${PARTITION_COUNT - 1});

-- What the broker acknowledged per stream and partition, kept when retention deletes the events:
-- a broker whose own marker is older has lost data. \`published\` counts every event ever published
-- there; \`base_count\` is how many of them were published before the oldest the stream may still
-- hold (after a loss, the stream starts again from what could be published again).
CREATE TABLE ${table}_streams (
  stream        text     NOT NULL,
  partition_no  smallint NOT NULL,
  last_entry_id text     NOT NULL,
  last_event_id uuid     NOT NULL,
  published     bigint   NOT NULL,
  base_count    bigint   NOT NULL DEFAULT 0,
  PRIMARY KEY (stream, partition_no)
);
`);
      },
      down(pgm: SqlMigrationBuilder) {
        pgm.sql(`DROP TABLE ${table}_streams; DROP TABLE ${table}_partitions;`);
      },
    },
  ] as const;
}
