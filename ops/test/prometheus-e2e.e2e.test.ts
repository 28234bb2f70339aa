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
//    returns a sample (the committed 5 minutes is too long to wait for in a test).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HttpClient } from '../../services/trading/test/e2e/http.ts';
import {
  killLeftovers,
  type RelayHandle,
  type ServiceHandle,
  Stack,
} from '../../services/trading/test/e2e/stack.ts';
import { panelQueries } from '../grafana/generate.ts';
import { ALERTS } from './support/alerts.ts';
import { type Daemon, startPrometheus, waitFor } from './support/processes.ts';

/** Short, so that the test sees a few scrapes and rule evaluations per second of waiting. */
const SCRAPE_INTERVAL = '1s';
/** What Grafana's $__rate_interval would be at this scrape interval, with a scrape to spare. */
const RATE_INTERVAL = '5s';
/** The most a wait on Prometheus may take: several scrapes, rule evaluations and staleness. */
const PROMETHEUS_WAIT_MS = 30_000;
/** Stands in for the age alert's 300 s: the events written while no relay ran are older than this. */
const TEST_AGE_THRESHOLD_SECONDS = 5;

const JOBS = 'job=~"trading-service|outbox-relay"';

/**
 * For each alert, the expressions under its comparison: they must return data while all is well, so
 * that each alert watches series that exist. Each must appear in the rule as Prometheus loaded it.
 */
const ALERT_INPUTS: Record<string, string[]> = {
  OutboxPendingHigh: ['max(outbox_pending_events_total)'],
  OutboxOldestPendingTooOld: ['max(outbox_oldest_pending_event_age_seconds)'],
  OutboxPublishErrorsSustained: ['sum by (kind) (rate(outbox_publish_errors_total[5m]))'],
  OutboxFailedEvents: ['max(outbox_failed_events)'],
  OutboxBrokerDown: ['outbox_broker_up', 'outbox_relay_running == 1'],
  OutboxNoRelayRunning: [`sum(outbox_relay_running{${JOBS}})`, `sum(up{${JOBS}})`],
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

const finite = (samples: Sample[]) => samples.some((sample) => Number.isFinite(Number(sample.value[1])));

async function alertingRules(): Promise<Rule[]> {
  const result = await api<{ groups: { rules: Rule[] }[] }>('/api/v1/rules');
  assert.equal(result.status, 'success', JSON.stringify(result));
  return (result.data?.groups ?? [])
    .flatMap((group) => group.rules)
    .filter((rule) => rule.type === 'alerting');
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
    assert.fail(`${message}:\n  ${problems.join('\n  ')}\n${stack?.logTails(8) ?? ''}`);
  }
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

describe('Prometheus scraping the real service and relays', { timeout: 120_000 }, () => {
  const clients: HttpClient[] = [];

  before(async () => {
    stack = await Stack.create({
      label: 'prometheus',
      env: { RELAY_POLL_INTERVAL_MS: '200', LOG_LEVEL: 'warn' },
    });
    // The first start migrates the empty database; the others find it migrated.
    service = await stack.startService({ relay: false });
    [relayingService, relay] = await Promise.all([stack.startService({ relay: true }), stack.startRelay()]);
    prometheus = await startPrometheus({
      tradingService: [`127.0.0.1:${service.metricsPort}`, `127.0.0.1:${relayingService.metricsPort}`],
      outboxRelay: [`127.0.0.1:${relay.metricsPort}`],
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
        if (!finite(await query(promql))) problems.push(`panel "${panel}" ${refId}: no value for ${promql}`);
      }
      for (const [name, inputs] of Object.entries(ALERT_INPUTS)) {
        for (const input of inputs) {
          if ((await query(input)).length === 0) problems.push(`${name}: no data for ${input}`);
        }
      }
      return problems;
    });

    // Every alert expression evaluates (and is empty: nothing is wrong), here and in the rule manager.
    for (const { name, query: expr } of rules)
      assert.deepEqual(await query(expr), [], `${name} fires while healthy`);
    await until('the rule manager to evaluate every alert', async () =>
      (await alertingRules())
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

    await load?.stop();
    assert.equal(load?.failure, undefined, 'every trade request was answered');
    const statuses = Object.fromEntries(load?.statuses ?? []);
    assert.deepEqual(
      Object.keys(statuses).sort(),
      ['201', '422'],
      `only trades and refusals: ${JSON.stringify(statuses)}`,
    );
  });
});
