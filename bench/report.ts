/** Turns one run's results into the printed table, the targets and BENCHMARKS.md. */

import type { ProcessProfile, WindowProfile } from './lib/profile.ts';
import { ratio } from './lib/stats.ts';
import {
  CONSUMER_TRADE_RATE,
  type ConsumerResult,
  type ConsumerRun,
  FOLLOWER_PROCESSES,
} from './scenarios/consumer.ts';
import type { DrainResult, DrainRun, RelayDrainRun } from './scenarios/drain.ts';
import { DURABILITY_TRADE_RATE, type DurabilityResult } from './scenarios/durability.ts';
import type { KeepUpResult, KeepUpStep } from './scenarios/keepUp.ts';
import type { LatencyResult, LatencyRun } from './scenarios/latency.ts';
import type { OutageResult } from './scenarios/outage.ts';
import type { HttpRun, WritePathResult } from './scenarios/writePath.ts';

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
      'service POST /v1/trades (relay running), wrk -c 32, best round',
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
        `pgbench same transaction -c ${run.clients} -j 2`,
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
      `backlog: ${int(dr.events)} PENDING, ${dr.payloadBytes} B payloads, 10,000 aggregates`,
      `built in ${fixed(dr.backlogBuildSeconds, 1)} s`,
    );
    add(label, 'our relay, 1 process', drainValue(dr.relay1));
    add(label, 'our relay, 2 processes', drainValue(dr.relay2));
    add(label, 'our relay, 2 processes, deletePublished', drainValue(dr.relay2Delete));
    add(label, 'limit: pgbench claim-and-mark statement (500 rows, -c 2)', drainValue(dr.pgbenchLimit));
    add(
      label,
      'limit: pgbench claim-and-delete statement (500 rows, -c 2)',
      drainValue(dr.pgbenchDeleteLimit),
    );
    const redis = dr.redisLimit;
    add(
      label,
      'limit: redis-benchmark XADD of an entry like ours (pipelined)',
      redis === undefined
        ? 'failed'
        : `${int(redis.requestsPerSecond)} XADDs/s (Redis CPU ${fixed(redis.redisMicrosPerRequest, 1)} µs each)`,
    );
    add(label, 'naive relay (one event per transaction)', drainValue(dr.naive));
    add(label, 'graphile-worker 0.17.3 (handler XADDs)', drainValue(dr.graphile));
    add(label, 'pg-boss 10.4.2 (handler XADDs)', drainValue(dr.pgboss));
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
  consumerRows(report.consumer, add);

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
  const rate = `@ ${DURABILITY_TRADE_RATE} trades/s (${DURABILITY_TRADE_RATE * 2} events/s)`;
  const ack = (run: LatencyRun | undefined) => run?.stages?.toAck;
  const latency = (run: LatencyRun | undefined) =>
    run === undefined
      ? 'failed'
      : `ack ${fixed(ack(run)?.p50)} / ${fixed(ack(run)?.p99)} ms; consumer ${fixed(run.p50)} / ${fixed(run.p99)} ms` +
        `${run.missing > 0 ? ` (${run.missing} missing)` : ''}`;
  const { noWait: l0, wait: l1 } = d.latency;
  add(
    label,
    `commit to publish acknowledged, and to consumer, ${rate}, waitReplicas 0: p50 / p99`,
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
function consumerRows(c: ConsumerResult | undefined, add: (s: string, m: string, v: string) => void): void {
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
    `trade to projection @ ${CONSUMER_TRADE_RATE} trades/s, ${FOLLOWER_PROCESSES} reporting processes: p50 / p95 / p99 / max`,
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

/** What the write-path diagnostic with `deletePublished` says about the relay's cost to the service. */
function deletePublishedLine(
  marking: number,
  relayOff: number,
  deleting: HttpRun | undefined,
  direct: number,
): string[] {
  if (deleting === undefined) return [];
  const rates = `${int(deleting.requestsPerSecond)} req/s (${times(ratio(deleting.requestsPerSecond, direct))} the direct design), against ${int(marking)} marking and ${int(relayOff)} with the relay off`;
  const relayCost = (relayOff - marking) / relayOff;
  return [
    '- With `deletePublished` (no PUBLISHED history: the relay deletes what it publishes) the service ran ' +
      (relayCost < 0.05
        ? `${rates}: in this run the relay cost the service less than the rounds' own spread, so the outbox rows themselves, not their publishing, make the gap to the direct design.`
        : `${rates}: deleting instead of marking (no new row version, no index entries) takes back ${fixed((100 * (deleting.requestsPerSecond - marking)) / (relayOff - marking), 0)}% of the throughput the relay costs.`),
  ];
}

/** Where the time went at the issue's 500 trades/s, per deployment of our relay, from the run's stamps. */
function latencyStages(report: BenchReport): string[] {
  const lines: string[] = [];
  for (const [mode, label] of [
    ['listen', 'own process'],
    ['inprocess', "writer's process"],
  ] as const) {
    const run = report.latency?.runs.find((r) => r.mode === mode && r.rate === 500);
    const stages = run?.stages;
    if (run === undefined || stages === undefined) continue;
    lines.push(
      `- Where the time went at 500 trades/s, ${label} (medians, p99 in brackets): ` +
        `${fixed(stages.toClaim.p50)} ms (${fixed(stages.toClaim.p99)}) from commit until the claim holding the ` +
        `event returned (the wake-up, the relay's cycle in progress, the claim), ${fixed(stages.publish.p50)} ms ` +
        `(${fixed(stages.publish.p99)}) in the publish script, ${fixed(stages.toConsumer.p50)} ms ` +
        `(${fixed(stages.toConsumer.p99)}) until the blocked consumer had it; total p50 ${fixed(run.p50)}, ` +
        `p99 ${fixed(run.p99)} ms.` +
        (stages.relayLoopDelay === undefined
          ? ''
          : ` The relay's own event loop ran its 1 ms timer up to ${fixed(stages.relayLoopDelay.p99, 1)} ms late at p99 ` +
            `(${fixed(stages.relayLoopDelay.max, 1)} ms at worst): while it is late, no stage of the relay moves.`),
    );
  }
  if (lines.length > 0) {
    lines.push(
      '  Each stage is a process waking up (PostgreSQL backend, relay, Redis, consumer), and each waits for a',
      '  core; a trade that commits while a round is under way waits for that round to publish first.',
    );
  }
  return lines;
}

/** The lowest offered rate against the next, per deployment of our relay: is the floor load or the path? */
function latencyFloor(report: BenchReport): string[] {
  const runs = report.latency?.runs ?? [];
  const rates = [...new Set(runs.filter((run) => run.mode === 'listen').map((run) => run.rate))].sort(
    (a, b) => a - b,
  );
  const [lowest, next] = rates;
  if (lowest === undefined || next === undefined) return [];
  let idleIsFaster = false;
  const medians = (['listen', 'inprocess'] as const).map((mode) => {
    const at = (rate: number) => runs.find((run) => run.mode === mode && run.rate === rate)?.p50;
    const [idle, busier] = [at(lowest), at(next)];
    if (idle !== undefined && busier !== undefined && idle < 0.8 * busier) idleIsFaster = true;
    return `${mode === 'listen' ? 'own process' : "writer's process"} ${fixed(idle)} ms (${fixed(busier)} ms at ${next}/s)`;
  });
  return [
    `- At ${lowest} trades/s, with the cores mostly idle, the median was: ${medians.join('; ')}. ` +
      (idleIsFaster
        ? 'Idle cores are faster: at the higher rates load adds the difference.'
        : 'Idle cores are no faster: the floor is the cost of each hop waking a process on this machine, not load.'),
  ];
}

/** CPU milliseconds per trade of a process that used `cores` during a keeping-up step. */
const msPerTrade = (step: KeepUpStep, cores: number) => (cores / step.achievedRate) * 1000;

/** What the highest keeping-up step cost each process, and what 2,000 trades/s would need. */
function keepUpBound(report: BenchReport): string[] {
  const steps = report.keepUp?.steps ?? [];
  const top = steps.filter((step) => step.cpu !== null && step.cpu !== undefined).at(-1);
  if (top?.cpu === null || top?.cpu === undefined) return [];
  const { cpu } = top;
  const perTrade = (cores: number) => msPerTrade(top, cores);
  const needed = (cores: number) => perTrade(cores) * 2;
  const cores = report.machine.cores;
  return [
    '',
    '### Keeping up',
    '',
    `- At the highest step (${int(top.rate)} trades/s offered, ${int(top.achievedRate)} reached) the machine ran ` +
      `${fixed(cpu.machine)} of ${cores} cores: PostgreSQL ${fixed(cpu.postgres)}, the producer ${fixed(cpu.producer)}, ` +
      `the relay ${fixed(cpu.relay)}, Redis ${fixed(cpu.redis)}.`,
    `- Per trade that is ${fixed(perTrade(cpu.postgres), 3)} ms of PostgreSQL CPU (the trade statement with its two events, ` +
      `then their claim and mark), ${fixed(perTrade(cpu.relay), 3)} ms in the relay and ${fixed(perTrade(cpu.producer), 3)} ms ` +
      `in the producer. 2,000 trades/s at these costs needs ${fixed(needed(cpu.machine))} cores in all ` +
      `(${fixed(needed(cpu.postgres))} for PostgreSQL alone) of the ${cores} here.` +
      (top.flat
        ? " The backlog stayed flat at this step: what stops the steps is the trade statement's cost on these" +
          ' cores, not the relay falling behind.'
        : ` The backlog was not flat at this step (${top.reason}).`),
    ...relayRoundCost(steps[0], top),
  ];
}

/**
 * The relay's CPU per trade at the lowest step against the highest: at lower rates each claim finds
 * fewer events, and every round (claim, publish, mark, confirm) has a fixed cost.
 */
function relayRoundCost(low: KeepUpStep | undefined, top: KeepUpStep): string[] {
  if (low === undefined || low === top || low.cpu === null || low.cpu === undefined || top.cpu === null)
    return [];
  return [
    `- The relay's own cost per trade falls as the rate rises: ${fixed(msPerTrade(low, low.cpu.relay), 3)} ms at ` +
      `${int(low.achievedRate)} trades/s against ${fixed(msPerTrade(top, top.cpu.relay), 3)} ms at ${int(top.achievedRate)}. ` +
      'Each round (claim, publish, mark, and later the dedupe confirm) costs about the same whatever it carries, ' +
      'and at lower rates a round carries a few events: the relay trades CPU for latency there.',
  ];
}

/** What the durability scenario's figures say, from this run's numbers. */
function durabilityFindings(report: BenchReport): string[] {
  const d = report.durability;
  if (d === undefined) return [];
  const { noWait, wait } = d.drain;
  const ack0 = d.latency.noWait?.stages?.toAck;
  const ack1 = d.latency.wait?.stages?.toAck;
  const sameSetting = (waitReplicas: number) =>
    d.drain.rounds
      .filter((round) => round.waitReplicas === waitReplicas && round.run !== undefined)
      .map((round) => int(round.run?.eventsPerSecond))
      .join(' and ');
  const r = d.repair;
  const plain = d.drain.rounds[0]?.run;
  return [
    '',
    '### Durability',
    '',
    `- \`waitReplicas: 1\` waits once per publish call, so a drain pays it per batch of up to 500 events: ` +
      `one relay drained ${int(wait?.eventsPerSecond)} events/s with it and ${int(noWait?.eventsPerSecond)} without ` +
      `(${times(ratio(wait?.eventsPerSecond, noWait?.eventsPerSecond))}, best rounds). The rounds: ${sameSetting(0)} ` +
      `without, ${sameSetting(1)} with; a ratio within the spread of one setting's rounds is no cost this run can show.`,
    `- At ${DURABILITY_TRADE_RATE} trades/s each publish call also waits for the replica's acknowledgement: commit to ` +
      `publish acknowledged p50 ${fixed(ack0?.p50)} -> ${fixed(ack1?.p50)} ms, p99 ${fixed(ack0?.p99)} -> ${fixed(ack1?.p99)} ms ` +
      `(${times(ratio(ack1?.p50, ack0?.p50))}, ${times(ratio(ack1?.p99, ack0?.p99))}). A consumer of the primary sees an ` +
      "entry before the WAIT returns: WAIT holds back the mark and the relay's next batch, not the entries.",
    r === undefined
      ? '- The repair run failed (see errors).'
      : `- A primary restarted empty lost ${int(r.lost)} events; every marker was back in step ${fixed(r.seconds, 1)} s ` +
        `after the restart (${int(r.eventsPerSecond)} events/s, ${times(ratio(r.eventsPerSecond, plain?.eventsPerSecond))} ` +
        "the same relay's drain): the relay reads the PUBLISHED history in pages of 2,000 and publishes it " +
        'again through the journal, then moves the markers; the time includes reconnecting and noticing the loss.',
  ];
}

function boundsSection(report: BenchReport): string {
  const w = report.writePath;
  const dr = report.drain;
  const r1 = dr?.relay1;
  const r2 = dr?.relay2;
  const diagnostic = (variant: string) => w?.pgbenchDiagnostics?.find((run) => run.variant === variant)?.tps;
  const inside = diagnostic('notify-inside');
  const notifyAfter = diagnostic('notify-after');
  const service8 = w?.pgbench?.find((run) => run.clients === 8)?.tps;
  const tradeOnly = diagnostic('trade-only');
  const lines: string[] = ['### The write path', ''];
  lines.push(
    `- Measured: service ${int(w?.service?.requestsPerSecond)} req/s, direct-publish ${int(w?.direct?.requestsPerSecond)} req/s; ` +
      `pgbench of the service's transaction ${int(w?.pgbenchBestTps)} tx/s (best of -c 8 and -c 16). ` +
      `With a NOTIFY after each COMMIT ${int(notifyAfter)} tx/s at -c 8; with the NOTIFY inside the transaction ` +
      `${int(inside)} tx/s at -c 16.`,
    '- Why the service sends no NOTIFY: a NOTIFY inside a transaction holds one database-wide lock from its',
    '  commit until the commit record is flushed, so notifying transactions commit one at a time and cannot',
    '  share a WAL flush; even after COMMIT a NOTIFY is one more statement per trade. The service writes with',
    '  `notify: false` and wakes the relays after each commit (`createRelayWaker`): its own in-process relay',
    '  by a function call while that relay owns every partition (as here), otherwise with a NOTIFY of its',
    '  own after the commit, coalesced per process. A lost wake-up costs at most one `pollIntervalMs`.',
    '- A trade is one statement (position, trade row and both events: one round trip, no BEGIN/COMMIT);',
    '  the direct-publish design runs the same statement minus the events.',
    `- What the database pays, with pgbench at -c 8: the trade alone ${int(tradeOnly)} tx/s; with its two events ` +
      `${int(service8)} tx/s (${times(ratio(service8, tradeOnly))}). The two outbox rows (heap, three index entries ` +
      'each, WAL) are real work per trade, and the relay later reads and marks each row: see ' +
      '"PostgreSQL CPU per request". pgbench is a small C client; the service process (Fastify, JSON, pg) and ' +
      'its in-process relay share the two cores with PostgreSQL, Redis and wrk.',
  );
  const s = w?.service;
  const off = w?.serviceWithoutRelay;
  const d = w?.direct;
  if (s && off && d) {
    const withRelay = cpuMicros(s.cpu.postgresServer, s.requestsPerSecond);
    const withoutRelay = cpuMicros(off.cpu.postgresServer, off.requestsPerSecond);
    const directUs = cpuMicros(d.cpu.postgresServer, d.requestsPerSecond);
    lines.push(
      `- Where the gap to the direct design goes: with its relay off the service runs ${int(off.requestsPerSecond)} req/s ` +
        `(${times(ratio(off.requestsPerSecond, d.requestsPerSecond))} the direct design). PostgreSQL CPU per request: ` +
        `the direct design's sessions ${fixed(directUs, 0)} µs; the service's sessions ${fixed(withoutRelay, 0)} µs with ` +
        `its relay off (the two events) and ${fixed(withRelay, 0)} µs with it running, plus ` +
        `${fixed(cpuMicros(s.cpu.postgresRelay, s.requestsPerSecond), 0)} µs in the relay's own session. The relay also shares the ` +
        "service's process and event loop. These per-request figures move by a quarter from run to run.",
      ...deletePublishedLine(
        s.requestsPerSecond,
        off.requestsPerSecond,
        w?.serviceDeletePublished,
        d.requestsPerSecond,
      ),
      `- So while PostgreSQL's CPU is what runs out, as here, the database's own ratio for the two designs' ` +
        `statements (${times(ratio(service8, tradeOnly))} above) is about the most the outbox's two rows per trade allow ` +
        'against the direct design; 0.9x needs a database with cores to spare.',
    );
  }
  lines.push('', '### The drain', '');
  if (r1?.phases && r1.cpu) {
    lines.push(
      `- One relay spent ${fixed(r1.phases.claimPct, 0)}% of each ${fixed(r1.phases.msPerBatch, 1)} ms batch of 500 claiming, ` +
        `${fixed(r1.phases.publishPct, 0)}% in the publish script and ${fixed(r1.phases.markPct, 0)}% marking. ` +
        `Its process used ${fixed(r1.cpu.relays)} of a core, its PostgreSQL backend ${fixed(r1.cpu.postgresBackends)}, ` +
        `Redis ${fixed(r1.cpu.redis)}; the whole machine ${fixed(r1.cpu.machine)} of ${report.machine.cores} cores.`,
    );
  }
  if (r2?.phases && r2.cpu) {
    lines.push(
      `- Two relays: ${fixed(r2.phases.msPerBatch, 1)} ms per batch each (claim ${fixed(r2.phases.claimPct, 0)}%, ` +
        `publish ${fixed(r2.phases.publishPct, 0)}%, mark ${fixed(r2.phases.markPct, 0)}%); relays ${fixed(r2.cpu.relays)} cores, ` +
        `their backends ${fixed(r2.cpu.postgresBackends)}, Redis ${fixed(r2.cpu.redis)}, machine ${fixed(r2.cpu.machine)}.`,
    );
  }
  const cores = report.machine.cores;
  const limitRate = dr?.pgbenchLimit?.eventsPerSecond;
  const r2cpu = cpuPerEvent(r2);
  if (r2cpu) {
    lines.push(
      `- CPU per event with two relays: relay processes ${fixed(r2cpu.relay, 0)} µs, their PostgreSQL backends ` +
        `${fixed(r2cpu.postgres, 0)} µs, Redis ${fixed(r2cpu.redis, 0)} µs: ${fixed(r2cpu.total, 0)} µs in all, so ` +
        `${cores} cores carry at most ${int(r2cpu.total ? (cores * 1e6) / r2cpu.total : null)} events/s. ` +
        `The limit statement is PostgreSQL alone: at ${int(limitRate)} events/s it spends at most ` +
        `${fixed(limitRate ? (cores * 1e6) / limitRate : null, 0)} µs per event, all ${cores} cores counted; ` +
        `our relays' PostgreSQL share alone is ${fixed(r2cpu.postgres, 0)} µs.`,
    );
  }
  const redisLimit = dr?.redisLimit;
  if (r2cpu && redisLimit) {
    lines.push(
      `- Redis alone takes ${int(redisLimit.requestsPerSecond)} plain XADDs/s of an entry like ours ` +
        `(redis-benchmark, pipelined), ${fixed(redisLimit.redisMicrosPerRequest, 1)} µs of Redis CPU each; our two ` +
        `relays reach ${pct(ratio(r2?.eventsPerSecond, redisLimit.requestsPerSecond))} of that rate and Redis spends ` +
        `${fixed(r2cpu.redis, 1)} µs per event on them ` +
        `(${times(ratio(r2cpu.redis, redisLimit.redisMicrosPerRequest))}): the dedupe journal's lookup and record, ` +
        'the Lua around each XADD, the later confirmation, and batches of 500 instead of a deep pipeline.',
    );
  }
  const deleting = dr?.relay2Delete;
  const deleteCpu = cpuPerEvent(deleting);
  const deleteLimit = dr?.pgbenchDeleteLimit?.eventsPerSecond;
  if (deleting && deleteCpu) {
    lines.push(
      `- With \`deletePublished\` the relay deletes each published row instead of marking it: no new row version, ` +
        `no index entries. Two relays drained ${int(deleting.eventsPerSecond)} events/s ` +
        `(${times(ratio(deleting.eventsPerSecond, r2?.eventsPerSecond))} the marking relays); per event their ` +
        `PostgreSQL backends spent ${fixed(deleteCpu.postgres, 0)} µs, the relay processes ${fixed(deleteCpu.relay, 0)} µs ` +
        `and Redis ${fixed(deleteCpu.redis, 0)} µs: ${fixed(deleteCpu.total, 0)} µs, at most ` +
        `${int(deleteCpu.total ? (cores * 1e6) / deleteCpu.total : null)} events/s on ${cores} cores. Its limit ` +
        `statement (claim and delete) runs ${int(deleteLimit)} events/s, ` +
        `${fixed(deleteLimit ? (cores * 1e6) / deleteLimit : null, 0)} µs per event: ` +
        'the relay process and Redis now cost more than PostgreSQL, and the limit statement moves no payload.',
    );
  }
  lines.push(
    '- What bounds it: CPU. With two relays the machine is nearly saturated (PostgreSQL, Redis and the relays',
    '  share two cores), and the relay does more per event than the limit statement, which claims and marks',
    '  500 rows in one statement and moves no payload: the relay claims (one statement, reading every',
    '  payload out of PostgreSQL), publishes (one Lua call per batch: a journal lookup per id in one HMGET, an',
    '  XADD per event, one journal HSET) and marks (a second statement; never a HOT update, since status is in',
    '  the partial indexes, so each marked row adds entries to three indexes). The relay process and Redis',
    '  come on top of what the limit statement costs PostgreSQL.',
    '- Event ids are time-ordered (UUIDv7, `newEventId`), so the entries a mark adds to the `event_id`',
    '  index land on the pages the batch before touched. With random UUIDs, marks right after a checkpoint',
    '  wrote 3.0 KB of WAL per event instead of 1.2 KB, mostly full-page images, and took twice as long',
    '  (scratch: 20,000 marks on a 1.2M-row outbox). In a same-day A/B of this drain the change raised the',
    '  limit statement by a third (34k to 45k events/s) but our relays less (one relay +12%, two within the',
    "  runs' spread): PostgreSQL's share shrank, the relay process's and Redis's did not.",
    '- Within one relay the phases overlap: batch N is marked while batch N+1 is with Redis (the claim',
    '  leaves N out), so a relay keeps its backend and Redis busy together; each relay reads only the',
    "  partitions it owns (a `(partition_no, id)` pending index), so relays do not read each other's rows.",
    '- Tried and measured without gain: batches of 1,000; marks on a second connection of their own; the',
    '  mark carried by the next claim statement (it then waits for the WAL flush before the claim returns);',
    '  marks committed asynchronously (no latency gain in spot checks, and unsafe without a flush barrier',
    '  before the journal forgets ids); at most one claim per 5 ms under load (no write-path gain); XADD',
    '  without building a field table in the script (Redis time within noise); a larger V8 young generation;',
    '  claiming the next batch while a full one is with Redis (one relay: 25.4k against 25.6k events/s',
    "  in a scratch A/B; the machine's cores were already busy, so the overlap bought nothing); payloads",
    '  handed to node-redis as Buffers instead of strings (in isolation it saves about 1 ms of UTF-8',
    '  encoding per batch of 500; a one-relay drain A/B, three runs each, averaged 23.5k against 23.3k);',
    '  for the write path (scratch, pgbench at a fixed 1,000 trades/s, PostgreSQL CPU per trade, two runs',
    '  each): the payload column as `json` instead of `jsonb` (0.74-0.81 ms against 0.78-0.81), and the',
    "  outbox's three CHECK constraints dropped (0.74-0.76 ms): within the runs' spread, so the schema",
    '  keeps `jsonb` and its checks.',
    '- Next steps, not taken: on machines where PostgreSQL and Redis have their own cores, more relays',
    '  scale further than here. Where the relay processes and their PostgreSQL sessions spend their CPU',
    '  is in "Profiles" below. (An earlier note here, from V8\'s own profiler, put a quarter of the relay',
    '  in socket writes: that profiler charges native time to the last native call; perf finds far less.)',
    '',
    '### Latency',
    '',
    '- With LISTEN/NOTIFY the relay wakes at each commit; the time to the stream is one claim, one script',
    "  call and the wake-up itself, so it follows the machine's scheduling delays: on a loaded machine p99",
    '  is dominated by waiting for a core. Polling only adds about half the poll interval on average.',
    "- In the writer's process (as the service runs its relay) the wake-up is a function call: no NOTIFY",
    "  round trip and no hop through the relay's PostgreSQL session, but the relay then shares the",
    "  producer's event loop.",
    '- A wake-up that arrives while a round is under way makes the relay claim again as soon as the round',
    "  has published, with the round's mark running beside the next publish, so a commit made mid-round",
    "  does not also wait for the previous mark's WAL flush.",
    ...latencyStages(report),
    ...latencyFloor(report),
    ...keepUpBound(report),
    ...durabilityFindings(report),
    '',
    '### Doubtful',
    '',
    `- Other work shared the cores (load average ${report.machine.loadBefore.map((v) => v.toFixed(1)).join(' ')} before the run,`,
    `  ${report.machine.loadAfter.map((v) => v.toFixed(1)).join(' ')} after, on ${report.machine.cores} cores): absolute numbers are low,`,
    '  and ratios between contenders measured minutes apart carry that drift.',
    '- Commit time is taken when COMMIT is acknowledged to the producer and arrival when a blocked XREAD',
    '  returns; both are a little late, so the offsets partly cancel.',
    '- RSS of the service and relays includes tsx compiling TypeScript in-process (as `npm start` runs them).',
    '- The two-relay runs use `rebalanceIntervalMs: 200` (default 2,000) so both relays work from the start of a',
    '  short drain; the keeping-up rate is writer level (no HTTP) and is a lower bound when the producer could',
    '  not offer more.',
    '- graphile-worker is given its batching options for the drain (local queue, batched completion) and its',
    '  defaults (concurrency 8) for latency; pg-boss 4 workers x 100 with 0.5 s polling. Each trade is two',
    '  events (jobs): at 500 trades/s (1,000 jobs/s) graphile-worker without its local queue saturates here',
    '  (spot checks: p50 2.2 ms at 250 trades/s, 3.5 ms at 400, over a second at 500) and its latency is',
    '  queueing; 250 trades/s is the 500 events/s of the figures quoted in issue 6. Concurrency 8 was its',
    '  best at 250 trades/s in a later spot check (p50 / p99: 1 worker 2.4 s / 2.9 s, 4 workers 6.1 / 614 ms,',
    '  8 workers 4.7 / 199 ms, 16 workers 9.2 / 331 ms). Its producer commits each trade and its two jobs in',
    '  four round trips (BEGIN, trade, add_jobs, COMMIT), as a transaction adding jobs does; ours is one.',
  );
  return lines.join('\n');
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
    'Where the CPU goes where we fall short of a target, each in a run of its own (profiling slows what it',
    'watches, so these runs are not counted): `perf record -e cpu-clock -g` over one window mid-load, on our',
    'Node.js processes (started with `--perf-basic-prof-only-functions`, so JavaScript frames have names) and',
    'on their PostgreSQL backends (`bench/lib/profile.ts`).',
    '',
    profileSubsection('Drain, two relays', drain, 'Relay processes'),
    profileSubsection('Write path, the service with its relay under wrk', write, 'Service process'),
  ].join('\n');
}

export function renderMarkdown(report: BenchReport, rows: Row[], targets: Target[]): string {
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
  return `# Benchmarks

Generated by \`${report.command}\` on ${report.date} (${report.mode} mode, ${fixed(report.durationSeconds / 60, 1)} minutes).
Do not edit by hand: \`npm run bench\` rewrites this file and \`bench/results/<date>.json\`.
${report.mode === 'quick' ? '\n**Quick mode**: 100,000-event backlog and short runs. Use the full mode (`npm run bench`) for the numbers to quote.\n' : ''}
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

Everything runs on this one machine: PostgreSQL (shared server, a throwaway database per scenario),
a throwaway redis-server per scenario, the service and relays as their own processes, and the load
generators. A load average above the core count before the run means other work shared the cores:
compare the ratios, which are measured side by side in the same run, more than the absolute numbers.

## Results

| scenario | measure | value |
|---|---|---|
${tableRows}

## Targets (issue 6)

| target | measured | |
|---|---|---|
${targetRows}

## How each number is taken

1. **Write path**: the real service (\`node --import tsx services/trading/src/main.ts\`, relay in-process,
   LOG_LEVEL=warn) on a fresh database with 1,000 accounts and an admin key; wrk (-t 2 -c 32, after a
   warm-up) posts BUY trades over 1,000 accounts x 50 symbols, so nothing is refused. pgbench runs the same
   SQL: the service's own trade statement (position upsert, trade row and both events through the
   writer's \`insertFrom\`, from \`trades/sql.ts\`, committed on its own; the service wakes its in-process
   relay by a call, so no NOTIFY), random accounts and symbols, \`-M prepared -j 2\`, with no relay
   running: the database's limit. The direct design is \`bench/direct-publish-server.ts\`: the same endpoint, schema,
   authentication, trade statement and pool minus the events, committing and then XADDing both events.
   Trade and event ids are time-ordered UUIDv7s in every contender, as the service makes them
   (\`newTradeId\`, \`newEventId\`); SQL that stands in for the service (pgbench scripts, the drain backlog)
   makes them with \`UUID_V7_SQL\` (\`bench/lib/pgbench.ts\`).
2. **Drain**: the backlog is written by SQL (\`generate_series\`) into a template database; each contender
   gets its own copy. Our relay runs in its own process(es) (\`bench/workers/drainer.ts\`: OutboxRelay +
   RedisStreamsPublisher + the Prometheus adapter, batch 500, rebalance every 200 ms so two relays split the
   partitions at once), timed from "go" until the stream holds every event. The limit is pgbench running
   \`UPDATE ... SET status = 'PUBLISHED' ... WHERE id IN (SELECT id ... WHERE status = 'PENDING' ORDER BY id
   LIMIT 500 FOR UPDATE SKIP LOCKED)\` with 2 clients on random partitions, for half again as many
   transactions as the backlog needs (where partitions run dry unevenly a few rows may stay; the rate counts
   what was drained). Redis's limit is redis-benchmark (8 clients, pipelines of 128) XADDing the backlog's
   first event with the fields the publish script writes, as many times as the backlog has events, to a
   Redis of its own; its Redis CPU is read from /proc. The naive relay takes one
   row per transaction (SELECT ... LIMIT 1 FOR UPDATE SKIP LOCKED, XADD, UPDATE, COMMIT). graphile-worker
   (concurrency 16, local queue 500, batched completion) and pg-boss (4 workers x batch 100) get the same
   payloads enqueued by SQL and a handler that XADDs the payload; only their drain is timed. Slow contenders
   are time-boxed and their rate is what they drained in the box ("not all" in the table).
3. **Latency**: a paced producer runs the service's trade statement (trade and both events) at a fixed
   offered rate and wakes the relays after each commit on a connection of its own, as the service does; it
   notes when each commit is acknowledged, and a consumer blocked in XREAD, in a worker thread of its own
   so the producer's work cannot delay its clock, notes when each event arrives (both on the epoch clock
   with sub-millisecond resolution). Modes: the relay in its own process with LISTEN/NOTIFY (the defaults;
   the producer's waker sends a NOTIFY), the relay in the producer's process (the waker's \`localRelay\`: a
   call, no NOTIFY, as in the service), the relay in its own process polling only
   (\`listen: false\`, \`pollIntervalMs: ${report.latency?.pollIntervalMs ?? 100}\`, writer \`notify: false\`), and
   graphile-worker (concurrency 8, its defaults otherwise) with the two events as jobs in the same transaction.
   The producer opens its 16 connections before the clock starts, as a running service holds its pool.
   Our relay also stamps each batch when its claim returns and when Redis answers the publish script
   (\`tracedBenchRelay\` in \`bench/lib/relay.ts\`), which splits each trade's time, by its first event,
   into commit to claim returned, publish script, and on to the consumer; each stage's percentiles are
   its own. A stage can come out slightly negative where a process saw its stamp late (its event loop was busy).
   The relay's process also watches its own event loop (\`monitorEventLoopDelay\`, a 1 ms timer) and
   reports how late the timer ran.
4. **Keeping up**: writer level (the trade statement above, no HTTP), one relay process, rate stepped up;
   a step is flat when the producer offered at least 95% of the rate, the PENDING count (sampled every
   second) grew by less than 2% of the event rate, and ended below max(1,000, one second of events).
   CPU per process is read from /proc every second of a step, the first and last second left out: the
   producer (the benchmark's own process), the relay process, PostgreSQL (all its processes) and Redis.
5. **Cost**: RSS from /proc/<pid>/status (VmRSS), sampled every 200 ms. The outage run uses the service with
   RELAY_ENABLED=false and the standalone relay (\`relay-main.ts\`) under wrk load; Redis is killed and
   started again on the same port. Table sizes are \`pg_total_relation_size\`, \`pg_relation_size\` and
   \`pg_indexes_size\` after the 1-relay drain, then after the relay's own retention (\`retentionSeconds: 1\`)
   and a plain VACUUM (which frees space for reuse but does not shrink files).
6. **Durability**: a throwaway primary with one replica (\`--replicaof\`, in sync before each run), a
   fresh pair per run. One relay process, set up as in the drain (batch 500, rebalance every 200 ms),
   drains a copy of a backlog shaped like the drain's (100,000 events; 20,000 in quick mode) with
   \`waitReplicas: 0\` and \`1\` (the publish script and \`WAIT 1\` in one pipeline per batch), in four
   rounds ordered 0, 1, 1, 0; the best round of each counts. Latency as in 3 (relay in its own process,
   LISTEN/NOTIFY, ${DURABILITY_TRADE_RATE} trades/s) with both settings: "ack" is commit until Redis answered the
   publish (after its WAIT), from the relay's stamps; "consumer" is commit until a consumer blocked on
   the primary had the entry, which WAIT does not hold back. After the first round's drain, once every
   marker in \`{stream}:outbox-state\` equals \`event_outbox_streams.last_entry_id\`, the primary is
   SIGKILLed and started again empty on its port (no persistence); the repair is timed from that restart
   (Redis's own start-up included) until every marker is in step again, and the stream's length is then
   checked against the backlog. The time includes the relay noticing the loss: its Redis reconnection
   backoff and up to one rebalance interval.
7. **Consumer**: see the header of \`bench/scenarios/consumer.ts\`; what the figures mean, with dates, is in
   the hand-written \`bench/FINDINGS.md\`.

## What bounds us

${boundsSection(report)}

${profilesSection(report)}${errors}`;
}
