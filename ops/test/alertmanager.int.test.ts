// ops/alertmanager/alertmanager.yml: amtool's config check and routing tests, then a real Alertmanager
// for what amtool cannot show: inhibition, and delivery to the webhook with the token from its file.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { ALERTS, RECEIVER } from './support/alerts.ts';
import { type Daemon, OPS, run, startAlertmanager, waitFor } from './support/processes.ts';

const CONFIG = join(OPS, 'alertmanager', 'alertmanager.yml');

/** Receivers amtool resolves for an alert with these labels. */
function receiversFor(labels: Record<string, string>, verify: string) {
  const args = Object.entries(labels).map(([name, value]) => `${name}=${value}`);
  return run('amtool', [
    'config',
    'routes',
    'test',
    `--config.file=${CONFIG}`,
    `--verify.receivers=${verify}`,
    ...args,
  ]);
}

describe('amtool', () => {
  test('check-config accepts the configuration', () => {
    const result = run('amtool', ['check-config', CONFIG]);
    assert.equal(result.status, 0, result.output);
    assert.match(result.output, /SUCCESS/);
    assert.match(result.output, /3 inhibit rules/);
    assert.match(result.output, /2 receivers/);
  });

  for (const [name, alert] of Object.entries(ALERTS)) {
    const receiver = RECEIVER[alert.severity];
    test(`routes ${name} (severity ${alert.severity}) to ${receiver} only`, () => {
      const result = receiversFor({ alertname: name, severity: alert.severity, ...alert.labels }, receiver);
      assert.equal(result.status, 0, result.output);
      assert.equal(result.stdout.trim(), receiver);
    });
  }

  test('routes an alert without severity, or with an unknown one, to ticket', () => {
    const cases: Record<string, string>[] = [
      { alertname: 'Unlabelled' },
      { alertname: 'Odd', severity: 'warning' },
    ];
    for (const labels of cases) {
      const result = receiversFor(labels, 'ticket');
      assert.equal(result.status, 0, result.output);
    }
  });

  test('reports a wrong expectation (the routing checks can fail)', () => {
    const result = receiversFor({ alertname: 'OutboxBrokerDown', severity: 'page' }, 'ticket');
    assert.notEqual(result.status, 0, result.output);
  });
});

interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: { receiver: string; status: string; alerts: { labels: Record<string, string> }[] };
}

interface AlertStatus {
  fingerprint: string;
  labels: Record<string, string>;
  status: { state: string; inhibitedBy: string[] };
}

describe('a real Alertmanager with the committed configuration', () => {
  let webhook: Server;
  let alertmanager: Daemon;
  let deliveries: Delivery[] = [];
  const tokens = { oncall: 'oncall-token-for-test', ticket: 'ticket-token-for-test' };

  // A fresh Alertmanager and webhook for each test: no test relies on alerts another one raised, so
  // each passes alone and in any order.
  beforeEach(async () => {
    deliveries = [];
    webhook = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      request.on('end', () => {
        deliveries.push({ path: request.url ?? '', headers: request.headers, body: JSON.parse(body) });
        response.end();
      });
    });
    await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
    const address = webhook.address();
    assert.ok(typeof address === 'object' && address !== null);

    // The committed file with its per-deployment parts (endpoints, token files) pointed at this test.
    alertmanager = await startAlertmanager((dir) => {
      let config = readFileSync(CONFIG, 'utf8');
      const replace = (from: string, to: string) => {
        assert.equal(config.split(from).length, 2, `expected "${from}" once in alertmanager.yml`);
        config = config.replace(from, to);
      };
      replace(
        'url: https://oncall-webhook.invalid/alertmanager',
        `url: http://127.0.0.1:${address.port}/oncall`,
      );
      replace(
        'url: https://ticket-webhook.invalid/alertmanager',
        `url: http://127.0.0.1:${address.port}/ticket`,
      );
      replace(
        'credentials_file: /etc/alertmanager/secrets/oncall-webhook-token',
        `credentials_file: ${join(dir, 'oncall-token')}`,
      );
      replace(
        'credentials_file: /etc/alertmanager/secrets/ticket-webhook-token',
        `credentials_file: ${join(dir, 'ticket-token')}`,
      );
      writeFileSync(join(dir, 'oncall-token'), tokens.oncall);
      writeFileSync(join(dir, 'ticket-token'), tokens.ticket);
      return config;
    });
  });

  afterEach(async () => {
    await alertmanager?.stop();
    await new Promise<void>((resolve) => (webhook ? webhook.close(() => resolve()) : resolve()));
  });

  const minutesFromNow = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();

  async function post(alerts: TestAlert[]): Promise<void> {
    const body = alerts.map((alert) => ({
      labels: alert.labels,
      annotations: { summary: `test ${alert.labels.alertname}` },
      // Starting now, so a new group waits its group_wait before notifying. An alert that started
      // longer ago than group_wait is flushed at once, racing the inhibitor's view of the source alert
      // posted with it. A resolved alert starts before it ends.
      startsAt: alert.endsAt === undefined ? minutesFromNow(0) : minutesFromNow(-1),
      endsAt: alert.endsAt ?? minutesFromNow(60),
    }));
    const response = await fetch(`${alertmanager.url}/api/v2/alerts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5_000),
    });
    assert.equal(response.status, 200, await response.text());
  }

  async function alerts(): Promise<AlertStatus[]> {
    const response = await fetch(`${alertmanager.url}/api/v2/alerts`, { signal: AbortSignal.timeout(5_000) });
    return (await response.json()) as AlertStatus[];
  }

  const key = (labels: Record<string, string>) =>
    labels.kind === undefined ? (labels.alertname ?? '') : `${labels.alertname}{kind=${labels.kind}}`;

  /** Waits until every listed alert is known, then returns each one's inhibiting alert names. */
  async function inhibition(expected: string[]): Promise<Map<string, string[]>> {
    return waitFor(
      `alerts ${expected.join(', ')}`,
      async () => {
        const current = await alerts();
        const names = new Map(current.map((alert) => [alert.fingerprint, key(alert.labels)]));
        const result = new Map(
          current.map((alert) => [
            key(alert.labels),
            alert.status.inhibitedBy.map((fingerprint) => names.get(fingerprint) ?? fingerprint).sort(),
          ]),
        );
        return expected.every((name) => result.has(name)) ? result : undefined;
      },
      10_000,
    );
  }

  interface TestAlert {
    labels: Record<string, string>;
    endsAt?: string;
  }

  const backlog: TestAlert[] = [
    { labels: { alertname: 'OutboxPendingHigh', severity: 'ticket' } },
    { labels: { alertname: 'OutboxOldestPendingTooOld', severity: 'page' } },
    { labels: { alertname: 'OutboxPublishErrorsSustained', severity: 'ticket', kind: 'broker' } },
    { labels: { alertname: 'OutboxPublishErrorsSustained', severity: 'ticket', kind: 'event' } },
    { labels: { alertname: 'OutboxFailedEvents', severity: 'page' } },
  ];

  const brokerDown = {
    labels: { alertname: 'OutboxBrokerDown', severity: 'page', job: 'outbox-relay', instance: 'r1:9464' },
  };
  const noRelay = { labels: { alertname: 'OutboxNoRelayRunning', severity: 'page' } };

  test('OutboxBrokerDown mutes the backlog alerts and the broker errors, not the other errors', async () => {
    await post([brokerDown, ...backlog]);
    const inhibitedBy = await waitFor(
      'OutboxBrokerDown to mute the backlog',
      async () => {
        const current = await inhibition(['OutboxBrokerDown', 'OutboxPendingHigh']);
        return current.get('OutboxPendingHigh')?.length ? current : undefined;
      },
      10_000,
    );
    assert.deepEqual(Object.fromEntries(inhibitedBy), {
      OutboxBrokerDown: [],
      OutboxPendingHigh: ['OutboxBrokerDown'],
      OutboxOldestPendingTooOld: ['OutboxBrokerDown'],
      'OutboxPublishErrorsSustained{kind=broker}': ['OutboxBrokerDown'],
      'OutboxPublishErrorsSustained{kind=event}': [],
      OutboxFailedEvents: [],
    });
  });

  test('OutboxNoRelayRunning mutes the backlog alerts, not the publish errors', async () => {
    // The backlog is first muted by OutboxBrokerDown, as in the test above.
    await post([brokerDown, ...backlog]);
    await waitFor(
      'OutboxBrokerDown to mute the backlog',
      async () =>
        (await inhibition(['OutboxBrokerDown', 'OutboxPendingHigh'])).get('OutboxPendingHigh')?.length
          ? true
          : undefined,
      10_000,
    );
    // Raised before OutboxBrokerDown resolves, so the backlog alerts are never unmuted in between.
    // (Alertmanager names only the first inhibiting alert, so OutboxBrokerDown's shows until it ends.)
    await post([noRelay]);
    await inhibition(['OutboxNoRelayRunning']);
    await post([{ ...brokerDown, endsAt: minutesFromNow(-0.1) }]);
    const inhibitedBy = await waitFor(
      'OutboxBrokerDown to resolve and OutboxNoRelayRunning to mute the backlog',
      async () => {
        const current = await inhibition(['OutboxNoRelayRunning', 'OutboxPendingHigh']);
        const muted = current.get('OutboxPendingHigh')?.includes('OutboxNoRelayRunning');
        return current.has('OutboxBrokerDown') || !muted ? undefined : current;
      },
      10_000,
    );
    assert.deepEqual(Object.fromEntries(inhibitedBy), {
      OutboxNoRelayRunning: [],
      OutboxPendingHigh: ['OutboxNoRelayRunning'],
      OutboxOldestPendingTooOld: ['OutboxNoRelayRunning'],
      'OutboxPublishErrorsSustained{kind=broker}': [],
      'OutboxPublishErrorsSustained{kind=event}': [],
      OutboxFailedEvents: [],
    });
  });

  test('pages reach the oncall webhook with the token from its credentials file', async () => {
    // OutboxNoRelayRunning is known before the backlog arrives, so OutboxOldestPendingTooOld (a page)
    // is muted from its first evaluation and must never be sent.
    await post([noRelay]);
    await inhibition(['OutboxNoRelayRunning']);
    await post(backlog);
    await waitFor(
      'OutboxNoRelayRunning to mute the backlog',
      async () =>
        (await inhibition(['OutboxNoRelayRunning', 'OutboxOldestPendingTooOld']))
          .get('OutboxOldestPendingTooOld')
          ?.includes('OutboxNoRelayRunning')
          ? true
          : undefined,
      10_000,
    );
    // The page route waits 10 s (group_wait) before its first notification.
    await waitFor(
      'the oncall webhook to receive OutboxNoRelayRunning and OutboxFailedEvents',
      async () => {
        const names = deliveries
          .filter((delivery) => delivery.path === '/oncall')
          .flatMap((delivery) => delivery.body.alerts.map((alert) => alert.labels.alertname));
        return names.includes('OutboxNoRelayRunning') && names.includes('OutboxFailedEvents')
          ? true
          : undefined;
      },
      30_000,
    );
    for (const delivery of deliveries) {
      const receiver = delivery.path === '/oncall' ? 'oncall' : 'ticket';
      assert.equal(delivery.body.receiver, receiver);
      assert.equal(delivery.headers.authorization, `Bearer ${tokens[receiver]}`);
      for (const alert of delivery.body.alerts) {
        assert.equal(RECEIVER[alert.labels.severity === 'page' ? 'page' : 'ticket'], receiver);
        // Muted alerts are never sent.
        assert.notEqual(alert.labels.alertname, 'OutboxOldestPendingTooOld');
      }
    }
  });
});
