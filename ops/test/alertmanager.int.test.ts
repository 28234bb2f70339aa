// ops/alertmanager/alertmanager.yml: amtool's config check and routing tests, then a real Alertmanager
// for what amtool cannot show: inhibition, and delivery to the webhook with the token from its file.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { waitFor } from '@astra/test-support';
import { ALERTS, RECEIVER } from './support/alerts.ts';
import { type Daemon, OPS, run, startAlertmanager } from './support/processes.ts';

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
    assert.match(result.output, /5 inhibit rules/);
    assert.match(result.output, /3 receivers/);
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

  test("routes the Watchdog to the dead man's switch only, whatever its severity says", () => {
    for (const severity of ['none', 'page']) {
      const result = receiversFor({ alertname: 'Watchdog', severity, environment: 'production' }, 'watchdog');
      assert.equal(result.status, 0, result.output);
      assert.equal(result.stdout.trim(), 'watchdog');
    }
  });

  test('routes alerts of every environment alike (the environment groups, it does not route)', () => {
    for (const environment of ['production', 'staging']) {
      const result = receiversFor(
        { alertname: 'OutboxBrokerDownAllRelays', severity: 'page', environment },
        'oncall',
      );
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
  body: {
    receiver: string;
    status: string;
    groupLabels: Record<string, string>;
    alerts: { labels: Record<string, string> }[];
  };
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
  const tokens: Record<string, string> = {
    oncall: 'oncall-token-for-test',
    ticket: 'ticket-token-for-test',
    watchdog: 'watchdog-token-for-test',
  };

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
        'url: https://watchdog-webhook.invalid/alertmanager',
        `url: http://127.0.0.1:${address.port}/watchdog`,
      );
      for (const receiver of Object.keys(tokens)) {
        replace(
          `credentials_file: /etc/alertmanager/secrets/${receiver}-webhook-token`,
          `credentials_file: ${join(dir, `${receiver}-token`)}`,
        );
        writeFileSync(join(dir, `${receiver}-token`), tokens[receiver] ?? '');
      }
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

  /**
   * An alert's name in the expectations: `Name`, `Name{kind=k}`, `Name{group=g}`, with `@staging`
   * outside production.
   */
  const key = (labels: Record<string, string>) => {
    const distinct = ['kind', 'group'].find((name) => labels[name] !== undefined);
    const detail = distinct === undefined ? '' : `{${distinct}=${labels[distinct]}}`;
    const environment = labels.environment === 'production' ? '' : `@${labels.environment ?? 'none'}`;
    return `${labels.alertname ?? ''}${detail}${environment}`;
  };

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

  const inEnvironment = (environment: string, alerts: TestAlert[]): TestAlert[] =>
    alerts.map((alert) => ({ ...alert, labels: { ...alert.labels, environment } }));

  const backlog: TestAlert[] = [
    { labels: { alertname: 'OutboxPendingHigh', severity: 'ticket' } },
    { labels: { alertname: 'OutboxOldestPendingTooOld', severity: 'page' } },
    { labels: { alertname: 'OutboxPublishErrorRatioHigh', severity: 'ticket', kind: 'broker' } },
    { labels: { alertname: 'OutboxPublishErrorRatioHigh', severity: 'ticket', kind: 'event' } },
    { labels: { alertname: 'OutboxLatencySLOBurnFast', severity: 'page' } },
    { labels: { alertname: 'OutboxFailedEvents', severity: 'page' } },
  ];
  const production = inEnvironment('production', backlog);
  const staging = inEnvironment('staging', backlog);

  const brokerDown = {
    labels: {
      alertname: 'OutboxBrokerDown',
      severity: 'page',
      job: 'outbox-relay',
      instance: 'r1:9464',
      environment: 'production',
    },
  };
  const allRelays = {
    labels: { alertname: 'OutboxBrokerDownAllRelays', severity: 'page', environment: 'production' },
  };
  const noRelay = {
    labels: { alertname: 'OutboxNoRelayRunning', severity: 'page', environment: 'production' },
  };
  const unmuted = (alerts: TestAlert[]) => Object.fromEntries(alerts.map((alert) => [key(alert.labels), []]));

  test('OutboxBrokerDown on one relay mutes nothing: the other relays may still publish', async () => {
    await post([brokerDown, ...production]);
    // Inhibition is computed when asked: once every alert is known, what is muted is muted.
    const inhibitedBy = await inhibition([key(brokerDown.labels), ...production.map((a) => key(a.labels))]);
    assert.deepEqual(Object.fromEntries(inhibitedBy), unmuted([brokerDown, ...production]));
  });

  test('OutboxBrokerDownAllRelays mutes its consequences in its own environment only', async () => {
    await post([allRelays, brokerDown, ...production, ...staging]);
    const inhibitedBy = await waitFor(
      'OutboxBrokerDownAllRelays to mute the production backlog',
      async () => {
        const current = await inhibition([key(allRelays.labels), ...staging.map((a) => key(a.labels))]);
        return current.get('OutboxPendingHigh')?.length ? current : undefined;
      },
      10_000,
    );
    assert.deepEqual(Object.fromEntries(inhibitedBy), {
      OutboxBrokerDownAllRelays: [],
      // Each relay's own alert is part of the one outage.
      OutboxBrokerDown: ['OutboxBrokerDownAllRelays'],
      OutboxPendingHigh: ['OutboxBrokerDownAllRelays'],
      OutboxOldestPendingTooOld: ['OutboxBrokerDownAllRelays'],
      'OutboxPublishErrorRatioHigh{kind=broker}': ['OutboxBrokerDownAllRelays'],
      'OutboxPublishErrorRatioHigh{kind=event}': [],
      OutboxLatencySLOBurnFast: ['OutboxBrokerDownAllRelays'],
      OutboxFailedEvents: [],
      // The same alerts in staging, where Redis is fine: nothing mutes them.
      ...unmuted(staging),
    });
  });

  test('OutboxNoRelayRunning mutes the backlog alerts and the SLO burn, not the publish errors', async () => {
    // The backlog is first muted by OutboxBrokerDownAllRelays, as in the test above.
    await post([allRelays, brokerDown, ...production, ...staging]);
    await waitFor(
      'OutboxBrokerDownAllRelays to mute the backlog',
      async () =>
        (await inhibition([key(allRelays.labels), 'OutboxPendingHigh'])).get('OutboxPendingHigh')?.length
          ? true
          : undefined,
      10_000,
    );
    // Raised before OutboxBrokerDownAllRelays resolves, so the backlog alerts are never unmuted in
    // between. (Alertmanager names only the first inhibiting alert, so that one shows until it ends.)
    await post([noRelay]);
    await inhibition([key(noRelay.labels)]);
    await post([
      { ...allRelays, endsAt: minutesFromNow(-0.1) },
      { ...brokerDown, endsAt: minutesFromNow(-0.1) },
    ]);
    const inhibitedBy = await waitFor(
      'OutboxBrokerDownAllRelays to resolve and OutboxNoRelayRunning to mute the backlog',
      async () => {
        const current = await inhibition([key(noRelay.labels), 'OutboxPendingHigh']);
        const muted = current.get('OutboxPendingHigh')?.includes('OutboxNoRelayRunning');
        return current.has('OutboxBrokerDownAllRelays') || current.has('OutboxBrokerDown') || !muted
          ? undefined
          : current;
      },
      10_000,
    );
    assert.deepEqual(Object.fromEntries(inhibitedBy), {
      OutboxNoRelayRunning: [],
      OutboxPendingHigh: ['OutboxNoRelayRunning'],
      OutboxOldestPendingTooOld: ['OutboxNoRelayRunning'],
      'OutboxPublishErrorRatioHigh{kind=broker}': [],
      'OutboxPublishErrorRatioHigh{kind=event}': [],
      OutboxLatencySLOBurnFast: ['OutboxNoRelayRunning'],
      OutboxFailedEvents: [],
      ...unmuted(staging),
    });
  });

  test("the consumer alerts: no process up mutes each one down; a dead letter mutes its own group's stall", async () => {
    const consumer = (alertname: string, severity: string, labels: Record<string, string>) => ({
      labels: { alertname, severity, environment: 'production', ...labels },
    });
    const stream = 'astra.trading.position_updated.v1';
    const posted = [
      consumer('OutboxConsumerNotRunning', 'page', {}),
      consumer('OutboxConsumerTargetDown', 'ticket', { job: 'reporting-service', instance: 'a:9466' }),
      consumer('OutboxConsumerDeadLetters', 'page', { group: 'reporting', stream }),
      consumer('OutboxConsumerStalled', 'page', { group: 'reporting', stream }),
      consumer('OutboxConsumerStalled', 'page', { group: 'risk', stream }),
      {
        labels: {
          ...consumer('OutboxConsumerTargetDown', 'ticket', {}).labels,
          environment: 'staging',
          instance: 'b:9466',
        },
      },
    ];
    await post(posted);
    const inhibitedBy = await waitFor(
      'the consumer inhibitions to apply',
      async () => {
        const current = await inhibition(posted.map((alert) => key(alert.labels)));
        return current.get('OutboxConsumerTargetDown')?.length &&
          current.get('OutboxConsumerStalled{group=reporting}')?.length
          ? current
          : undefined;
      },
      10_000,
    );
    assert.deepEqual(Object.fromEntries(inhibitedBy), {
      OutboxConsumerNotRunning: [],
      OutboxConsumerTargetDown: ['OutboxConsumerNotRunning'],
      'OutboxConsumerDeadLetters{group=reporting}': [],
      'OutboxConsumerStalled{group=reporting}': ['OutboxConsumerDeadLetters{group=reporting}'],
      // Another group's stall is not explained by this dead letter; staging is not production.
      'OutboxConsumerStalled{group=risk}': [],
      'OutboxConsumerTargetDown@staging': [],
    });
  });

  test('alerts are grouped per alert name and environment', async () => {
    await post([...production, ...staging]);
    await inhibition([...production, ...staging].map((alert) => key(alert.labels)));
    const response = await fetch(`${alertmanager.url}/api/v2/alerts/groups`, {
      signal: AbortSignal.timeout(5_000),
    });
    const groups = (await response.json()) as { labels: Record<string, string> }[];
    const pending = groups
      .filter((group) => group.labels.alertname === 'OutboxPendingHigh')
      .map((group) => group.labels)
      .sort((a, b) => (a.environment ?? '').localeCompare(b.environment ?? ''));
    assert.deepEqual(pending, [
      { alertname: 'OutboxPendingHigh', environment: 'production' },
      { alertname: 'OutboxPendingHigh', environment: 'staging' },
    ]);
  });

  test("pages reach the oncall webhook, the Watchdog the dead man's switch, each with its token", async () => {
    // OutboxNoRelayRunning is known before the backlog arrives, so OutboxOldestPendingTooOld (a page)
    // is muted from its first evaluation and must never be sent.
    await post([noRelay]);
    await inhibition([key(noRelay.labels)]);
    await post([
      ...production,
      { labels: { alertname: 'Watchdog', severity: 'none', environment: 'production' } },
    ]);
    await waitFor(
      'OutboxNoRelayRunning to mute the backlog',
      async () =>
        (await inhibition([key(noRelay.labels), 'OutboxOldestPendingTooOld']))
          .get('OutboxOldestPendingTooOld')
          ?.includes('OutboxNoRelayRunning')
          ? true
          : undefined,
      10_000,
    );
    // The page route waits 10 s (group_wait) before its first notification; the Watchdog's none.
    await waitFor(
      'the oncall webhook to receive OutboxNoRelayRunning and OutboxFailedEvents, and the Watchdog',
      async () => {
        const names = (path: string) =>
          deliveries
            .filter((delivery) => delivery.path === path)
            .flatMap((delivery) => delivery.body.alerts.map((alert) => alert.labels.alertname));
        const oncall = names('/oncall');
        return oncall.includes('OutboxNoRelayRunning') &&
          oncall.includes('OutboxFailedEvents') &&
          names('/watchdog').includes('Watchdog')
          ? true
          : undefined;
      },
      30_000,
    );
    for (const delivery of deliveries) {
      const receiver = delivery.path.slice(1);
      assert.equal(delivery.body.receiver, receiver);
      assert.equal(delivery.headers.authorization, `Bearer ${tokens[receiver]}`);
      // One notification per alert name and environment.
      assert.deepEqual(Object.keys(delivery.body.groupLabels).sort(), ['alertname', 'environment']);
      for (const alert of delivery.body.alerts) {
        const severity =
          alert.labels.severity === 'page' || alert.labels.severity === 'none'
            ? alert.labels.severity
            : 'ticket';
        assert.equal(RECEIVER[severity], receiver);
        // Muted alerts are never sent.
        if (alert.labels.environment === 'production')
          assert.notEqual(alert.labels.alertname, 'OutboxOldestPendingTooOld');
      }
    }
  });
});
