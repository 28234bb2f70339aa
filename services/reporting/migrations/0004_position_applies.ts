import type { MigrationBuilder } from 'node-pg-migrate';

export function up(pgm: MigrationBuilder): void {
  pgm.sql(`
-- One row per position version applied, written in the applying transaction: which version, by which
-- consumer, in which order. An audit trail, and what the chaos run checks (per position 1, 2, 3, ...
-- in seq order). Versions of one position are applied under the inbox's row lock on their ordering
-- key, so within a position seq order is commit order.
CREATE TABLE position_applies (
  seq        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id text        NOT NULL,
  symbol     text        NOT NULL,
  version    bigint      NOT NULL,
  consumer   text        NOT NULL,
  event_id   text        NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX position_applies_position_idx ON position_applies (account_id, symbol, seq);
`);
}

export function down(pgm: MigrationBuilder): void {
  pgm.sql('DROP TABLE position_applies;');
}
