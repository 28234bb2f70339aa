/**
 * Scenario 4: the highest offered trade rate at which the PENDING backlog stays flat. Writer level:
 * the paced producer runs the service's trade transaction (buy statement + two outbox events) at a
 * fixed rate while one relay process publishes; PostgreSQL, Redis, producer and relay share this
 * machine. The rate steps up until the backlog grows or the producer cannot offer the rate.
 */
import { sleep } from '@astra/test-support';
import type { BenchConfig } from '../lib/config.ts';
import { Drainer } from '../lib/drainer.ts';
import {
  cpuSeconds,
  cpuSecondsOfCommand,
  databaseUrl,
  machineBusySeconds,
  now,
  withClient,
  withDatabase,
  withRedis,
} from '../lib/infra.ts';
import { outboxTradeWriter, producePaced } from '../lib/producer.ts';
import { ACCOUNTS, prepareTradingDatabase } from '../lib/service.ts';
import { slope } from '../lib/stats.ts';

export interface KeepUpStep {
  rate: number;
  achievedRate: number;
  pendingMax: number;
  pendingEnd: number;
  /** Growth of the backlog, events per second (least squares over the samples). */
  growthPerSecond: number;
  /** The backlog stayed flat at the rate actually offered. */
  flat: boolean;
  /** The producer (and the database behind it) could not offer 95% of the rate. */
  producerLimited: boolean;
  reason: string;
  /**
   * CPU while the step ran, as a share of one core: the producer (the benchmark's own process), the
   * relay process, PostgreSQL (all its processes) and Redis; null when too short to tell.
   */
  cpu: { producer: number; relay: number; postgres: number; redis: number; machine: number } | null;
}

export interface KeepUpResult {
  seconds: number;
  steps: KeepUpStep[];
  /**
   * Highest rate actually offered with a flat backlog: the step's rate, or what the producer reached
   * when it could not offer more. 0 when no step was flat.
   */
  highestFlatRate: number;
  errors: string[];
}

const EVENTS_PER_TRADE = 2;

export function judgeStep(
  rate: number,
  achievedRate: number,
  samples: { x: number; y: number }[],
): Omit<KeepUpStep, 'rate' | 'achievedRate' | 'cpu'> {
  const growthPerSecond = slope(samples);
  const pendingEnd = samples[samples.length - 1]?.y ?? 0;
  const pendingMax = Math.max(0, ...samples.map((s) => s.y));
  const offered = Math.min(rate, achievedRate);
  const eventRate = offered * EVENTS_PER_TRADE;
  const producerLimited = achievedRate < 0.95 * rate;
  let reason = producerLimited ? `producer reached only ${Math.round(achievedRate)}/s` : 'flat';
  let flat = true;
  if (growthPerSecond > 0.02 * eventRate) {
    flat = false;
    reason = `backlog grew ${Math.round(growthPerSecond)} events/s`;
  } else if (pendingEnd > Math.max(1000, eventRate)) {
    flat = false;
    reason = `${pendingEnd} events pending at the end`;
  }
  return { pendingMax, pendingEnd, growthPerSecond, flat, producerLimited, reason };
}

interface CpuSample {
  at: number;
  producer: number;
  relay: number;
  postgres: number;
  redis: number;
  machine: number;
}

function cpuSample(relayPid: number, redisPid: number): CpuSample {
  return {
    at: now(),
    producer: cpuSeconds(process.pid) ?? 0,
    relay: cpuSeconds(relayPid) ?? 0,
    postgres: cpuSecondsOfCommand('postgres'),
    redis: cpuSeconds(redisPid) ?? 0,
    machine: machineBusySeconds(),
  };
}

function cpuBetween(first: CpuSample | undefined, last: CpuSample | undefined): KeepUpStep['cpu'] {
  if (first === undefined || last === undefined || last.at - first.at < 1000) return null;
  const seconds = (last.at - first.at) / 1000;
  const rate = (key: Exclude<keyof CpuSample, 'at'>) => (last[key] - first[key]) / seconds;
  return {
    producer: rate('producer'),
    relay: rate('relay'),
    postgres: rate('postgres'),
    redis: rate('redis'),
    machine: rate('machine'),
  };
}

export async function keepUpScenario(config: BenchConfig): Promise<KeepUpResult> {
  const result: KeepUpResult = { seconds: config.keepUpSeconds, steps: [], highestFlatRate: 0, errors: [] };
  try {
    await withRedis((redis) =>
      withDatabase('keepup', async (database) => {
        await prepareTradingDatabase(database);
        const url = databaseUrl(database);
        const drainer = await Drainer.start('keepup-relay', {
          mode: 'relay',
          databaseUrl: url,
          redisUrl: redis.url,
          listen: true,
          pollIntervalMs: 1000,
          rebalanceIntervalMs: 2000,
          batchSize: 500,
          deletePublished: false,
        });
        let seq = 1;
        try {
          drainer.go();
          await withClient(url, async (client) => {
            const pending = async () => {
              const { rows } = await client.query<{ n: string }>(
                "SELECT count(*)::text AS n FROM event_outbox WHERE status = 'PENDING'",
              );
              return Number(rows[0]?.n ?? 0);
            };
            for (const rate of config.keepUpRates) {
              const samples: { x: number; y: number }[] = [];
              const cpuSamples: CpuSample[] = [];
              const started = now();
              let sampling = true;
              const sampler = (async () => {
                while (sampling) {
                  samples.push({ x: (now() - started) / 1000, y: await pending() });
                  cpuSamples.push(cpuSample(drainer.pid, redis.child.pid));
                  await sleep(1000);
                }
              })();
              const produced = await producePaced(
                url,
                rate,
                config.keepUpSeconds,
                outboxTradeWriter(ACCOUNTS, true),
                {
                  firstSeq: seq,
                },
              );
              sampling = false;
              await sampler;
              seq += produced.offered + 1;
              drainer.check();
              const step = {
                rate,
                achievedRate: produced.achievedRate,
                ...judgeStep(rate, produced.achievedRate, samples),
                // The first second and the last are left out: connections opening and closing.
                cpu: cpuBetween(cpuSamples[1], cpuSamples[cpuSamples.length - 2]),
              };
              result.steps.push(step);
              config.log(
                `    ${rate} trades/s: ${step.flat ? 'flat' : 'not flat'} (${step.reason}), achieved ${Math.round(
                  step.achievedRate,
                )}/s, pending max ${step.pendingMax}`,
              );
              if (step.flat)
                result.highestFlatRate = Math.max(result.highestFlatRate, Math.min(rate, step.achievedRate));
              // Beyond a rate the producer cannot offer, higher steps measure nothing new.
              if (!step.flat || step.producerLimited) break;
              // Let the relay catch up before the next step.
              for (let waited = 0; waited < 30_000 && (await pending()) > 1000; waited += 500)
                await sleep(500);
            }
          });
        } finally {
          await drainer.stop();
        }
      }),
    );
  } catch (error) {
    result.errors.push(error instanceof Error ? error.message : String(error));
  }
  return result;
}
