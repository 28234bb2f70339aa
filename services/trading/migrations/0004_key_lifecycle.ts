import type { MigrationBuilder } from 'node-pg-migrate';

export function up(pgm: MigrationBuilder): void {
  pgm.sql(`
-- A key is revoked by stamping it, never by deleting it: its idempotency history (and its id in logs)
-- stays valid, and no foreign key stands in the way.
ALTER TABLE api_keys
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN revoked_at timestamptz;

-- The idempotency purge deletes the oldest rows first; without this it read the whole table each round.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
`);
}

export function down(pgm: MigrationBuilder): void {
  pgm.sql(`
DROP INDEX idempotency_keys_created_at_idx;
ALTER TABLE api_keys DROP COLUMN expires_at, DROP COLUMN revoked_at;
`);
}
