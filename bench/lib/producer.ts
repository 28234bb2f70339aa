/**
 * A paced producer of trades at a fixed offered rate, and a consumer that blocks on the streams and
 * records when each event arrives: together they give commit-to-stream latency on one clock.
 */
import { randomUUID } from 'node:crypto';
import { createOutboxWriter, createRelayWaker } from '@astra/outbox';
import { createClient } from '@redis/client';
import pg from 'pg';
import { buyQuery } from '../../services/trading/src/trades/sql.ts';
import { now, sleep } from './infra.ts';
import { SYMBOLS } from './wrk.ts';

/** Writes one trade in the given transaction; `wakeRelays` asks the producer to wake them after COMMIT. */
export type TradeWriter = ((client: pg.PoolClient, seq: number) => Promise<void>) & { wakeRelays?: boolean };

/**
 * The service's trade transaction without HTTP: the buy statement (trade + position upsert) and the
 * library writer's insert of both events, with `seq` in their data for the consumer to match. As in the
 * service, the writer sends no NOTIFY; with `wakeRelays` the producer wakes the relays after COMMIT.
 */
export function outboxTradeWriter(accounts: number, wakeRelays: boolean): TradeWriter {
  const writer = createOutboxWriter({ source: '/astra/trading-service', notify: false });
  const write: TradeWriter = async (client, seq) => {
    const tradeId = randomUUID();
    const accountId = `acct-${1 + (seq % accounts)}`;
    const symbol = SYMBOLS[seq % SYMBOLS.length] as string;
    const price = (100 + (seq % 9000) / 100).toFixed(2);
    await client.query(buyQuery([tradeId, accountId, symbol, '10', price]));
    await writer.write(client, [
      {
        type: 'astra.trading.trade_executed.v1',
        aggregateType: 'trade',
        aggregateId: tradeId,
        data: { seq, id: tradeId, accountId, symbol, side: 'BUY', quantity: '10', price },
      },
      {
        type: 'astra.trading.position_updated.v1',
        aggregateType: 'position',
        aggregateId: `${accountId}:${symbol}`,
        data: { seq, accountId, symbol, tradeId, quantity: '10', averagePrice: price },
      },
    ]);
  };
  write.wakeRelays = wakeRelays;
  return write;
}

/** The same two events as graphile-worker jobs (one add_jobs call), plus the same trade statement. */
export function graphileTradeWriter(accounts: number): TradeWriter {
  return async (client, seq) => {
    const tradeId = randomUUID();
    const accountId = `acct-${1 + (seq % accounts)}`;
    const symbol = SYMBOLS[seq % SYMBOLS.length] as string;
    const price = (100 + (seq % 9000) / 100).toFixed(2);
    await client.query(buyQuery([tradeId, accountId, symbol, '10', price]));
    await client.query({
      name: 'graphile_add_two',
      text: `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY[
               ROW('xadd', $1::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec,
               ROW('xadd', $2::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec])`,
      values: [
        JSON.stringify({ seq, id: tradeId, accountId, symbol, side: 'BUY', quantity: '10', price }),
        JSON.stringify({ seq, accountId, symbol, tradeId, quantity: '10', averagePrice: price }),
      ],
    });
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
  /** seq -> commit acknowledged (ms, performance clock). */
  commits: Map<number, number>;
}

/** Starts trades at `rate` per second for `seconds`; every trade is its own transaction. */
export async function producePaced(
  url: string,
  rate: number,
  seconds: number,
  write: TradeWriter,
  options: { poolSize?: number; firstSeq?: number; onTick?: () => void } = {},
): Promise<ProducerRun> {
  const poolSize = options.poolSize ?? 16;
  const pool = new pg.Pool({ connectionString: url, max: poolSize, application_name: 'bench-producer' });
  pool.on('error', () => {});
  const relays = write.wakeRelays === true ? createRelayWaker(pool) : undefined;
  const commits = new Map<number, number>();
  const maxInFlight = poolSize * 4;
  let inFlight = 0;
  let skipped = 0;
  let failed = 0;
  let firstError: unknown;
  const total = Math.round(rate * seconds);
  const firstSeq = options.firstSeq ?? 0;
  const pending = new Set<Promise<void>>();

  const trade = async (seq: number) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await write(client, seq);
      await client.query('COMMIT');
      commits.set(seq, now());
      relays?.wake();
    } catch (error) {
      failed++;
      firstError ??= error;
      await client.query('ROLLBACK').catch(() => {});
    } finally {
      client.release();
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

type StreamEntries = [string, string[]][];
type StreamReply = [string, StreamEntries][] | Record<string, StreamEntries> | null;

/** Reads streams with XREAD BLOCK from their current end; records each event's arrival by `seq`. */
export class StreamConsumer {
  readonly arrivals = new Map<number, number[]>();
  private readonly client;
  private running = true;
  private loop: Promise<void> | undefined;

  constructor(
    url: string,
    private readonly streams: string[],
  ) {
    this.client = createClient({ url });
    this.client.on('error', () => {});
  }

  async start(): Promise<void> {
    await this.client.connect();
    const ids = await Promise.all(
      this.streams.map(async (stream) => {
        const last = (await this.client.sendCommand(['XREVRANGE', stream, '+', '-', 'COUNT', '1'])) as [
          string,
        ][];
        return last[0]?.[0] ?? '0-0';
      }),
    );
    // A failed read ends the loop; latencies() then reports the events as missing.
    this.loop = this.read(ids).catch((error: unknown) => {
      this.error = error instanceof Error ? error : new Error(String(error));
    });
  }

  error: Error | undefined;

  private async read(ids: string[]): Promise<void> {
    while (this.running) {
      const reply = (await this.client.sendCommand([
        'XREAD',
        'COUNT',
        '1000',
        'BLOCK',
        '200',
        'STREAMS',
        ...this.streams,
        ...ids,
      ])) as StreamReply;
      const at = now();
      if (reply === null) continue;
      // node-redis answers XREAD as { stream: entries }; plain RESP2 is [[stream, entries], ...].
      const byStream = Array.isArray(reply) ? reply : Object.entries(reply);
      for (const [stream, entries] of byStream) {
        const index = this.streams.indexOf(stream);
        for (const [id, fields] of entries) {
          ids[index] = id;
          const data = fields[fields.indexOf('data') + 1];
          if (data === undefined) continue;
          const seq = (JSON.parse(data) as { seq?: number }).seq;
          if (seq === undefined) continue;
          const list = this.arrivals.get(seq) ?? [];
          list.push(at);
          this.arrivals.set(seq, list);
        }
      }
    }
  }

  /** Latencies (ms) of every event whose commit was seen, and how many never arrived. */
  latencies(commits: Map<number, number>, eventsPerTrade: number): { values: number[]; missing: number } {
    const values: number[] = [];
    let missing = 0;
    for (const [seq, committed] of commits) {
      const arrived = this.arrivals.get(seq) ?? [];
      for (const at of arrived) values.push(at - committed);
      missing += Math.max(0, eventsPerTrade - arrived.length);
    }
    return { values, missing };
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop?.catch(() => {});
    this.client.destroy();
  }
}
