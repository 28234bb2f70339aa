/**
 * Renders one run's results file (bench/results/*.json) as the printed table, the targets and the
 * Markdown report. It states only what the file holds; what the figures mean, with their dates, is
 * written by hand in bench/FINDINGS.md.
 */

import type { ProcessProfile, WindowProfile } from './lib/profile.ts';
import { ratio } from './lib/stats.ts';
import type { ConsumerResult, ConsumerRun } from './scenarios/consumer.ts';
import type { DrainResult, DrainRun, RelayDrainRun } from './scenarios/drain.ts';
import type { DurabilityResult } from './scenarios/durability.ts';
import type { KeepUpResult } from './scenarios/keepUp.ts';
import type { LatencyResult, LatencyRun } from './scenarios/latency.ts';
import type { OutageResult } from './scenarios/outage.ts';
import type { WritePathResult } from './scenarios/writePath.ts';

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  postgres: string;
  redis: string;
  wrk: string;
  pgbench: string;
  /** Absent from results written before the drain measured Redis's limit. */
  redisBenchmark?: string;
  os: string;
  loadBefore: number[];
  loadAfter: number[];
  commit: string;
}

export type BenchParameter = number | string | number[];

export interface BenchReport {
  date: string;
  mode: 'quick' | 'full';
  command: string;
  durationSeconds: number;
  machine: Machine;
  writePath?: WritePathResult;
  drain?: DrainResult;
  latency?: LatencyResult;
  keepUp?: KeepUpResult;
  outage?: OutageResult;
  durability?: DurabilityResult;
  consumer?: ConsumerResult;
  /** The run's sizes, rates and settings; absent from results written before they were recorded. */
  parameters?: Record<string, BenchParameter>;
  /** Per scenario: share of its time in which some task waited for a CPU, or for IO (Linux PSI). */
  pressure?: Record<string, { cpuPct: number; ioPct: number }>;
  errors: string[];
}

export interface Row {
  scenario: string;
  measure: string;
  value: string;
}

export interface Target {
  target: string;
  measured: string;
  met: boolean | null;
}

const int = (value: number | null | undefined) =>
  value === null || value === undefined || !Number.isFinite(value)
    ? 'n/a'
    : Math.round(value).toLocaleString('en-US');
const fixed = (value: number | null | undefined, digits = 2) =>
  value === null || value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits);
const times = (value: number | null) => (value === null ? 'n/a' : `${value.toFixed(2)}x`);
// One decimal, so a ratio just short of its target does not print as the target itself.
const pct = (value: number | null) => (value === null ? 'n/a' : `${(value * 100).toFixed(1)}%`);

function drainValue(run: DrainRun | undefined): string {
  if (run === undefined) return 'failed';
  const rate = `${int(run.eventsPerSecond)} events/s`;
  return run.complete ? rate : `${rate} (${int(run.drained)} drained in ${fixed(run.seconds, 1)} s, not all)`;
}

function bestRelay(drain: DrainResult | undefined): number | null {
  const rates = [drain?.relay1?.eventsPerSecond, drain?.relay2?.eventsPerSecond].filter(
    (rate): rate is number => typeof rate === 'number' && Number.isFinite(rate),
  );
  return rates.length === 0 ? null : Math.max(...rates);
}

const relayLabel = (run: RelayDrainRun) =>
  `relay x${run.relays}${run.deletePublished ? ' deletePublished' : ''}`;

export function buildRows(report: BenchReport): Row[] {
  const rows: Row[] = [];
  const add = (scenario: string, measure: string, value: string) => rows.push({ scenario, measure, value });

  const w = report.writePath;
  if (w !== undefined) {
    const s = w.service;
    const d = w.direct;
    add(
      '1 write path',
      'service POST /v1/trades (relay running) under wrk, best round',
      s ? `${int(s.requestsPerSecond)} req/s` : 'failed',
    );
    if (w.rounds !== undefined && w.rounds.service.length > 1) {
      const list = (rates: number[]) => rates.map((rate) => int(rate)).join(', ');
      add(
        '1 write path',
        'rounds, alternating (req/s): service; direct-publish',
        `${list(w.rounds.service)}; ${list(w.rounds.direct)}`,
      );
    }
    if (s) {
      add(
        '1 write path',
        'service latency p50 / p95 / p99',
        `${fixed(s.latencyMs.p50)} / ${fixed(s.latencyMs.p95)} / ${fixed(s.latencyMs.p99)} ms`,
      );
      add('1 write path', 'service errors (non-2xx, socket)', int(s.errors));
      add('1 write path', 'events pending when the load stopped', int(s.pendingAfter));
      add(
        '1 write path',
        'service CPU (cores): process / PG pool backends / PG relay backend / redis / machine',
        `${fixed(s.cpu.server)} / ${fixed(s.cpu.postgresServer)} / ${fixed(s.cpu.postgresRelay)} / ${fixed(s.cpu.redis)} / ${fixed(s.cpu.machine)}`,
      );
    }
    for (const run of w.pgbench ?? []) {
      add(
        '1 write path',
        `pgbench same transaction -c ${run.clients}`,
        `${int(run.tps)} tx/s (avg ${fixed(run.latencyMs)} ms)`,
      );
    }
    const diagnosticLabels: Record<string, string> = {
      'notify-after': 'then a NOTIFY after COMMIT (the wake-up when relays share the partitions)',
      'notify-inside': 'the NOTIFY INSIDE the transaction',
      'trade-only': 'the trade alone (no events, no NOTIFY)',
    };
    for (const run of w.pgbenchDiagnostics ?? []) {
      add(
        '1 write path',
        `diagnostic: pgbench -c ${run.clients}, ${diagnosticLabels[run.variant] ?? run.variant}`,
        `${int(run.tps)} tx/s (avg ${fixed(run.latencyMs)} ms)`,
      );
    }
    add(
      '1 write path',
      'direct-publish design (commit, then XADD), best round',
      d ? `${int(d.requestsPerSecond)} req/s` : 'failed',
    );
    if (d) {
      add(
        '1 write path',
        'direct latency p50 / p95 / p99',
        `${fixed(d.latencyMs.p50)} / ${fixed(d.latencyMs.p95)} / ${fixed(d.latencyMs.p99)} ms`,
      );
      add(
        '1 write path',
        'direct CPU (cores): process / PG pool backends / redis / machine',
        `${fixed(d.cpu.server)} / ${fixed(d.cpu.postgresServer)} / ${fixed(d.cpu.redis)} / ${fixed(d.cpu.machine)}`,
      );
    }
    const off = w.serviceWithoutRelay;
    if (off) {
      add(
        '1 write path',
        'diagnostic: service with its relay off (nothing published)',
        `${int(off.requestsPerSecond)} req/s`,
      );
    }
    const deleting = w.serviceDeletePublished;
    if (deleting) {
      add(
        '1 write path',
        'diagnostic: service with its relay deleting what it publishes (deletePublished)',
        `${int(deleting.requestsPerSecond)} req/s (${times(ratio(deleting.requestsPerSecond, d?.requestsPerSecond))} direct)`,
      );
    }
    if (s && d) {
      add(
        '1 write path',
        'PostgreSQL CPU per request (ms): service sessions / its relay session / relay off / direct',
        [
          cpuMicros(s.cpu.postgresServer, s.requestsPerSecond),
          cpuMicros(s.cpu.postgresRelay, s.requestsPerSecond),
          cpuMicros(off?.cpu.postgresServer ?? null, off?.requestsPerSecond),
          cpuMicros(d.cpu.postgresServer, d.requestsPerSecond),
        ]
          .map((us) => fixed(us === null ? null : us / 1000))
          .join(' / '),
      );
    }
    add(
      '1 write path',
      'ratio service / pgbench (best)',
      times(ratio(s?.requestsPerSecond, w.pgbenchBestTps)),
    );
    add('1 write path', 'ratio service / direct', times(ratio(s?.requestsPerSecond, d?.requestsPerSecond)));
  }

  const dr = report.drain;
  if (dr !== undefined) {
    const label = `2 drain ${int(dr.events)}`;
    add(
      label,
      `backlog: ${int(dr.events)} PENDING, ${dr.payloadBytes} B payloads`,
      `built in ${fixed(dr.backlogBuildSeconds, 1)} s`,
    );
    add(label, 'our relay, 1 process', drainValue(dr.relay1));
    add(label, 'our relay, 2 processes', drainValue(dr.relay2));
    add(label, 'our relay, 2 processes, deletePublished', drainValue(dr.relay2Delete));
    add(label, 'limit: pgbench claim-and-mark statement', drainValue(dr.pgbenchLimit));
    add(label, 'limit: pgbench claim-and-delete statement', drainValue(dr.pgbenchDeleteLimit));
    const redis = dr.redisLimit;
    add(
      label,
      'limit: redis-benchmark XADD of an entry like ours (pipelined)',
      redis === undefined
        ? 'failed'
        : `${int(redis.requestsPerSecond)} XADDs/s (Redis CPU ${fixed(redis.redisMicrosPerRequest, 1)} µs each)`,
    );
    add(label, 'naive relay (one event per transaction)', drainValue(dr.naive));
    add(label, 'graphile-worker (handler XADDs)', drainValue(dr.graphile));
    add(label, 'pg-boss (handler XADDs)', drainValue(dr.pgboss));
    const best = bestRelay(dr);
    add(label, 'ratio ours (best) / pgbench limit', times(ratio(best, dr.pgbenchLimit?.eventsPerSecond)));
    add(label, 'ratio ours (best) / Redis XADD limit', times(ratio(best, redis?.requestsPerSecond)));
    add(label, 'ratio ours (best) / graphile-worker', times(ratio(best, dr.graphile?.eventsPerSecond)));
    add(label, 'ratio ours (best) / pg-boss', times(ratio(best, dr.pgboss?.eventsPerSecond)));
    add(label, 'ratio ours (best) / naive', times(ratio(best, dr.naive?.eventsPerSecond)));
    const deleting = dr.relay2Delete?.eventsPerSecond;
    add(
      label,
      'ratio deletePublished / claim-and-delete limit',
      times(ratio(deleting, dr.pgbenchDeleteLimit?.eventsPerSecond)),
    );
    add(
      label,
      'ratio deletePublished / graphile-worker',
      times(ratio(deleting, dr.graphile?.eventsPerSecond)),
    );
    for (const run of [dr.relay1, dr.relay2, dr.relay2Delete]) {
      if (run?.phases) {
        add(
          label,
          `${relayLabel(run)} time per batch: claim / publish / mark`,
          `${fixed(run.phases.claimPct, 0)}% / ${fixed(run.phases.publishPct, 0)}% / ${fixed(run.phases.markPct, 0)}% of ${fixed(run.phases.msPerBatch, 1)} ms`,
        );
      }
      if (run?.cpu) {
        add(
          label,
          `${relayLabel(run)} CPU (cores): relay / its PG backends / redis / machine`,
          `${fixed(run.cpu.relays)} / ${fixed(run.cpu.postgresBackends)} / ${fixed(run.cpu.redis)} / ${fixed(run.cpu.machine)}`,
        );
        const us = cpuPerEvent(run);
        if (us !== undefined)
          add(
            label,
            `${relayLabel(run)} CPU per event (µs): relay / its PG backends / redis / all three`,
            [us.relay, us.postgres, us.redis, us.total].map((value) => fixed(value, 0)).join(' / '),
          );
      }
    }
  }

  const l = report.latency;
  if (l !== undefined) {
    for (const run of l.runs) {
      const mode = {
        listen: 'ours, own process, LISTEN/NOTIFY',
        inprocess: "ours, in the writer's process, woken by a call",
        polling: `ours, own process, polling only (${l.pollIntervalMs} ms)`,
        graphile: 'graphile-worker 0.17.3',
      }[run.mode];
      add(
        '3 latency',
        `${mode} @ ${run.rate} trades/s (${run.rate * 2} events/s): p50 / p95 / p99 / max`,
        `${fixed(run.p50)} / ${fixed(run.p95)} / ${fixed(run.p99)} / ${fixed(run.max)} ms${
          run.achievedRate < 0.95 * run.rate ? ` (offered only ${int(run.achievedRate)}/s)` : ''
        }${run.missing > 0 ? ` (${run.missing} missing)` : ''}`,
      );
      if (run.stages !== undefined) {
        const stage = ({ p50, p99 }: { p50: number; p99: number }) => `${fixed(p50)} (${fixed(p99)})`;
        add(
          '3 latency',
          `  where it went @ ${run.rate}/s, p50 (p99): commit to claim returned / publish script / to consumer; relay's event loop late p99 (max)`,
          `${stage(run.stages.toClaim)} / ${stage(run.stages.publish)} / ${stage(run.stages.toConsumer)} ms` +
            (run.stages.relayLoopDelay === undefined
              ? ''
              : `; ${fixed(run.stages.relayLoopDelay.p99, 1)} (${fixed(run.stages.relayLoopDelay.max, 1)}) ms`),
        );
      }
    }
  }

  const k = report.keepUp;
  if (k !== undefined) {
    for (const step of k.steps) {
      add(
        '4 keeping up',
        `${int(step.rate)} trades/s (writer level) for ${k.seconds} s`,
        `${step.flat ? 'flat' : 'NOT flat'}${step.reason === 'flat' ? '' : ` (${step.reason})`}; pending max ${int(step.pendingMax)}` +
          (step.cpu === null || step.cpu === undefined
            ? ''
            : `; CPU (cores) producer ${fixed(step.cpu.producer)} / relay ${fixed(step.cpu.relay)} / ` +
              `PostgreSQL ${fixed(step.cpu.postgres)} / redis ${fixed(step.cpu.redis)} / machine ${fixed(step.cpu.machine)}`),
      );
    }
    const limited = k.steps.some((step) => step.flat && step.producerLimited);
    add(
      '4 keeping up',
      'highest offered rate with a flat backlog',
      `${int(k.highestFlatRate)} trades/s${limited ? ' (the producer/database could offer no more: a lower bound)' : ''}`,
    );
  }

  durabilityRows(report.durability, add);
  consumerRows(report.consumer, report.parameters?.consumerFollowerProcesses, add);

  const o = report.outage;
  if (dr !== undefined || o !== undefined) {
    if (dr?.relay1?.relayPeakRssMiB !== undefined)
      add('5 cost', 'relay peak RSS during the drain', `${fixed(dr.relay1.relayPeakRssMiB, 0)} MiB`);
    if (w?.service?.peakRssMiB !== undefined)
      add(
        '5 cost',
        'service peak RSS under write load (relay in-process)',
        `${fixed(w.service.peakRssMiB, 0)} MiB`,
      );
    if (o !== undefined) {
      const r = o.relayRssMiB;
      const s = o.serviceRssMiB;
      add(
        '5 cost',
        `relay RSS before / during ${o.outageSeconds} s Redis outage / after`,
        `${fixed(r.before, 0)} / ${fixed(r.during, 0)} / ${fixed(r.after, 0)} MiB`,
      );
      add(
        '5 cost',
        'service RSS before / during / after',
        `${fixed(s.before, 0)} / ${fixed(s.during, 0)} / ${fixed(s.after, 0)} MiB`,
      );
      add(
        '5 cost',
        'backlog at Redis restart; time to empty it',
        `${int(o.pendingAtRestart)} events; ${o.recoverySeconds === null ? 'not within the limit' : `${fixed(o.recoverySeconds, 1)} s`}`,
      );
      if (o.error) add('5 cost', 'outage run', `failed: ${o.error}`);
    }
    if (dr?.statusQueryMs)
      add(
        '5 cost',
        `OutboxAdmin.status() with ${int(dr.statusQueryMs.pending)} pending`,
        `${fixed(dr.statusQueryMs.median)} ms median, ${fixed(dr.statusQueryMs.max)} ms max`,
      );
    if (dr?.sizes) {
      const a = dr.sizes.afterDrain;
      const b = dr.sizes.afterRetention;
      add(
        '5 cost',
        `outbox after ${int(a.rows)} published: total / heap / indexes`,
        `${fixed(a.totalMiB, 1)} / ${fixed(a.heapMiB, 1)} / ${fixed(a.indexesMiB, 1)} MiB`,
      );
      add(
        '5 cost',
        `after retention (${fixed(dr.sizes.retentionSeconds, 1)} s) + VACUUM, ${int(b.rows)} rows`,
        `${fixed(b.totalMiB, 1)} / ${fixed(b.heapMiB, 1)} / ${fixed(b.indexesMiB, 1)} MiB`,
      );
    }
  }
  return rows;
}

/** Scenario 6: WAIT 1 against no WAIT in the same run, and the repair of a whole backlog lost. */
function durabilityRows(
  d: DurabilityResult | undefined,
  add: (s: string, m: string, v: string) => void,
): void {
  if (d === undefined) return;
  const label = `6 durability ${int(d.events)}`;
  const { noWait, wait } = d.drain;
  add(label, 'our relay, 1 process, primary + 1 replica, waitReplicas 0, best round', drainValue(noWait));
  add(label, 'our relay, 1 process, primary + 1 replica, waitReplicas 1, best round', drainValue(wait));
  add(
    label,
    'rounds in order, events/s (waitReplicas)',
    d.drain.rounds
      .map(
        (round) =>
          `${round.run === undefined ? 'failed' : int(round.run.eventsPerSecond)} (${round.waitReplicas})`,
      )
      .join(', '),
  );
  add(
    label,
    'ratio drain WAIT 1 / no WAIT, best rounds',
    times(ratio(wait?.eventsPerSecond, noWait?.eventsPerSecond)),
  );
  const tradeRate = d.latency.noWait?.rate ?? d.latency.wait?.rate;
  const rate = tradeRate === undefined ? '' : `@ ${tradeRate} trades/s (${tradeRate * 2} events/s)`;
  const ack = (run: LatencyRun | undefined) => run?.stages?.toAck;
  const latency = (run: LatencyRun | undefined) =>
    run === undefined
      ? 'failed'
      : `ack ${fixed(ack(run)?.p50)} / ${fixed(ack(run)?.p99)} ms; consumer ${fixed(run.p50)} / ${fixed(run.p99)} ms` +
        `${run.missing > 0 ? ` (${run.missing} missing)` : ''}`;
  const { noWait: l0, wait: l1 } = d.latency;
  add(
    label,
    `commit to publish acknowledged, and to consumer ${rate}, waitReplicas 0: p50 / p99`,
    latency(l0),
  );
  add(label, `the same, waitReplicas 1: p50 / p99`, latency(l1));
  add(
    label,
    'ratio WAIT 1 / no WAIT, commit to ack: p50; p99',
    `${times(ratio(ack(l1)?.p50, ack(l0)?.p50))}; ${times(ratio(ack(l1)?.p99, ack(l0)?.p99))}`,
  );
  const r = d.repair;
  add(
    label,
    `repair of ${int(r?.lost ?? d.events)} lost events (primary SIGKILLed, restarted empty): restart to every marker in step`,
    r === undefined
      ? 'failed'
      : `${fixed(r.seconds, 2)} s (${int(r.eventsPerSecond)} events/s); stream holds ${int(r.streamLength)} of ${int(d.events)}`,
  );
  // The repairing relay drained the backlog in the first round: that is the plain rate beside it.
  const plain = d.drain.rounds[0]?.run;
  add(
    label,
    "the repairing relay's own drain before the wipe; ratio repair / that drain",
    `${drainValue(plain)}; ${times(ratio(r?.eventsPerSecond, plain?.eventsPerSecond))}`,
  );
  if (r !== undefined && !r.complete)
    add(label, 'repair', 'INCOMPLETE: the stream does not hold the backlog');
}

/** Scenario 7: consumers against a naive loop and the relay's drain, and trade-to-projection latency. */
function consumerRows(
  c: ConsumerResult | undefined,
  followers: BenchParameter | undefined,
  add: (s: string, m: string, v: string) => void,
): void {
  if (c === undefined) return;
  const label = `7 consumer ${int(c.events)}`;
  add(
    label,
    `backlog: ${int(c.trades)} trades (${int(c.events)} events) by the service's trade statement`,
    `written in ${fixed(c.fillSeconds, 1)} s`,
  );
  add(label, 'our relay, 1 process, publishing them', drainValue(c.relay));
  add(label, 'naive XREADGROUP COUNT 500 + XACK, 1 process, no database', drainValue(c.naive));
  const reporting = (run: ConsumerRun | undefined) =>
    run === undefined
      ? 'failed'
      : `${drainValue(run)}${run.deferred ? `; ${int(run.deferred)} deferred` : ''}` +
        (run.cpu === undefined
          ? ''
          : `; CPU (cores) consumers ${fixed(run.cpu.consumers)} / their PG backends ${fixed(run.cpu.postgresBackends)} / machine ${fixed(run.cpu.machine)}`);
  add(label, 'reporting consumer (inbox + projection per event), 1 process', reporting(c.reporting1));
  add(label, 'reporting consumer, 3 processes', reporting(c.reporting3));
  const rate = (run: DrainRun | undefined) => run?.eventsPerSecond;
  add(
    label,
    'ratio reporting x1 / naive; x3 / naive',
    `${times(ratio(rate(c.reporting1), rate(c.naive)))}; ${times(ratio(rate(c.reporting3), rate(c.naive)))}`,
  );
  add(
    label,
    "ratio reporting x1 / the relay's drain; x3 / the relay's drain",
    `${times(ratio(rate(c.reporting1), rate(c.relay)))}; ${times(ratio(rate(c.reporting3), rate(c.relay)))}`,
  );
  add(label, 'ratio reporting x3 / x1', times(ratio(rate(c.reporting3), rate(c.reporting1))));
  const l = c.latency;
  const applied = l?.applied;
  add(
    label,
    `trade to projection${l === undefined ? '' : ` @ ${l.rate} trades/s`}${followers === undefined ? '' : `, ${followers} reporting processes`}: p50 / p95 / p99 / max`,
    applied === undefined
      ? 'failed'
      : `${fixed(applied.p50)} / ${fixed(applied.p95)} / ${fixed(applied.p99)} / ${fixed(applied.max)} ms` +
          `${applied.missing > 0 ? ` (${int(applied.missing)} missing)` : ''}` +
          `${l !== undefined && l.achievedRate < 0.95 * l.rate ? ` (offered only ${int(l.achievedRate)}/s)` : ''}`,
  );
  add(
    label,
    '  the same run: commit to publish ack; commit to stream consumer: p50 / p99',
    l === undefined
      ? 'failed'
      : `${fixed(l.stages?.toAck?.p50)} / ${fixed(l.stages?.toAck?.p99)} ms; ${fixed(l.p50)} / ${fixed(l.p99)} ms`,
  );
  add(
    label,
    'ratio projection / stream consumer: p50; p99',
    `${times(ratio(applied?.p50, l?.p50))}; ${times(ratio(applied?.p99, l?.p99))}`,
  );
}

export function buildTargets(report: BenchReport): Target[] {
  const targets: Target[] = [];
  /** A ratio target: met when the ratio is at least `min`. */
  const atLeast = (
    target: string,
    value: number | null,
    min: number,
    format: (value: number | null) => string,
  ) => targets.push({ target, measured: format(value), met: value === null ? null : value >= min });
  const dr = report.drain;
  const best = bestRelay(dr);
  atLeast(
    'drain >= 60% of the claim-and-mark pgbench limit',
    ratio(best, dr?.pgbenchLimit?.eventsPerSecond),
    0.6,
    pct,
  );
  atLeast('drain >= 3x graphile-worker', ratio(best, dr?.graphile?.eventsPerSecond), 3, times);
  const deleting = dr?.relay2Delete?.eventsPerSecond;
  atLeast(
    'deletePublished: drain >= 60% of the claim-and-delete pgbench limit',
    ratio(deleting, dr?.pgbenchDeleteLimit?.eventsPerSecond),
    0.6,
    pct,
  );
  atLeast(
    'deletePublished: drain >= 3x graphile-worker',
    ratio(deleting, dr?.graphile?.eventsPerSecond),
    3,
    times,
  );
  // Both deployments of our relay are judged: its own process (NOTIFY) and the writer's (a call).
  for (const rate of [500, 1000]) {
    const runs = (['listen', 'inprocess'] as const).flatMap((mode) => {
      const run = report.latency?.runs.find((r) => r.mode === mode && r.rate === rate);
      return run === undefined ? [] : [run];
    });
    targets.push({
      target: `commit-to-stream p50 <= 1.5 ms and p99 <= 5 ms at ${rate} trades/s`,
      measured:
        runs.length === 0
          ? 'n/a'
          : runs
              .map(
                (run) =>
                  `${run.mode === 'listen' ? 'own process' : "writer's process"}: p50 ${fixed(run.p50)} ms, p99 ${fixed(run.p99)} ms`,
              )
              .join('; '),
      met: runs.length === 0 ? null : runs.some((run) => run.p50 <= 1.5 && run.p99 <= 5),
    });
  }
  const w = report.writePath;
  atLeast(
    'HTTP write path >= 50% of the pgbench transaction limit',
    ratio(w?.service?.requestsPerSecond, w?.pgbenchBestTps),
    0.5,
    pct,
  );
  atLeast(
    'HTTP write path >= 0.9x the direct-publish design',
    ratio(w?.service?.requestsPerSecond, w?.direct?.requestsPerSecond),
    0.9,
    times,
  );
  const k = report.keepUp;
  targets.push({
    target: 'backlog flat at >= 2,000 trades/s',
    measured:
      k === undefined
        ? 'n/a'
        : `flat up to ${int(k.highestFlatRate)} trades/s${k.steps.some((step) => step.producerLimited) ? ' (producer-limited)' : ''}`,
    met: k === undefined || k.steps.length === 0 ? null : k.highestFlatRate >= 2000,
  });
  const o = report.outage;
  targets.push({
    target: 'relay memory flat during a Redis outage',
    measured:
      o === undefined ? 'n/a' : `${fixed(o.relayRssMiB.before, 0)} -> ${fixed(o.relayRssMiB.during, 0)} MiB`,
    met: o?.relayFlat ?? null,
  });
  return targets;
}

const mark = (met: boolean | null) => (met === null ? 'n/a' : met ? 'met' : 'NOT met');

export function renderTable(rows: Row[], targets: Target[]): string {
  const width = (values: string[]) => Math.max(...values.map((v) => v.length));
  const w1 = width(rows.map((r) => r.scenario));
  const w2 = width(rows.map((r) => r.measure));
  const lines = rows.map((r) => `${r.scenario.padEnd(w1)}  ${r.measure.padEnd(w2)}  ${r.value}`);
  const t1 = width(targets.map((t) => t.target));
  const t2 = width(targets.map((t) => t.measured));
  lines.push('', 'targets (issue 6)');
  for (const t of targets) lines.push(`  ${t.target.padEnd(t1)}  ${t.measured.padEnd(t2)}  ${mark(t.met)}`);
  return lines.join('\n');
}

/** The machine table's PSI row, when the run recorded pressure. */
function pressureLine(pressure: BenchReport['pressure']): string {
  if (pressure === undefined || Object.keys(pressure).length === 0) return '';
  const shares = Object.entries(pressure)
    .map(([scenario, p]) => `${scenario} ${fixed(p.cpuPct, 0)}% / ${fixed(p.ioPct, 0)}%`)
    .join(', ');
  return `\n| time some task waited for a CPU / for IO, per scenario (PSI) | ${shares} |`;
}

const escapeCell = (text: string) => text.replaceAll('|', '\\|');

/** CPU microseconds per unit of work (event, request), from cores busy at `perSecond` units a second. */
function cpuMicros(cores: number | null, perSecond: number | null | undefined): number | null {
  return cores === null || !perSecond ? null : (cores / perSecond) * 1e6;
}

/** CPU microseconds per event of a relay drain, by process kind. */
function cpuPerEvent(run: RelayDrainRun | undefined) {
  const rate = run?.eventsPerSecond;
  if (!run?.cpu || !rate) return undefined;
  const relay = cpuMicros(run.cpu.relays, rate);
  const postgres = cpuMicros(run.cpu.postgresBackends, rate);
  const redis = cpuMicros(run.cpu.redis, rate);
  const total = relay === null || postgres === null || redis === null ? null : relay + postgres + redis;
  return { relay, postgres, redis, total };
}

function partsTable(what: string, profile: ProcessProfile | null): string[] {
  if (profile === null) return [`- ${what}: no profile (\`perf record\` was not usable here).`, ''];
  return [
    `${what} (${int(profile.samples)} samples): share of the samples whose call stack passes through each part,`,
    'callees included (parts nest, so they do not add up):',
    '',
    '| part | share |',
    '|---|---|',
    ...profile.parts.map((line) => `| ${escapeCell(line.name)} | ${pct(line.share)} |`),
    '',
  ];
}

function profileSubsection(title: string, profile: WindowProfile | undefined, processes: string): string {
  if (profile === undefined) return '';
  return [
    `### ${title} (${profile.seconds} s)`,
    '',
    ...partsTable(processes, profile.node),
    ...partsTable('Their PostgreSQL sessions', profile.postgres),
  ].join('\n');
}

function profilesSection(report: BenchReport): string {
  const drain = report.drain?.profile;
  const write = report.writePath?.profile;
  if (drain === undefined && write === undefined) return '';
  return [
    '## Profiles',
    '',
    'Each in a run of its own, not counted in the results (profiling slows what it watches):',
    '`perf record -e cpu-clock -g` over one window mid-load, on our Node.js processes (started with',
    '`--perf-basic-prof-only-functions`, so JavaScript frames have names) and on their PostgreSQL',
    'backends (`bench/lib/profile.ts`).',
    '',
    profileSubsection('Drain, two relays', drain, 'Relay processes'),
    profileSubsection('Write path, the service with its relay under wrk', write, 'Service process'),
  ].join('\n');
}

function parametersSection(parameters: BenchReport['parameters']): string {
  if (parameters === undefined)
    return "This results file records no parameters: they are in the scenarios' sources at its commit.";
  const value = (v: BenchParameter) =>
    Array.isArray(v)
      ? v.map((n) => n.toLocaleString('en-US')).join(', ')
      : typeof v === 'number'
        ? v.toLocaleString('en-US')
        : v;
  return [
    '| parameter | value |',
    '|---|---|',
    ...Object.entries(parameters).map(([name, v]) => `| ${name} | ${escapeCell(value(v))} |`),
  ].join('\n');
}

/** What each scenario measures, as its code does it; the sizes and settings are in the parameters. */
const DEFINITIONS = `1. **Write path** (\`bench/scenarios/writePath.ts\`): the real service (its \`main\`, relay in-process) on
   a fresh database with an admin key; wrk posts BUY trades spread over the accounts and symbols, so
   nothing is refused, after a warm-up. pgbench runs the service's own trade statement (position, trade
   row and both events, committed on its own) with no relay running: the database's limit. The
   direct-publish design (\`bench/direct-publish-server.ts\`) is the same endpoint, schema,
   authentication and trade statement minus the events, committing and then XADDing both events.
2. **Drain** (\`bench/scenarios/drain.ts\`): a backlog written by SQL into a template database, one copy
   per contender. Our relay runs in its own process(es) (\`bench/workers/drainer.ts\`), timed from "go"
   until the stream holds every event. The limits: pgbench running the relay's claim-and-mark (or
   claim-and-delete) as one statement, and redis-benchmark XADDing an entry like ours to a Redis of its
   own. The naive relay takes one row per transaction; graphile-worker and pg-boss get the same payloads
   as jobs and a handler that XADDs them (their settings are in each run's note in the results file).
   Slow contenders are time-boxed, and their rate is what they drained in the box ("not all").
3. **Latency** (\`bench/scenarios/latency.ts\`): a paced producer runs the trade statement at a fixed
   offered rate and wakes the relay after each commit; it stamps each commit's acknowledgement, and a
   consumer blocked in XREAD, in a thread of its own, stamps each arrival, both on the epoch clock. Modes:
   the relay in its own process woken by NOTIFY, in the producer's process woken by a call, in its own
   process polling only, and graphile-worker with the events as jobs in the same transaction. Our relay
   also stamps each batch when its claim returns and when Redis answers, which splits each trade's time
   into stages; each stage's percentiles are its own, so they need not add up.
4. **Keeping up** (\`bench/scenarios/keepUp.ts\`): writer level (no HTTP), one relay process, the offered
   rate stepped up; a step is flat when the producer reached its rate and the PENDING count did not
   grow. CPU per process is read from /proc during each step.
5. **Cost** (\`bench/scenarios/outage.ts\`, and the drain): RSS from /proc, sampled during the load. The
   outage run uses the service with its relay off and the standalone relay under wrk; Redis is killed
   and started again on the same port. Table sizes after the one-relay drain, then after the relay's
   own retention and a plain VACUUM.
6. **Durability** (\`bench/scenarios/durability.ts\`): a throwaway primary with one replica, a fresh pair
   per run; one relay drains a backlog with \`waitReplicas\` 0 and 1 in alternating rounds, and the
   latency is measured as in 3 with both. Then the primary is SIGKILLed and started again empty, and the
   repair is timed from that restart until every stream marker is in step with the outbox again.
7. **Consumer** (\`bench/scenarios/consumer.ts\`): the trading service's trade statement writes a
   backlog, our relay publishes it, and consumer groups read the same entries: a naive XREADGROUP + XACK
   loop and the reporting service's consumer, one process and several; then trade to projection at a
   paced rate.`;

export function renderMarkdown(report: BenchReport, rows: Row[], targets: Target[], source: string): string {
  const m = report.machine;
  const tableRows = rows
    .map((r) => `| ${escapeCell(r.scenario)} | ${escapeCell(r.measure)} | ${escapeCell(r.value)} |`)
    .join('\n');
  const targetRows = targets
    .map((t) => `| ${escapeCell(t.target)} | ${escapeCell(t.measured)} | ${mark(t.met)} |`)
    .join('\n');
  const errors =
    report.errors.length === 0
      ? ''
      : `\n## Errors in this run\n\n${report.errors.map((e) => `- ${escapeCell(e)}`).join('\n')}\n`;
  return `# Benchmarks${report.mode === 'quick' ? ' (quick mode)' : ''}

Generated from \`${source}\`, written by \`${report.command}\` on ${report.date} (${report.mode} mode,
${fixed(report.durationSeconds / 60, 1)} minutes). Do not edit by hand: \`npm run bench -- --render ${source}\`
writes it again. What the figures mean, with the run each reading is from, is in
[\`bench/FINDINGS.md\`](bench/FINDINGS.md).

## Machine

| | |
|---|---|
| cores | ${m.cores} (${escapeCell(m.cpuModel)}), ${fixed(m.memoryGiB, 0)} GiB |
| OS | ${escapeCell(m.os)} |
| Node | ${m.node} |
| PostgreSQL | ${escapeCell(m.postgres)} |
| Redis | ${escapeCell(m.redis)} |
| wrk / pgbench / redis-benchmark | ${escapeCell(m.wrk)} / ${escapeCell(m.pgbench)} / ${escapeCell(m.redisBenchmark ?? 'not run')} |
| load average before / after | ${m.loadBefore.map((v) => v.toFixed(2)).join(' ')} / ${m.loadAfter.map((v) => v.toFixed(2)).join(' ')} |${pressureLine(report.pressure)}
| commit | ${m.commit} |

Everything runs on this one machine: PostgreSQL (a throwaway database per scenario), a throwaway
redis-server per scenario, the service and relays as their own processes, and the load generators.

## Results

| scenario | measure | value |
|---|---|---|
${tableRows}

## Targets (issue 6)

| target | measured | |
|---|---|---|
${targetRows}

## What each scenario measures

As the harness that rendered this report measures them; a run from an older commit ran the sources
at that commit.

${DEFINITIONS}

## Parameters

${parametersSection(report.parameters)}

${profilesSection(report)}${errors}`;
}
