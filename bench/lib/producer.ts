/**
 * A paced producer of trades at a fixed offered rate, and a consumer that blocks on the streams and
 * records when each event arrives: together they give commit-to-stream latency on one clock.
 */

import { Worker } from 'node:worker_threads';
import { createOutboxWriter, createRelayWaker, type LocalRelay } from '@astra/outbox';
import { sleep } from '@astra/test-support';
import {
  newTradeId,
  type TradeParams,
  tradeQuery,
  tradeWithEventsQuery,
} from '@astra/trading-service/trades/sql';
import pg from 'pg';
import { now } from './infra.ts';
import { eventLatencies } from './stats.ts';
import { epochNow } from './trace.ts';
import { SYMBOLS } from './wrk.ts';

/**
 * Writes one trade (its own transaction) and returns the trade's id, by which the consumer knows its
 * events; `wakeRelays` asks the producer to wake the relays after it committed.
 */
export type TradeWriter = ((pool: pg.Pool, seq: number) => Promise<string>) & { wakeRelays?: boolean };

function tradeParams(accounts: number, seq: number): TradeParams {
  return {
    tradeId: newTradeId(),
    accountId: `acct-${1 + (seq % accounts)}`,
    symbol: SYMBOLS[seq % SYMBOLS.length] as string,
    side: 'BUY',
    quantity: '10',
    price: (100 + (seq % 9000) / 100).toFixed(2),
  };
}

/**
 * The service's trade statement without HTTP: trade, position change and both events in one statement
 * (the same SQL as the service, from trades/sql.ts). As in the service, the writer sends no NOTIFY; with
 * `wakeRelays` the producer wakes the relays after each commit.
 */
export function outboxTradeWriter(accounts: number, wakeRelays: boolean): TradeWriter {
  const writer = createOutboxWriter({ source: '/astra/trading-service', notify: false });
  const write: TradeWriter = async (pool, seq) => {
    const params = tradeParams(accounts, seq);
    await pool.query(tradeWithEventsQuery(params, {}, writer));
    return params.tradeId;
  };
  write.wakeRelays = wakeRelays;
  return write;
}

/** The same trade statement without events, plus the same two events as graphile-worker jobs. */
export function graphileTradeWriter(accounts: number): TradeWriter {
  return async (pool, seq) => {
    const params = tradeParams(accounts, seq);
    const { tradeId, accountId, symbol, quantity, price } = params;
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(tradeQuery(params));
      await client.query({
        name: 'graphile_add_two',
        text: `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY[
                 ROW('xadd', $1::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec,
                 ROW('xadd', $2::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec])`,
        values: [
          JSON.stringify({ id: tradeId, accountId, symbol, side: 'BUY', quantity, price }),
          JSON.stringify({ accountId, symbol, tradeId, quantity, averagePrice: price }),
        ],
      });
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
    return tradeId;
  };
}

export interface ProducerRun {
  offered: number;
  committed: number;
  /** Trades not started because too many were already waiting (the database could not keep up). */
  skipped: number;
  failed: number;
  seconds: number;
  achievedRate: number;
  /** trade id -> commit acknowledged (ms, epoch clock with sub-millisecond resolution). */
  commits: Map<string, number>;
}

/** Starts trades at `rate` per second for `seconds`; every trade is its own transaction. */
export async function producePaced(
  url: string,
  rate: number,
  seconds: number,
  write: TradeWriter,
  options: {
    poolSize?: number;
    firstSeq?: number;
    onTick?: () => void;
    /** A relay in this process: wake-ups reach it by a call instead of a NOTIFY, as in the service. */
    localRelay?: LocalRelay;
  } = {},
): Promise<ProducerRun> {
  const poolSize = options.poolSize ?? 16;
  // Connections opened before the clock starts and kept, as a running service keeps its pool: a
  // backend started mid-run would cost the trades behind it its start-up.
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    idleTimeoutMillis: 0,
    application_name: 'bench-producer',
  });
  pool.on('error', () => {});
  const opened = await Promise.all(Array.from({ length: poolSize }, () => pool.connect()));
  for (const client of opened) client.release();
  // As the service does: wake-ups on a connection of their own, not queued behind trades.
  const wakePool =
    write.wakeRelays === true
      ? new pg.Pool({ connectionString: url, max: 1, application_name: 'bench-producer-wake' })
      : undefined;
  wakePool?.on('error', () => {});
  await wakePool?.query('SELECT 1');
  const relays =
    wakePool === undefined ? undefined : createRelayWaker(wakePool, { localRelay: options.localRelay });
  const commits = new Map<string, number>();
  const maxInFlight = poolSize * 4;
  let inFlight = 0;
  let skipped = 0;
  let failed = 0;
  let firstError: unknown;
  const total = Math.round(rate * seconds);
  const firstSeq = options.firstSeq ?? 0;
  const pending = new Set<Promise<void>>();

  const trade = async (seq: number) => {
    try {
      const tradeId = await write(pool, seq);
      commits.set(tradeId, epochNow());
      relays?.wake();
    } catch (error) {
      failed++;
      firstError ??= error;
    }
  };

  const started = now();
  let next = 0;
  while (next < total) {
    const due = Math.min(total, Math.floor(((now() - started) / 1000) * rate) + 1);
    for (; next < due; next++) {
      if (inFlight >= maxInFlight) {
        skipped++;
        continue;
      }
      inFlight++;
      const job = trade(firstSeq + next).finally(() => {
        inFlight--;
        pending.delete(job);
      });
      pending.add(job);
    }
    options.onTick?.();
    await sleep(1);
  }
  await Promise.all(pending);
  const elapsed = (now() - started) / 1000;
  await pool.end();
  await wakePool?.end();
  if (failed > 0 && commits.size === 0) throw firstError;
  return {
    offered: total,
    committed: commits.size,
    skipped,
    failed,
    seconds: elapsed,
    achievedRate: commits.size / elapsed,
    commits,
  };
}

/** Reads the streams from their current ends (in a worker thread) and records when each trade's events arrived. */
export class StreamConsumer {
  /** trade id -> when each of its events arrived. */
  readonly arrivals = new Map<string, number[]>();
  error: Error | undefined;
  private readonly worker: Worker;
  private readonly finished: Promise<void>;

  constructor(url: string, streams: string[]) {
    // Node 20 workers do not get the parent's tsx loader: register it, then load the TypeScript file.
    const file = new URL('../workers/stream-consumer.ts', import.meta.url).href;
    const boot = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(file)}); })`;
    this.worker = new Worker(boot, { eval: true, workerData: { url, streams } });
    this.finished = new Promise((resolve) => {
      this.worker.on('message', (message: ConsumerMessage) => {
        if (message.type === 'arrivals') {
          for (const tradeId of message.tradeIds) {
            const list = this.arrivals.get(tradeId) ?? [];
            list.push(message.at);
            this.arrivals.set(tradeId, list);
          }
        } else if (message.type === 'error') {
          // A failed read ends the loop; latencies() then reports the events as missing.
          this.error = new Error(message.message);
          resolve();
        } else if (message.type === 'done') resolve();
      });
      this.worker.on('error', (error) => {
        this.error = error;
        resolve();
      });
      this.worker.on('exit', () => resolve());
    });
  }

  /** Resolves once the consumer holds its starting positions, so nothing written after is missed. */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: ConsumerMessage) => {
        if (message.type !== 'ready' && message.type !== 'error') return;
        this.worker.off('message', onMessage);
        if (message.type === 'ready') resolve();
        else reject(new Error(message.message));
      };
      this.worker.on('message', onMessage);
      void this.finished.then(() => reject(this.error ?? new Error('the stream consumer ended early')));
    });
  }

  /** Latencies (ms) of every event whose commit was seen, and how many never arrived. */
  latencies(commits: Map<string, number>, eventsPerTrade: number): { values: number[]; missing: number } {
    return eventLatencies(commits, this.arrivals, eventsPerTrade);
  }

  async stop(): Promise<void> {
    this.worker.postMessage('stop');
    await this.finished;
    await this.worker.terminate();
  }
}

type ConsumerMessage =
  | { type: 'ready' }
  | { type: 'arrivals'; tradeIds: string[]; at: number }
  | { type: 'error'; message: string }
  | { type: 'done' };
