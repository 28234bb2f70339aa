import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withAdmin } from './lib/infra.ts';
import { UUID_V7_SQL } from './lib/pgbench.ts';

test("the SQL stand-in for newEventId() makes UUIDv7s carrying the database's clock", async () => {
  const rows = await withAdmin(async (client) => {
    const { rows } = await client.query<{ id: string; ms: string }>(
      `SELECT ${UUID_V7_SQL}::text AS id, (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS ms
       FROM generate_series(1, 200)`,
    );
    return rows;
  });
  for (const { id, ms } of rows) {
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const carried = Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16);
    assert.ok(Math.abs(carried - Number(ms)) <= 2, `${id} carries ${carried}, the clock said ${ms}`);
  }
  assert.equal(new Set(rows.map((row) => row.id)).size, rows.length);
});
