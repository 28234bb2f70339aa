/**
 * What the tests expect of the outbox alerts: the rules file (checked through a real Prometheus) and the
 * Alertmanager routing (checked with amtool) are both compared with this one table.
 */
export type Severity = 'page' | 'ticket';

export const RUNBOOK_BASE = 'https://github.com/astra/trading-outbox/blob/main/docs/runbooks.md';

export interface ExpectedAlert {
  severity: Severity;
  /** Labels besides alertname and severity that the alert carries. */
  labels: Record<string, string>;
}

export const ALERTS: Record<string, ExpectedAlert> = {
  OutboxPendingHigh: { severity: 'ticket', labels: {} },
  OutboxOldestPendingTooOld: { severity: 'page', labels: {} },
  OutboxPublishErrorsSustained: { severity: 'ticket', labels: { kind: 'broker' } },
  OutboxFailedEvents: { severity: 'page', labels: {} },
  OutboxBrokerDown: { severity: 'page', labels: { job: 'outbox-relay', instance: '127.0.0.1:9464' } },
  OutboxNoRelayRunning: { severity: 'page', labels: {} },
  OutboxBrokerDataLoss: { severity: 'ticket', labels: { stream: 'astra.trading.position_updated.v1' } },
  OutboxEventsLostForGood: { severity: 'page', labels: { stream: 'astra.trading.position_updated.v1' } },
  OutboxRelayStalled: { severity: 'ticket', labels: {} },
};

export const RECEIVER: Record<Severity, string> = { page: 'oncall', ticket: 'ticket' };

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
