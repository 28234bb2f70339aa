import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { OutboxAdmin } from './admin.ts';
import type { OutboxRelay } from './relay.ts';

export interface OutboxMetricsOptions {
  registry: Registry;
  /** The relay running in this process, if any. */
  relay?: OutboxRelay;
  /** Reads the table-wide gauges; queried at scrape time, and only while this process's relay leads. */
  admin?: OutboxAdmin;
}

/**
 * Prometheus metrics for the outbox, fed by the relay's events. The table-wide gauges (pending, oldest
 * pending age, FAILED, blocked aggregates) come from one process only, the leader relay, so that N
 * replicas cost one query per scrape, not N: aggregate them with max() in PromQL.
 */
export function registerOutboxMetrics({ registry, relay, admin }: OutboxMetricsOptions): void {
  const registers = [registry];
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
  const latency = new Histogram({
    name: 'outbox_commit_to_ack_seconds',
    help: "Time from an event's write to the broker's acknowledgement.",
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
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

  running.set(relay?.running ? 1 : 0);
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
    relay.on('batch', ({ size }) => batchSize.observe(size));
    relay.on('broker', ({ up }) => brokerUp.set(up ? 1 : 0));
    relay.on('running', (state) => running.set(state.running ? 1 : 0));
    relay.on('partitions', (state) => partitions.set(state.partitions.length));
    relay.on('dataLoss', (repair) => {
      dataLoss.inc({ stream: repair.stream }, repair.lost);
      republished.inc(repair.republished);
      unrecoverable.inc({ stream: repair.stream }, repair.unrecoverable);
    });
    relay.on('fenced', () => fenced.inc());
    relay.on('takeover', () => takeovers.inc());
  }

  if (admin === undefined || relay === undefined) return;
  // Gauges read at scrape time, exported by the leader only: non-leaders export no sample at all, not a
  // 0 that would read as "nothing pending" while the role changes hands.
  let cached: { at: number; value: Promise<Awaited<ReturnType<OutboxAdmin['status']>>> } | undefined;
  const status = () => {
    // One query serves the four gauges of a scrape.
    if (cached === undefined || Date.now() - cached.at > 1000)
      cached = { at: Date.now(), value: admin.status() };
    return cached.value;
  };
  const tableGauge = (
    name: string,
    help: string,
    read: (s: Awaited<ReturnType<OutboxAdmin['status']>>) => number,
  ) =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        // Not reset(): on a gauge without labels it puts back a 0 sample; remove() leaves none.
        this.remove();
        if (!relay.isLeader) return;
        try {
          this.set(read(await status()));
        } catch {
          // Database unreachable: export nothing rather than a stale or made-up value.
        }
      },
    });
  tableGauge('outbox_pending_events_total', 'PENDING events (from the leader relay).', (s) => s.pending);
  tableGauge(
    'outbox_oldest_pending_event_age_seconds',
    'Age of the oldest PENDING event (from the leader relay).',
    (s) => s.oldestPendingAgeSeconds,
  );
  tableGauge('outbox_failed_events', 'FAILED events (from the leader relay).', (s) => s.failed);
  tableGauge(
    'outbox_blocked_aggregates',
    'Aggregates held back by a FAILED event (from the leader relay).',
    (s) => s.blockedAggregates,
  );
}
