/**
 * The Grafana dashboard for the outbox and the trade flow, typed with @grafana/grafana-foundation-sdk,
 * and its provisioning files. `npm run dashboards` rewrites the committed files; a test fails when they
 * differ from what this module produces, so edit here, never the JSON.
 *
 * Queries use Grafana's `$__rate_interval` and the dashboard's `$job` and `$instance` variables;
 * `panelQueries()` substitutes them (the variables with "All") so the expressions can be sent to
 * Prometheus as they are.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import * as heatmap from '@grafana/grafana-foundation-sdk/heatmap';
import * as prometheus from '@grafana/grafana-foundation-sdk/prometheus';
import * as stat from '@grafana/grafana-foundation-sdk/stat';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';

/** ops/grafana, where the generated files go. */
export const GRAFANA_DIR = dirname(fileURLToPath(import.meta.url));

/** Prometheus's scrape interval (ops/prometheus/prometheus.yml); Grafana bases `$__rate_interval` on it. */
export const SCRAPE_INTERVAL = '15s';

/** uid of the provisioned Prometheus data source, the dashboard's default. */
export const DATASOURCE_UID = 'prometheus';

// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, read by Grafana, not by JS.
const DATASOURCE: common.DataSourceRef = { type: 'prometheus', uid: '${datasource}' };
const RATE = '$__rate_interval';
/** The jobs that run outbox code (ops/prometheus/prometheus.yml). */
const JOBS = 'job=~"trading-service|outbox-relay"';
/**
 * The processes picked with the job and instance variables. Not applied to the leader's table-wide
 * gauges, which one process exports for everyone: picking another instance must not hide the backlog.
 */
const PICKED = 'job=~"$job", instance=~"$instance"';
/**
 * The consumer processes (ops/prometheus/prometheus.yml). The consumer panels are by group, across
 * processes and jobs, so the job and instance variables (the outbox processes) do not narrow them.
 */
const CONSUMER_JOBS = 'job=~"reporting-service"';
/** What Grafana puts for a variable set to "All" (the variables' allValue). */
const ALL = '.*';
/** The SLO (docs/runbooks.md): at most 1% of events slower than 30 s from commit to Redis. */
const SLO_BUDGET = 0.01;

interface Query {
  expr: string;
  legend: string;
  /** Prometheus's buckets as a heatmap (one series per `le`). */
  heatmap?: boolean;
}

function targets(queries: Query[]): prometheus.DataqueryBuilder[] {
  return queries.map((query, index) => {
    const target = new prometheus.DataqueryBuilder()
      .datasource(DATASOURCE)
      .refId(String.fromCharCode(65 + index))
      .expr(query.expr)
      .legendFormat(query.legend)
      .range();
    if (query.heatmap) target.format(prometheus.PromQueryFormat.Heatmap);
    return target;
  });
}

function thresholds(steps: dashboard.Threshold[]): dashboard.ThresholdsConfigBuilder {
  return new dashboard.ThresholdsConfigBuilder().mode(dashboard.ThresholdsMode.Absolute).steps(steps);
}

const GREEN_RED_AT = (value: number): dashboard.Threshold[] => [
  { value: null, color: 'green' },
  { value, color: 'red' },
];

/** For values where 1 and more is good (up, running): red below. */
const RED_GREEN_AT = (value: number): dashboard.Threshold[] => [
  { value: null, color: 'red' },
  { value, color: 'green' },
];

interface GraphOptions {
  title: string;
  description: string;
  unit: string;
  queries: Query[];
  /** Draws a dashed red line where the matching alert fires. */
  alertAt?: number;
  width?: number;
}

function graph(options: GraphOptions): timeseries.PanelBuilder {
  const panel = new timeseries.PanelBuilder()
    .title(options.title)
    .description(options.description)
    .datasource(DATASOURCE)
    .unit(options.unit)
    .min(0)
    .span(options.width ?? 12)
    .height(8)
    .fillOpacity(10)
    .legend(
      new common.VizLegendOptionsBuilder()
        .showLegend(true)
        .displayMode(common.LegendDisplayMode.List)
        .placement(common.LegendPlacement.Bottom),
    )
    .tooltip(new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi))
    .targets(targets(options.queries));
  if (options.alertAt !== undefined) {
    panel
      .thresholds(thresholds(GREEN_RED_AT(options.alertAt)))
      .thresholdsStyle(
        new common.GraphThresholdsStyleConfigBuilder().mode(common.GraphThresholdsStyleMode.Dashed),
      );
  }
  return panel;
}

interface SingleStatOptions {
  title: string;
  description: string;
  queries: Query[];
  steps: dashboard.Threshold[];
  mappings?: dashboard.ValueMapping[];
  unit?: string;
  width: number;
  height?: number;
}

function singleStat(options: SingleStatOptions): stat.PanelBuilder {
  return new stat.PanelBuilder()
    .title(options.title)
    .description(options.description)
    .datasource(DATASOURCE)
    .unit(options.unit ?? 'short')
    .span(options.width)
    .height(options.height ?? 8)
    .graphMode(common.BigValueGraphMode.Area)
    .colorMode(common.BigValueColorMode.Background)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']))
    .thresholds(thresholds(options.steps))
    .mappings(options.mappings ?? [])
    .targets(targets(options.queries));
}

const quantile = (q: number, metric: string, by = 'le', selector = ''): string =>
  `histogram_quantile(${q}, sum by (${by}) (rate(${metric}_bucket${selector}[${RATE}])))`;

const UP_DOWN: dashboard.ValueMapping[] = [
  {
    type: dashboard.MappingType.ValueToText,
    options: { '0': { text: 'DOWN', color: 'red' }, '1': { text: 'UP', color: 'green' } },
  },
];

/** A variable listing one label's values among the outbox processes, "All" by default. */
function processVariable(name: 'job' | 'instance', query: string): dashboard.QueryVariableBuilder {
  return new dashboard.QueryVariableBuilder(name)
    .label(name)
    .datasource(DATASOURCE)
    .query(query)
    .definition(query)
    .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
    .sort(dashboard.VariableSort.AlphabeticalAsc)
    .multi(true)
    .includeAll(true)
    .allValue(ALL)
    .current({ selected: true, text: 'All', value: '$__all' });
}

/** Time to drain the backlog at the current write and drain rates: 0 when empty, +Inf when growing. */
const PENDING = 'max(outbox_pending_events_total)';
const WRITE_RATE = `sum(rate(outbox_events_enqueued_total[${RATE}]))`;
const DRAIN_RATE = `sum(rate(outbox_events_published_total[${RATE}]))`;
const TIME_TO_DRAIN = `(${PENDING} == 0) or (${PENDING} / clamp_min(${DRAIN_RATE} - ${WRITE_RATE}, 0))`;

/** The dashboard as Grafana's JSON model. */
export function buildOutboxDashboard(): dashboard.Dashboard {
  const model = new dashboard.DashboardBuilder('Trading outbox')
    .uid('trading-outbox')
    .description(
      'Transactional outbox of the trading service: SLO, backlog, publishing, relay health, the trade flow ' +
        'and the consumers downstream. ' +
        'Generated by ops/grafana/generate.ts; alerts and runbooks: docs/runbooks.md.',
    )
    .tags(['trading', 'outbox'])
    .editable()
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .refresh('30s')
    .time({ from: 'now-6h', to: 'now' })
    .timezone('browser')
    .withVariable(
      new dashboard.DatasourceVariableBuilder('datasource')
        .label('Data source')
        .type('prometheus')
        .current({ selected: true, text: 'Prometheus', value: DATASOURCE_UID }),
    )
    .withVariable(processVariable('job', `label_values(up{${JOBS}}, job)`))
    .withVariable(processVariable('instance', `label_values(up{${JOBS}, job=~"$job"}, instance)`))

    .withRow(new dashboard.RowBuilder('Service level'))
    .withPanel(
      graph({
        title: 'SLO burn rate',
        description:
          'How fast the error budget goes: the share of events slower than 30 s from commit to Redis, over ' +
          'the SLO allowance of 1%. 1 spends the 30-day budget in 30 days; the fast-burn page needs 14.4 over ' +
          '1h and 5m (or 6 over 6h and 30m). Alerts OutboxLatencySLOBurnFast and OutboxLatencySLOBurnSlow.',
        unit: 'x',
        alertAt: 14.4,
        width: 12,
        queries: ['5m', '1h', '6h', '1d'].map((window) => ({
          expr: `outbox:commit_to_ack_slo_errors:ratio_rate${window} / ${SLO_BUDGET}`,
          legend: window,
        })),
      }),
    )
    .withPanel(
      new heatmap.PanelBuilder()
        .title('Commit to Redis ack latency (heatmap)')
        .description(
          'Events acknowledged per latency bucket, from the event row commit (created_at, database clock) to ' +
            "Redis's acknowledgement (relay clock). The SLO line is 30 s; a band at the top is an outage drained.",
        )
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .calculate(false)
        .yAxis(new heatmap.YAxisConfigBuilder().unit('s'))
        .targets(
          targets([
            {
              expr: `sum by (le) (increase(outbox_commit_to_ack_seconds_bucket{${PICKED}}[${RATE}]))`,
              legend: '{{le}}',
              heatmap: true,
            },
          ]),
        ),
    )

    .withRow(new dashboard.RowBuilder('Backlog'))
    .withPanel(
      graph({
        title: 'PENDING events',
        description:
          'Events committed but not yet acknowledged by Redis. Exported by the metrics leader only, hence max(). ' +
          'Alert OutboxPendingHigh above 10k for 5m.',
        unit: 'short',
        alertAt: 10000,
        width: 8,
        queries: [{ expr: PENDING, legend: 'pending' }],
      }),
    )
    .withPanel(
      graph({
        title: 'Write rate vs drain rate',
        description:
          'Events committed to the outbox per second (write) against events acknowledged by Redis (drain), and ' +
          "the backlog's own trend from the PENDING gauge: above 0 it grows.",
        unit: 'ops',
        width: 8,
        queries: [
          { expr: WRITE_RATE, legend: 'write' },
          { expr: DRAIN_RATE, legend: 'drain' },
          { expr: `deriv(${PENDING}[10m:])`, legend: 'backlog trend' },
        ],
      }),
    )
    .withPanel(
      singleStat({
        title: 'Time to drain the backlog',
        description:
          'PENDING events divided by how much faster they drain than they are written: 0 when empty, ' +
          'infinite while the backlog does not shrink.',
        unit: 's',
        width: 4,
        steps: [
          { value: null, color: 'green' },
          { value: 300, color: 'red' },
        ],
        queries: [{ expr: TIME_TO_DRAIN, legend: 'time to drain' }],
      }),
    )
    .withPanel(
      graph({
        title: 'Oldest PENDING event age',
        description:
          'How long the oldest PENDING event has waited since its commit (0 when none), leaving out events held ' +
          'back by a FAILED one. Alert OutboxOldestPendingTooOld above 5m.',
        unit: 's',
        alertAt: 300,
        width: 4,
        queries: [{ expr: 'max(outbox_oldest_pending_event_age_seconds)', legend: 'oldest pending' }],
      }),
    )

    .withRow(new dashboard.RowBuilder('Publishing'))
    .withPanel(
      graph({
        title: 'Publish rate by event type',
        description: 'Events acknowledged by Redis per second, all relays together.',
        unit: 'ops',
        width: 8,
        queries: [
          {
            expr: `sum by (event_type) (rate(outbox_events_published_total{${PICKED}}[${RATE}]))`,
            legend: '{{event_type}}',
          },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'Publish error ratio by kind',
        description:
          'Failed publish attempts as a share of all attempts. broker: Redis unreachable or refusing writes; ' +
          'event: Redis rejected one event; database: Postgres errors. Alert OutboxPublishErrorRatioHigh ' +
          'above 5% for 10m.',
        unit: 'percentunit',
        alertAt: 0.05,
        width: 8,
        queries: [
          {
            expr:
              `sum by (kind) (rate(outbox_publish_errors_total{${PICKED}}[${RATE}])) / on () group_left () ` +
              `(sum(rate(outbox_events_published_total{${PICKED}}[${RATE}])) + ` +
              `sum(rate(outbox_publish_errors_total{${PICKED}}[${RATE}])))`,
            legend: '{{kind}}',
          },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'Commit to Redis ack latency',
        description:
          'From the event row commit (created_at, database clock) to the Redis acknowledgement (relay clock).',
        unit: 's',
        width: 8,
        queries: [0.5, 0.95, 0.99].map((q) => ({
          expr: quantile(q, 'outbox_commit_to_ack_seconds', 'le', `{${PICKED}}`),
          legend: `p${q * 100}`,
        })),
      }),
    )
    .withPanel(
      graph({
        title: 'Events per published batch',
        description: 'Mean and p95 batch size: near the configured maximum means the relays run flat out.',
        unit: 'short',
        queries: [
          {
            expr: `sum(rate(outbox_batch_size_sum{${PICKED}}[${RATE}])) / sum(rate(outbox_batch_size_count{${PICKED}}[${RATE}]))`,
            legend: 'mean',
          },
          { expr: quantile(0.95, 'outbox_batch_size', 'le', `{${PICKED}}`), legend: 'p95' },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'FAILED events and blocked aggregates',
        description:
          'FAILED events used up their retries; each holds back the later events of its aggregate until ' +
          'replayed (npm run cli -- outbox replay). Transitions: events that turned FAILED in the interval. ' +
          'Alert OutboxFailedEvents above 0.',
        unit: 'short',
        alertAt: 1,
        queries: [
          { expr: 'max(outbox_failed_events)', legend: 'FAILED events' },
          { expr: 'max(outbox_blocked_aggregates)', legend: 'blocked aggregates' },
          {
            expr: `sum(increase(outbox_events_failed_total{${PICKED}}[${RATE}]))`,
            legend: 'turned FAILED',
          },
        ],
      }),
    )

    .withRow(new dashboard.RowBuilder('Relays'))
    .withPanel(
      singleStat({
        title: 'Redis connection by relay',
        description:
          'outbox_broker_up of every process whose relay loop runs (a service with its relay off needs no ' +
          'Redis). DOWN is alert OutboxBrokerDown; DOWN everywhere is OutboxBrokerDownAllRelays.',
        width: 8,
        steps: RED_GREEN_AT(1),
        mappings: UP_DOWN,
        queries: [
          {
            expr: `min by (job, instance) (outbox_broker_up{${PICKED}} and on (job, instance) (outbox_relay_running == 1))`,
            legend: '{{job}} {{instance}}',
          },
        ],
      }),
    )
    .withPanel(
      singleStat({
        title: 'Relays running',
        description: 'Processes whose relay loop runs. 0 is alert OutboxNoRelayRunning.',
        width: 4,
        height: 4,
        steps: RED_GREEN_AT(1),
        queries: [{ expr: `sum(outbox_relay_running{${JOBS}}) or vector(0)`, legend: 'relays running' }],
      }),
    )
    .withPanel(
      singleStat({
        title: 'Metrics leaders',
        description:
          'Relays holding the leader role, which exports the backlog gauges: 1 is right; 0 for minutes leaves ' +
          'the backlog alerts blind (OutboxBacklogGaugesMissing).',
        width: 4,
        height: 4,
        steps: [
          { value: null, color: 'red' },
          { value: 1, color: 'green' },
          { value: 2, color: 'orange' },
        ],
        queries: [{ expr: `sum(outbox_relay_leader{${JOBS}}) or vector(0)`, legend: 'leaders' }],
      }),
    )
    .withPanel(
      graph({
        title: 'Leader and status query errors',
        description:
          'Which process leads (1), and failed or timed-out status queries at its scrapes: each one is a scrape ' +
          'without backlog gauges.',
        unit: 'short',
        width: 8,
        queries: [
          {
            expr: `max by (job, instance) (outbox_relay_leader{${PICKED}})`,
            legend: 'leader {{job}} {{instance}}',
          },
          {
            expr: `sum(increase(outbox_status_query_errors_total{${PICKED}}[${RATE}])) or vector(0)`,
            legend: 'status query errors',
          },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'Partitions held by relay',
        description: 'Each of the 64 partitions is owned by one relay at a time; the sum should be 64.',
        unit: 'short',
        queries: [
          {
            expr: `sum by (job, instance) (outbox_relay_partitions_held{${PICKED}})`,
            legend: '{{job}} {{instance}}',
          },
          { expr: 'sum(outbox_relay_partitions_held)', legend: 'total' },
        ],
      }),
    )
    .withPanel(
      singleStat({
        title: 'Scrape targets up',
        description:
          'up of every target Prometheus scrapes: the service, the relays, Prometheus and Alertmanager. A DOWN ' +
          'outbox target hides its relay from every other panel.',
        width: 12,
        steps: RED_GREEN_AT(1),
        mappings: UP_DOWN,
        queries: [
          { expr: `up{${PICKED}} or up{job=~"prometheus|alertmanager"}`, legend: '{{job}} {{instance}}' },
        ],
      }),
    )

    .withRow(new dashboard.RowBuilder('Trade flow and HTTP (rate, errors, duration)'))
    .withPanel(
      graph({
        title: 'Trades executed by side',
        description: 'Trades committed per second by the service.',
        unit: 'ops',
        width: 6,
        queries: [
          { expr: `sum by (side) (rate(trades_executed_total{${PICKED}}[${RATE}]))`, legend: '{{side}}' },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'HTTP requests by route and status',
        description: 'Requests answered per second, by route pattern and status code.',
        unit: 'reqps',
        width: 6,
        queries: [
          {
            expr: `sum by (route, status_code) (rate(http_request_duration_seconds_count{${PICKED}}[${RATE}]))`,
            legend: '{{route}} {{status_code}}',
          },
        ],
      }),
    )
    .withPanel(
      singleStat({
        title: 'HTTP 5xx share',
        description: "Share of requests answered with a 5xx (a 4xx is the client's): 0 when there were none.",
        unit: 'percentunit',
        width: 4,
        steps: [
          { value: null, color: 'green' },
          { value: 0.01, color: 'red' },
        ],
        queries: [
          {
            expr:
              `(sum(rate(http_request_duration_seconds_count{${PICKED}, status_code=~"5.."}[${RATE}])) or vector(0))` +
              ` / sum(rate(http_request_duration_seconds_count{${PICKED}}[${RATE}]))`,
            legend: '5xx',
          },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'HTTP p99 latency by route',
        description: '99th percentile of request duration per route, all status codes.',
        unit: 's',
        width: 8,
        queries: [
          {
            expr: quantile(0.99, 'http_request_duration_seconds', 'le, method, route', `{${PICKED}}`),
            legend: '{{method}} {{route}}',
          },
        ],
      }),
    )

    .withRow(new dashboard.RowBuilder('Processes'))
    .withPanel(
      graph({
        title: 'Resident memory',
        description: 'RSS of every service and relay process.',
        unit: 'bytes',
        queries: [
          { expr: `process_resident_memory_bytes{${JOBS}, ${PICKED}}`, legend: '{{job}} {{instance}}' },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'Event loop lag',
        description: 'A lagging event loop delays claims, publishes and HTTP responses alike.',
        unit: 's',
        queries: [
          { expr: `nodejs_eventloop_lag_seconds{${JOBS}, ${PICKED}}`, legend: '{{job}} {{instance}}' },
        ],
      }),
    )

    .withRow(new dashboard.RowBuilder('Broker durability and relay stalls'))
    .withPanel(
      graph({
        title: 'Broker data loss and relay stalls',
        description:
          'Events Redis acknowledged and later lost, by stream (OutboxBrokerDataLoss), those published again ' +
          'from the outbox, those the outbox no longer had (OutboxEventsLostForGood), and stalled relays ' +
          'taken over or fenced off (OutboxRelayStalled), per interval.',
        unit: 'short',
        width: 24,
        queries: [
          {
            expr: `sum by (stream) (increase(outbox_broker_data_loss_total{${PICKED}}[${RATE}]))`,
            legend: 'lost {{stream}}',
          },
          {
            expr: `sum(increase(outbox_republished_events_total{${PICKED}}[${RATE}]))`,
            legend: 'published again',
          },
          {
            expr: `sum by (stream) (increase(outbox_unrecoverable_events_total{${PICKED}}[${RATE}]))`,
            legend: 'lost for good {{stream}}',
          },
          {
            expr: `sum(increase(outbox_relay_takeovers_total{${PICKED}}[${RATE}]))`,
            legend: 'takeovers',
          },
          {
            expr: `sum(increase(outbox_fenced_publishes_total{${PICKED}}[${RATE}]))`,
            legend: 'fenced calls',
          },
        ],
      }),
    )

    // Last, so that the panel ids above (linked from the runbooks) stay as they were.
    .withRow(new dashboard.RowBuilder('Consumers'))
    .withPanel(
      graph({
        title: 'Consumer entries acknowledged by outcome',
        description:
          'Entries the consumers acknowledged per second, by group: applied (handler committed), duplicate ' +
          '(already in the inbox), stale (a version passed already). None while entries wait is alert ' +
          'OutboxConsumerStalled.',
        unit: 'ops',
        width: 6,
        queries: [
          {
            expr: `sum by (group, outcome) (rate(outbox_consumer_events_total[${RATE}]))`,
            legend: '{{group}} {{outcome}}',
          },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'Consumer redeliveries, deferrals, dead letters and faults',
        description:
          'Per interval and group: entries claimed from a consumer that stopped answering, events held back ' +
          'for an earlier one of their key, events dead-lettered, and Redis or PostgreSQL calls that failed.',
        unit: 'short',
        width: 6,
        queries: [
          {
            expr: `sum by (group) (increase(outbox_consumer_redelivered_total[${RATE}]))`,
            legend: 'redelivered {{group}}',
          },
          {
            expr: `sum by (group) (increase(outbox_consumer_deferred_total[${RATE}]))`,
            legend: 'deferred {{group}}',
          },
          {
            expr: `sum by (group) (increase(outbox_consumer_dead_lettered_total[${RATE}]))`,
            legend: 'dead-lettered {{group}}',
          },
          {
            expr: `sum by (group, kind) (increase(outbox_consumer_faults_total[${RATE}]))`,
            legend: '{{kind}} faults {{group}}',
          },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'Consumer handler error ratio',
        description:
          'Handler runs that threw, as a share of all handler runs, by group and stream. Alert ' +
          'OutboxConsumerHandlerErrorRatioHigh above 5% for 10m.',
        unit: 'percentunit',
        alertAt: 0.05,
        width: 6,
        queries: [
          {
            expr:
              `sum by (group, stream) (rate(outbox_consumer_handler_failures_total[${RATE}])) / ` +
              `(sum by (group, stream) (rate(outbox_consumer_events_total{outcome="applied"}[${RATE}])) + ` +
              `sum by (group, stream) (rate(outbox_consumer_handler_failures_total[${RATE}])))`,
            legend: '{{group}} {{stream}}',
          },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'Consumer handler duration',
        description:
          "p50 and p99 of the handler's time for applied events, inside the inbox transaction, by group.",
        unit: 's',
        width: 6,
        queries: [0.5, 0.99].map((q) => ({
          expr: quantile(q, 'outbox_consumer_handler_seconds', 'le, group'),
          legend: `p${q * 100} {{group}}`,
        })),
      }),
    )
    .withPanel(
      graph({
        title: 'Consumer group lag',
        description:
          'Entries of each stream not yet delivered to the group (XINFO GROUPS lag; every consumer of the group ' +
          'reports it, hence max()). Alert OutboxConsumerLagHigh above 10k while it does not drain.',
        unit: 'short',
        alertAt: 10000,
        width: 8,
        queries: [
          {
            expr: 'max by (group, stream) (outbox_consumer_group_lag)',
            legend: '{{group}} {{stream}}',
          },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'Consumer group pending and held entries',
        description:
          'Entries delivered to the group and not acknowledged yet (being applied, held back, or on a consumer ' +
          'that died), and those the live consumers hold back (deferred, failed, or waiting out an outage).',
        unit: 'short',
        width: 8,
        queries: [
          {
            expr: 'max by (group, stream) (outbox_consumer_group_pending)',
            legend: 'pending {{group}} {{stream}}',
          },
          {
            expr: 'sum by (group) (outbox_consumer_held_entries)',
            legend: 'held {{group}}',
          },
        ],
      }),
    )
    .withPanel(
      graph({
        title: 'Consumer dead letters waiting',
        description:
          "Events in each group's dead-letter stream: their ordering keys' later events wait until they are " +
          'replayed (npm run reporting:cli -- dead-letters). Alert OutboxConsumerDeadLetters above 0.',
        unit: 'short',
        alertAt: 1,
        width: 8,
        queries: [
          {
            expr: 'max by (group, stream) (outbox_consumer_dead_letters)',
            legend: '{{group}} {{stream}}',
          },
        ],
      }),
    )
    .withPanel(
      singleStat({
        title: 'Consumer processes up',
        description:
          'up of every consumer process Prometheus scrapes. DOWN is alert OutboxConsumerTargetDown; all DOWN, ' +
          'or none listed, is OutboxConsumerNotRunning.',
        width: 24,
        height: 4,
        steps: RED_GREEN_AT(1),
        mappings: UP_DOWN,
        queries: [{ expr: `up{${CONSUMER_JOBS}}`, legend: '{{job}} {{instance}}' }],
      }),
    )
    .build();
  // Stable ids, in layout order, so links to a panel (?viewPanel=N) survive regeneration.
  let id = 0;
  for (const panel of model.panels ?? []) {
    panel.id = ++id;
    if (isRow(panel)) for (const inner of panel.panels) inner.id = ++id;
  }
  return model;
}

export interface PanelQuery {
  panel: string;
  refId: string;
  /** The query as stored in the dashboard (may contain `$__rate_interval`). */
  expr: string;
  /** The query with Grafana's variables replaced: plain PromQL for Prometheus's HTTP API. */
  promql: string;
}

const isRow = (panel: dashboard.Panel | dashboard.RowPanel): panel is dashboard.RowPanel =>
  panel.type === 'row';

function panelsOf(model: dashboard.Dashboard): dashboard.Panel[] {
  return (model.panels ?? []).flatMap((panel) => (isRow(panel) ? panel.panels : [panel]));
}

/** Every graph or stat panel of a dashboard (not rows), in order. */
export function dashboardPanels(model: dashboard.Dashboard = buildOutboxDashboard()): dashboard.Panel[] {
  return panelsOf(model);
}

/**
 * Every PromQL expression of every panel, in dashboard order.
 * @param options.rateInterval what `$__rate_interval` becomes; at least 2 scrapes wide.
 * @param options.job, options.instance regexes for the `$job` and `$instance` variables.
 * @defaultValue rateInterval '1m' (4 scrapes at 15s, what Grafana would use); job and instance "All"
 */
export function panelQueries(
  options: { rateInterval?: string; job?: string; instance?: string; model?: dashboard.Dashboard } = {},
): PanelQuery[] {
  const rateInterval = options.rateInterval ?? '1m';
  const queries: PanelQuery[] = [];
  for (const panel of panelsOf(options.model ?? buildOutboxDashboard())) {
    for (const target of panel.targets ?? []) {
      const expr = 'expr' in target && typeof target.expr === 'string' ? target.expr : '';
      const refId = 'refId' in target && typeof target.refId === 'string' ? target.refId : '';
      const promql = expr
        .replaceAll(RATE, rateInterval)
        .replaceAll('$job', options.job ?? ALL)
        .replaceAll('$instance', options.instance ?? ALL);
      // Any other Grafana variable would reach Prometheus as a syntax error far from its cause.
      if (promql.includes('$')) throw new Error(`panel "${panel.title}": unhandled variable in ${expr}`);
      queries.push({ panel: panel.title ?? '', refId, expr, promql });
    }
  }
  return queries;
}

const DASHBOARDS_PROVIDER = `# Grafana provisioning: loads the dashboards in ops/grafana/dashboards (generated by
# ops/grafana/generate.ts). Copy that folder's JSON files to options.path on the Grafana host.
apiVersion: 1
providers:
  - name: trading-outbox
    orgId: 1
    folder: Trading
    type: file
    # The JSON in git is the source of truth: edits in the UI would be lost at the next deploy.
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 60
    options:
      path: /var/lib/grafana/dashboards/trading-outbox
`;

const PROMETHEUS_DATASOURCE = `# Grafana provisioning: the Prometheus of ops/prometheus/prometheus.yml. The dashboards select it by
# uid (${DATASOURCE_UID}) through their "datasource" variable.
apiVersion: 1
datasources:
  - name: Prometheus
    uid: ${DATASOURCE_UID}
    type: prometheus
    access: proxy
    url: http://127.0.0.1:9090
    isDefault: true
    editable: false
    jsonData:
      # Prometheus's scrape_interval: Grafana makes $__rate_interval at least four of them.
      timeInterval: ${SCRAPE_INTERVAL}
`;

/** Every generated file: path relative to ops/grafana, and its content. */
export function generatedFiles(): Map<string, string> {
  return new Map([
    ['dashboards/outbox.json', `${JSON.stringify(buildOutboxDashboard(), null, 2)}\n`],
    ['provisioning/dashboards/outbox.yml', DASHBOARDS_PROVIDER],
    ['provisioning/datasources/prometheus.yml', PROMETHEUS_DATASOURCE],
  ]);
}

function main(): void {
  for (const [path, content] of generatedFiles()) {
    const target = join(GRAFANA_DIR, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content);
    console.log(`wrote ${relative(process.cwd(), target)}`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
