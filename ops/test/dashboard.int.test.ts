// The Grafana dashboard and provisioning files: committed as generated, and complete. (Their queries are
// run against a real Prometheus in prometheus.int.test.ts.)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Dashboard } from '@grafana/grafana-foundation-sdk/dashboard';
import {
  buildOutboxDashboard,
  DATASOURCE_UID,
  dashboardPanels,
  GRAFANA_DIR,
  generatedFiles,
  panelQueries,
  SCRAPE_INTERVAL,
} from '../grafana/generate.ts';
import { ALERTS } from './support/alerts.ts';
import { OPS } from './support/processes.ts';

test('the committed dashboard and provisioning files are what the generator produces', () => {
  const files = generatedFiles();
  assert.deepEqual([...files.keys()].sort(), [
    'dashboards/outbox.json',
    'provisioning/dashboards/outbox.yml',
    'provisioning/datasources/prometheus.yml',
  ]);
  for (const [path, content] of files) {
    const committed = readFileSync(join(GRAFANA_DIR, path), 'utf8');
    assert.equal(committed, content, `ops/grafana/${path} is stale: run npm run dashboards and commit it`);
  }
});

test('every panel has a title and at least one Prometheus query with an expression', () => {
  const panels = dashboardPanels();
  assert.ok(panels.length >= 10, `only ${panels.length} panels`);
  for (const panel of panels) {
    assert.ok(panel.title, `a ${panel.type} panel without title`);
    const targets = panel.targets ?? [];
    assert.ok(targets.length > 0, `panel "${panel.title}" has no query`);
    const refIds = new Set<string>();
    for (const target of targets) {
      const expr = 'expr' in target ? target.expr : undefined;
      assert.ok(typeof expr === 'string' && expr.trim() !== '', `panel "${panel.title}" has an empty query`);
      const refId = 'refId' in target && typeof target.refId === 'string' ? target.refId : '';
      assert.ok(refId !== '' && !refIds.has(refId), `panel "${panel.title}" repeats or lacks refId ${refId}`);
      refIds.add(refId);
    }
  }
});

test('the panels cover every metric of the contract', () => {
  const exprs = panelQueries().map((query) => query.promql);
  const metrics = [
    'outbox_pending_events_total',
    'outbox_oldest_pending_event_age_seconds',
    'outbox_events_published_total',
    'outbox_publish_errors_total',
    'outbox_commit_to_ack_seconds_bucket',
    'outbox_batch_size_bucket',
    'outbox_failed_events',
    'outbox_blocked_aggregates',
    'outbox_broker_up',
    'outbox_relay_running',
    'outbox_relay_partitions_held',
    'outbox_relay_leader',
    'outbox_status_query_errors_total',
    'outbox_events_enqueued_total',
    'outbox_events_failed_total',
    'outbox:commit_to_ack_slo_errors:ratio_rate5m',
    'outbox:commit_to_ack_slo_errors:ratio_rate1h',
    'up',
    'http_request_duration_seconds_count',
    'trades_executed_total',
    'http_request_duration_seconds_bucket',
    'process_resident_memory_bytes',
    'nodejs_eventloop_lag_seconds',
    // The Consumers row.
    'outbox_consumer_events_total',
    'outbox_consumer_redelivered_total',
    'outbox_consumer_deferred_total',
    'outbox_consumer_dead_lettered_total',
    'outbox_consumer_handler_failures_total',
    'outbox_consumer_faults_total',
    'outbox_consumer_handler_seconds_bucket',
    'outbox_consumer_held_entries',
    'outbox_consumer_group_lag',
    'outbox_consumer_group_pending',
    'outbox_consumer_dead_letters',
  ];
  for (const metric of metrics) {
    assert.ok(
      exprs.some((expr) => new RegExp(`\\b${metric}\\b`).test(expr)),
      `no panel queries ${metric}`,
    );
  }
  for (const q of [0.5, 0.95, 0.99]) {
    assert.ok(
      exprs.some(
        (expr) => expr.startsWith(`histogram_quantile(${q},`) && expr.includes('outbox_commit_to_ack'),
      ),
      `no p${q * 100} commit-to-ack latency`,
    );
  }
});

test('the Consumers row comes last, so the ids runbooks link to stay put, and shows lag and pending per group', () => {
  const rows = (buildOutboxDashboard().panels ?? []).filter((panel) => panel.type === 'row');
  assert.equal(rows.at(-1)?.title, 'Consumers');
  const consumers = panelQueries().filter((query) => query.panel.startsWith('Consumer'));
  const lag = consumers.find((query) => query.panel === 'Consumer group lag');
  assert.match(lag?.promql ?? '', /^max by \(group, stream\) \(outbox_consumer_group_lag\)$/);
  const pending = consumers.find((query) => query.panel === 'Consumer group pending and held entries');
  assert.match(pending?.promql ?? '', /^max by \(group, stream\) \(outbox_consumer_group_pending\)$/);
  assert.ok(
    consumers.some(
      (query) =>
        query.promql.startsWith('histogram_quantile(0.99,') &&
        query.promql.includes('outbox_consumer_handler_seconds'),
    ),
    'no p99 handler duration',
  );
});

test('panels sit inside the 24-column grid without overlapping', () => {
  const boxes = (buildOutboxDashboard().panels ?? []).map((panel) => ({
    title: panel.title,
    ...panel.gridPos,
  }));
  for (const [index, a] of boxes.entries()) {
    assert.ok(a.x !== undefined && a.y !== undefined && a.w !== undefined && a.h !== undefined, `${a.title}`);
    assert.ok(a.x >= 0 && a.x + a.w <= 24, `panel "${a.title}" leaves the grid`);
    for (const b of boxes.slice(index + 1)) {
      const apart =
        a.x + a.w <= (b.x ?? 0) ||
        (b.x ?? 0) + (b.w ?? 0) <= a.x ||
        a.y + a.h <= (b.y ?? 0) ||
        (b.y ?? 0) + (b.h ?? 0) <= a.y;
      assert.ok(apart, `panels "${a.title}" and "${b.title}" overlap`);
    }
  }
});

test('queries use the provisioned data source, whose interval matches Prometheus', () => {
  const model = buildOutboxDashboard();
  for (const panel of dashboardPanels(model)) {
    assert.deepEqual(
      panel.datasource,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template.
      { type: 'prometheus', uid: '${datasource}' },
      `panel "${panel.title}"`,
    );
  }
  const variable = model.templating?.list?.find((item) => item.name === 'datasource');
  assert.deepEqual(variable?.current?.value, DATASOURCE_UID);
  const datasources = readFileSync(
    join(GRAFANA_DIR, 'provisioning', 'datasources', 'prometheus.yml'),
    'utf8',
  );
  assert.match(datasources, new RegExp(`uid: ${DATASOURCE_UID}\\n`));
  const prometheus = readFileSync(join(OPS, 'prometheus', 'prometheus.yml'), 'utf8');
  assert.match(prometheus, new RegExp(`^ {2}scrape_interval: ${SCRAPE_INTERVAL}$`, 'm'));
});

test('panelQueries substitutes $__rate_interval, $job and $instance and rejects any other variable', () => {
  for (const query of panelQueries({ rateInterval: '2m', instance: 'r1:9464' })) {
    assert.ok(!query.promql.includes('$'), query.promql);
    if (query.expr.includes('$__rate_interval')) assert.ok(query.promql.includes('[2m]'), query.promql);
    if (query.expr.includes('$instance'))
      assert.ok(query.promql.includes('instance=~"r1:9464"'), query.promql);
  }
  const model: Dashboard = buildOutboxDashboard();
  const first = dashboardPanels(model)[0]?.targets?.[0];
  assert.ok(first && 'expr' in first);
  first.expr = 'max(outbox_pending_events_total{cluster="$cluster"})';
  assert.throws(() => panelQueries({ model }), /unhandled variable/);
});

test('the job and instance variables list the outbox processes, "All" by default', () => {
  const variables = buildOutboxDashboard().templating?.list ?? [];
  for (const name of ['job', 'instance']) {
    const variable = variables.find((item) => item.name === name);
    assert.ok(variable, `no ${name} variable`);
    assert.equal(variable.includeAll, true, name);
    assert.equal(variable.allValue, '.*', name);
    assert.match(String(variable.query), /label_values\(up\{job=~"trading-service\|outbox-relay"/, name);
  }
});

test('the broker panel shows running relays only, and count stats show 0 rather than no data', () => {
  const queries = panelQueries();
  const broker = queries.find((query) => query.panel === 'Redis connection by relay');
  assert.match(broker?.promql ?? '', /and on \(job, instance\) \(outbox_relay_running == 1\)/);
  for (const panel of ['Relays running', 'Metrics leaders', 'HTTP 5xx share']) {
    const query = queries.find((candidate) => candidate.panel === panel);
    assert.match(query?.promql ?? '', /or vector\(0\)/, panel);
  }
});

test('every alert runbook links its dashboard panels, by the ids and titles the generator gives them', () => {
  const markdown = readFileSync(join(OPS, '..', 'docs', 'runbooks.md'), 'utf8');
  const titles = new Map<number, string>();
  for (const panel of buildOutboxDashboard().panels ?? []) {
    if (panel.id !== undefined) titles.set(panel.id, panel.title ?? '');
  }
  const link = /\[([^\]]+)\]\(\/d\/trading-outbox\/trading-outbox\?viewPanel=(\d+)\)/g;
  const sections = new Map(
    markdown.split(/^## /m).map((section) => [section.slice(0, section.indexOf('\n')).trim(), section]),
  );
  for (const name of Object.keys(ALERTS)) {
    const section = sections.get(name);
    assert.ok(section, `docs/runbooks.md has no section ${name}`);
    const links = [...section.matchAll(link)];
    assert.ok(links.length > 0, `the ${name} runbook links no dashboard panel`);
  }
  for (const [, title, id] of markdown.matchAll(link))
    assert.equal(titles.get(Number(id)), title, `runbook link viewPanel=${id} says "${title}"`);
});
