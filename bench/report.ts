/**
 * Renders one run's results file (bench/results/*.json) as the printed table, the targets and the
 * Markdown report. It states only what the file holds; what the figures mean, with their dates, is
 * written by hand in bench/FINDINGS.md.
 */

import { basename } from 'node:path';
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

type Add = (measure: string, value: string) => void;
/** The adder of one scenario's rows. */
const section =
  (rows: Row[], scenario: string): Add =>
  (measure, value) =>
    rows.push({ scenario, measure, value });
/** `a / b / c`, each with `digits` decimals. */
const slash = (values: (number | null | undefined)[], digits = 2) =>
  values.map((value) => fixed(value, digits)).join(' / ');
const rate = (run: DrainRun | undefined) => run?.eventsPerSecond;

export function buildRows(report: BenchReport): Row[] {
  const rows: Row[] = [];
  const w = report.writePath;
  if (w !== undefined) writePathRows(w, section(rows, '1 write path'));
  const dr = report.drain;
  if (dr !== undefined) drainRows(dr, section(rows, `2 drain ${int(dr.events)}`));
  if (report.latency !== undefined) latencyRows(report.latency, section(rows, '3 latency'));
  if (report.keepUp !== undefined) keepUpRows(report.keepUp, section(rows, '4 keeping up'));
  const d = report.durability;
  if (d !== undefined) durabilityRows(d, section(rows, `6 durability ${int(d.events)}`));
  const c = report.consumer;
  const followers = report.parameters?.consumerFollowerProcesses;
  if (c !== undefined) consumerRows(c, followers, section(rows, `7 consumer ${int(c.events)}`));
  if (dr !== undefined || report.outage !== undefined) costRows(report, section(rows, '5 cost'));
  return rows;
}

const DIAGNOSTICS: Record<string, string> = {
  'notify-after': 'then a NOTIFY after COMMIT (the wake-up when relays share the partitions)',
  'notify-inside': 'the NOTIFY INSIDE the transaction',
  'trade-only': 'the trade alone (no events, no NOTIFY)',
};

function writePathRows(w: WritePathResult, add: Add): void {
  const { service: s, direct: d, serviceWithoutRelay: off, serviceDeletePublished: deleting } = w;
  const perSecond = (run: { requestsPerSecond: number } | undefined) => run?.requestsPerSecond;
  const latency = (run: { latencyMs: { p50: number; p95: number; p99: number } }) =>
    `${slash([run.latencyMs.p50, run.latencyMs.p95, run.latencyMs.p99])} ms`;
  add(
    'service POST /v1/trades (relay running) under wrk, best round',
    s ? `${int(s.requestsPerSecond)} req/s` : 'failed',
  );
  if (w.rounds !== undefined && w.rounds.service.length > 1) {
    const list = (rates: number[]) => rates.map((rate) => int(rate)).join(', ');
    add(
      'rounds, alternating (req/s): service; direct-publish',
      `${list(w.rounds.service)}; ${list(w.rounds.direct)}`,
    );
  }
  if (s) {
    add('service latency p50 / p95 / p99', latency(s));
    add('service errors (non-2xx, socket)', int(s.errors));
    add('events pending when the load stopped', int(s.pendingAfter));
    add(
      'service CPU (cores): process / PG pool backends / PG relay backend / redis / machine',
      slash([s.cpu.server, s.cpu.postgresServer, s.cpu.postgresRelay, s.cpu.redis, s.cpu.machine]),
    );
  }
  for (const run of w.pgbench ?? [])
    add(
      `pgbench same transaction -c ${run.clients}`,
      `${int(run.tps)} tx/s (avg ${fixed(run.latencyMs)} ms)`,
    );
  for (const run of w.pgbenchDiagnostics ?? [])
    add(
      `diagnostic: pgbench -c ${run.clients}, ${DIAGNOSTICS[run.variant] ?? run.variant}`,
      `${int(run.tps)} tx/s (avg ${fixed(run.latencyMs)} ms)`,
    );
  add(
    'direct-publish design (commit, then XADD), best round',
    d ? `${int(d.requestsPerSecond)} req/s` : 'failed',
  );
  if (d) {
    add('direct latency p50 / p95 / p99', latency(d));
    add(
      'direct CPU (cores): process / PG pool backends / redis / machine',
      slash([d.cpu.server, d.cpu.postgresServer, d.cpu.redis, d.cpu.machine]),
    );
  }
  if (off)
    add('diagnostic: service with its relay off (nothing published)', `${int(off.requestsPerSecond)} req/s`);
  if (deleting)
    add(
      'diagnostic: service with its relay deleting what it publishes (deletePublished)',
      `${int(deleting.requestsPerSecond)} req/s (${times(ratio(deleting.requestsPerSecond, perSecond(d)))} direct)`,
    );
  if (s && d) {
    const ms = (cores: number | null, perSecond: number | undefined) => {
      const us = cpuMicros(cores, perSecond);
      return us === null ? null : us / 1000;
    };
    add(
      'PostgreSQL CPU per request (ms): service sessions / its relay session / relay off / direct',
      slash([
        ms(s.cpu.postgresServer, s.requestsPerSecond),
        ms(s.cpu.postgresRelay, s.requestsPerSecond),
        ms(off?.cpu.postgresServer ?? null, off?.requestsPerSecond),
        ms(d.cpu.postgresServer, d.requestsPerSecond),
      ]),
    );
  }
  add('ratio service / pgbench (best)', times(ratio(perSecond(s), w.pgbenchBestTps)));
  add('ratio service / direct', times(ratio(perSecond(s), perSecond(d))));
}

function drainRows(dr: DrainResult, add: Add): void {
  add(
    `backlog: ${int(dr.events)} PENDING, ${dr.payloadBytes} B payloads`,
    `built in ${fixed(dr.backlogBuildSeconds, 1)} s`,
  );
  add('our relay, 1 process', drainValue(dr.relay1));
  add('our relay, 2 processes', drainValue(dr.relay2));
  add('our relay, 2 processes, deletePublished', drainValue(dr.relay2Delete));
  add('limit: pgbench claim-and-mark statement', drainValue(dr.pgbenchLimit));
  add('limit: pgbench claim-and-delete statement', drainValue(dr.pgbenchDeleteLimit));
  const redis = dr.redisLimit;
  add(
    'limit: redis-benchmark XADD of an entry like ours (pipelined)',
    redis === undefined
      ? 'failed'
      : `${int(redis.requestsPerSecond)} XADDs/s (Redis CPU ${fixed(redis.redisMicrosPerRequest, 1)} µs each)`,
  );
  add('naive relay (one event per transaction)', drainValue(dr.naive));
  add('graphile-worker (handler XADDs)', drainValue(dr.graphile));
  add('pg-boss (handler XADDs)', drainValue(dr.pgboss));
  const best = bestRelay(dr);
  add('ratio ours (best) / pgbench limit', times(ratio(best, rate(dr.pgbenchLimit))));
  add('ratio ours (best) / Redis XADD limit', times(ratio(best, redis?.requestsPerSecond)));
  add('ratio ours (best) / graphile-worker', times(ratio(best, rate(dr.graphile))));
  add('ratio ours (best) / pg-boss', times(ratio(best, rate(dr.pgboss))));
  add('ratio ours (best) / naive', times(ratio(best, rate(dr.naive))));
  const deleting = rate(dr.relay2Delete);
  add('ratio deletePublished / claim-and-delete limit', times(ratio(deleting, rate(dr.pgbenchDeleteLimit))));
  add('ratio deletePublished / graphile-worker', times(ratio(deleting, rate(dr.graphile))));
  for (const run of [dr.relay1, dr.relay2, dr.relay2Delete]) {
    if (run?.phases) {
      const { claimPct, publishPct, markPct, msPerBatch } = run.phases;
      add(
        `${relayLabel(run)} time per batch: claim / publish / mark`,
        `${[claimPct, publishPct, markPct].map((share) => `${fixed(share, 0)}%`).join(' / ')} of ${fixed(msPerBatch, 1)} ms`,
      );
    }
    if (run?.cpu) {
      const { relays, postgresBackends, redis, machine } = run.cpu;
      add(
        `${relayLabel(run)} CPU (cores): relay / its PG backends / redis / machine`,
        slash([relays, postgresBackends, redis, machine]),
      );
      const us = cpuPerEvent(run);
      if (us !== undefined)
        add(
          `${relayLabel(run)} CPU per event (µs): relay / its PG backends / redis / all three`,
          slash([us.relay, us.postgres, us.redis, us.total], 0),
        );
    }
  }
}

function latencyRows(l: LatencyResult, add: Add): void {
  const modes = {
    listen: 'ours, own process, LISTEN/NOTIFY',
    inprocess: "ours, in the writer's process, woken by a call",
    polling: `ours, own process, polling only (${l.pollIntervalMs} ms)`,
    graphile: 'graphile-worker',
  };
  for (const run of l.runs) {
    add(
      `${modes[run.mode]} @ ${run.rate} trades/s (${run.rate * 2} events/s): p50 / p95 / p99 / max`,
      `${slash([run.p50, run.p95, run.p99, run.max])} ms${offeredOnly(run)}${run.missing > 0 ? ` (${run.missing} missing)` : ''}`,
    );
    const stages = run.stages;
    if (stages === undefined) continue;
    const stage = ({ p50, p99 }: { p50: number; p99: number }) => `${fixed(p50)} (${fixed(p99)})`;
    const loop = stages.relayLoopDelay;
    add(
      `  where it went @ ${run.rate}/s, p50 (p99): commit to claim returned / publish script / to consumer; relay's event loop late p99 (max)`,
      `${stage(stages.toClaim)} / ${stage(stages.publish)} / ${stage(stages.toConsumer)} ms` +
        (loop === undefined ? '' : `; ${fixed(loop.p99, 1)} (${fixed(loop.max, 1)}) ms`),
    );
  }
}

const offeredOnly = (run: LatencyRun) =>
  run.achievedRate < 0.95 * run.rate ? ` (offered only ${int(run.achievedRate)}/s)` : '';

function keepUpRows(k: KeepUpResult, add: Add): void {
  for (const step of k.steps) {
    const cpu = step.cpu;
    add(
      `${int(step.rate)} trades/s (writer level) for ${k.seconds} s`,
      `${step.flat ? 'flat' : 'NOT flat'}${step.reason === 'flat' ? '' : ` (${step.reason})`}; pending max ${int(step.pendingMax)}` +
        (cpu === null || cpu === undefined
          ? ''
          : `; CPU (cores) producer ${fixed(cpu.producer)} / relay ${fixed(cpu.relay)} / ` +
            `PostgreSQL ${fixed(cpu.postgres)} / redis ${fixed(cpu.redis)} / machine ${fixed(cpu.machine)}`),
    );
  }
  const limited = k.steps.some((step) => step.flat && step.producerLimited);
  add(
    'highest offered rate with a flat backlog',
    `${int(k.highestFlatRate)} trades/s${limited ? ' (the producer/database could offer no more: a lower bound)' : ''}`,
  );
}

function costRows(report: BenchReport, add: Add): void {
  const { drain: dr, outage: o } = report;
  const mib = (values: (number | null)[], digits = 0) => `${slash(values, digits)} MiB`;
  if (dr?.relay1?.relayPeakRssMiB !== undefined)
    add('relay peak RSS during the drain', `${fixed(dr.relay1.relayPeakRssMiB, 0)} MiB`);
  const servicePeak = report.writePath?.service?.peakRssMiB;
  if (servicePeak !== undefined)
    add('service peak RSS under write load (relay in-process)', `${fixed(servicePeak, 0)} MiB`);
  if (o !== undefined) {
    const { relayRssMiB: r, serviceRssMiB: s } = o;
    add(
      `relay RSS before / during ${o.outageSeconds} s Redis outage / after`,
      mib([r.before, r.during, r.after]),
    );
    add('service RSS before / during / after', mib([s.before, s.during, s.after]));
    add(
      'backlog at Redis restart; time to empty it',
      `${int(o.pendingAtRestart)} events; ${o.recoverySeconds === null ? 'not within the limit' : `${fixed(o.recoverySeconds, 1)} s`}`,
    );
    if (o.error) add('outage run', `failed: ${o.error}`);
  }
  const status = dr?.statusQueryMs;
  if (status)
    add(
      `OutboxAdmin.status() with ${int(status.pending)} pending`,
      `${fixed(status.median)} ms median, ${fixed(status.max)} ms max`,
    );
  if (dr?.sizes) {
    const { afterDrain: a, afterRetention: b, retentionSeconds } = dr.sizes;
    add(
      `outbox after ${int(a.rows)} published: total / heap / indexes`,
      mib([a.totalMiB, a.heapMiB, a.indexesMiB], 1),
    );
    add(
      `after retention (${fixed(retentionSeconds, 1)} s) + VACUUM, ${int(b.rows)} rows`,
      mib([b.totalMiB, b.heapMiB, b.indexesMiB], 1),
    );
  }
}

/** Scenario 6: WAIT 1 against no WAIT in the same run, and the repair of a whole backlog lost. */
function durabilityRows(d: DurabilityResult, add: Add): void {
  const { noWait, wait, rounds } = d.drain;
  add('our relay, 1 process, primary + 1 replica, waitReplicas 0, best round', drainValue(noWait));
  add('our relay, 1 process, primary + 1 replica, waitReplicas 1, best round', drainValue(wait));
  add(
    'rounds in order, events/s (waitReplicas)',
    rounds
      .map((round) => `${round.run === undefined ? 'failed' : int(rate(round.run))} (${round.waitReplicas})`)
      .join(', '),
  );
  add('ratio drain WAIT 1 / no WAIT, best rounds', times(ratio(rate(wait), rate(noWait))));
  const { noWait: l0, wait: l1 } = d.latency;
  const tradeRate = l0?.rate ?? l1?.rate;
  const at = tradeRate === undefined ? '' : `@ ${tradeRate} trades/s (${tradeRate * 2} events/s)`;
  const ack = (run: LatencyRun | undefined) => run?.stages?.toAck;
  const latency = (run: LatencyRun | undefined) =>
    run === undefined
      ? 'failed'
      : `ack ${fixed(ack(run)?.p50)} / ${fixed(ack(run)?.p99)} ms; consumer ${fixed(run.p50)} / ${fixed(run.p99)} ms` +
        `${run.missing > 0 ? ` (${run.missing} missing)` : ''}`;
  add(`commit to publish acknowledged, and to consumer ${at}, waitReplicas 0: p50 / p99`, latency(l0));
  add('the same, waitReplicas 1: p50 / p99', latency(l1));
  add(
    'ratio WAIT 1 / no WAIT, commit to ack: p50; p99',
    `${times(ratio(ack(l1)?.p50, ack(l0)?.p50))}; ${times(ratio(ack(l1)?.p99, ack(l0)?.p99))}`,
  );
  const r = d.repair;
  add(
    `repair of ${int(r?.lost ?? d.events)} lost events (primary SIGKILLed, restarted empty): restart to every marker in step`,
    r === undefined
      ? 'failed'
      : `${fixed(r.seconds, 2)} s (${int(r.eventsPerSecond)} events/s); stream holds ${int(r.streamLength)} of ${int(d.events)}`,
  );
  // The repairing relay drained the backlog in the first round: that is the plain rate beside it.
  const plain = rounds[0]?.run;
  add(
    "the repairing relay's own drain before the wipe; ratio repair / that drain",
    `${drainValue(plain)}; ${times(ratio(r?.eventsPerSecond, rate(plain)))}`,
  );
  if (r !== undefined && !r.complete) add('repair', 'INCOMPLETE: the stream does not hold the backlog');
}

/** Scenario 7: consumers against a naive loop and the relay's drain, and trade-to-projection latency. */
function consumerRows(c: ConsumerResult, followers: BenchParameter | undefined, add: Add): void {
  add(
    `backlog: ${int(c.trades)} trades (${int(c.events)} events) by the service's trade statement`,
    `written in ${fixed(c.fillSeconds, 1)} s`,
  );
  add('our relay, 1 process, publishing them', drainValue(c.relay));
  add('naive XREADGROUP + XACK, 1 process, no database', drainValue(c.naive));
  const reporting = (run: ConsumerRun | undefined) =>
    run === undefined
      ? 'failed'
      : `${drainValue(run)}${run.deferred ? `; ${int(run.deferred)} deferred` : ''}` +
        (run.cpu === undefined
          ? ''
          : `; CPU (cores) consumers ${fixed(run.cpu.consumers)} / their PG backends ${fixed(run.cpu.postgresBackends)} / machine ${fixed(run.cpu.machine)}`);
  add('reporting consumer (inbox + projection per event), 1 process', reporting(c.reporting1));
  add('reporting consumer, 3 processes', reporting(c.reporting3));
  const [x1, x3] = [rate(c.reporting1), rate(c.reporting3)];
  add(
    'ratio reporting x1 / naive; x3 / naive',
    `${times(ratio(x1, rate(c.naive)))}; ${times(ratio(x3, rate(c.naive)))}`,
  );
  add(
    "ratio reporting x1 / the relay's drain; x3 / the relay's drain",
    `${times(ratio(x1, rate(c.relay)))}; ${times(ratio(x3, rate(c.relay)))}`,
  );
  add('ratio reporting x3 / x1', times(ratio(x3, x1)));
  const l = c.latency;
  const applied = l?.applied;
  add(
    `trade to projection${l === undefined ? '' : ` @ ${l.rate} trades/s`}${followers === undefined ? '' : `, ${followers} reporting processes`}: p50 / p95 / p99 / max`,
    applied === undefined
      ? 'failed'
      : `${slash([applied.p50, applied.p95, applied.p99, applied.max])} ms` +
          `${applied.missing > 0 ? ` (${int(applied.missing)} missing)` : ''}${l === undefined ? '' : offeredOnly(l)}`,
  );
  add(
    '  the same run: commit to publish ack; commit to stream consumer: p50 / p99',
    l === undefined
      ? 'failed'
      : `${fixed(l.stages?.toAck?.p50)} / ${fixed(l.stages?.toAck?.p99)} ms; ${fixed(l.p50)} / ${fixed(l.p99)} ms`,
  );
  add(
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
   per run; one relay drains a backlog with and without waiting for the replica (\`waitReplicas\`) in
   alternating rounds, and the latency is measured as in the latency scenario with both. Then the primary is SIGKILLed and started again empty, and the
   repair is timed from that restart until every stream marker is in step with the outbox again.
7. **Consumer** (\`bench/scenarios/consumer.ts\`): the trading service's trade statement writes a
   backlog, our relay publishes it, and consumer groups read the same entries: a naive XREADGROUP + XACK
   loop and the reporting service's consumer, one process and several; then trade to projection at a
   paced rate.`;

/** `bench/results/2026-11-27-quick.json` -> `BENCHMARKS-quick.md`: a report is named like its results. */
export function reportFor(results: string): string {
  const suffix = /^\d{4}-\d{2}-\d{2}(.*)\.json$/.exec(basename(results))?.[1] ?? '';
  return `BENCHMARKS${suffix}.md`;
}

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
