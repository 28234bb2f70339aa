/**
 * Scenario 3: commit-to-stream latency at fixed offered trade rates. A paced producer runs the
 * service's trade transaction (buy statement + the library writer's insert of two events) and notes
 * when each COMMIT is acknowledged; a consumer blocked in XREAD notes when each event arrives; both on
 * one clock in this process. Modes: LISTEN/NOTIFY (the relay in its own process, as `npm run relay`
 * runs it; the producer wakes it with a NOTIFY after each COMMIT), in-process (the relay in the
 * producer's process, as the service runs it; the producer wakes it with a call), polling only (its own
 * process, listen: false, pollIntervalMs 100, no wake-up), and graphile-worker at 250 and 500 trades/s.
 */

import { type LocalRelay, RedisStreamsPublisher } from '@astra/outbox';
import { sleep, waitFor } from '@astra/test-support';
import { Logger, runMigrations } from 'graphile-worker';
import type { BenchConfig } from '../lib/config.ts';
import { Drainer } from '../lib/drainer.ts';
import {
  checkpoint,
  databaseUrl,
  streamLength,
  type ThrowawayRedis,
  withDatabase,
  withRedis,
} from '../lib/infra.ts';
import {
  graphileTradeWriter,
  outboxTradeWriter,
  producePaced,
  StreamConsumer,
  type TradeWriter,
} from '../lib/producer.ts';
import { type RelayConfig, type RelayTrace, tracedBenchRelay } from '../lib/relay.ts';
import { ACCOUNTS, prepareTradingDatabase } from '../lib/service.ts';
import { eventLatencies, summarize } from '../lib/stats.ts';
import type { LoopDelay } from '../lib/trace.ts';
import type { DrainerConfig } from '../workers/drainer.ts';

export type LatencyMode = 'listen' | 'inprocess' | 'polling' | 'graphile';

export interface LatencyRun {
  mode: LatencyMode;
  rate: number;
  achievedRate: number;
  events: number;
  missing: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** Our relay's runs: where each trade's time went (see stagesOf). */
  stages?: LatencyStages;
  /** With a follower: commit until a downstream consumer had applied each event (ms). */
  applied?: { events: number; missing: number; p50: number; p95: number; p99: number; max: number };
}

/** Medians and 99th percentiles (ms) of each stage of the path, by each trade's first event. */
export interface LatencyStages {
  trades: number;
  /** Commit acknowledged -> the claim holding the event returned: the wake-up, the relay's cycle in progress, the claim. */
  toClaim: { p50: number; p99: number };
  /** Claim returned -> Redis answered the publish script. */
  publish: { p50: number; p99: number };
  /** Redis answered -> the blocked consumer had the entry. */
  toConsumer: { p50: number; p99: number };
  /** Commit acknowledged -> Redis answered the publish (after its WAIT, with waitReplicas). */
  toAck?: { p50: number; p99: number };
  /** How late the relay's process ran its event loop (the producer's too, for the in-process relay). */
  relayLoopDelay?: LoopDelay;
}

export interface LatencyResult {
  runs: LatencyRun[];
  pollIntervalMs: number;
  errors: string[];
}

export const OUTBOX_STREAMS = ['astra.trading.trade_executed.v1', 'astra.trading.position_updated.v1'];
const POLL_INTERVAL_MS = 100;
let nextSeq = 1;

/** Who publishes during a run: a drainer process, or a relay inside this (the producer's) process. */
interface Publishing {
  go(): void;
  /** Throws when the publisher died. */
  check(): void;
  stop(): Promise<void>;
  /** Set when the relay runs in the producer's process: the producer wakes it with a call. */
  localRelay?: LocalRelay;
  /** What our relay saw since the last call (see tracedBenchRelay). */
  trace?: () => Promise<RelayTrace>;
}

type StartPublishing = (databaseUrl: string, redisUrl: string) => Promise<Publishing>;

const inProcess =
  (relayConfig: (databaseUrl: string, redisUrl: string) => RelayConfig) =>
  async (databaseUrl: string, redisUrl: string): Promise<Publishing> => {
    const config = relayConfig(databaseUrl, redisUrl);
    const publisher = new RedisStreamsPublisher({ url: redisUrl, waitReplicas: config.waitReplicas });
    const { relay, take } = tracedBenchRelay(config, publisher);
    return {
      go: () => relay.start(),
      check: () => {},
      stop: async () => {
        await relay.stop();
        await publisher.close();
      },
      localRelay: relay,
      trace: async () => take(),
    };
  };

export const inChildProcess =
  (mode: LatencyMode, drainerConfig: (databaseUrl: string, redisUrl: string) => DrainerConfig) =>
  async (databaseUrl: string, redisUrl: string): Promise<Publishing> => {
    const config = drainerConfig(databaseUrl, redisUrl);
    const drainer = await Drainer.start(`latency-${mode}`, config);
    return {
      go: () => drainer.go(),
      check: () => drainer.check(),
      stop: () => drainer.stop(),
      trace: config.mode === 'relay' && config.trace === true ? () => drainer.trace() : undefined,
    };
  };

/**
 * Where each trade's time went, by its first event: commit -> claim returned -> publish answered ->
 * consumer. Each stage's percentiles are its own (they do not add up to the total's).
 */
function stagesOf(
  commits: Map<string, number>,
  { stamps, loopDelay }: RelayTrace,
  arrivals: Map<string, number[]>,
): LatencyStages | undefined {
  const first = new Map<string, { claimed: number; replied: number }>();
  for (const [tradeId, claimed, replied] of stamps) {
    const known = first.get(tradeId);
    if (known === undefined || claimed < known.claimed) first.set(tradeId, { claimed, replied });
  }
  const toClaim: number[] = [];
  const publish: number[] = [];
  const toConsumer: number[] = [];
  const toAck: number[] = [];
  for (const [tradeId, committed] of commits) {
    const stamp = first.get(tradeId);
    const arrived = arrivals.get(tradeId);
    if (stamp === undefined || arrived === undefined || arrived.length === 0) continue;
    toClaim.push(stamp.claimed - committed);
    publish.push(stamp.replied - stamp.claimed);
    toConsumer.push(Math.min(...arrived) - stamp.replied);
    toAck.push(stamp.replied - committed);
  }
  if (toClaim.length === 0) return undefined;
  const percentiles = (values: number[]) => {
    const { p50, p99 } = summarize(values);
    return { p50, p99 };
  };
  return {
    trades: toClaim.length,
    toClaim: percentiles(toClaim),
    publish: percentiles(publish),
    toConsumer: percentiles(toConsumer),
    toAck: percentiles(toAck),
    relayLoopDelay: loopDelay,
  };
}

/** A downstream consumer following a run beside the stream consumer (see ReportingFollower). */
export interface Follower {
  /** Events it has applied so far. */
  readonly applied: number;
  /** Throws when it failed. */
  check(): void;
  /** trade id -> when each of its events was applied (epoch ms). */
  arrivals(): Promise<Map<string, number[]>>;
  stop(): Promise<void>;
}

export type StartFollower = (databaseUrl: string, redisUrl: string) => Promise<Follower>;

/** Runs `work` on a Redis of its own (withRedis, or a primary with a replica). */
export type WithBroker = <T>(work: (redis: ThrowawayRedis) => Promise<T>) => Promise<T>;

export async function measureRates(
  config: BenchConfig,
  mode: LatencyMode,
  rates: number[],
  startPublishing: StartPublishing,
  write: TradeWriter,
  streams: string[],
  prepare: (database: string) => Promise<void>,
  broker: WithBroker = withRedis,
  follow?: StartFollower,
): Promise<LatencyRun[]> {
  return broker((redis) =>
    withDatabase(`latency_${mode}`, async (database) => {
      await prepareTradingDatabase(database);
      await prepare(database);
      await checkpoint();
      const url = databaseUrl(database);
      const drainer = await startPublishing(url, redis.url);
      const { localRelay } = drainer;
      const runs: LatencyRun[] = [];
      let follower: Follower | undefined;
      /** Events the follower must have applied once it has caught up. */
      let toApply = 0;
      const caughtUp = () => {
        follower?.check();
        return follower === undefined || follower.applied >= toApply;
      };
      try {
        follower = await follow?.(url, redis.url);
        drainer.go();
        for (const rate of rates) {
          // One second to warm up (JIT, prepared statements, connections), not measured; then wait
          // until all of it has arrived, so a slow start does not leave a queue behind.
          const base = await streamLength(redis.client, streams);
          const warm = await producePaced(url, rate, 1, write, { firstSeq: nextSeq, localRelay });
          nextSeq += warm.offered + 1;
          await waitFor(
            `${mode}: warm-up events in the stream`,
            async () => (await streamLength(redis.client, streams)) >= base + 2 * warm.committed,
            60_000,
          );
          toApply += 2 * warm.committed;
          await waitFor(`${mode}: warm-up events applied by the follower`, async () => caughtUp(), 60_000);
          const consumer = new StreamConsumer(redis.url, streams);
          await consumer.start();
          await drainer.trace?.(); // the warm-up's
          try {
            const produced = await producePaced(url, rate, config.latencySeconds, write, {
              firstSeq: nextSeq,
              localRelay,
            });
            nextSeq += produced.offered + 1;
            toApply += 2 * produced.committed;
            // Stragglers: wait until everything committed has arrived (and been applied), at most 5 s
            // (30 s for a follower, which may run behind).
            const straggleMs = follower === undefined ? 5000 : 30_000;
            for (let waited = 0; waited < straggleMs; waited += 50) {
              if (consumer.latencies(produced.commits, 2).missing === 0 && caughtUp()) break;
              await sleep(50);
            }
            drainer.check();
            follower?.check();
            if (consumer.error !== undefined) throw consumer.error;
            const { values, missing } = consumer.latencies(produced.commits, 2);
            const summary = summarize(values);
            const trace = await drainer.trace?.();
            const stages =
              trace === undefined ? undefined : stagesOf(produced.commits, trace, consumer.arrivals);
            let applied: LatencyRun['applied'];
            if (follower !== undefined) {
              const followed = eventLatencies(produced.commits, await follower.arrivals(), 2);
              const { p50, p95, p99, max } = summarize(followed.values);
              applied = { events: followed.values.length, missing: followed.missing, p50, p95, p99, max };
            }
            runs.push({
              mode,
              rate,
              achievedRate: produced.achievedRate,
              events: values.length,
              missing,
              p50: summary.p50,
              p95: summary.p95,
              p99: summary.p99,
              max: summary.max,
              stages,
              applied,
            });
            config.log(
              `    ${mode} ${rate}/s: p50 ${summary.p50.toFixed(2)} ms, p99 ${summary.p99.toFixed(2)} ms` +
                ` (achieved ${Math.round(produced.achievedRate)}/s, missing ${missing})` +
                (stages === undefined
                  ? ''
                  : `; medians: to claim ${stages.toClaim.p50.toFixed(2)}, publish ${stages.publish.p50.toFixed(2)},` +
                    ` to consumer ${stages.toConsumer.p50.toFixed(2)} ms; relay loop late p99` +
                    ` ${stages.relayLoopDelay?.p99.toFixed(1)} ms`) +
                (applied === undefined
                  ? ''
                  : `; applied by the follower p50 ${applied.p50.toFixed(2)} ms, p99 ${applied.p99.toFixed(2)} ms` +
                    ` (missing ${applied.missing})`),
            );
          } finally {
            await consumer.stop();
          }
        }
      } finally {
        await follower?.stop();
        await drainer.stop();
      }
      return runs;
    }),
  );
}

/** Our traced relay as the latency scenario runs it; `waitReplicas` for the durability scenario. */
export const latencyRelay =
  (listen: boolean, waitReplicas = 0) =>
  (databaseUrl: string, redisUrl: string): RelayConfig => ({
    mode: 'relay',
    databaseUrl,
    redisUrl,
    listen,
    pollIntervalMs: listen ? 1000 : POLL_INTERVAL_MS,
    rebalanceIntervalMs: 2000,
    batchSize: 500,
    deletePublished: false,
    waitReplicas,
    trace: true,
  });

export async function latencyScenario(config: BenchConfig): Promise<LatencyResult> {
  const result: LatencyResult = { runs: [], pollIntervalMs: POLL_INTERVAL_MS, errors: [] };
  const relay = (listen: boolean) => latencyRelay(listen);
  /** Our relay in one deployment; `wake`: the producer wakes it after each commit (else it polls). */
  const ours = (mode: LatencyMode, rates: number[], startPublishing: StartPublishing, wake: boolean) => () =>
    measureRates(
      config,
      mode,
      rates,
      startPublishing,
      outboxTradeWriter(ACCOUNTS, wake),
      OUTBOX_STREAMS,
      async () => {},
    );
  const modes: [LatencyMode, () => Promise<LatencyRun[]>][] = [
    ['listen', ours('listen', config.latencyRates, inChildProcess('listen', relay(true)), true)],
    ['inprocess', ours('inprocess', config.latencyRates, inProcess(relay(true)), true)],
    ['polling', ours('polling', config.pollingRates, inChildProcess('polling', relay(false)), false)],
    [
      'graphile',
      () =>
        measureRates(
          config,
          'graphile',
          config.graphileRates,
          inChildProcess('graphile', (databaseUrl, redisUrl) => ({
            mode: 'graphile',
            databaseUrl,
            redisUrl,
            stream: 'bench.graphile',
            concurrency: 8,
            localQueueSize: 0,
          })),
          graphileTradeWriter(ACCOUNTS),
          ['bench.graphile'],
          (database) =>
            runMigrations({ connectionString: databaseUrl(database), logger: new Logger(() => () => {}) }),
        ),
    ],
  ];
  for (const [mode, run] of modes) {
    config.log(`  latency: ${mode}`);
    try {
      result.runs.push(...(await run()));
    } catch (error) {
      const message = `${mode}: ${error instanceof Error ? error.message : String(error)}`;
      config.log(`  latency: FAILED ${message}`);
      result.errors.push(message);
    }
  }
  return result;
}
