import type { MigrationBuilder } from 'node-pg-migrate';

export function up(pgm: MigrationBuilder): void {
  pgm.sql(`
-- Every executed trade, once (trade_id is unique; the inbox already skips a delivered event twice).
-- \`tx\` is the applying transaction's id: the ledger is paged by (tx, seq) and shows only rows whose
-- transaction is older than every one still running, so a page never skips a row committed late.
CREATE TABLE ledger (
  seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tx               xid8        NOT NULL DEFAULT pg_current_xact_id(),
  trade_id         uuid        NOT NULL UNIQUE,
  event_id         text        NOT NULL,
  account_id       text        NOT NULL,
  symbol           text        NOT NULL,
  side             text        NOT NULL CHECK (side IN ('BUY', 'SELL')),
  quantity         numeric     NOT NULL CHECK (quantity > 0),
  price            numeric     NOT NULL CHECK (price > 0),
  position_version bigint      NOT NULL,
  executed_at      timestamptz NOT NULL
);
CREATE INDEX ledger_account_page_idx ON ledger (account_id, tx, seq);

-- The trading service's positions as of the newest version applied.
CREATE TABLE positions (
  account_id    text        NOT NULL,
  symbol        text        NOT NULL,
  quantity      numeric     NOT NULL CHECK (quantity >= 0),
  average_price numeric     NOT NULL CHECK (average_price >= 0),
  version       bigint      NOT NULL CHECK (version > 0),
  updated_at    timestamptz NOT NULL,
  PRIMARY KEY (account_id, symbol)
);
`);
}

export function down(pgm: MigrationBuilder): void {
  pgm.sql('DROP TABLE positions, ledger;');
}
