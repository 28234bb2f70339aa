/**
 * One contender of the drain and latency scenarios, as its own process (a fairer share of the two
 * cores than an instance inside the benchmark's process):
 * - relay: this project's OutboxRelay and RedisStreamsPublisher, with the Prometheus adapter attached
 *   as in the service, and phase timings (claim, publish, mark) taken from the relay's events;
 * - naive: one event per transaction (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED, XADD, UPDATE, COMMIT);
 * - graphile: graphile-worker running a task that XADDs the job payload;
 * - pgboss: pg-boss workers whose handler XADDs each job payload;
 * - reporting: the reporting service's consumer (services/reporting/src/consumer.ts: the consumer
 *   library, inbox and projection in one transaction per event), counting applied events, and with
 *   `stampApplied` reporting when each event's apply committed;
 * - naive-consumer: XREADGROUP COUNT 500, JSON.parse of each entry's data, XACK; no database.
 * Usage: drainer.ts '<json DrainerConfig>'. It says 'ready', starts on 'go', reports progress every
 * 100 ms (with them a stamping consumer's 'applied' events), answers 'trace' with what a traced relay saw,
 * and stops on 'stop' or when the benchmark goes away.
 */
import { performance } from 'node:perf_hooks';
import {
  type OutboxRelay,
  type PublishableEvent,
  type Publisher,
  RedisStreamsPublisher,
} from '@astra/outbox';
import { registerConsumerMetrics } from '@astra/outbox/consumer/prometheus';
import { createReportingConsumer } from '@astra/reporting-service/consumer';
import { createPool } from '@astra/reporting-service/database';
import { createClient } from '@redis/client';
import { Logger, run } from 'graphile-worker';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { Registry } from 'prom-client';
import { benchRelay, type RelayTrace, tracedBenchRelay } from '../lib/relay.ts';
import { epochNow } from '../lib/trace.ts';

export type DrainerConfig =
  | {
      mode: 'relay';
      databaseUrl: string;
      redisUrl: string;
      listen: boolean;
      pollIntervalMs: number;
      rebalanceIntervalMs: number;
      batchSize: number;
      deletePublished: boolean;
      /** Replicas that must confirm each publish (the publisher's `waitReplicas`); absent: 0. */
      waitReplicas?: number;
      /** Stamp each batch for the latency profile, handed over on 'trace' (tracedBenchRelay). */
      trace?: boolean;
    }
  | { mode: 'naive'; databaseUrl: string; redisUrl: string }
  | {
      mode: 'graphile';
      databaseUrl: string;
      redisUrl: string;
      stream: string;
      concurrency: number;
      /** 0 leaves graphile-worker's defaults (no local queue, no batched completion). */
      localQueueSize: number;
    }
  | {
      mode: 'pgboss';
      databaseUrl: string;
      redisUrl: string;
      stream: string;
      queue: string;
      workers: number;
      batchSize: number;
    }
  | {
      mode: 'reporting';
      databaseUrl: string;
      redisUrl: string;
      group: string;
      consumer: string;
      /** Report [event id, when its apply committed] for every applied event (the latency follower). */
      stampApplied: boolean;
    }
  | { mode: 'naive-consumer'; redisUrl: string; streams: string[]; group: string; consumer: string };

export interface Phases {
  batches: number;
  claimMs: number;
  publishMs: number;
  markMs: number;
}

export type DrainerMessage =
  | { type: 'ready' }
  /** `deferred`: events a reporting consumer held back for an earlier version of their position. */
  | { type: 'progress'; done: number; phases: Phases | null; deferred: number }
  | { type: 'trace'; trace: RelayTrace }
  /** Events applied since the last report: [event id, epoch ms when the apply committed]. */
  | { type: 'applied'; stamps: [string, number][] }
  | { type: 'error'; message: string };

const send = (message: DrainerMessage) => {
  if (process.connected) process.send?.(message);
};

let done = 0;
let deferred = 0;
let phases: Phases | null = null;
/** Stamps of applied events not reported yet (reporting mode with stampApplied). */
let appliedStamps: [string, number][] = [];
/** What the traced relay saw since the last 'trace' request. */
let takeTrace: () => RelayTrace = () => ({ stamps: [], loopDelay: { p99: 0, max: 0 } });
const stoppers: (() => Promise<void>)[] = [];

async function redisClient(url: string) {
  const client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  stoppers.push(async () => client.destroy());
  return client;
}

/** Returns the function that starts draining. */
async function prepare(config: DrainerConfig): Promise<() => void> {
  switch (config.mode) {
    case 'relay':
      return prepareRelay(config);
    case 'naive':
      return prepareNaive(config);
    case 'graphile':
      return prepareGraphile(config);
    case 'pgboss':
      return preparePgBoss(config);
    case 'reporting':
      return prepareReporting(config);
    case 'naive-consumer':
      return prepareNaiveConsumer(config);
  }
}

function prepareRelay(config: Extract<DrainerConfig, { mode: 'relay' }>): () => void {
  const publisher = new RedisStreamsPublisher({ url: config.redisUrl, waitReplicas: config.waitReplicas });
  const timing: Phases = { batches: 0, claimMs: 0, publishMs: 0, markMs: 0 };
  phases = timing;
  // Phase boundaries: the end of the previous round (its mark, or its empty claim) -> 'batch' (claim
  // done) -> publish returns -> 'published' (mark committed).
  let roundEnd: number | undefined;
  let claimed: number | undefined;
  let publishEnd: number | undefined;
  const timed = {
    publish: async (events: readonly PublishableEvent[], options?: Parameters<Publisher['publish']>[1]) => {
      const start = performance.now();
      try {
        return await publisher.publish(events, options);
      } finally {
        publishEnd = performance.now();
        timing.publishMs += publishEnd - start;
      }
    },
    confirm: (events: readonly { eventId: string; stream: string }[]) => publisher.confirm(events),
    check: (...args: Parameters<Publisher['check']>) => publisher.check(...args),
    stream: (type: string) => publisher.stream(type),
    ping: () => publisher.ping(),
    close: () => publisher.close(),
  };
  let relay: OutboxRelay;
  if (config.trace === true) {
    const traced = tracedBenchRelay(config, timed);
    relay = traced.relay;
    takeTrace = traced.take;
  } else relay = benchRelay(config, timed);
  relay.on('batch', () => {
    claimed = performance.now();
    if (roundEnd !== undefined) timing.claimMs += claimed - roundEnd;
    timing.batches++;
  });
  relay.on('published', ({ events }) => {
    const end = performance.now();
    if (publishEnd !== undefined && claimed !== undefined) timing.markMs += end - publishEnd;
    roundEnd = end;
    done += events.length;
  });
  stoppers.push(async () => {
    await relay.stop();
    await publisher.close();
  });
  return () => relay.start();
}

async function prepareNaive(config: Extract<DrainerConfig, { mode: 'naive' }>): Promise<() => void> {
  const client = new pg.Client({ connectionString: config.databaseUrl, application_name: 'bench-naive' });
  client.on('error', () => {});
  await client.connect();
  const redis = await redisClient(config.redisUrl);
  let stopping = false;
  let loop: Promise<void> = Promise.resolve();
  // Before the Redis client closes.
  stoppers.unshift(async () => {
    stopping = true;
    await loop.catch(() => {});
    await client.end().catch(() => {});
  });
  const drain = async () => {
    while (!stopping) {
      await client.query('BEGIN');
      const { rows } = await client.query<{
        id: string;
        event_id: string;
        event_type: string;
        aggregate_id: string;
        data: string;
      }>({
        name: 'naive_claim',
        text: `SELECT id::text AS id, event_id::text AS event_id, event_type, aggregate_id, payload::text AS data
               FROM event_outbox WHERE status = 'PENDING' ORDER BY event_outbox.id LIMIT 1
               FOR UPDATE SKIP LOCKED`,
      });
      const row = rows[0];
      if (row === undefined) {
        await client.query('COMMIT');
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      const entryId = String(
        await redis.sendCommand([
          'XADD',
          row.event_type,
          '*',
          'id',
          row.event_id,
          'subject',
          row.aggregate_id,
          'data',
          row.data,
        ]),
      );
      await client.query({
        name: 'naive_mark',
        text: `UPDATE event_outbox SET status = 'PUBLISHED', published_at = now(), updated_at = now(),
               stream_entry_id = $2 WHERE id = $1`,
        values: [row.id, entryId],
      });
      await client.query('COMMIT');
      done++;
    }
  };
  return () => {
    loop = drain().catch((error: unknown) => fail(error));
  };
}

async function prepareGraphile(config: Extract<DrainerConfig, { mode: 'graphile' }>): Promise<() => void> {
  const redis = await redisClient(config.redisUrl);
  const quiet = new Logger(() => () => {});
  return () => {
    const started = run({
      connectionString: config.databaseUrl,
      concurrency: config.concurrency,
      maxPoolSize: config.concurrency + 2,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: quiet,
      taskList: {
        xadd: async (payload) => {
          await redis.sendCommand(['XADD', config.stream, '*', 'data', JSON.stringify(payload)]);
          done++;
        },
      },
      ...(config.localQueueSize > 0
        ? { preset: { worker: { localQueue: { size: config.localQueueSize }, completeJobBatchDelay: 0 } } }
        : {}),
    });
    started.then(
      (runner) => stoppers.unshift(() => runner.stop()),
      (error: unknown) => fail(error),
    );
  };
}

async function preparePgBoss(config: Extract<DrainerConfig, { mode: 'pgboss' }>): Promise<() => void> {
  const redis = await redisClient(config.redisUrl);
  const boss = new PgBoss({
    connectionString: config.databaseUrl,
    max: config.workers + 2,
    supervise: false,
    schedule: false,
    migrate: false,
  });
  boss.on('error', () => {});
  await boss.start();
  stoppers.unshift(() => boss.stop({ graceful: false, wait: false, close: true }));
  return () => {
    for (let i = 0; i < config.workers; i++) {
      boss
        .work<unknown>(
          config.queue,
          { batchSize: config.batchSize, pollingIntervalSeconds: 0.5 },
          async (jobs) => {
            await Promise.all(
              jobs.map((job) =>
                redis.sendCommand(['XADD', config.stream, '*', 'data', JSON.stringify(job.data)]),
              ),
            );
            done += jobs.length;
          },
        )
        .catch((error: unknown) => fail(error));
    }
  };
}

async function prepareReporting(config: Extract<DrainerConfig, { mode: 'reporting' }>): Promise<() => void> {
  const pool = createPool(config.databaseUrl, 2);
  // Connected before 'go', so its PostgreSQL session is there to be sampled from the start.
  await pool.query('SELECT 1');
  const consumer = createReportingConsumer({
    pool,
    redis: { url: config.redisUrl },
    group: config.group,
    tuning: { consumer: config.consumer },
  });
  registerConsumerMetrics({ registry: new Registry(), consumers: [consumer] });
  consumer.on('processed', ({ eventId, outcome }) => {
    if (outcome !== 'applied') return;
    done++;
    if (config.stampApplied) appliedStamps.push([eventId, epochNow()]);
  });
  consumer.on('deferred', () => {
    deferred++;
  });
  consumer.on('deadLettered', ({ eventId, error }) => fail(new Error(`dead-lettered ${eventId}: ${error}`)));
  stoppers.push(async () => {
    await consumer.stop();
    await pool.end();
  });
  return () => consumer.start();
}

async function prepareNaiveConsumer(
  config: Extract<DrainerConfig, { mode: 'naive-consumer' }>,
): Promise<() => void> {
  const redis = await redisClient(config.redisUrl);
  for (const stream of config.streams) {
    await redis.sendCommand(['XGROUP', 'CREATE', stream, config.group, '0', 'MKSTREAM']);
  }
  let stopping = false;
  let loop: Promise<void> = Promise.resolve();
  // Before the Redis client closes.
  stoppers.unshift(async () => {
    stopping = true;
    await loop.catch(() => {});
  });
  type StreamEntries = [string, string[]][];
  const consume = async () => {
    while (!stopping) {
      const reply = (await redis.sendCommand([
        'XREADGROUP',
        'GROUP',
        config.group,
        config.consumer,
        'COUNT',
        '500',
        'BLOCK',
        '100',
        'STREAMS',
        ...config.streams,
        ...config.streams.map(() => '>'),
      ])) as Record<string, StreamEntries> | null;
      // node-redis answers XREADGROUP as { stream: entries }.
      for (const [stream, entries] of Object.entries(reply ?? {})) {
        if (entries.length === 0) continue;
        for (const [, fields] of entries) JSON.parse(fields[fields.indexOf('data') + 1] ?? 'null');
        await redis.sendCommand(['XACK', stream, config.group, ...entries.map(([id]) => id)]);
        done += entries.length;
      }
    }
  };
  return () => {
    loop = consume().catch((error: unknown) => fail(error));
  };
}

function fail(error: unknown): void {
  send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
}

async function stop(code: number): Promise<never> {
  const hard = setTimeout(() => process.exit(code), 5000);
  hard.unref();
  for (const stopper of stoppers) await stopper().catch(() => {});
  process.exit(code);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as DrainerConfig;
  const start = await prepare(config);
  const report = setInterval(() => {
    send({ type: 'progress', done, phases, deferred });
    if (appliedStamps.length > 0) {
      send({ type: 'applied', stamps: appliedStamps });
      appliedStamps = [];
    }
  }, 100);
  report.unref();
  process.on('message', (message: { type?: string }) => {
    if (message.type === 'go') start();
    else if (message.type === 'trace') send({ type: 'trace', trace: takeTrace() });
    else if (message.type === 'stop') {
      send({ type: 'progress', done, phases, deferred });
      void stop(0);
    }
  });
  // The benchmark went away: do not outlive it.
  process.on('disconnect', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  send({ type: 'ready' });
}

main().catch((error: unknown) => {
  fail(error);
  void stop(1);
});
