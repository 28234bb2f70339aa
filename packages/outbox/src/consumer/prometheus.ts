import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ConsumerEvents, GroupInfo, OutboxConsumer } from './consumer.ts';

/** What the adapter reads of a consumer, whatever its data type. */
export interface MeteredConsumer {
  readonly group: string;
  readonly streams: readonly string[];
  readonly heldCount: number;
  groupInfo: OutboxConsumer['groupInfo'];
  on<K extends keyof ConsumerEvents>(event: K, listener: (...args: ConsumerEvents[K]) => void): unknown;
}

export interface ConsumerMetricsOptions {
  registry: Registry;
  /** The consumers running in this process (one per group, usually one). */
  consumers: MeteredConsumer[];
}

/**
 * Prometheus metrics for outbox consumers, fed by their events, labelled by group and stream. The
 * group's backlog (XINFO GROUPS `lag` and pending) is read at scrape time: every consumer of a group
 * reports the same value, so aggregate it with max() in PromQL.
 */
export function registerConsumerMetrics({ registry, consumers }: ConsumerMetricsOptions): void {
  const registers = [registry];
  const labelNames = ['group', 'stream'] as const;
  const processed = new Counter({
    name: 'outbox_consumer_events_total',
    help: 'Entries acknowledged by outcome: applied (handler committed), duplicate (already in the inbox), stale (version passed).',
    labelNames: [...labelNames, 'outcome'],
    registers,
  });
  const redelivered = new Counter({
    name: 'outbox_consumer_redelivered_total',
    help: 'Entries claimed (XAUTOCLAIM) from a consumer that stopped answering.',
    labelNames,
    registers,
  });
  const deferred = new Counter({
    name: 'outbox_consumer_deferred_total',
    help: 'Events held back because an earlier event of their ordering key was not applied yet.',
    labelNames,
    registers,
  });
  const failed = new Counter({
    name: 'outbox_consumer_handler_failures_total',
    help: 'Handler runs that threw (the event is retried until maxDeliveries).',
    labelNames,
    registers,
  });
  const deadLettered = new Counter({
    name: 'outbox_consumer_dead_lettered_total',
    help: 'Events moved to the dead-letter stream; later events of their ordering key wait for a replay.',
    labelNames,
    registers,
  });
  const faults = new Counter({
    name: 'outbox_consumer_faults_total',
    help: 'Redis or PostgreSQL calls that failed (outages: no delivery spent).',
    labelNames: ['group', 'kind'],
    registers,
  });
  const pruned = new Counter({
    name: 'outbox_consumer_inbox_pruned_total',
    help: 'Inbox rows deleted by the prune pass (older than the retention and no longer in their stream).',
    labelNames: ['group'],
    registers,
  });
  const handlerSeconds = new Histogram({
    name: 'outbox_consumer_handler_seconds',
    help: 'Time the handler took for applied events (inside the inbox transaction, before its commit).',
    labelNames,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  new Gauge({
    name: 'outbox_consumer_held_entries',
    help: 'Entries this consumer holds unacknowledged (deferred, failed or waiting out an outage).',
    labelNames: ['group'],
    registers,
    collect() {
      this.reset();
      for (const consumer of consumers) this.inc({ group: consumer.group }, consumer.heldCount);
    },
  });
  // One read of Redis serves the backlog gauges of a scrape (they are collected side by side).
  const infos = new Map<MeteredConsumer, { at: number; value: Promise<GroupInfo[]> }>();
  const groupInfo = (consumer: MeteredConsumer) => {
    const cached = infos.get(consumer);
    if (cached !== undefined && Date.now() - cached.at <= 1000) return cached.value;
    const value = consumer.groupInfo();
    infos.set(consumer, { at: Date.now(), value });
    return value;
  };
  const backlog = (name: string, help: string, read: (info: GroupInfo) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      async collect() {
        this.reset();
        for (const consumer of consumers) {
          try {
            for (const info of await groupInfo(consumer)) {
              const value = read(info);
              if (value !== null) this.set({ group: consumer.group, stream: info.stream }, value);
            }
          } catch {
            // Redis unreachable: export nothing rather than a stale or made-up value.
          }
        }
      },
    });
  backlog(
    'outbox_consumer_group_lag',
    'Entries in the stream not yet delivered to the group (XINFO GROUPS lag; absent when Redis cannot tell, e.g. after deletions).',
    (info) => info.lag,
  );
  backlog(
    'outbox_consumer_group_pending',
    'Entries delivered to the group and not acknowledged yet (held, being applied, or on a consumer that died).',
    (info) => info.pending,
  );
  // A gauge, not the dead-lettered counter: a dead letter blocks its ordering key until it is replayed,
  // through restarts, so the alert must last as long as the dead letter does.
  backlog(
    'outbox_consumer_dead_letters',
    "Dead letters waiting for a replay: the length of the group's dead-letter stream of each stream.",
    (info) => info.deadLetters,
  );

  for (const consumer of consumers) {
    const group = consumer.group;
    faults.inc({ group, kind: 'redis' }, 0);
    faults.inc({ group, kind: 'database' }, 0);
    pruned.inc({ group }, 0);
    for (const stream of consumer.streams) {
      // Counters start at 0, so "none" reads 0, not "no data".
      for (const outcome of ['applied', 'duplicate', 'stale']) processed.inc({ group, stream, outcome }, 0);
      for (const counter of [redelivered, deferred, failed, deadLettered]) counter.inc({ group, stream }, 0);
    }
    consumer.on('processed', ({ stream, outcome, seconds }) => {
      processed.inc({ group, stream, outcome });
      if (outcome === 'applied') handlerSeconds.observe({ group, stream }, seconds);
    });
    consumer.on('redelivered', ({ stream }) => redelivered.inc({ group, stream }));
    consumer.on('deferred', ({ stream }) => deferred.inc({ group, stream }));
    consumer.on('failed', ({ stream }) => failed.inc({ group, stream }));
    consumer.on('deadLettered', ({ stream }) => deadLettered.inc({ group, stream }));
    consumer.on('fault', ({ kind }) => faults.inc({ group, kind }));
    consumer.on('pruned', ({ rows }) => pruned.inc({ group }, rows));
  }
}
