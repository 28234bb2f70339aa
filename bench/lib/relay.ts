/**
 * Our relay as every benchmark scenario runs it, in a drainer process or in the producer's process:
 * the scenario's settings, and the Prometheus adapter attached as in the service.
 */
import { OutboxRelay, type PublishableEvent, type Publisher } from '@astra/outbox';
import { registerOutboxMetrics } from '@astra/outbox/prometheus';
import { Registry } from 'prom-client';
import type { DrainerConfig } from '../workers/drainer.ts';
import { epochNow, type LoopDelay, tradeIdOf, watchLoopDelay } from './trace.ts';

export type RelayConfig = Extract<DrainerConfig, { mode: 'relay' }>;

export function benchRelay(config: RelayConfig, publisher: Publisher): OutboxRelay {
  const relay = new OutboxRelay({
    connectionString: config.databaseUrl,
    publisher,
    listen: config.listen,
    pollIntervalMs: config.pollIntervalMs,
    rebalanceIntervalMs: config.rebalanceIntervalMs,
    batchSize: config.batchSize,
    deletePublished: config.deletePublished,
  });
  registerOutboxMetrics({ registry: new Registry(), relay });
  return relay;
}

/** One published event's stamps (epoch ms): when the claim that held it returned, when Redis answered its publish. */
export type RelayStamp = [tradeId: string, claimed: number, replied: number];

/** What a traced relay saw since the last look: its events' stamps, and how late its process's event loop ran. */
export interface RelayTrace {
  stamps: RelayStamp[];
  loopDelay: LoopDelay;
}

/**
 * A relay whose batches are stamped for the latency profile: when each claim returned (the relay's
 * 'batch' event, emitted just before the publish call) and when the publish call was answered; and
 * its process's event loop watched. Trade ids are read from the events only in `take()`, off the
 * relay's path.
 */
export function tracedBenchRelay(
  config: RelayConfig,
  publisher: Publisher,
): { relay: OutboxRelay; take: () => RelayTrace } {
  let claimed = 0;
  const loopDelay = watchLoopDelay();
  let batches: { claimed: number; replied: number; events: readonly PublishableEvent[] }[] = [];
  const traced: Publisher = {
    publish: async (events, options) => {
      const batch = { claimed, replied: 0, events };
      try {
        return await publisher.publish(events, options);
      } finally {
        batch.replied = epochNow();
        batches.push(batch);
      }
    },
    confirm: (events) => publisher.confirm(events),
    check: (...args: Parameters<Publisher['check']>) => publisher.check(...args),
    stream: (type: string) => publisher.stream(type),
    ping: () => publisher.ping(),
    close: () => publisher.close(),
  };
  const relay = benchRelay(config, traced);
  relay.on('batch', () => {
    claimed = epochNow();
  });
  const take = () => {
    const stamps: RelayStamp[] = [];
    for (const batch of batches) {
      for (const event of batch.events) {
        const tradeId = tradeIdOf(event.data);
        if (tradeId !== undefined) stamps.push([tradeId, batch.claimed, batch.replied]);
      }
    }
    batches = [];
    return { stamps, loopDelay: loopDelay() };
  };
  return { relay, take };
}
