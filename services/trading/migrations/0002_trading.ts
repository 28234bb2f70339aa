import type { MigrationBuilder } from 'node-pg-migrate';

export function up(pgm: MigrationBuilder): void {
  pgm.sql(`
CREATE TABLE accounts (
  id         text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 digests: the keys are 256-bit random, so a slow hash adds nothing.
CREATE TABLE api_keys (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key_hash   bytea NOT NULL UNIQUE,
  account_id text REFERENCES accounts (id),
  is_admin   boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (is_admin OR account_id IS NOT NULL)
);

-- numeric(24,8): 16 integer digits and 8 decimals, exact.
CREATE TABLE positions (
  account_id    text NOT NULL REFERENCES accounts (id),
  symbol        text NOT NULL,
  quantity      numeric(24, 8) NOT NULL CHECK (quantity >= 0),
  average_price numeric(24, 8) NOT NULL CHECK (average_price >= 0),
  version       bigint NOT NULL CHECK (version >= 1),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, symbol)
);

CREATE TABLE trades (
  id               uuid PRIMARY KEY,
  account_id       text NOT NULL REFERENCES accounts (id),
  symbol           text NOT NULL,
  side             text NOT NULL CHECK (side IN ('BUY', 'SELL')),
  quantity         numeric(24, 8) NOT NULL CHECK (quantity > 0),
  price            numeric(24, 8) NOT NULL CHECK (price > 0),
  position_version bigint NOT NULL,
  executed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trades_account_idx ON trades (account_id, executed_at);

-- The first response to each Idempotency-Key, per API key.
CREATE TABLE idempotency_keys (
  api_key_id   bigint NOT NULL REFERENCES api_keys (id),
  key          text NOT NULL,
  request_hash bytea NOT NULL,
  status_code  integer,
  response     jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (api_key_id, key)
);
`);
}

export function down(pgm: MigrationBuilder): void {
  pgm.sql('DROP TABLE idempotency_keys, trades, positions, api_keys, accounts;');
}
