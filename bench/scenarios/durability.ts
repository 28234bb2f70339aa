/**
 * Scenario 6: what durability costs, on a throwaway Redis primary with one replica. (a) One relay
 * drains a backlog shaped like the drain scenario's with `waitReplicas` 0 and 1; (b) commit-to-ack
 * latency at 250 trades/s (500 events/s) with both; (c) the primary is killed (SIGKILL) after the
 * no-WAIT drain and started again empty on the same port, and the relay's repair is timed until every
 * marker in `{stream}:outbox-state` equals the outbox's record in `event_outbox_streams` again.
 */
import { sleep } from '@astra/test-support';
import pg from 'pg';
import { BACKLOG_EVENT_TYPE, type Backlog, buildBacklogTemplate } from '../lib/backlog.ts';
import type { BenchConfig } from '../lib/config.ts';
import { Drainer } from '../lib/drainer.ts';
import {
  databaseUrl,
  dropDatabase,
  now,
  type RedisClient,
  streamLength,
  type ThrowawayRedis,
  withDatabase,
  withReplicatedRedis,
} from '../lib/infra.ts';
import { outboxTradeWriter } from '../lib/producer.ts';
import { ACCOUNTS } from '../lib/service.ts';
import { type DrainRun, relayConfig, waitDrained } from './drain.ts';
import {
  inChildProcess,
  type LatencyRun,
  latencyRelay,
  measureRates,
  OUTBOX_STREAMS,
  type WithBroker,
} from './latency.ts';

/** The latency runs' offered rate in trades/s (2 events each): the 500 events/s of issue 16. */
export const DURABILITY_TRADE_RATE = 250;

export interface RepairRun {
  /** Events the stream held when the primary was killed, all lost with it. */
  lost: number;
  /** From the restart (Redis's own start-up included) until every marker was back in step. */
  seconds: number;
  eventsPerSecond: number;
  /** Entries in the stream when the markers were back in step. */
  streamLength: number;
  /** The stream held the whole backlog before the wipe and again after the repair. */
  complete: boolean;
}

export interface DurabilityResult {
  events: number;
  /**
   * One relay process, no WAIT and WAIT 1: the best of each setting's rounds, and every round in the
   * order run (A B B A, so a drift in the machine's load weighs on both alike).
   */
  drain: { noWait?: DrainRun; wait?: DrainRun; rounds: { waitReplicas: number; run?: DrainRun }[] };
  /** The relay in its own process (LISTEN/NOTIFY), no WAIT and WAIT 1. */
  latency: { noWait?: LatencyRun; wait?: LatencyRun };
  repair?: RepairRun;
  errors: string[];
}

const primaryOfPair: WithBroker = (work) => withReplicatedRedis((primary) => work(primary));

/** True once every stream and partition the outbox recorded has Redis's marker equal to the record. */
async function markersInStep(db: pg.Client, redis: RedisClient): Promise<boolean> {
  const { rows } = await db.query<{ stream: string; partition_no: number; last_entry_id: string }>(
    'SELECT stream, partition_no, last_entry_id FROM event_outbox_streams',
  );
  if (rows.length === 0) return false;
  for (const stream of new Set(rows.map((row) => row.stream))) {
    // node-redis answers HGETALL with an object.
    const state = (await redis.sendCommand(['HGETALL', `{${stream}}:outbox-state`])) as Record<
      string,
      string
    >;
    for (const row of rows) {
      if (row.stream === stream && state[`m${row.partition_no}`] !== row.last_entry_id) return false;
    }
  }
  return true;
}

/** Polls `check` every 50 ms; false when `limitSeconds` passed first. */
async function until(
  check: () => Promise<boolean>,
  limitSeconds: number,
  drainer: Drainer,
): Promise<boolean> {
  const deadline = now() + limitSeconds * 1000;
  while (now() < deadline) {
    drainer.check();
    if (await check()) return true;
    await sleep(50);
  }
  return false;
}

/** Kills the primary, starts it again empty on its port, and times the relay's repair. */
async function timeRepair(
  config: BenchConfig,
  primary: ThrowawayRedis,
  url: string,
  drainer: Drainer,
  events: number,
): Promise<RepairRun> {
  const db = new pg.Client({ connectionString: url, application_name: 'bench' });
  db.on('error', () => {});
  await db.connect();
  try {
    const inStep = () => markersInStep(db, primary.client);
    // Every batch marked and recorded before the wipe, so the loss is the whole backlog.
    if (!(await until(inStep, config.drainLimitSeconds, drainer)))
      throw new Error('markers not in step after the drain');
    const lost = await streamLength(primary.client, [BACKLOG_EVENT_TYPE]);
    await primary.kill();
    const started = now();
    await primary.restart();
    const complete = await until(inStep, config.drainLimitSeconds, drainer);
    const seconds = (now() - started) / 1000;
    if (!complete) throw new Error(`repair not done within ${config.drainLimitSeconds} s`);
    const length = await streamLength(primary.client, [BACKLOG_EVENT_TYPE]);
    return {
      lost,
      seconds,
      eventsPerSecond: lost / seconds,
      streamLength: length,
      complete: length === events && lost === events,
    };
  } finally {
    await db.end().catch(() => {});
  }
}

/** One relay drains a copy of the backlog; with `repair`, the drain's loss is then repaired and timed. */
async function drainOnPair(
  config: BenchConfig,
  backlog: Backlog,
  waitReplicas: number,
  result: DurabilityResult,
  repair: boolean,
): Promise<DrainRun> {
  return withReplicatedRedis((primary) =>
    withDatabase(
      `durability_wait${waitReplicas}`,
      async (database) => {
        const url = databaseUrl(database);
        // A server that loaded someone's RDB would make the drain look faster than it was.
        if ((await streamLength(primary.client, [BACKLOG_EVENT_TYPE])) !== 0)
          throw new Error('the new Redis is not empty');
        const drainer = await Drainer.start(
          `durability-wait${waitReplicas}`,
          relayConfig(url, primary.url, false, waitReplicas),
        );
        try {
          const started = now();
          drainer.go();
          const waited = await waitDrained(
            primary,
            [BACKLOG_EVENT_TYPE],
            backlog.events,
            config.drainLimitSeconds,
            [drainer],
            started,
          );
          const run: DrainRun = { eventsPerSecond: waited.drained / waited.seconds, ...waited };
          if (repair && waited.complete) {
            try {
              result.repair = await timeRepair(config, primary, url, drainer, backlog.events);
              config.log(
                `    repair of ${result.repair.lost.toLocaleString('en-US')} lost events: ` +
                  `${result.repair.seconds.toFixed(2)} s, stream ${result.repair.streamLength.toLocaleString('en-US')}`,
              );
            } catch (error) {
              result.errors.push(`repair: ${error instanceof Error ? error.message : String(error)}`);
            }
          }
          return run;
        } finally {
          await drainer.stop().catch(() => {});
        }
      },
      backlog.template,
    ),
  );
}

async function latencyOnPair(config: BenchConfig, waitReplicas: number): Promise<LatencyRun | undefined> {
  const runs = await measureRates(
    config,
    'listen',
    [DURABILITY_TRADE_RATE],
    inChildProcess('listen', latencyRelay(true, waitReplicas)),
    outboxTradeWriter(ACCOUNTS, true),
    OUTBOX_STREAMS,
    async () => {},
    primaryOfPair,
  );
  return runs[0];
}

export async function durabilityScenario(config: BenchConfig): Promise<DurabilityResult> {
  const events = config.durabilityEvents;
  const result: DurabilityResult = { events, drain: { rounds: [] }, latency: {}, errors: [] };
  const attempt = async <T>(what: string, work: () => Promise<T>): Promise<T | undefined> => {
    config.log(`  durability: ${what}`);
    try {
      return await work();
    } catch (error) {
      const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
      config.log(`  durability: FAILED ${message}`);
      result.errors.push(message);
      return undefined;
    }
  };
  const rate = (run: DrainRun | undefined) =>
    `    ${run === undefined ? 'failed' : `${Math.round(run.eventsPerSecond ?? 0).toLocaleString('en-US')} events/s`}`;
  const backlog = await buildBacklogTemplate(events, config.log);
  try {
    for (const [index, waitReplicas] of [0, 1, 1, 0].entries()) {
      // The first round's relay goes on to repair the loss of everything it published.
      const repair = index === 0;
      const run = await attempt(
        `drain, waitReplicas ${waitReplicas}${repair ? ', then a wipe and its repair' : ''}`,
        () => drainOnPair(config, backlog, waitReplicas, result, repair),
      );
      config.log(rate(run));
      result.drain.rounds.push({ waitReplicas, run });
    }
    const best = (waitReplicas: number) =>
      result.drain.rounds
        .filter((round) => round.waitReplicas === waitReplicas && round.run?.complete === true)
        .map((round) => round.run as DrainRun)
        .sort((a, b) => (b.eventsPerSecond ?? 0) - (a.eventsPerSecond ?? 0))[0];
    result.drain.noWait = best(0);
    result.drain.wait = best(1);
  } finally {
    await dropDatabase(backlog.template).catch(() => {});
  }
  result.latency.noWait = await attempt(`latency @ ${DURABILITY_TRADE_RATE} trades/s, waitReplicas 0`, () =>
    latencyOnPair(config, 0),
  );
  result.latency.wait = await attempt(`latency @ ${DURABILITY_TRADE_RATE} trades/s, waitReplicas 1`, () =>
    latencyOnPair(config, 1),
  );
  return result;
}
