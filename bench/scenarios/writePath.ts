/**
 * Scenario 1: POST /v1/trades under wrk, the real service process with its relay running, against
 * (a) pgbench running the same SQL transaction (the database's limit) and (b) the old design, a
 * bench-only server that commits and then XADDs both events directly.
 */
import { createOutboxWriter } from '@astra/outbox';
import { sleep } from '@astra/test-support';
import { type TradeParams, tradeQuery, tradeWithEventsQuery } from '@astra/trading-service/trades/sql';
import type { BenchConfig } from '../lib/config.ts';
import {
  backendPids,
  CpuWindow,
  databaseUrl,
  RssSampler,
  streamLength,
  withClient,
  withDatabase,
  withRedis,
} from '../lib/infra.ts';
import { runPgbench, UUID_V7_SQL } from '../lib/pgbench.ts';
import { PROFILED_NODE_ARGS, profileWindow, type WindowProfile } from '../lib/profile.ts';
import {
  ACCOUNTS,
  prepareTradingDatabase,
  type RunningServer,
  type ServiceRelay,
  startDirectServer,
  startService,
} from '../lib/service.ts';
import { runWrk, SYMBOLS, type WrkRun } from '../lib/wrk.ts';

export const CONNECTIONS = 32;
export const WRK_THREADS = 2;

export interface HttpRun extends WrkRun {
  peakRssMiB: number | null;
  /** CPU as a share of one core during the measured run. */
  cpu: {
    server: number | null;
    /** The server's pool connections. */
    postgresServer: number | null;
    /** The in-process relay's connection (service only). */
    postgresRelay: number | null;
    redis: number | null;
    machine: number;
  };
  /** Events still PENDING right after the load stopped (service only). */
  pendingAfter?: number;
}

export interface WritePathResult {
  /** The best round of each design. */
  service?: HttpRun;
  direct?: HttpRun;
  /** Requests per second of every round, in the order run (the two designs alternate). */
  rounds?: { service: number[]; direct: number[] };
  /** Diagnostic: the service with its relay switched off, so nothing is published. */
  serviceWithoutRelay?: HttpRun;
  /** Diagnostic: the service with its relay deleting each event it publishes (`deletePublished`). */
  serviceDeletePublished?: HttpRun;
  pgbench?: { clients: number; tps: number; latencyMs: number }[];
  /** Variants of the same SQL that say what each part costs the database. */
  pgbenchDiagnostics?: { variant: PgbenchVariant; clients: number; tps: number; latencyMs: number }[];
  pgbenchBestTps?: number;
  /** Where the CPU went in the service and its PostgreSQL sessions, in a profiled run of its own. */
  profile?: WindowProfile;
  errors: string[];
}

/**
 * pgbench scripts of the service's write: 'service' is its own trade statement (position upsert, trade
 * insert and both events through the outbox writer, from trades/sql.ts, with pgbench variables in place
 * of the parameters) over random accounts and symbols, committed on its own. That is all the service
 * sends: it wakes its in-process relay by a call, not a NOTIFY. Diagnostics: 'notify-after' adds the
 * NOTIFY the waker sends after each commit when several relays share the partitions, 'notify-inside'
 * puts it inside the transaction (as the writer's default `notify: true` does), 'trade-only' is the
 * trade without its events (what the direct-publish design runs).
 */
export type PgbenchVariant = 'service' | 'notify-after' | 'notify-inside' | 'trade-only';

export function tradeTransactionScript(variant: PgbenchVariant = 'service'): string {
  const symbol = `(ARRAY[${SYMBOLS.map((s) => `'${s}'`).join(',')}])[:sym]`;
  const substitutes: Record<string, string> = {
    $1: UUID_V7_SQL,
    $2: `('acct-' || :aid)`,
    $3: symbol,
    $4: '(:qty)::numeric',
    $5: '(:cents / 100.0)::numeric',
    $6: `'{}'`,
    $7: UUID_V7_SQL,
    $8: UUID_V7_SQL,
  };
  const writer = createOutboxWriter({ source: '/astra/trading-service', notify: false });
  // Only the text is used: its $n are replaced by the substitutes above.
  const params: TradeParams = {
    tradeId: '',
    accountId: '',
    symbol: '',
    side: 'BUY',
    quantity: '',
    price: '',
  };
  const query = variant === 'trade-only' ? tradeQuery(params) : tradeWithEventsQuery(params, {}, writer);
  const statement = query.text
    .replace(/\$([1-8])(?!\d)/g, (match) => substitutes[match] ?? match)
    // pgbench reads `:name` as a variable, even in comments and in to_char()'s time format, where a
    // quoted ":" means the same.
    .replace(/--.*$/gm, '')
    .replaceAll('HH24:MI:SS', 'HH24":"MI":"SS')
    .trim();
  const notify = "SELECT pg_notify('event_outbox', NULL);";
  const variables = `\\set aid random(1, ${ACCOUNTS})
\\set sym random(1, ${SYMBOLS.length})
\\set qty random(1, 100)
\\set cents random(1000, 50000)
`;
  switch (variant) {
    case 'notify-after':
      return `${variables}${statement};\n${notify}\n`;
    case 'notify-inside':
      return `${variables}BEGIN;\n${statement};\n${notify}\nCOMMIT;\n`;
    default:
      return `${variables}${statement};\n`;
  }
}

const wrkTarget = (server: RunningServer, apiKey: string) => ({
  url: server.url,
  apiKey,
  accounts: ACCOUNTS,
  connections: CONNECTIONS,
  threads: WRK_THREADS,
});

async function loadServer(
  config: BenchConfig,
  database: string,
  redis: { child: { pid: number } },
  server: RunningServer,
  apiKey: string,
): Promise<HttpRun> {
  const wrk = wrkTarget(server, apiKey);
  await runWrk({ ...wrk, seconds: config.warmupSeconds });
  const rss = new RssSampler({ server: server.child.pid });
  const cpu = new CpuWindow({
    server: [server.child.pid],
    postgresServer: await backendPids(database, 'astra-trading'),
    postgresRelay: await backendPids(database, 'outbox-relay'),
    redis: [redis.child.pid],
  });
  const run = await runWrk({ ...wrk, seconds: config.writeSeconds });
  const usage = cpu.finish();
  rss.stop();
  return {
    ...run,
    peakRssMiB: rss.peak('server'),
    cpu: {
      server: usage.cores.server ?? null,
      postgresServer: usage.cores.postgresServer ?? null,
      postgresRelay: usage.cores.postgresRelay ?? null,
      redis: usage.cores.redis ?? null,
      machine: usage.machineCores,
    },
  };
}

/**
 * The service under wrk. Diagnostics of what the relay costs the write path: 'off' leaves the events
 * PENDING; 'delete' runs it with `deletePublished` (no PUBLISHED history to write).
 */
async function serviceRun(config: BenchConfig, relay: ServiceRelay = 'mark'): Promise<HttpRun> {
  return withRedis((redis) =>
    withDatabase('write_service', async (database) => {
      const apiKey = await prepareTradingDatabase(database);
      const service = await startService(database, redis.url, relay);
      try {
        const run = await loadServer(config, database, redis, service, apiKey);
        run.pendingAfter = await withClient(databaseUrl(database), async (client) => {
          const { rows } = await client.query<{ n: string }>(
            "SELECT count(*)::text AS n FROM event_outbox WHERE status = 'PENDING'",
          );
          return Number(rows[0]?.n ?? 0);
        });
        return run;
      } finally {
        await service.child.kill('SIGTERM', 5000);
      }
    }),
  );
}

/**
 * The service under wrk (relay in-process), its process and PostgreSQL sessions profiled for a few
 * seconds mid-load. Profilers slow what they watch, so this run's rate is not counted.
 */
async function profiledServiceRun(config: BenchConfig): Promise<WindowProfile> {
  return withRedis((redis) =>
    withDatabase('write_profile', async (database) => {
      const apiKey = await prepareTradingDatabase(database);
      const service = await startService(database, redis.url, 'mark', PROFILED_NODE_ARGS);
      try {
        const wrk = wrkTarget(service, apiKey);
        await runWrk({ ...wrk, seconds: config.warmupSeconds });
        const seconds = config.quick ? 3 : 8;
        const load = runWrk({ ...wrk, seconds: seconds + 2 });
        await sleep(1000);
        const sessions = [
          ...(await backendPids(database, 'astra-trading')),
          ...(await backendPids(database, 'outbox-relay')),
        ];
        const profile = await profileWindow([service.child.pid], sessions, seconds);
        await load;
        return profile;
      } finally {
        await service.child.kill('SIGTERM', 5000);
      }
    }),
  );
}

async function directRun(config: BenchConfig): Promise<HttpRun> {
  return withRedis((redis) =>
    withDatabase('write_direct', async (database) => {
      const apiKey = await prepareTradingDatabase(database);
      const server = await startDirectServer(database, redis.url);
      try {
        const run = await loadServer(config, database, redis, server, apiKey);
        const published = await streamLength(redis.client, [
          'astra.trading.trade_executed.v1',
          'astra.trading.position_updated.v1',
        ]);
        if (published === 0) throw new Error('the direct-publish server published nothing');
        return run;
      } finally {
        await server.child.kill('SIGTERM', 5000);
      }
    }),
  );
}

async function pgbenchRun(config: BenchConfig, clients: number, variant: PgbenchVariant = 'service') {
  return withDatabase(`write_pgbench${clients}`, async (database) => {
    await prepareTradingDatabase(database);
    const run = await runPgbench(database, tradeTransactionScript(variant), {
      clients,
      threads: 2,
      seconds: config.pgbenchSeconds,
    });
    return { clients, tps: run.tps, latencyMs: run.latencyMs };
  });
}

export async function writePathScenario(config: BenchConfig): Promise<WritePathResult> {
  const result: WritePathResult = { errors: [] };
  const attempt = async <T>(what: string, work: () => Promise<T>): Promise<T | undefined> => {
    config.log(`  write path: ${what}`);
    try {
      return await work();
    } catch (error) {
      const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
      config.log(`  write path: FAILED ${message}`);
      result.errors.push(message);
      return undefined;
    }
  };
  /** An HTTP contender's run, its rate logged. */
  const httpAttempt = async (what: string, work: () => Promise<HttpRun>): Promise<HttpRun | undefined> => {
    const run = await attempt(what, work);
    if (run !== undefined) config.log(`    ${Math.round(run.requestsPerSecond)} req/s`);
    return run;
  };
  // The service and the direct-publish design alternate, and each keeps its best round: the machine's
  // speed drifts over minutes, and one run of each, minutes apart, would carry that drift into the ratio.
  const serviceRuns: HttpRun[] = [];
  const directRuns: HttpRun[] = [];
  const rounds = config.quick ? 1 : 2;
  for (let round = 1; round <= rounds; round++) {
    const service = await httpAttempt(`service (POST /v1/trades, relay running), round ${round}`, () =>
      serviceRun(config),
    );
    if (service !== undefined) serviceRuns.push(service);
    await sleep(500);
    const direct = await httpAttempt(`direct-publish server (old design), round ${round}`, () =>
      directRun(config),
    );
    if (direct !== undefined) directRuns.push(direct);
    await sleep(500);
  }
  const best = (runs: HttpRun[]) =>
    runs.reduce<HttpRun | undefined>(
      (top, run) => (top === undefined || run.requestsPerSecond > top.requestsPerSecond ? run : top),
      undefined,
    );
  result.service = best(serviceRuns);
  result.direct = best(directRuns);
  result.rounds = {
    service: serviceRuns.map((run) => run.requestsPerSecond),
    direct: directRuns.map((run) => run.requestsPerSecond),
  };
  result.serviceWithoutRelay = await httpAttempt('diagnostic: service with its relay off', () =>
    serviceRun(config, 'off'),
  );
  result.serviceDeletePublished = await httpAttempt('diagnostic: service with deletePublished', () =>
    serviceRun(config, 'delete'),
  );
  result.profile = await attempt('profile of the service (not counted)', () => profiledServiceRun(config));
  const pgbench: NonNullable<WritePathResult['pgbench']> = [];
  for (const clients of [8, 16]) {
    const run = await attempt(`pgbench, same transaction, -c ${clients}`, () => pgbenchRun(config, clients));
    if (run !== undefined) {
      pgbench.push(run);
      config.log(`    ${Math.round(run.tps)} tx/s`);
    }
  }
  result.pgbench = pgbench;
  const diagnostics: NonNullable<WritePathResult['pgbenchDiagnostics']> = [];
  const variants: [PgbenchVariant, number][] = [
    ['notify-after', 8],
    ['notify-inside', 16],
    ['trade-only', 8],
  ];
  for (const [variant, clients] of variants) {
    const run = await attempt(`pgbench diagnostic ${variant}, -c ${clients}`, () =>
      pgbenchRun(config, clients, variant),
    );
    if (run !== undefined) {
      diagnostics.push({ variant, ...run });
      config.log(`    ${Math.round(run.tps)} tx/s`);
    }
  }
  result.pgbenchDiagnostics = diagnostics;
  if (pgbench.length > 0) result.pgbenchBestTps = Math.max(...pgbench.map((run) => run.tps));
  return result;
}
