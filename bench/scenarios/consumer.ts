/**
 * Scenario 7: the consumer kit (issue 17).
 * (a) Throughput. Trades are written by the service's trade statement (the paced producer, relay off),
 * then our relay (1 process, as in the drain scenario) publishes their events to the two streams: its
 * drain of this backlog is timed from 'go' until the streams hold every event. The same entries are
 * then consumed by each contender in a consumer group of its own, timed from 'go' until the group has
 * acknowledged every entry (XINFO GROUPS lag + pending = 0, polled every 20 ms) or the time box ends:
 * a naive loop (XREADGROUP COUNT 500, JSON.parse of each entry's data, XACK; one process, no database)
 * and the reporting service's consumer (services/reporting/src/consumer.ts with its defaults: per event
 * one transaction holding the inbox row, the ordering check and the ledger or position write) in 1 and
 * in 3 processes on a fresh reporting database. Afterwards the inbox must hold exactly the entries the
 * group acknowledged and the ledger one row per trade event in it.
 * (b) Trade-to-projection latency: the latency scenario's run (measureRates) at 500 trades/s, relay in
 * its own process with LISTEN/NOTIFY, with FOLLOWER_PROCESSES reporting processes following it. From
 * COMMIT acknowledged to the producer until the consumer's `processed` event for that event, which it
 * emits after its transaction committed; both stamps on the epoch clock (`epochNow`) of their own
 * processes. In the same run: commit to the publish script's answer, and to a blocked XREAD.
 */
import { TRADE_EXECUTED } from '@astra/reporting-service/projection';
import type { BenchConfig } from '../lib/config.ts';
import { Drainer } from '../lib/drainer.ts';
import {
  backendPids,
  CpuWindow,
  checkpoint,
  databaseUrl,
  dropDatabase,
  groupBacklog,
  now,
  type ThrowawayRedis,
  withClient,
  withDatabase,
  withRedis,
} from '../lib/infra.ts';
import { outboxTradeWriter, producePaced } from '../lib/producer.ts';
import { createReportingDatabase, ReportingFollower, startReportingConsumers } from '../lib/reporting.ts';
import { ACCOUNTS, prepareTradingDatabase } from '../lib/service.ts';
import { attempt, type DrainRun, relayConfig, timeDrainer, waitForCount } from './drain.ts';
import { inChildProcess, type LatencyRun, latencyRelay, measureRates, OUTBOX_STREAMS } from './latency.ts';

/** The offered trade rate of the latency run: the 500 trades/s of issue 17. */
export const CONSUMER_TRADE_RATE = 500;
/** Reporting processes following the latency run, as in the 3-process throughput run. */
export const FOLLOWER_PROCESSES = 3;
/** The rate the backlog's trades are written at, below what the producer and database sustain here. */
const FILL_RATE = 1000;

export interface ConsumerRun extends DrainRun {
  processes: number;
  /** Reporting consumers: events held back for an earlier version of their position (on another consumer). */
  deferred?: number;
  /** CPU as a share of one core while consuming: the consumer processes, their PostgreSQL sessions, all. */
  cpu?: { consumers: number | null; postgresBackends: number | null; machine: number };
}

export interface ConsumerResult {
  trades: number;
  events: number;
  fillSeconds: number;
  /** Our relay, 1 process, draining the same events to the streams. */
  relay?: DrainRun;
  naive?: ConsumerRun;
  reporting1?: ConsumerRun;
  reporting3?: ConsumerRun;
  /** At CONSUMER_TRADE_RATE: commit to stream, to publish ack, and to applied (`applied`). */
  latency?: LatencyRun;
  errors: string[];
}

/**
 * Lets consumer processes go and times them until their group has acknowledged every entry of the
 * streams (or the time box ends); consumed = entries no longer pending or undelivered.
 */
async function timeConsumers(
  consumers: Drainer[],
  redis: ThrowawayRedis,
  group: string,
  events: number,
  limitSeconds: number,
  backends: () => Promise<number[]>,
): Promise<ConsumerRun> {
  const started = now();
  for (const consumer of consumers) consumer.go();
  const cpu = new CpuWindow({
    consumers: consumers.map((consumer) => consumer.pid),
    postgresBackends: await backends(),
  });
  const waited = await waitForCount(
    async () => events - ((await groupBacklog(redis.client, OUTBOX_STREAMS, group)) ?? events),
    events,
    limitSeconds,
    consumers,
    started,
  );
  const usage = cpu.finish();
  return {
    processes: consumers.length,
    eventsPerSecond: waited.drained / waited.seconds,
    ...waited,
    cpu: {
      consumers: usage.cores.consumers ?? null,
      postgresBackends: usage.cores.postgresBackends ?? null,
      machine: usage.machineCores,
    },
    note: waited.complete ? undefined : `time-boxed at ${limitSeconds} s`,
  };
}

/** The naive consumer: one process reading its own group, no database. */
async function naiveConsume(
  config: BenchConfig,
  redis: ThrowawayRedis,
  events: number,
): Promise<ConsumerRun> {
  const group = 'bench-naive';
  const consumer = await Drainer.start('naive-consumer', {
    mode: 'naive-consumer',
    redisUrl: redis.url,
    streams: OUTBOX_STREAMS,
    group,
    consumer: 'naive-1',
  });
  try {
    return await timeConsumers(
      [consumer],
      redis,
      group,
      events,
      config.consumerTimeBoxSeconds,
      async () => [],
    );
  } finally {
    await consumer.stop();
  }
}

/**
 * The reporting consumer in `processes` processes on a fresh database; afterwards checks that every
 * acknowledged entry was applied (an inbox row each, a ledger row per trade) and nothing else.
 */
async function reportingConsume(
  config: BenchConfig,
  redis: ThrowawayRedis,
  events: number,
  processes: number,
): Promise<ConsumerRun> {
  const group = `reporting-x${processes}`;
  const database = await createReportingDatabase(`consumer_reporting${processes}`);
  try {
    const consumers = await startReportingConsumers(database, redis.url, group, processes, false);
    let run: ConsumerRun;
    try {
      await checkpoint();
      run = await timeConsumers(consumers, redis, group, events, config.consumerTimeBoxSeconds, () =>
        backendPids(database, 'astra-reporting'),
      );
    } finally {
      await Promise.all(consumers.map((consumer) => consumer.stop().catch(() => {})));
    }
    // Counted after the stop, whose last progress report carries the final count.
    run.deferred = consumers.reduce((total, consumer) => total + consumer.deferred, 0);
    const acknowledged = events - ((await groupBacklog(redis.client, OUTBOX_STREAMS, group)) ?? events);
    const counts = await withClient(databaseUrl(database), async (client) => {
      const { rows } = await client.query<{ inbox: number; trades: number; ledger: number }>(
        `SELECT (SELECT count(*) FROM event_inbox WHERE group_name = $1)::int AS inbox,
                (SELECT count(*) FROM event_inbox WHERE group_name = $1 AND event_type = $2)::int AS trades,
                (SELECT count(*) FROM ledger)::int AS ledger`,
        [group, TRADE_EXECUTED],
      );
      return rows[0];
    });
    if (counts === undefined || counts.inbox !== acknowledged || counts.ledger !== counts.trades)
      throw new Error(
        `${group}: ${acknowledged} entries acknowledged but ${counts?.inbox} in the inbox, ` +
          `${counts?.ledger} ledger rows for ${counts?.trades} trade events`,
      );
    return run;
  } finally {
    await dropDatabase(database).catch(() => {});
  }
}

export async function consumerScenario(config: BenchConfig): Promise<ConsumerResult> {
  const result: ConsumerResult = { trades: 0, events: 0, fillSeconds: 0, errors: [] };
  const log = (run: DrainRun | undefined) =>
    config.log(
      `    ${run === undefined ? 'failed' : `${Math.round(run.eventsPerSecond ?? 0).toLocaleString('en-US')} events/s`}` +
        (run?.note === undefined ? '' : ` (${run.note})`),
    );
  await withRedis((redis) =>
    withDatabase('consumer_trading', async (database) => {
      await prepareTradingDatabase(database);
      const url = databaseUrl(database);
      config.log(`  consumer: writing ${config.consumerTrades.toLocaleString('en-US')} trades`);
      // A paced producer skips trades when the database falls behind: write until there are enough.
      const started = now();
      while (result.trades < config.consumerTrades) {
        const fill = await producePaced(
          url,
          FILL_RATE,
          (config.consumerTrades - result.trades) / FILL_RATE,
          outboxTradeWriter(ACCOUNTS, false),
          { firstSeq: result.trades },
        );
        result.trades += fill.committed;
      }
      result.events = 2 * result.trades;
      result.fillSeconds = (now() - started) / 1000;
      await checkpoint();
      result.relay = await attempt(
        result,
        '1 relay draining them to the streams',
        config,
        () =>
          timeDrainer(
            'consumer-relay',
            relayConfig(url, redis.url, false),
            redis,
            OUTBOX_STREAMS,
            result.events,
            config.drainLimitSeconds,
            () => undefined,
          ),
        'consumer',
      );
      log(result.relay);
      if (result.relay?.complete !== true) throw new Error('the relay did not publish the backlog');
      result.naive = await attempt(
        result,
        'naive XREADGROUP + XACK, 1 process',
        config,
        () => naiveConsume(config, redis, result.events),
        'consumer',
      );
      log(result.naive);
      for (const processes of [1, 3] as const) {
        const run = await attempt(
          result,
          `reporting consumer, ${processes} process${processes === 1 ? '' : 'es'}`,
          config,
          () => reportingConsume(config, redis, result.events, processes),
          'consumer',
        );
        log(run);
        if (processes === 1) result.reporting1 = run;
        else result.reporting3 = run;
      }
    }),
  );
  const runs = await attempt(
    result,
    `trade-to-projection latency @ ${CONSUMER_TRADE_RATE} trades/s`,
    config,
    () =>
      measureRates(
        config,
        'listen',
        [CONSUMER_TRADE_RATE],
        inChildProcess('listen', latencyRelay(true)),
        outboxTradeWriter(ACCOUNTS, true),
        OUTBOX_STREAMS,
        async () => {},
        withRedis,
        (tradingUrl, redisUrl) => ReportingFollower.start(tradingUrl, redisUrl, FOLLOWER_PROCESSES),
      ),
    'consumer',
  );
  result.latency = runs?.[0];
  return result;
}
