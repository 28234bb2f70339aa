import { OutboxConsumer, type RedisTarget } from '@astra/outbox/consumer';
import type pg from 'pg';
import { applyReportingEvent, parseReportingEvent, type ReportingEvent, STREAMS } from './projection.ts';

export interface ReportingConsumerOptions {
  pool: pg.Pool;
  /** Where the streams are: a URL, a cluster or Sentinel (see redisTarget). */
  redis: RedisTarget;
  group: string;
  /** Inbox retention; 0 keeps every row. */
  inboxRetentionSeconds?: number;
  /** Test knobs (block and claim times); the service uses the library's defaults. */
  tuning?: { blockMs?: number; claimIdleMs?: number; consumer?: string };
}

/**
 * The reporting consumer: both trading streams, one group shared by every reporting process. Positions
 * are ordered by the library's default (subject `<account>:<symbol>`, `data.version`); trades have no
 * sequence and need none (each trade is its own aggregate, applied once).
 */
export function createReportingConsumer(
  options: ReportingConsumerOptions,
): OutboxConsumer<ReportingEvent['data']> {
  const consumer: OutboxConsumer<ReportingEvent['data']> = new OutboxConsumer<ReportingEvent['data']>({
    ...options.redis,
    pool: options.pool,
    ...(options.inboxRetentionSeconds === undefined
      ? {}
      : { inboxRetentionSeconds: options.inboxRetentionSeconds }),
    group: options.group,
    streams: STREAMS,
    parse: (event) => parseReportingEvent(event),
    // The consumer's name goes into the apply record; the handler only runs after construction.
    handler: (event, context) => applyReportingEvent(event as ReportingEvent, context, consumer.name),
    ...options.tuning,
  });
  return consumer;
}
