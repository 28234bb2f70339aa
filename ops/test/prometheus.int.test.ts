// A real Prometheus loads the committed config and rules: every dashboard and alert expression must parse
// and evaluate, the alerts must carry what on-call needs, and the scrape jobs must be wired as documented.
// No service runs here, so queries return no data; the end-to-end test checks the data.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort, waitFor } from '@astra/test-support';
import { panelQueries } from '../grafana/generate.ts';
import { ALERTS, ALWAYS_FIRING, markdownAnchors, RUNBOOK_BASE, SLO_RECORDS } from './support/alerts.ts';
import { type Daemon, REPO, startPrometheus } from './support/processes.ts';

interface ApiResponse<T> {
  status: 'success' | 'error';
  data?: T;
  errorType?: string;
  error?: string;
}

interface Rule {
  type: 'alerting' | 'recording';
  name: string;
  query: string;
  duration?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  health: 'ok' | 'err' | 'unknown';
  lastError?: string;
}

interface Target {
  labels: Record<string, string>;
  scrapePool: string;
  scrapeUrl: string;
}

let prometheus: Daemon;
let servicePort: number;
let relayPort: number;
let reportingPort: number;
let alertmanagerPort: number;

async function api<T>(path: string): Promise<ApiResponse<T>> {
  const response = await fetch(`${prometheus.url}${path}`, { signal: AbortSignal.timeout(10_000) });
  return (await response.json()) as ApiResponse<T>;
}

async function query(expr: string): Promise<ApiResponse<unknown>> {
  return api(`/api/v1/query?query=${encodeURIComponent(expr)}`);
}

async function loadedRules(): Promise<Rule[]> {
  const result = await api<{ groups: { rules: Rule[] }[] }>('/api/v1/rules');
  assert.equal(result.status, 'success', JSON.stringify(result));
  return (result.data?.groups ?? []).flatMap((group) => group.rules);
}

async function alertingRules(): Promise<Rule[]> {
  return (await loadedRules()).filter((rule) => rule.type === 'alerting');
}

before(async () => {
  // Nothing listens on these ports: the targets are there to check the wiring, and are down.
  [servicePort, relayPort, reportingPort, alertmanagerPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  prometheus = await startPrometheus({
    tradingService: [`127.0.0.1:${servicePort}`],
    outboxRelay: [`127.0.0.1:${relayPort}`],
    reportingService: [`127.0.0.1:${reportingPort}`],
    alertmanagers: [`127.0.0.1:${alertmanagerPort}`],
    scrapeInterval: '1s',
    evaluationInterval: '1s',
  });
});

after(async () => {
  await prometheus?.stop();
});

test('a malformed expression is reported as an error (the check below can fail)', async () => {
  const result = await query('sum by (kind (rate(outbox_publish_errors_total[5m]))');
  assert.equal(result.status, 'error');
  assert.equal(result.errorType, 'bad_data');
});

test('every dashboard panel expression parses and evaluates in Prometheus', async () => {
  const queries = panelQueries();
  assert.ok(queries.length >= 10, `only ${queries.length} panel queries`);
  for (const { panel, refId, promql } of queries) {
    const result = await query(promql);
    assert.equal(result.status, 'success', `panel "${panel}" ${refId}: ${promql}: ${result.error ?? ''}`);
  }
});

test('every alert and recording rule expression parses and evaluates in Prometheus', async () => {
  const rules = await loadedRules();
  assert.equal(
    rules.filter((rule) => rule.type === 'alerting').length,
    Object.keys(ALERTS).length,
    'alerting rules loaded',
  );
  assert.deepEqual(
    rules.filter((rule) => rule.type === 'recording').map((rule) => rule.name),
    SLO_RECORDS,
    'recording rules loaded',
  );
  for (const rule of rules) {
    const result = await query(rule.query);
    assert.equal(result.status, 'success', `${rule.name}: ${rule.query}: ${result.error ?? ''}`);
  }
  // And the rule manager itself evaluated each one without error.
  const evaluated = await waitFor(
    'every rule to be evaluated',
    async () => {
      const current = await loadedRules();
      return current.every((rule) => rule.health !== 'unknown') ? current : undefined;
    },
    15_000,
  );
  for (const rule of evaluated) assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError ?? ''}`);
});

test('the loaded alerts are the expected ones, each with severity, summary, description and runbook', async () => {
  const rules = await alertingRules();
  const anchors = markdownAnchors(readFileSync(join(REPO, 'docs', 'runbooks.md'), 'utf8'));
  assert.deepEqual(rules.map((rule) => rule.name).sort(), Object.keys(ALERTS).sort());
  for (const rule of rules) {
    const expected = ALERTS[rule.name];
    assert.ok(expected, rule.name);
    assert.equal(rule.labels?.severity, expected.severity, `${rule.name} severity`);
    assert.ok((rule.annotations?.summary ?? '').length > 0, `${rule.name} has no summary`);
    if (!ALWAYS_FIRING.has(rule.name))
      assert.match(rule.annotations?.description ?? '', /\{\{/, `${rule.name} description shows no values`);
    const runbook = rule.annotations?.runbook_url ?? '';
    assert.equal(runbook, `${RUNBOOK_BASE}#${rule.name.toLowerCase()}`, `${rule.name} runbook_url`);
    const anchor = runbook.slice(runbook.indexOf('#') + 1);
    assert.ok(anchors.has(anchor), `docs/runbooks.md has no heading for #${anchor}`);
  }
});

test('every in-page link of docs/runbooks.md leads to a heading', () => {
  const markdown = readFileSync(join(REPO, 'docs', 'runbooks.md'), 'utf8');
  const anchors = markdownAnchors(markdown);
  const links = [...markdown.matchAll(/\]\(#([^)]+)\)/g)].map((match) => match[1] ?? '');
  assert.ok(links.length > 0);
  for (const link of links) assert.ok(anchors.has(link), `docs/runbooks.md links to missing #${link}`);
});

test('the committed targets scrape each process on its METRICS_PORT, never the API port', () => {
  const targetsOf = (file: string) =>
    [
      ...readFileSync(join(REPO, 'ops', 'prometheus', 'targets', file), 'utf8').matchAll(
        /targets: \[([^\]]*)\]/g,
      ),
    ]
      .flatMap((match) => (match[1] ?? '').split(','))
      .map((target) => target.trim());
  // The service's /metrics moved off the API port (3000) to METRICS_PORT (9464 by default); a relay on
  // the same host needs a port of its own.
  assert.deepEqual(targetsOf('trading-service.yml'), ['127.0.0.1:9464']);
  assert.deepEqual(targetsOf('outbox-relay.yml'), ['127.0.0.1:9465']);
  // A reporting process on the same host as both: REPORTING_METRICS_PORT's default, not REPORTING_PORT.
  assert.deepEqual(targetsOf('reporting-service.yml'), ['127.0.0.1:9466']);
});

test('the scrape jobs and the Alertmanager come from the file_sd targets files', async () => {
  const targets = await waitFor(
    'every scrape job to have its targets',
    async () => {
      const result = await api<{ activeTargets: Target[] }>('/api/v1/targets?state=active');
      const active = result.data?.activeTargets ?? [];
      return active.length >= 5 ? active : undefined;
    },
    15_000,
  );
  const byJob = Object.fromEntries(targets.map((target) => [target.labels.job, target.scrapeUrl]));
  assert.deepEqual(byJob, {
    'trading-service': `http://127.0.0.1:${servicePort}/metrics`,
    'outbox-relay': `http://127.0.0.1:${relayPort}/metrics`,
    'reporting-service': `http://127.0.0.1:${reportingPort}/metrics`,
    // Monitoring the monitoring: Prometheus itself and the Alertmanager it sends to.
    prometheus: `${prometheus.url}/metrics`,
    alertmanager: `http://127.0.0.1:${alertmanagerPort}/metrics`,
  });
  const self = await waitFor(
    'Prometheus to scrape itself',
    async () => {
      const result = await api<{ result: { value: [number, string] }[] }>(
        `/api/v1/query?query=${encodeURIComponent('up{job="prometheus"}')}`,
      );
      return result.data?.result[0]?.value[1] === '1' ? true : undefined;
    },
    15_000,
  );
  assert.ok(self);
  const alertmanagers = await waitFor(
    'the Alertmanager to be discovered',
    async () => {
      const result = await api<{ activeAlertmanagers: { url: string }[] }>('/api/v1/alertmanagers');
      const active = result.data?.activeAlertmanagers ?? [];
      return active.length > 0 ? active : undefined;
    },
    15_000,
  );
  assert.deepEqual(
    alertmanagers.map((am) => am.url),
    [`http://127.0.0.1:${alertmanagerPort}/api/v2/alerts`],
  );
});

test('every alert leaves Prometheus with the environment label that Alertmanager groups and inhibits on', async () => {
  const result = await api<{ yaml: string }>('/api/v1/status/config');
  assert.match(result.data?.yaml ?? '', /external_labels:\n\s+environment: production\n/);
  // The Watchdog fires from the first evaluation: the pipeline's heartbeat.
  const firing = await waitFor(
    'the Watchdog to fire',
    async () => {
      const alerts = await api<{ alerts: { labels: Record<string, string>; state: string }[] }>(
        '/api/v1/alerts',
      );
      return alerts.data?.alerts.find(
        (alert) => alert.labels.alertname === 'Watchdog' && alert.state === 'firing',
      );
    },
    15_000,
  );
  assert.equal(firing.labels.severity, 'none');
});
