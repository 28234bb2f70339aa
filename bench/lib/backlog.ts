/**
 * The drain backlog: N PENDING outbox events written by SQL, shaped like the service's
 * position_updated events (about 250 bytes of JSON, 10,000 aggregates: 500 accounts x 20 symbols,
 * versions rising per aggregate). Built once in a template database; every drain scenario gets its
 * own copy (CREATE DATABASE ... TEMPLATE), so each starts from the same table.
 */
import { prepareDatabase } from '@astra/trading-service/bootstrap';
import { createDatabase, databaseUrl, withClient } from './infra.ts';
import { UUID_V7_SQL } from './pgbench.ts';
import { SYMBOLS as ALL_SYMBOLS } from './wrk.ts';

export const BACKLOG_EVENT_TYPE = 'astra.trading.position_updated.v1';
export const BACKLOG_AGGREGATES = 10_000;

const SYMBOLS = ALL_SYMBOLS.slice(0, 20);

/**
 * The payload of backlog event `g`: what the service writes for a position change. Also used by
 * the peers' enqueue so every contender moves the same bytes.
 */
export const payloadSql = (g: string) => `jsonb_build_object(
  'accountId', 'acct-' || ((${g} % ${BACKLOG_AGGREGATES}) / 20),
  'symbol', (ARRAY['${SYMBOLS.join("','")}'])[(${g} % 20) + 1],
  'quantity', ((${g} % 997) + 1)::text || '.50000000',
  'averagePrice', (100 + (${g} % 9000) / 100.0)::numeric(24, 8)::text,
  'version', ${g} / ${BACKLOG_AGGREGATES} + 1,
  'updatedAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  'tradeId', gen_random_uuid()::text)`;

export const aggregateSql = (g: string) =>
  `'acct-' || ((${g} % ${BACKLOG_AGGREGATES}) / 20) || ':' || (ARRAY['${SYMBOLS.join("','")}'])[(${g} % 20) + 1]`;

/** Inserts events first..last as PENDING outbox rows. */
function insertBacklogSql(): string {
  return `
INSERT INTO event_outbox (event_id, event_type, source, aggregate_type, aggregate_id, payload)
SELECT ${UUID_V7_SQL}, '${BACKLOG_EVENT_TYPE}', '/astra/trading-service', 'position', ${aggregateSql('g')}, ${payloadSql('g')}
FROM generate_series($1::bigint, $2::bigint) AS g`;
}

export interface Backlog {
  template: string;
  events: number;
  payloadBytes: number;
  buildSeconds: number;
}

/** A template database holding the service's schema and `events` PENDING events. */
export async function buildBacklogTemplate(events: number, log: (line: string) => void): Promise<Backlog> {
  const started = Date.now();
  const template = await createDatabase('backlog');
  const url = databaseUrl(template);
  await prepareDatabase(url, () => {});
  let payloadBytes = 0;
  await withClient(url, async (client) => {
    const chunk = 200_000;
    for (let first = 1; first <= events; first += chunk) {
      const last = Math.min(events, first + chunk - 1);
      await client.query(insertBacklogSql(), [first, last]);
      log(`  backlog: ${last.toLocaleString('en-US')} / ${events.toLocaleString('en-US')} events`);
    }
    await client.query('VACUUM ANALYZE event_outbox');
    const { rows } = await client.query<{ bytes: number }>(
      'SELECT avg(octet_length(payload::text))::float8 AS bytes FROM event_outbox',
    );
    payloadBytes = Math.round(rows[0]?.bytes ?? 0);
  });
  return { template, events, payloadBytes, buildSeconds: (Date.now() - started) / 1000 };
}
