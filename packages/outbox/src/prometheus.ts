import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { OutboxAdmin, OutboxStatus } from './admin.ts';
import { invalidOption } from './errors.ts';
import type { OutboxRelay } from './relay.ts';

export { type MetricsServer, type MetricsServerOptions, startMetricsServer } from './metrics-server.ts';

export interface OutboxMetricsOptions {
  registry: Registry;
  /** The relay running in this process, if any. */
  relay?: OutboxRelay;
  /** Reads the table-wide gauges; queried at scrape time, and only while this process's relay leads. */
  admin?: OutboxAdmin;
  /**
   * Longest wait for the table-wide status query at scrape time; past it the scrape goes on without the
   * gauges and `outbox_status_query_errors_total` counts it. Keep it well under Prometheus's
   * `scrape_timeout` (10 s), or a slow query fails the whole scrape and takes every other metric with it.
   * Bound the query on the server too (a `statement_timeout` on the admin's pool).
   * @defaultValue 2000
   */
  statusTimeoutMs?: number;
}

export interface OutboxMetrics {
  /**
   * Counts events written to the outbox, once the transaction that wrote them has committed: the write
   * rate the drain rate (`outbox_events_published_total`) is compared with.
   */
  enqueued(eventType: string, count?: number): void;
}

/**
 * Buckets of `outbox_commit_to_ack_seconds`. The path cannot do better than a few milliseconds (a
 * commit, a wake-up, a claim and an XADD), so nothing below 5 ms. Above, boundaries at the SLO's 30 s
 * and the stall page's 300 s, and beyond it, so that the slow tail keeps its shape in an outage.
 */
export const COMMIT_TO_ACK_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
];

/**
 * Prometheus metrics for the outbox, fed by the relay's events. The table-wide gauges (pending, oldest
 * pending age, FAILED, blocked aggregates) come from one process only, the leader relay, so that N
 * replicas cost one query per scrape, not N: aggregate them with max() in PromQL.
 */
export function registerOutboxMetrics({
  registry,
  relay,
  admin,
  statusTimeoutMs = 2000,
}: OutboxMetricsOptions): OutboxMetrics {
  if (!Number.isInteger(statusTimeoutMs) || statusTimeoutMs < 1)
    throw invalidOption('statusTimeoutMs', 'must be a whole number of 1 or more');
  const registers = [registry];
  const enqueued = new Counter({
    name: 'outbox_events_enqueued_total',
    help: 'Events committed to the outbox by this process, by event type (the write rate).',
    labelNames: ['event_type'],
    registers,
  });
  const published = new Counter({
    name: 'outbox_events_published_total',
    help: 'Events published to the broker and marked PUBLISHED, by event type.',
    labelNames: ['event_type'],
    registers,
  });
  const errors = new Counter({
    name: 'outbox_publish_errors_total',
    help: 'Publish failures by kind: broker (unreachable), event (refused by the broker), database.',
    labelNames: ['kind'],
    registers,
  });
  for (const kind of ['broker', 'event', 'database']) errors.inc({ kind }, 0);
  const failed = new Counter({
    name: 'outbox_events_failed_total',
    help: 'Events that used their last attempt and turned FAILED (transitions, by this relay).',
    registers,
  });
  const latency = new Histogram({
    name: 'outbox_commit_to_ack_seconds',
    help:
      "From the event row's created_at (its transaction's start, on the database's clock) to the broker's " +
      "acknowledgement (on the relay's clock): clock skew between the two hosts shifts it, and a negative " +
      'difference counts as 0.',
    buckets: COMMIT_TO_ACK_BUCKETS,
    registers,
  });
  const batchSize = new Histogram({
    name: 'outbox_batch_size',
    help: 'Events claimed per relay batch.',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
    registers,
  });
  const brokerUp = new Gauge({
    name: 'outbox_broker_up',
    help: "1 while this relay's broker answers.",
    registers,
  });
  const running = new Gauge({
    name: 'outbox_relay_running',
    help: '1 while a relay loop runs in this process.',
    registers,
  });
  const partitions = new Gauge({
    name: 'outbox_relay_partitions_held',
    help: 'Partitions this relay owns.',
    registers,
  });
  const leader = new Gauge({
    name: 'outbox_relay_leader',
    help: "1 while this process's relay is the leader, which exports the table-wide gauges.",
    registers,
  });

  const dataLoss = new Counter({
    name: 'outbox_broker_data_loss_total',
    help: 'Events the broker acknowledged and later no longer held (restart without persistence, failover, flush), by stream.',
    labelNames: ['stream'],
    registers,
  });
  const republished = new Counter({
    name: 'outbox_republished_events_total',
    help: 'Lost events published again from the outbox, in their order and with their ids.',
    registers,
  });
  const unrecoverable = new Counter({
    name: 'outbox_unrecoverable_events_total',
    help: 'Lost events the outbox no longer had (past retention, or deletePublished), by stream: gone for good.',
    labelNames: ['stream'],
    registers,
  });
  const fenced = new Counter({
    name: 'outbox_fenced_publishes_total',
    help: 'Calls the broker refused because another relay owns the partition now (this relay had stalled).',
    registers,
  });
  const takeovers = new Counter({
    name: 'outbox_relay_takeovers_total',
    help: 'Stalled relay sessions this relay ended to take their partitions over.',
    registers,
  });

  const metrics: OutboxMetrics = {
    enqueued: (eventType, count = 1) => enqueued.inc({ event_type: eventType }, count),
  };

  running.set(relay?.running ? 1 : 0);
  leader.set(relay?.isLeader ? 1 : 0);
  if (relay !== undefined) {
    brokerUp.set(relay.isBrokerUp ? 1 : 0);
    const streams = new Set<string>();
    relay.on('published', ({ events, ackedAt }) => {
      for (const event of events) {
        // A stream's loss counters start at 0 when it is first seen, so "no loss" reads 0, not no data.
        if (!streams.has(event.stream)) {
          streams.add(event.stream);
          dataLoss.inc({ stream: event.stream }, 0);
          unrecoverable.inc({ stream: event.stream }, 0);
        }
        published.inc({ event_type: event.type });
        latency.observe(Math.max(0, ackedAt.getTime() - event.createdAt.getTime()) / 1000);
      }
    });
    relay.on('fault', ({ kind, count }) => errors.inc({ kind }, count));
    relay.on('failed', ({ rowIds }) => failed.inc(rowIds.length));
    relay.on('batch', ({ size }) => batchSize.observe(size));
    relay.on('broker', ({ up }) => brokerUp.set(up ? 1 : 0));
    relay.on('running', (state) => {
      running.set(state.running ? 1 : 0);
      if (!state.running) leader.set(0);
    });
    relay.on('partitions', (state) => {
      partitions.set(state.partitions.length);
      leader.set(state.leader ? 1 : 0);
    });
    relay.on('dataLoss', (repair) => {
      dataLoss.inc({ stream: repair.stream }, repair.lost);
      republished.inc(repair.republished);
      unrecoverable.inc({ stream: repair.stream }, repair.unrecoverable);
    });
    relay.on('fenced', () => fenced.inc());
    relay.on('takeover', () => takeovers.inc());
  }

  if (admin === undefined || relay === undefined) return metrics;
  const statusErrors = new Counter({
    name: 'outbox_status_query_errors_total',
    help:
      'Scrapes of the leader whose table-wide status query failed or took longer than its bound: the ' +
      'backlog gauges are then missing from that scrape.',
    registers,
    async collect() {
      // The registry collects metrics side by side: wait for this scrape's query (shared with the
      // gauges), so that the scrape which lacks the gauges already counts why.
      if (relay.isLeader) await status();
    },
  });
  statusErrors.inc(0);

  // Gauges read at scrape time, exported by the leader only: non-leaders export no sample at all, not a
  // 0 that would read as "nothing pending" while the role changes hands.
  let inFlight: Promise<OutboxStatus> | undefined;
  const startQuery = () => {
    const query = admin.status();
    const done = () => {
      if (inFlight === query) inFlight = undefined;
    };
    query.then(done, done);
    inFlight = query;
    return query;
  };
  const readStatus = async (): Promise<OutboxStatus | undefined> => {
    // A query still running from an earlier scrape is waited for, not started again: a slow database
    // would otherwise collect one more of them per scrape.
    const query = inFlight ?? startQuery();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), statusTimeoutMs);
    });
    try {
      const result = await Promise.race([query, timeout]);
      if (result === undefined) statusErrors.inc();
      return result;
    } catch {
      statusErrors.inc();
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  };
  let cached: { at: number; value: Promise<OutboxStatus | undefined> } | undefined;
  const status = () => {
    // One query serves the four gauges of a scrape.
    if (cached === undefined || Date.now() - cached.at > 1000)
      cached = { at: Date.now(), value: readStatus() };
    return cached.value;
  };
  const tableGauge = (name: string, help: string, read: (s: OutboxStatus) => number) =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        // Not reset(): on a gauge without labels it puts back a 0 sample; remove() leaves none.
        this.remove();
        if (!relay.isLeader) return;
        // Database unreachable or slow: export nothing rather than a stale or made-up value (and
        // outbox_status_query_errors_total says why the gauges are missing).
        const current = await status();
        if (current !== undefined) this.set(read(current));
      },
    });
  tableGauge(
    'outbox_pending_events_total',
    'PENDING events now (from the leader relay). A gauge despite its _total suffix, a name the outbox ' +
      'specification fixes: read it with max(), never rate() or increase().',
    (s) => s.pending,
  );
  tableGauge(
    'outbox_oldest_pending_event_age_seconds',
    'Age of the oldest PENDING event not held back by a FAILED event of its aggregate, on the ' +
      "database's clock (from the leader relay).",
    (s) => s.oldestPendingAgeSeconds,
  );
  tableGauge('outbox_failed_events', 'FAILED events (from the leader relay).', (s) => s.failed);
  tableGauge(
    'outbox_blocked_aggregates',
    'Aggregates held back by a FAILED event (from the leader relay).',
    (s) => s.blockedAggregates,
  );
  return metrics;
}
