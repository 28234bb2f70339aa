/**
 * What the tests expect of the outbox and consumer alerts: the rules file (checked through a real Prometheus) and the
 * Alertmanager routing (checked with amtool) are both compared with this one table.
 */
export type Severity = 'page' | 'ticket' | 'none';

export const RUNBOOK_BASE = 'https://github.com/astra/trading-outbox/blob/main/docs/runbooks.md';

export interface ExpectedAlert {
  severity: Severity;
  /** Labels besides alertname and severity that the alert carries. */
  labels: Record<string, string>;
}

/** The labels of the consumer alerts that are per group and stream. */
const CONSUMER_GROUP = { group: 'reporting', stream: 'astra.trading.position_updated.v1' };

export const ALERTS: Record<string, ExpectedAlert> = {
  OutboxPendingHigh: { severity: 'ticket', labels: {} },
  OutboxOldestPendingTooOld: { severity: 'page', labels: {} },
  OutboxBacklogGaugesMissing: { severity: 'page', labels: {} },
  OutboxPublishErrorRatioHigh: { severity: 'ticket', labels: { kind: 'broker' } },
  OutboxLatencySLOBurnFast: { severity: 'page', labels: {} },
  OutboxLatencySLOBurnSlow: { severity: 'ticket', labels: {} },
  OutboxFailedEvents: { severity: 'page', labels: {} },
  OutboxBrokerDown: { severity: 'page', labels: { job: 'outbox-relay', instance: '127.0.0.1:9464' } },
  OutboxBrokerDownAllRelays: { severity: 'page', labels: {} },
  OutboxNoRelayRunning: { severity: 'page', labels: {} },
  OutboxBrokerDataLoss: { severity: 'ticket', labels: { stream: 'astra.trading.position_updated.v1' } },
  OutboxEventsLostForGood: { severity: 'page', labels: { stream: 'astra.trading.position_updated.v1' } },
  OutboxRelayStalled: { severity: 'ticket', labels: {} },
  Watchdog: { severity: 'none', labels: {} },
  // ops/prometheus/rules/consumer.rules.yml
  OutboxConsumerLagHigh: { severity: 'ticket', labels: CONSUMER_GROUP },
  OutboxConsumerStalled: { severity: 'page', labels: CONSUMER_GROUP },
  OutboxConsumerDeadLetters: { severity: 'page', labels: CONSUMER_GROUP },
  OutboxConsumerHandlerErrorRatioHigh: { severity: 'ticket', labels: CONSUMER_GROUP },
  OutboxConsumerTargetDown: {
    severity: 'ticket',
    labels: { job: 'reporting-service', instance: '127.0.0.1:9466' },
  },
  OutboxConsumerNotRunning: { severity: 'page', labels: {} },
  OutboxConsumerGroupMetricsMissing: { severity: 'page', labels: {} },
};

/** Alerts that fire by design at all times: they have no quiet case and fire on a healthy system. */
export const ALWAYS_FIRING = new Set(['Watchdog']);

/** The rule files in ops/prometheus/rules, and their unit tests in ops/prometheus/tests. */
export const RULE_FILES = ['outbox.rules.yml', 'consumer.rules.yml'];
export const RULE_TEST_FILES = ['outbox.rules.test.yml', 'slo.rules.test.yml', 'consumer.rules.test.yml'];

/** The SLO's recording rules (ops/prometheus/rules/outbox.rules.yml), one per burn-rate window. */
export const SLO_WINDOWS = ['5m', '30m', '1h', '2h', '6h', '1d'];
export const SLO_RECORDS = SLO_WINDOWS.map((window) => `outbox:commit_to_ack_slo_errors:ratio_rate${window}`);

export const RECEIVER: Record<Severity, string> = { page: 'oncall', ticket: 'ticket', none: 'watchdog' };

/**
 * The anchors GitHub gives a Markdown file's headings: lower case, punctuation other than `-` and `_`
 * dropped, spaces as `-`, and `-1`, `-2`... on repeats.
 */
export function markdownAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (heading?.[1] === undefined) continue;
    const base = heading[1]
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}
