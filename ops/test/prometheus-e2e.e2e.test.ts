// End to end: a real Prometheus, with the committed config and rules, scrapes the real trading service and
// outbox relays (OS processes on a fresh database and a throwaway Redis) while trades flow over HTTP.
//
// 1. Healthy, under load: every dashboard panel query and every alert expression evaluates, the panels
//    return data, and so does the metric under each alert's comparison (an alert expression itself is
//    rightly empty while all is well).
// 2. Every relay stopped: the OutboxNoRelayRunning expression returns a sample. The table-wide gauges
//    (pending, oldest age) come from the leader relay only, so they vanish with the last relay: with
//    no relay at all, OutboxNoRelayRunning is the alert that covers the backlog, not the age alert.
// 3. A relay running again but Redis killed: the relay leads and reports the gauges, events stay
//    PENDING, and the OutboxOldestPendingTooOld expression with its 300 s threshold lowered to 5 s
//    returns a sample (the committed 5 minutes is too long to wait for in a test); so do the
//    expressions of OutboxBrokerDown and OutboxBrokerDownAllRelays (the only running relay is down).
// 4. Redis back: the relay drains the backlog, whose events waited through phases 2 and 3, and the
//    SLO burn alert's expression (its recording rules expanded, the 30 s threshold lowered to 2.5 s, as
//    the outage here lasts seconds, not minutes) returns a sample: the burn of the outage is visible.
// A reporting process (`npm run reporting`'s entry point, its own database) consumes the streams
// throughout, scraped on its REPORTING_METRICS_PORT, so the Consumers row and the consumer alerts are
// checked against real data too:
// 5. A malformed entry added to a stream is dead-lettered at once: the OutboxConsumerDeadLetters
//    expression names its group and stream, and the dead letter is counted.
// 6. The reporting process stopped: the OutboxConsumerTargetDown and OutboxConsumerNotRunning
//    expressions return a sample.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '@astra/test-support';
import { HttpClient } from '../../services/trading/test/e2e/http.ts';
import {
  killLeftovers,
  type RelayHandle,
  type ReportingHandle,
  type ServiceHandle,
  Stack,
} from '../../services/trading/test/e2e/stack.ts';
import { panelQueries } from '../grafana/generate.ts';
import { ALERTS, ALWAYS_FIRING, SLO_RECORDS } from './support/alerts.ts';
import { type Daemon, startPrometheus } from './support/processes.ts';

/** Short, so that the test sees a few scrapes and rule evaluations per second of waiting. */
const SCRAPE_INTERVAL = '1s';
/** What Grafana's $__rate_interval would be at this scrape interval, with a scrape to spare. */
const RATE_INTERVAL = '5s';
/**
 * The most a wait on Prometheus may take: several scrapes, rule evaluations and staleness. Generous:
 * every wait ends as soon as its condition holds, so the bound only matters on a busy 2-core host.
 */
const PROMETHEUS_WAIT_MS = 90_000;
/** Stands in for the age alert's 300 s: the events written while no relay ran are older than this. */
const TEST_AGE_THRESHOLD_SECONDS = 5;
/** Stands in for the SLO's 30 s (a bucket boundary): events that waited out the outage took longer. */
const TEST_SLO_BUCKET = '2.5';

const JOBS = 'job=~"trading-service|outbox-relay"';
const CONSUMER_JOBS = 'job=~"reporting-service"';
/** The stream the reporting process consumes positions from (services/reporting/src/projection.ts). */
const POSITIONS_STREAM = 'astra.trading.position_updated.v1';

/**
 * For each alert, the expressions under its comparison: they must return data while all is well, so
 * that each alert watches series that exist. Each must appear in the rule as Prometheus loaded it.
 */
const ALERT_INPUTS: Record<string, string[]> = {
  OutboxPendingHigh: ['max(last_over_time(outbox_pending_events_total[2m]))'],
  OutboxOldestPendingTooOld: ['max(last_over_time(outbox_oldest_pending_event_age_seconds[2m]))'],
  OutboxBacklogGaugesMissing: [
    `sum(last_over_time(outbox_relay_running{${JOBS}}[2m]))`,
    'count(last_over_time(outbox_pending_events_total[2m]))',
    'count(last_over_time(outbox_oldest_pending_event_age_seconds[2m]))',
    'count(last_over_time(outbox_failed_events[2m]))',
  ],
  OutboxPublishErrorRatioHigh: [
    'sum by (kind) (rate(outbox_publish_errors_total[5m]))',
    'sum(rate(outbox_events_published_total[5m]))',
  ],
  OutboxLatencySLOBurnFast: ['5m', '30m', '1h', '6h'].map(
    (w) => `outbox:commit_to_ack_slo_errors:ratio_rate${w}`,
  ),
  OutboxLatencySLOBurnSlow: ['2h', '1d'].map((w) => `outbox:commit_to_ack_slo_errors:ratio_rate${w}`),
  OutboxFailedEvents: ['max(last_over_time(outbox_failed_events[2m]))'],
  OutboxBrokerDown: ['outbox_broker_up', 'outbox_relay_running == 1'],
  OutboxBrokerDownAllRelays: ['outbox_broker_up', 'outbox_relay_running == 1'],
  OutboxNoRelayRunning: [`sum(outbox_relay_running{${JOBS}})`, `sum(up{${JOBS}})`],
  OutboxBrokerDataLoss: ['increase(outbox_broker_data_loss_total[15m])'],
  OutboxEventsLostForGood: ['increase(outbox_unrecoverable_events_total[15m])'],
  OutboxRelayStalled: [
    'increase(outbox_relay_takeovers_total[15m])',
    'increase(outbox_fenced_publishes_total[15m])',
  ],
  Watchdog: ['vector(1)'],
  OutboxConsumerLagHigh: [
    'max by (group, stream) (last_over_time(outbox_consumer_group_lag[2m]))',
    'max by (group, stream) (deriv(outbox_consumer_group_lag[10m]))',
  ],
  OutboxConsumerStalled: [
    'max by (group, stream) (last_over_time(outbox_consumer_group_pending[2m]))',
    'sum by (group, stream) (increase(outbox_consumer_events_total[5m]))',
  ],
  OutboxConsumerDeadLetters: ['max by (group, stream) (last_over_time(outbox_consumer_dead_letters[2m]))'],
  OutboxConsumerHandlerErrorRatioHigh: [
    'sum by (group, stream) (rate(outbox_consumer_handler_failures_total[5m]))',
    'sum by (group, stream) (rate(outbox_consumer_events_total{outcome="applied"}[5m]))',
  ],
  OutboxConsumerTargetDown: [`up{${CONSUMER_JOBS}}`],
  OutboxConsumerNotRunning: [`sum(up{${CONSUMER_JOBS}})`],
  OutboxConsumerGroupMetricsMissing: [
    `sum(up{${CONSUMER_JOBS}})`,
    'count(last_over_time(outbox_consumer_group_pending[2m]))',
  ],
};

interface ApiResponse<T> {
  status: 'success' | 'error';
  data?: T;
  error?: string;
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

interface Rule {
  type: 'alerting' | 'recording';
  name: string;
  query: string;
  health: 'ok' | 'err' | 'unknown';
  lastError?: string;
}

interface Alert {
  labels: Record<string, string>;
  state: 'inactive' | 'pending' | 'firing';
}

let stack: Stack | undefined;
let prometheus: Daemon | undefined;
let load: TradeLoad | undefined;
/** The service with RELAY_ENABLED=false: takes the trades throughout, relays nothing. */
let service: ServiceHandle;
/** The service with its embedded relay, and a standalone relay: two relays, one metrics leader. */
let relayingService: ServiceHandle;
let relay: RelayHandle;
/** `npm run reporting`'s entry point, consuming both streams into a database of its own. */
let reporting: ReportingHandle | undefined;
let rules: Rule[] = [];

function running(): { stack: Stack; prometheus: Daemon } {
  assert.ok(stack !== undefined && prometheus !== undefined, 'the stack did not start');
  return { stack, prometheus };
}

async function api<T>(path: string): Promise<ApiResponse<T>> {
  const response = await fetch(`${running().prometheus.url}${path}`, { signal: AbortSignal.timeout(10_000) });
  return (await response.json()) as ApiResponse<T>;
}

/** An instant query at Prometheus's now; fails unless it succeeds and returns an instant vector. */
async function query(expr: string): Promise<Sample[]> {
  const result = await api<{ resultType: string; result: Sample[] }>(
    `/api/v1/query?query=${encodeURIComponent(expr)}`,
  );
  assert.equal(result.status, 'success', `${expr}: ${result.error ?? ''}`);
  assert.equal(result.data?.resultType, 'vector', expr);
  return result.data?.result ?? [];
}

/** A number, infinite included (time to drain a backlog that does not shrink), but not NaN. */
const numeric = (samples: Sample[]) => samples.some((sample) => !Number.isNaN(Number(sample.value[1])));

async function loadedRules(): Promise<Rule[]> {
  const result = await api<{ groups: { rules: Rule[] }[] }>('/api/v1/rules');
  assert.equal(result.status, 'success', JSON.stringify(result));
  return (result.data?.groups ?? []).flatMap((group) => group.rules);
}

async function alertingRules(): Promise<Rule[]> {
  return (await loadedRules()).filter((rule) => rule.type === 'alerting');
}

/**
 * An alert's expression with the recording rules it reads replaced by their own expressions, in which
 * `change` may lower a threshold: the committed alert logic, evaluated on a shorter scale.
 */
function expandRecords(expr: string, records: Rule[], change: (query: string) => string): string {
  let expanded = expr;
  // Longest names first: ratio_rate1d must not be taken for a prefix of another.
  for (const record of [...records].sort((a, b) => b.name.length - a.name.length))
    expanded = expanded.replaceAll(record.name, `(${change(record.query)})`);
  return expanded;
}

/** OutboxLatencySLOBurnFast's expression on the test's scale: its 30 s lowered to TEST_SLO_BUCKET. */
async function loweredBurn(): Promise<string> {
  const records = (await loadedRules()).filter((r) => r.type === 'recording');
  assert.ok(
    records.length > 0 && records.every((r) => r.query.includes('le="30"')),
    'SLO records use le="30"',
  );
  return expandRecords(rule('OutboxLatencySLOBurnFast').query, records, (q) =>
    q.replaceAll('le="30"', `le="${TEST_SLO_BUCKET}"`),
  );
}

function rule(name: string): Rule {
  const found = rules.find((candidate) => candidate.name === name);
  assert.ok(found, `alert ${name} is not loaded`);
  return found;
}

async function alertState(name: string): Promise<Alert['state'] | undefined> {
  const result = await api<{ alerts: Alert[] }>('/api/v1/alerts');
  return result.data?.alerts.find((alert) => alert.labels.alertname === name)?.state;
}

/**
 * Polls until `check` returns no problems; on timeout the last problems and the processes' logs go
 * into the failure.
 */
async function until(what: string, check: () => Promise<string[]>): Promise<void> {
  let problems: string[] = [];
  try {
    await waitFor(
      what,
      async () => {
        problems = await check();
        return problems.length === 0 ? true : undefined;
      },
      PROMETHEUS_WAIT_MS,
      250,
    );
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const reportingLog =
      reporting === undefined ? '' : `\n--- reporting ---\n${reporting.process.logTail(8)}`;
    assert.fail(`${message}:\n  ${problems.join('\n  ')}\n${stack?.logTails(8) ?? ''}${reportingLog}`);
  }
}

/** Waits until the reporting process exports its group's backlog (its consumer has read Redis). */
async function waitForGroupBacklog(handle: ReportingHandle): Promise<void> {
  await waitFor(
    'the reporting process to export its group backlog',
    async () => {
      if (!handle.process.running) throw new Error(`reporting exited:\n${handle.process.logTail()}`);
      const metrics = await fetch(`http://127.0.0.1:${handle.metricsPort}/metrics`, {
        signal: AbortSignal.timeout(2000),
      });
      return /^outbox_consumer_group_pending\{/m.test(await metrics.text()) ? true : undefined;
    },
    60_000,
  );
}

/** Points the outbox-relay scrape job at `targets` (file_sd: Prometheus rereads the file by itself). */
function setRelayTargets(targets: string[]): void {
  const file = join(running().prometheus.dir, 'targets', 'outbox-relay.yml');
  writeFileSync(file, JSON.stringify([{ targets }]));
}

/**
 * Trades posted one after another at a bounded pace until stopped: mostly BUYs, some SELLs that the
 * position covers, and some that it does not (422, so error-status series exist).
 */
class TradeLoad {
  readonly statuses = new Map<number, number>();
  /** A request that got no answer at all ends the load; the test reports it. */
  failure: Error | undefined;
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly http: HttpClient,
    private readonly key: string,
    limit: number,
    pauseMs: number,
  ) {
    this.done = this.run(limit, pauseMs).catch((error: unknown) => {
      this.failure = error instanceof Error ? error : new Error(String(error));
    });
  }

  get total(): number {
    return [...this.statuses.values()].reduce((sum, count) => sum + count, 0);
  }

  private async run(limit: number, pauseMs: number): Promise<void> {
    for (let i = 0; i < limit && !this.stopped; i++) {
      const side = i % 10 === 3 || i % 10 === 7 ? 'SELL' : 'BUY';
      const quantity = i % 10 === 7 ? '1000000' : '1';
      const response = await this.http.postJson(
        '/v1/trades',
        { accountId: 'alice', symbol: 'AAPL', side, quantity, price: '189.25' },
        { authorization: `Bearer ${this.key}` },
      );
      this.statuses.set(response.status, (this.statuses.get(response.status) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

describe('Prometheus scraping the real service and relays', { timeout: 600_000 }, () => {
  const clients: HttpClient[] = [];

  before(async () => {
    stack = await Stack.create({
      label: 'prometheus',
      env: { RELAY_POLL_INTERVAL_MS: '200', LOG_LEVEL: 'warn' },
    });
    // The first start migrates the empty database; the others find it migrated.
    service = await stack.startService({ relay: false });
    [relayingService, relay] = await Promise.all([stack.startService({ relay: true }), stack.startRelay()]);
    reporting = await stack.startReporting();
    await waitForGroupBacklog(reporting);
    prometheus = await startPrometheus({
      tradingService: [`127.0.0.1:${service.metricsPort}`, `127.0.0.1:${relayingService.metricsPort}`],
      outboxRelay: [`127.0.0.1:${relay.metricsPort}`],
      reportingService: [`127.0.0.1:${reporting.metricsPort}`],
      scrapeInterval: SCRAPE_INTERVAL,
      evaluationInterval: SCRAPE_INTERVAL,
    });
    rules = await alertingRules();
    const key = await stack.createKey({ account: 'alice' });
    const http = new HttpClient(service.port, { maxSockets: 1, defaultTimeoutMs: 10_000 });
    clients.push(http);
    // At most 1500 trades, about 25 a second: a few hundred over the test.
    load = new TradeLoad(http, key, 1500, 40);
  });

  after(async () => {
    await load?.stop();
    for (const client of clients) client.close();
    await prometheus?.stop().catch(() => {});
    await stack?.close().catch(() => {});
    await killLeftovers();
  });

  test('while trades flow, every panel and every alert input returns data, and every alert evaluates', async () => {
    assert.deepEqual(rules.map((r) => r.name).sort(), Object.keys(ALERTS).sort(), 'alerting rules loaded');
    assert.deepEqual(Object.keys(ALERT_INPUTS).sort(), Object.keys(ALERTS).sort(), 'inputs of every alert');
    for (const [name, inputs] of Object.entries(ALERT_INPUTS)) {
      for (const input of inputs)
        assert.ok(rule(name).query.includes(input), `${name}: ${input} not in ${rule(name).query}`);
    }

    const panels = panelQueries({ rateInterval: RATE_INTERVAL });
    assert.ok(panels.length >= 10, `only ${panels.length} panel queries`);
    await until('every panel and alert input to return a value', async () => {
      const problems: string[] = [];
      for (const { panel, refId, promql } of panels) {
        if (!numeric(await query(promql))) problems.push(`panel "${panel}" ${refId}: no value for ${promql}`);
      }
      for (const [name, inputs] of Object.entries(ALERT_INPUTS)) {
        for (const input of inputs) {
          if ((await query(input)).length === 0) problems.push(`${name}: no data for ${input}`);
        }
      }
      return problems;
    });

    // Every alert expression evaluates (and is empty: nothing is wrong, but for the Watchdog, which
    // always fires), here and in the rule manager; every recording rule has a value.
    for (const { name, query: expr } of rules) {
      const samples = await query(expr);
      if (ALWAYS_FIRING.has(name)) assert.equal(samples.length, 1, `${name} does not fire`);
      else assert.deepEqual(samples, [], `${name} fires while healthy`);
    }
    for (const record of SLO_RECORDS)
      assert.ok(numeric(await query(record)), `recording rule ${record} has no value`);
    // Healthy, events are acknowledged well within the lowered threshold too: the burn seen after the
    // outage (last test) is the outage's.
    assert.deepEqual(await query(await loweredBurn()), [], 'the lowered SLO burn holds while healthy');
    await until('the rule manager to evaluate every rule', async () =>
      (await loadedRules())
        .filter((r) => r.health !== 'ok')
        .map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`),
    );

    // Rejected trades are visible as their own status series, beside the executed ones.
    const statuses = await query(
      `sum by (status_code) (http_request_duration_seconds_count{job="trading-service",route="/v1/trades"})`,
    );
    assert.deepEqual(statuses.map((s) => s.metric.status_code).sort(), ['201', '422']);
    const sides = await query('sum by (side) (increase(trades_executed_total[1m])) > 0');
    assert.deepEqual(sides.map((s) => s.metric.side).sort(), ['BUY', 'SELL']);

    // Two relays run, but the table-wide gauges come from the leader alone: one series each.
    for (const gauge of [
      'outbox_pending_events_total',
      'outbox_oldest_pending_event_age_seconds',
      'outbox_failed_events',
      'outbox_blocked_aggregates',
    ]) {
      await until(`one series of ${gauge}`, async () => {
        const series = await query(gauge);
        return series.length === 1 ? [] : [`${series.length} series: ${JSON.stringify(series)}`];
      });
    }
    const relaysRunning = await query(`sum(outbox_relay_running{${JOBS}})`);
    assert.equal(relaysRunning[0]?.value[1], '2', 'both relays report their loop running');
    await until('exactly one relay to lead', async () => {
      const leaders = await query(`sum(outbox_relay_leader{${JOBS}})`);
      return leaders[0]?.value[1] === '1' ? [] : [`leaders: ${JSON.stringify(leaders)}`];
    });
  });

  test('with every relay stopped, the no-relay condition holds in Prometheus', async () => {
    const { stack } = running();
    const [relayExit, serviceExit] = await Promise.all([
      relay.process.kill('SIGTERM'),
      relayingService.process.kill('SIGTERM'),
    ]);
    assert.deepEqual(relayExit, { code: 0, signal: null }, 'the relay shuts down cleanly');
    assert.deepEqual(serviceExit, { code: 0, signal: null }, 'the relaying service shuts down cleanly');

    const noRelay = rule('OutboxNoRelayRunning');
    await until('the OutboxNoRelayRunning expression to return a sample', async () =>
      (await query(noRelay.query)).length > 0 ? [] : [`empty: ${noRelay.query}`],
    );
    await until('OutboxNoRelayRunning to be pending or firing', async () => {
      const state = await alertState('OutboxNoRelayRunning');
      return state === 'pending' || state === 'firing' ? [] : [`state ${state ?? 'absent'}`];
    });
    // The leader-only gauges went with the last relay: no age to alert on while nothing relays.
    await until('the table-wide gauges to go stale', async () => {
      const left = await query(
        'max(outbox_pending_events_total) or max(outbox_oldest_pending_event_age_seconds)',
      );
      return left.length === 0 ? [] : [`still reported: ${JSON.stringify(left)}`];
    });
    // Trades are still taken, and their events wait.
    const before = load?.total ?? 0;
    await until('more trades to be taken', async () =>
      (load?.total ?? 0) > before + 20 ? [] : [`${load?.total ?? 0} trades posted`],
    );
    const pending = await stack.db.pool.query<{ count: number }>(
      `SELECT count(*)::int AS count FROM event_outbox WHERE status = 'PENDING'`,
    );
    assert.ok((pending.rows[0]?.count ?? 0) > 0, 'events wait in the outbox');
  });

  test('with a relay running but Redis killed, the oldest-pending condition holds in Prometheus', async () => {
    const { stack } = running();
    await stack.redis.kill();
    const stuck = await stack.startRelay();
    setRelayTargets([`127.0.0.1:${stuck.metricsPort}`]);

    const age = rule('OutboxOldestPendingTooOld');
    const committed = /^(.+) > 300$/.exec(age.query);
    assert.ok(committed?.[1], `OutboxOldestPendingTooOld is not "<expr> > 300": ${age.query}`);
    const lowered = `${committed[1]} > ${TEST_AGE_THRESHOLD_SECONDS}`;
    await until(`${lowered} to return a sample`, async () =>
      (await query(lowered)).length > 0 ? [] : [`empty: ${lowered}`],
    );

    // The same relay is the one that reports Redis down, and a relay runs again.
    const brokerDown = rule('OutboxBrokerDown');
    await until('the OutboxBrokerDown expression to name the stuck relay', async () => {
      const down = await query(brokerDown.query);
      const instances = down.map((s) => `${s.metric.job}/${s.metric.instance}`);
      return instances.includes(`outbox-relay/127.0.0.1:${stuck.metricsPort}`)
        ? []
        : [`got ${instances.join(', ')}`];
    });
    assert.deepEqual(await query(rule('OutboxNoRelayRunning').query), [], 'a relay runs again');
    // The only running relay has lost Redis: the narrowed inhibition's source holds.
    const allDown = rule('OutboxBrokerDownAllRelays');
    await until('the OutboxBrokerDownAllRelays expression to return a sample', async () =>
      (await query(allDown.query)).length > 0 ? [] : [`empty: ${allDown.query}`],
    );
    // The stuck relay leads, so the backlog gauges are there.
    assert.deepEqual(
      await query(rule('OutboxBacklogGaugesMissing').query),
      [],
      'the leader exports the gauges',
    );
  });

  test('with Redis back, the outage shows as an SLO burn once its events are acknowledged', async () => {
    const { stack } = running();
    await stack.redis.restart();
    const lowered = await loweredBurn();
    await until('the fast SLO burn expression to return a sample', async () =>
      (await query(lowered)).length > 0 ? [] : [`empty: ${lowered}`],
    );
    // The burn is the outage's: the relay drained the backlog, and the broker is up again.
    await until('the backlog to drain', async () => {
      const pending = await stack.db.pool.query<{ count: number }>(
        `SELECT count(*)::int AS count FROM event_outbox WHERE status = 'PENDING'`,
      );
      return (pending.rows[0]?.count ?? 1) < 100 ? [] : [`${pending.rows[0]?.count} PENDING`];
    });
    await until('the OutboxBrokerDownAllRelays expression to be empty again', async () => {
      const left = await query(rule('OutboxBrokerDownAllRelays').query);
      return left.length === 0 ? [] : [`still: ${JSON.stringify(left)}`];
    });

    await load?.stop();
    assert.equal(load?.failure, undefined, 'every trade request was answered');
    const statuses = Object.fromEntries(load?.statuses ?? []);
    assert.deepEqual(
      Object.keys(statuses).sort(),
      ['201', '422'],
      `only trades and refusals: ${JSON.stringify(statuses)}`,
    );
  });
  test('a malformed entry is dead-lettered: the dead-letter condition names its group and stream', async () => {
    const { stack } = running();
    // Not a CloudEvent: the consumer cannot decode it, so it goes to the dead-letter stream at once.
    await stack.redis.cli(['XADD', POSITIONS_STREAM, '*', 'garbage', 'yes']);
    const deadLetters = rule('OutboxConsumerDeadLetters');
    await until('the OutboxConsumerDeadLetters expression to name the reporting group', async () => {
      const samples = await query(deadLetters.query);
      const named = samples.map((s) => `${s.metric.group}/${s.metric.stream}=${s.value[1]}`);
      return named.includes(`reporting/${POSITIONS_STREAM}=1`)
        ? []
        : [`got ${named.join(', ') || 'nothing'}`];
    });
    const counted = await query(
      `sum(outbox_consumer_dead_lettered_total{group="reporting", stream="${POSITIONS_STREAM}"})`,
    );
    assert.equal(counted[0]?.value[1], '1', 'the dead letter is counted once');
  });

  test('with the reporting process stopped, the consumer down and not-running conditions hold', async () => {
    assert.ok(reporting !== undefined, 'the reporting process did not start');
    const exit = await reporting.process.kill('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, 'the reporting process shuts down cleanly');
    const down = rule('OutboxConsumerTargetDown');
    await until('the OutboxConsumerTargetDown expression to name the stopped process', async () => {
      const samples = await query(down.query);
      const instances = samples.map((s) => `${s.metric.job}/${s.metric.instance}`);
      return instances.includes(`reporting-service/127.0.0.1:${reporting?.metricsPort}`)
        ? []
        : [`got ${instances.join(', ') || 'nothing'}`];
    });
    const notRunning = rule('OutboxConsumerNotRunning');
    await until('the OutboxConsumerNotRunning expression to return a sample', async () =>
      (await query(notRunning.query)).length > 0 ? [] : [`empty: ${notRunning.query}`],
    );
    // No process answers, so the "processes up but no gauges" alert is not the one that speaks.
    assert.deepEqual(await query(rule('OutboxConsumerGroupMetricsMissing').query), []);
  });
});
