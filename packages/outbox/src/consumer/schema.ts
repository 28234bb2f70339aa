import { invalidOption } from '../errors.ts';
import type { SqlMigrationBuilder } from '../schema.ts';

export interface InboxOptions {
  /**
   * Table of the events each consumer group has applied (optionally schema-qualified); the ordering
   * state lives beside it in `<table>_sequences`.
   * @defaultValue 'event_inbox'
   */
  table?: string;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,52}(\.[a-z_][a-z0-9_]{0,52})?$/;

export function resolveInboxTable(options: InboxOptions = {}): string {
  const table = options.table ?? 'event_inbox';
  // Spliced into SQL text (with a suffix), so a plain lower-case identifier with room for it.
  if (typeof table !== 'string' || !IDENTIFIER.test(table))
    throw invalidOption(
      'inboxTable',
      `must be a lower-case SQL identifier of up to 53 characters, got "${String(table)}"`,
    );
  return table;
}

/**
 * The consumer's inbox as numbered, append-only migration steps, for the consumer's own database
 * (`inboxSchema()[0].up(pgm)` in a node-pg-migrate migration, like outboxSchema).
 */
export function inboxSchema(options: InboxOptions = {}) {
  const table = resolveInboxTable(options);
  return [
    {
      name: 'inbox-0001-create',
      up(pgm: SqlMigrationBuilder) {
        pgm.sql(`
-- One row per event a consumer group applied, written in the transaction of the handler's own writes:
-- an event delivered again (redelivery, relay repair, operator republish) finds its row and is skipped.
CREATE TABLE ${table} (
  group_name   text        NOT NULL,
  event_id     text        NOT NULL,
  event_type   text        NOT NULL,
  stream       text        NOT NULL,
  entry_id     text        NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_name, event_id)
);

-- Per consumer group and ordering key, the last sequence applied. Its row lock serialises the
-- consumers of one group on one aggregate; an event whose sequence is not the next one waits.
CREATE TABLE ${table}_sequences (
  group_name    text        NOT NULL,
  ordering_key  text        NOT NULL,
  last_sequence bigint      NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_name, ordering_key)
);
`);
      },
      down(pgm: SqlMigrationBuilder) {
        pgm.sql(`DROP TABLE ${table}_sequences; DROP TABLE ${table};`);
      },
    },
    {
      name: 'inbox-0002-prune-index',
      up(pgm: SqlMigrationBuilder) {
        pgm.sql(`
-- The consumer's prune pass finds a group's oldest rows per stream on this index.
CREATE INDEX ${table.split('.').pop()}_prune ON ${table} (group_name, stream, processed_at);
`);
      },
      down(pgm: SqlMigrationBuilder) {
        // An index lives in its table's schema: CREATE takes a bare name, DROP the qualified one.
        pgm.sql(`DROP INDEX ${table}_prune;`);
      },
    },
  ] as const;
}
