/**
 * The reporting service's consumer as the benchmark runs it: a database of its own, migrated as the
 * service migrates it, and consumer processes (bench/workers/drainer.ts, mode 'reporting') sharing one
 * group, as several `npm run reporting` processes do.
 */
import { migrate } from '@astra/reporting-service/database';
import type { Follower } from '../scenarios/latency.ts';
import { Drainer } from './drainer.ts';
import { createDatabase, databaseUrl, dropDatabase, withClient } from './infra.ts';
import { tradeIdOf } from './trace.ts';

/** A fresh reporting database (dropped at the end of the run); returns its name. */
export async function createReportingDatabase(label: string): Promise<string> {
  const database = await createDatabase(label);
  await migrate(databaseUrl(database), 'up');
  return database;
}

/** `count` reporting consumer processes in `group`, connected and ready to go. */
export async function startReportingConsumers(
  database: string,
  redisUrl: string,
  group: string,
  count: number,
  stampApplied: boolean,
): Promise<Drainer[]> {
  const consumers: Drainer[] = [];
  try {
    for (let i = 1; i <= count; i++) {
      const consumer = `${group}-${i}`;
      consumers.push(
        await Drainer.start(consumer, {
          mode: 'reporting',
          databaseUrl: databaseUrl(database),
          redisUrl,
          group,
          consumer,
          stampApplied,
        }),
      );
    }
  } catch (error) {
    for (const consumer of consumers) await consumer.stop().catch(() => {});
    throw error;
  }
  return consumers;
}

/**
 * Reporting consumer processes following a latency run on a database of their own: they stamp each
 * event when its apply committed; the trade each event belongs to is read from the trading outbox.
 */
export class ReportingFollower implements Follower {
  /** event id -> trade id, for the stamped events looked up so far. */
  private readonly tradeOf = new Map<string, string>();

  private constructor(
    private readonly tradingUrl: string,
    private readonly database: string,
    private readonly consumers: Drainer[],
  ) {}

  static async start(tradingUrl: string, redisUrl: string, processes: number): Promise<ReportingFollower> {
    const database = await createReportingDatabase('consumer_follower');
    try {
      const consumers = await startReportingConsumers(database, redisUrl, 'reporting', processes, true);
      for (const consumer of consumers) consumer.go();
      return new ReportingFollower(tradingUrl, database, consumers);
    } catch (error) {
      await dropDatabase(database).catch(() => {});
      throw error;
    }
  }

  get applied(): number {
    return this.consumers.reduce((total, consumer) => total + consumer.done, 0);
  }

  check(): void {
    for (const consumer of this.consumers) consumer.check();
  }

  async arrivals(): Promise<Map<string, number[]>> {
    const stamps = this.consumers.flatMap((consumer) => [...consumer.applied]);
    const unknown = stamps.map(([eventId]) => eventId).filter((id) => !this.tradeOf.has(id));
    if (unknown.length > 0) {
      await withClient(this.tradingUrl, async (client) => {
        const { rows } = await client.query<{ id: string; data: string }>(
          'SELECT event_id::text AS id, payload::text AS data FROM event_outbox WHERE event_id = ANY($1::uuid[])',
          [unknown],
        );
        for (const row of rows) {
          const tradeId = tradeIdOf(row.data);
          if (tradeId !== undefined) this.tradeOf.set(row.id, tradeId);
        }
      });
    }
    const arrivals = new Map<string, number[]>();
    for (const [eventId, at] of stamps) {
      const tradeId = this.tradeOf.get(eventId);
      if (tradeId === undefined) continue;
      const list = arrivals.get(tradeId) ?? [];
      list.push(at);
      arrivals.set(tradeId, list);
    }
    return arrivals;
  }

  async stop(): Promise<void> {
    for (const consumer of this.consumers) await consumer.stop().catch(() => {});
    await dropDatabase(this.database).catch(() => {});
  }
}
