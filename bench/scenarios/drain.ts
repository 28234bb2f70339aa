/**
 * Scenario 2 (and the drain half of 5): a backlog of PENDING events drained to Redis by 1 and 2 relay
 * processes, against pgbench running the relay's claim-and-mark work as one statement (the database's
 * limit), redis-benchmark XADDing entries like the relay's (Redis's limit), a naive
 * one-event-per-transaction relay, graphile-worker and pg-boss. Also: peak relay memory and
 * CPU during the drain, OutboxAdmin.status() time with the whole backlog pending, and the outbox's
 * size after the drain and after a retention run.
 */

import { OutboxAdmin, OutboxRelay, PARTITION_COUNT, RedisStreamsPublisher } from '@astra/outbox';
import { type EntryEvent, entryFieldValues } from '@astra/outbox/consumer';
import { sleep } from '@astra/test-support';
import { Logger, runMigrations } from 'graphile-worker';
import PgBoss from 'pg-boss';
import { BACKLOG_EVENT_TYPE, type Backlog, buildBacklogTemplate, payloadSql } from '../lib/backlog.ts';
import type { BenchConfig } from '../lib/config.ts';
import { Drainer } from '../lib/drainer.ts';
import {
  backendPids,
  CpuWindow,
  databaseUrl,
  dropDatabase,
  now,
  RssSampler,
  streamLength,
  type ThrowawayRedis,
  withClient,
  withDatabase,
  withRedis,
} from '../lib/infra.ts';
import { runPgbench } from '../lib/pgbench.ts';
import { PROFILED_NODE_ARGS, profileWindow, type WindowProfile } from '../lib/profile.ts';
import { type RedisBenchmarkRun, runRedisBenchmark } from '../lib/redisBenchmark.ts';
import { summarize } from '../lib/stats.ts';
import type { DrainerConfig, Phases } from '../workers/drainer.ts';

export interface DrainRun {
  eventsPerSecond: number | null;
  drained: number;
  seconds: number;
  /** False when the run was time-boxed (or failed) before the backlog was empty. */
  complete: boolean;
  note?: string;
  error?: string;
}

export interface RelayDrainRun extends DrainRun {
  relays: number;
  /** The relay deleted published events (`deletePublished`) instead of marking them. */
  deletePublished?: boolean;
  /** CPU as a share of one core during the drain. */
  cpu?: { relays: number | null; postgresBackends: number | null; redis: number | null; machine: number };
  phases?: { batches: number; claimPct: number; publishPct: number; markPct: number; msPerBatch: number };
  relayPeakRssMiB?: number | null;
}

export interface TableSizes {
  rows: number;
  totalMiB: number;
  heapMiB: number;
  indexesMiB: number;
}

export interface DrainResult {
  events: number;
  payloadBytes: number;
  backlogBuildSeconds: number;
  relay1?: RelayDrainRun;
  relay2?: RelayDrainRun;
  /** Two relays with `deletePublished`. */
  relay2Delete?: RelayDrainRun;
  pgbenchLimit?: DrainRun;
  /** The limit for `deletePublished`: pgbench claiming and deleting in one statement. */
  pgbenchDeleteLimit?: DrainRun;
  /** Redis's limit: plain XADDs of an entry like the relay's, pipelined. */
  redisLimit?: RedisBenchmarkRun;
  naive?: DrainRun;
  graphile?: DrainRun;
  pgboss?: DrainRun;
  statusQueryMs?: { median: number; max: number; pending: number };
  /** Where the CPU went with two relays, in a profiled run of its own (profilers slow what they watch). */
  profile?: WindowProfile;
  sizes?: { afterDrain: TableSizes; afterRetention: TableSizes; retentionSeconds: number };
  errors: string[];
}

const STREAM_GRAPHILE = 'bench.graphile';
const STREAM_PGBOSS = 'bench.pgboss';
const PGBOSS_QUEUE = 'xadd';

/** Waits until `target` entries are in the streams, the time box ends, or a drainer fails. */
export async function waitDrained(
  redis: ThrowawayRedis,
  streams: string[],
  target: number,
  limitSeconds: number,
  drainers: Drainer[],
  started: number,
): Promise<{ drained: number; seconds: number; complete: boolean }> {
  return waitForCount(() => streamLength(redis.client, streams), target, limitSeconds, drainers, started);
}

/** Waits until `count()` reaches `target`, the time box ends, or a drainer fails. */
export async function waitForCount(
  count: () => Promise<number>,
  target: number,
  limitSeconds: number,
  drainers: Drainer[],
  started: number,
): Promise<{ drained: number; seconds: number; complete: boolean }> {
  for (;;) {
    const drained = await count();
    const seconds = (now() - started) / 1000;
    if (drained >= target) return { drained, seconds, complete: true };
    if (seconds >= limitSeconds) return { drained, seconds, complete: false };
    for (const drainer of drainers) drainer.check();
    await sleep(20);
  }
}

function phaseShares(phases: Phases[]): RelayDrainRun['phases'] {
  const sum = phases.reduce(
    (total, p) => ({
      batches: total.batches + p.batches,
      claimMs: total.claimMs + p.claimMs,
      publishMs: total.publishMs + p.publishMs,
      markMs: total.markMs + p.markMs,
    }),
    { batches: 0, claimMs: 0, publishMs: 0, markMs: 0 },
  );
  const all = sum.claimMs + sum.publishMs + sum.markMs;
  if (all === 0 || sum.batches === 0) return undefined;
  return {
    batches: sum.batches,
    claimPct: (100 * sum.claimMs) / all,
    publishPct: (100 * sum.publishMs) / all,
    markPct: (100 * sum.markMs) / all,
    msPerBatch: all / sum.batches,
  };
}

async function tableSizes(url: string): Promise<TableSizes> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ rows: string; total: string; heap: string; indexes: string }>(`
SELECT (SELECT count(*) FROM event_outbox)::text AS rows,
       pg_total_relation_size('event_outbox')::text AS total,
       pg_relation_size('event_outbox')::text AS heap,
       pg_indexes_size('event_outbox')::text AS indexes`);
    const row = rows[0];
    const mib = (value: string | undefined) => Number(value ?? 0) / 1024 / 1024;
    return {
      rows: Number(row?.rows ?? 0),
      totalMiB: mib(row?.total),
      heapMiB: mib(row?.heap),
      indexesMiB: mib(row?.indexes),
    };
  });
}

async function statusQueryTime(url: string): Promise<DrainResult['statusQueryMs']> {
  return withClient(url, async (client) => {
    const admin = new OutboxAdmin(client);
    const times: number[] = [];
    let pending = 0;
    for (let i = 0; i < 7; i++) {
      const start = now();
      pending = (await admin.status()).pending;
      times.push(now() - start);
    }
    const summary = summarize(times);
    return { median: summary.p50, max: summary.max, pending };
  });
}

/** A drainer process running our relay as the drain scenario sets it up. */
export function relayConfig(
  databaseUrl: string,
  redisUrl: string,
  deletePublished: boolean,
  waitReplicas = 0,
): Extract<DrainerConfig, { mode: 'relay' }> {
  return {
    mode: 'relay',
    databaseUrl,
    redisUrl,
    listen: true,
    pollIntervalMs: 1000,
    // Two relays split the partitions within a fraction of a second instead of 2 s.
    rebalanceIntervalMs: 200,
    batchSize: 500,
    deletePublished,
    waitReplicas,
  };
}

/** Our relay, `relays` processes at once, on a copy of the backlog. */
async function relayDrain(
  config: BenchConfig,
  backlog: Backlog,
  { relays, deletePublished }: { relays: number; deletePublished: boolean },
  measureCost: boolean,
  result: DrainResult,
): Promise<RelayDrainRun> {
  return withRedis((redis) =>
    withDatabase(
      `drain_relay${relays}${deletePublished ? '_delete' : ''}`,
      async (database) => {
        const url = databaseUrl(database);
        if (measureCost) result.statusQueryMs = await statusQueryTime(url);
        const drainers: Drainer[] = [];
        try {
          for (let i = 0; i < relays; i++) {
            drainers.push(
              await Drainer.start(`relay-${i + 1}`, relayConfig(url, redis.url, deletePublished)),
            );
          }
          const rss = new RssSampler(Object.fromEntries(drainers.map((d, i) => [`relay${i}`, d.pid])));
          const started = now();
          for (const drainer of drainers) drainer.go();
          await sleep(100);
          const postgres = await backendPids(database, 'outbox-relay');
          const cpu = new CpuWindow({
            relays: drainers.map((d) => d.pid),
            postgresBackends: postgres,
            redis: [redis.child.pid],
          });
          const waited = await waitDrained(
            redis,
            [BACKLOG_EVENT_TYPE],
            backlog.events,
            config.drainLimitSeconds,
            drainers,
            started,
          );
          const usage = cpu.finish();
          rss.stop();
          await sleep(150); // one more progress report with the last phases
          const run: RelayDrainRun = {
            relays,
            deletePublished,
            eventsPerSecond: waited.drained / waited.seconds,
            ...waited,
            cpu: {
              relays: usage.cores.relays ?? null,
              postgresBackends: usage.cores.postgresBackends ?? null,
              redis: usage.cores.redis ?? null,
              machine: usage.machineCores,
            },
            phases: phaseShares(drainers.flatMap((d) => (d.phases === null ? [] : [d.phases]))),
            relayPeakRssMiB: Math.max(...drainers.map((_, i) => rss.peak(`relay${i}`) ?? 0)),
          };
          for (const drainer of drainers) await drainer.stop();
          if (measureCost && waited.complete) result.sizes = await retention(url, redis.url, config);
          return run;
        } finally {
          for (const drainer of drainers) await drainer.stop().catch(() => {});
        }
      },
      backlog.template,
    ),
  );
}

/**
 * Two relays on a copy of the backlog, their processes and PostgreSQL backends profiled for a few
 * seconds once both hold their partitions; stopped before the backlog is empty.
 */
async function profiledDrain(config: BenchConfig, backlog: Backlog): Promise<WindowProfile> {
  return withRedis((redis) =>
    withDatabase(
      'drain_profile',
      async (database) => {
        const url = databaseUrl(database);
        const drainers: Drainer[] = [];
        try {
          for (let i = 0; i < 2; i++) {
            drainers.push(
              await Drainer.start(
                `profiled-relay-${i + 1}`,
                relayConfig(url, redis.url, false),
                PROFILED_NODE_ARGS,
              ),
            );
          }
          for (const drainer of drainers) drainer.go();
          await sleep(1000);
          const profile = await profileWindow(
            drainers.map((drainer) => drainer.pid),
            await backendPids(database, 'outbox-relay'),
            config.quick ? 2 : 5,
          );
          for (const drainer of drainers) drainer.check();
          return profile;
        } finally {
          for (const drainer of drainers) await drainer.stop().catch(() => {});
        }
      },
      backlog.template,
    ),
  );
}

/** Sizes after the drain, then the relay's own retention (retentionSeconds 1) and a VACUUM. */
async function retention(
  url: string,
  redisUrl: string,
  config: BenchConfig,
): Promise<NonNullable<DrainResult['sizes']>> {
  const afterDrain = await tableSizes(url);
  await sleep(1100);
  const publisher = new RedisStreamsPublisher({ url: redisUrl });
  const relay = new OutboxRelay({
    connectionString: url,
    publisher,
    retentionSeconds: 1,
    retentionBatchSize: 5000,
    pollIntervalMs: 10,
  });
  const started = now();
  relay.start();
  try {
    await withClient(url, async (client) => {
      for (;;) {
        const { rows } = await client.query<{ left: boolean }>(
          "SELECT EXISTS (SELECT 1 FROM event_outbox WHERE status = 'PUBLISHED') AS left",
        );
        if (rows[0]?.left !== true) return;
        if ((now() - started) / 1000 > config.drainLimitSeconds) throw new Error('retention did not finish');
        await sleep(200);
      }
    });
  } finally {
    await relay.stop();
    await publisher.close();
  }
  const retentionSeconds = (now() - started) / 1000;
  await withClient(url, (client) => client.query('VACUUM event_outbox'));
  return { afterDrain, afterRetention: await tableSizes(url), retentionSeconds };
}

/**
 * The limit: pgbench runs the claim-and-mark work as one statement, 500 rows a transaction, the way
 * the relay reads: one partition's PENDING events in id order (through the same partial index).
 * For `deletePublished` the statement deletes the rows instead of marking them.
 */
async function pgbenchLimit(backlog: Backlog, deletePublished: boolean): Promise<DrainRun> {
  return withDatabase(
    `drain_pgbench${deletePublished ? '_delete' : ''}`,
    async (database) => {
      const clients = 2;
      const claim = `SELECT id FROM event_outbox WHERE status = 'PENDING' AND partition_no = :p
             ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED`;
      const script = `\\set p random(0, ${PARTITION_COUNT - 1})
${
  deletePublished
    ? `DELETE FROM event_outbox WHERE id IN (${claim});`
    : `UPDATE event_outbox SET status = 'PUBLISHED', published_at = now(), updated_at = now()
WHERE id IN (${claim});`
}
`;
      const run = await runPgbench(database, script, {
        clients,
        threads: clients,
        // Random partitions run dry unevenly near the end: half again as many transactions drain them.
        transactionsPerClient: Math.ceil((1.5 * backlog.events) / 500 / clients),
      });
      const left = await withClient(databaseUrl(database), async (client) => {
        const { rows } = await client.query<{ n: string }>(
          "SELECT count(*)::text AS n FROM event_outbox WHERE status = 'PENDING'",
        );
        return Number(rows[0]?.n ?? 0);
      });
      const drained = backlog.events - left;
      return {
        eventsPerSecond: drained / run.seconds,
        drained,
        seconds: run.seconds,
        complete: left === 0,
        note: `pgbench -c ${clients} -j ${clients} -M prepared, ${run.transactions} transactions of up to 500 rows`,
      };
    },
    backlog.template,
  );
}

/**
 * Redis's limit: redis-benchmark XADDing, as many times as the backlog has events, one entry shaped like
 * the relay's: the backlog's first event with the fields the publish script writes for it.
 */
async function redisLimit(backlog: Backlog): Promise<RedisBenchmarkRun> {
  const fields = await withClient(databaseUrl(backlog.template), async (client) => {
    const { rows } = await client.query<EntryEvent>(
      `SELECT event_id::text AS "eventId", event_type AS type, source, aggregate_id AS "aggregateId",
              to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS time,
              payload::text AS data
       FROM event_outbox ORDER BY id LIMIT 1`,
    );
    if (rows[0] === undefined) throw new Error('the backlog is empty');
    return entryFieldValues(rows[0]);
  });
  return withRedis((redis) =>
    runRedisBenchmark(
      redis.port,
      redis.child.pid,
      ['XADD', 'bench.redis-limit', '*', ...fields],
      backlog.events,
    ),
  );
}

/**
 * Times one peer's drainer process: starts it, lets it go, waits until `events` entries are in `streams`
 * or `limitSeconds` pass, and stops it. `note` describes the run (and says when it was time-boxed).
 */
export async function timeDrainer(
  name: string,
  drainerConfig: DrainerConfig,
  redis: ThrowawayRedis,
  streams: string[],
  events: number,
  limitSeconds: number,
  note: (complete: boolean) => string | undefined,
): Promise<DrainRun> {
  const drainer = await Drainer.start(name, drainerConfig);
  try {
    const started = now();
    drainer.go();
    const waited = await waitDrained(redis, streams, events, limitSeconds, [drainer], started);
    return { eventsPerSecond: waited.drained / waited.seconds, ...waited, note: note(waited.complete) };
  } finally {
    await drainer.stop();
  }
}

async function naiveDrain(config: BenchConfig, backlog: Backlog): Promise<DrainRun> {
  return withRedis((redis) =>
    withDatabase(
      'drain_naive',
      (database) =>
        timeDrainer(
          'naive',
          { mode: 'naive', databaseUrl: databaseUrl(database), redisUrl: redis.url },
          redis,
          [BACKLOG_EVENT_TYPE],
          backlog.events,
          config.timeBoxSeconds,
          (complete) => (complete ? undefined : `time-boxed at ${config.timeBoxSeconds} s`),
        ),
      backlog.template,
    ),
  );
}

/** graphile-worker 0.17.3: jobs enqueued with add_jobs (one statement per 50,000), then drained. */
async function graphileDrain(config: BenchConfig, events: number): Promise<DrainRun> {
  return withRedis((redis) =>
    withDatabase('drain_graphile', async (database) => {
      const url = databaseUrl(database);
      await runMigrations({ connectionString: url, logger: new Logger(() => () => {}) });
      await enqueueGraphile(url, events);
      const concurrency = 16;
      const localQueueSize = 500;
      return timeDrainer(
        'graphile-worker',
        {
          mode: 'graphile',
          databaseUrl: url,
          redisUrl: redis.url,
          stream: STREAM_GRAPHILE,
          concurrency,
          localQueueSize,
        },
        redis,
        [STREAM_GRAPHILE],
        events,
        config.drainLimitSeconds,
        () => `concurrency ${concurrency}, localQueue.size ${localQueueSize}, completeJobBatchDelay 0`,
      );
    }),
  );
}

export async function enqueueGraphile(url: string, events: number, first = 1): Promise<void> {
  await withClient(url, async (client) => {
    const chunk = 50_000;
    for (let from = first; from < first + events; from += chunk) {
      const to = Math.min(first + events - 1, from + chunk - 1);
      await client.query(
        `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
           SELECT ROW('xadd', ${payloadSql('g')}::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
           FROM generate_series($1::bigint, $2::bigint) AS g))`,
        [from, to],
      );
    }
    await client.query('VACUUM ANALYZE');
  });
}

/** pg-boss 10.4.2: its schema and queue made by pg-boss itself, the jobs inserted by SQL, then drained. */
async function pgbossDrain(config: BenchConfig, events: number): Promise<DrainRun> {
  return withRedis((redis) =>
    withDatabase('drain_pgboss', async (database) => {
      const url = databaseUrl(database);
      const boss = new PgBoss({
        connectionString: url,
        supervise: false,
        schedule: false,
        migrate: true,
        max: 2,
      });
      boss.on('error', () => {});
      await boss.start();
      await boss.createQueue(PGBOSS_QUEUE);
      await boss.stop({ graceful: false, wait: true, close: true });
      await withClient(url, async (client) => {
        await client.query(
          `INSERT INTO pgboss.job (name, data, policy)
           SELECT $1, ${payloadSql('g')}, (SELECT policy FROM pgboss.queue WHERE name = $1)
           FROM generate_series(1, $2::bigint) AS g`,
          [PGBOSS_QUEUE, events],
        );
        await client.query('VACUUM ANALYZE');
      });
      const workers = 4;
      const batchSize = 100;
      return timeDrainer(
        'pg-boss',
        {
          mode: 'pgboss',
          databaseUrl: url,
          redisUrl: redis.url,
          stream: STREAM_PGBOSS,
          queue: PGBOSS_QUEUE,
          workers,
          batchSize,
        },
        redis,
        [STREAM_PGBOSS],
        events,
        config.timeBoxSeconds,
        (complete) =>
          `${workers} workers x batchSize ${batchSize}, polling 0.5 s${
            complete ? '' : `; time-boxed at ${config.timeBoxSeconds} s`
          }`,
      );
    }),
  );
}

/** Runs one contender; a failure is logged and kept in `result.errors`, and the scenario goes on. */
export async function attempt<T>(
  result: { errors: string[] },
  what: string,
  config: BenchConfig,
  work: () => Promise<T>,
  scenario = 'drain',
): Promise<T | undefined> {
  config.log(`  ${scenario}: ${what}`);
  try {
    return await work();
  } catch (error) {
    const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
    config.log(`  ${scenario}: FAILED ${message}`);
    result.errors.push(message);
    return undefined;
  }
}

export async function drainScenario(config: BenchConfig): Promise<DrainResult> {
  const backlog = await buildBacklogTemplate(config.drainEvents, config.log);
  const result: DrainResult = {
    events: backlog.events,
    payloadBytes: backlog.payloadBytes,
    backlogBuildSeconds: backlog.buildSeconds,
    errors: [],
  };
  const perSecond = (value: number | null | undefined, unit: string) =>
    value === undefined ? 'failed' : `${Math.round(value ?? 0).toLocaleString('en-US')} ${unit}/s`;
  const fmt = (run: DrainRun | undefined) =>
    perSecond(run === undefined ? undefined : run.eventsPerSecond, 'events');
  try {
    result.relay1 = await attempt(result, '1 relay', config, () =>
      relayDrain(config, backlog, { relays: 1, deletePublished: false }, true, result),
    );
    config.log(`    ${fmt(result.relay1)}`);
    result.relay2 = await attempt(result, '2 relays', config, () =>
      relayDrain(config, backlog, { relays: 2, deletePublished: false }, false, result),
    );
    config.log(`    ${fmt(result.relay2)}`);
    result.relay2Delete = await attempt(result, '2 relays, deletePublished', config, () =>
      relayDrain(config, backlog, { relays: 2, deletePublished: true }, false, result),
    );
    config.log(`    ${fmt(result.relay2Delete)}`);
    result.pgbenchLimit = await attempt(result, 'pgbench claim-and-mark', config, () =>
      pgbenchLimit(backlog, false),
    );
    config.log(`    ${fmt(result.pgbenchLimit)}`);
    result.pgbenchDeleteLimit = await attempt(result, 'pgbench claim-and-delete', config, () =>
      pgbenchLimit(backlog, true),
    );
    config.log(`    ${fmt(result.pgbenchDeleteLimit)}`);
    result.redisLimit = await attempt(result, 'redis-benchmark XADD', config, () => redisLimit(backlog));
    config.log(`    ${perSecond(result.redisLimit?.requestsPerSecond, 'XADDs')}`);
    result.naive = await attempt(result, 'naive relay', config, () => naiveDrain(config, backlog));
    config.log(`    ${fmt(result.naive)}`);
    result.profile = await attempt(result, 'profile of 2 relays (not timed)', config, () =>
      profiledDrain(config, backlog),
    );
  } finally {
    await dropDatabase(backlog.template).catch(() => {});
  }
  result.graphile = await attempt(result, 'graphile-worker', config, () =>
    graphileDrain(config, backlog.events),
  );
  config.log(`    ${fmt(result.graphile)}`);
  result.pgboss = await attempt(result, 'pg-boss', config, () => pgbossDrain(config, backlog.events));
  config.log(`    ${fmt(result.pgboss)}`);
  return result;
}
