import { sleep } from '@astra/test-support';
import type { HttpClient, HttpResponse } from '../e2e/http.ts';
import { NoAnswerError } from '../e2e/http.ts';
import { Random } from './random.ts';

/**
 * The chaos run's clients: a bounded number of trades over real HTTP, paced to spread over the run,
 * from `concurrency` workers on keep-alive connections. A client cannot tell a lost request from a
 * lost answer, so anything but a 2xx/4xx answer is an unknown outcome and is recorded as such. Half
 * the trades carry an Idempotency-Key and are retried with it after an unknown outcome, as a careful
 * client would; the other half are sent once.
 */

export interface Trader {
  accountId: string;
  /** The account's own key, or the admin key acting for it. */
  authorization: string;
}

export interface LoadPlan {
  trades: number;
  /** The trades are paced evenly over this time... */
  durationMs: number;
  /** ...and none is started after this moment (epoch ms), whatever is left. */
  deadline: number;
  concurrency: number;
  traders: readonly Trader[];
  symbols: readonly string[];
  /** Extra tries of an idempotent trade after an unknown outcome. */
  retries: number;
  requestTimeoutMs: number;
  seed: number;
}

export interface AcceptedTrade {
  id: string;
  accountId: string;
  symbol: string;
  positionVersion: number;
  /** What the answer said was executed (checked against the stored trade when present). */
  side?: 'BUY' | 'SELL';
  quantity?: string;
  price?: string;
}

/** One 5xx answer, with when its request went out and when the answer came (epoch ms). */
export interface ServerError {
  status: number;
  sentAt: number;
  answeredAt: number;
}

export interface LoadResult {
  attempted: number;
  /** Trades the deadline left unsent. */
  notSent: number;
  accepted: AcceptedTrade[];
  /** Final 4xx answers by status code. */
  rejected: Record<string, number>;
  /** Trades whose outcome the client never learnt, by the last reason (status or socket error). */
  unknown: Record<string, number>;
  /** Every 5xx answer seen, including ones a retry resolved, by status code. */
  serverErrors: Record<string, number>;
  /** The same 5xx answers one by one, with their times, to match against the fault windows. */
  serverErrorLog: ServerError[];
  retries: number;
  /** Trades whose first try had an unknown outcome and a retry resolved. */
  resolvedByRetry: number;
  /** 201s that were the stored answer of an earlier try (Idempotency-Key replays). */
  replayed: number;
}

type Attempt =
  | { kind: 'accepted'; trade: AcceptedTrade; replayed: boolean }
  | { kind: 'rejected'; status: number }
  | { kind: 'unknown'; reason: string; status?: number };

function decimal(random: Random, min: number, max: number): string {
  const whole = random.int(min, max);
  const cents = random.int(0, 99);
  return cents === 0 ? String(whole) : `${whole}.${String(cents).padStart(2, '0').replace(/0$/, '')}`;
}

function classify(response: HttpResponse): Attempt {
  if (response.status === 201) {
    const body = JSON.parse(response.body) as {
      trade: {
        id: string;
        accountId: string;
        symbol: string;
        positionVersion: number;
        side: 'BUY' | 'SELL';
        quantity: string;
        price: string;
      };
    };
    return {
      kind: 'accepted',
      trade: {
        id: body.trade.id,
        accountId: body.trade.accountId,
        symbol: body.trade.symbol,
        positionVersion: body.trade.positionVersion,
        side: body.trade.side,
        quantity: body.trade.quantity,
        price: body.trade.price,
      },
      replayed: response.headers['idempotent-replayed'] === 'true',
    };
  }
  // 409: the first try with this Idempotency-Key is still running, so its outcome is not known yet.
  if (response.status === 409) return { kind: 'unknown', reason: '409', status: 409 };
  if (response.status >= 400 && response.status < 500) return { kind: 'rejected', status: response.status };
  return { kind: 'unknown', reason: String(response.status), status: response.status };
}

const bump = (counts: Record<string, number>, key: string) => {
  counts[key] = (counts[key] ?? 0) + 1;
};

export async function runLoad(
  http: HttpClient,
  plan: LoadPlan,
  isStopped: () => boolean,
  /** Told each time a trade is started (its index), so faults can follow the load's progress. */
  onStart: (index: number) => void = () => {},
): Promise<LoadResult> {
  const result: LoadResult = {
    attempted: 0,
    notSent: 0,
    accepted: [],
    rejected: {},
    unknown: {},
    serverErrors: {},
    serverErrorLog: [],
    retries: 0,
    resolvedByRetry: 0,
    replayed: 0,
  };
  const startedAt = Date.now();
  const interval = plan.durationMs / plan.trades;
  let next = 0;

  async function attempt(
    trader: Trader,
    body: unknown,
    idempotencyKey: string | undefined,
  ): Promise<Attempt> {
    const sentAt = Date.now();
    try {
      const response = await http.postJson(
        '/v1/trades',
        body,
        {
          authorization: trader.authorization,
          ...(idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey }),
        },
        plan.requestTimeoutMs,
      );
      if (response.status >= 500) {
        bump(result.serverErrors, String(response.status));
        result.serverErrorLog.push({ status: response.status, sentAt, answeredAt: Date.now() });
      }
      return classify(response);
    } catch (error) {
      if (error instanceof NoAnswerError) return { kind: 'unknown', reason: error.code };
      throw error;
    }
  }

  async function trade(index: number): Promise<void> {
    // Each trade draws from its own generator, so trade N is the same in every run with this seed.
    const random = new Random((plan.seed + Math.imul(index + 1, 0x9e3779b9)) >>> 0);
    const trader = random.pick(plan.traders);
    const symbol = random.pick(plan.symbols);
    const buy = random.chance(0.8);
    const body = {
      accountId: trader.accountId,
      symbol,
      side: buy ? 'BUY' : 'SELL',
      quantity: buy ? decimal(random, 1, 50) : decimal(random, 1, 30),
      price: decimal(random, 5, 500),
    };
    const idempotencyKey = index % 2 === 0 ? `chaos-${plan.seed}-${index}` : undefined;
    let outcome = await attempt(trader, body, idempotencyKey);
    let tries = 1;
    while (outcome.kind === 'unknown' && idempotencyKey !== undefined && tries <= plan.retries) {
      result.retries++;
      // Backoff long enough to ride out a service restart: 0.3, 0.6, 1.2, 2.4 s...
      await sleep(300 * 2 ** (tries - 1) * (0.75 + random.next() / 2));
      outcome = await attempt(trader, body, idempotencyKey);
      tries++;
    }
    if (tries > 1 && outcome.kind !== 'unknown') result.resolvedByRetry++;
    if (outcome.kind === 'accepted') {
      result.accepted.push(outcome.trade);
      if (outcome.replayed) result.replayed++;
    } else if (outcome.kind === 'rejected') {
      bump(result.rejected, String(outcome.status));
    } else {
      bump(result.unknown, outcome.reason);
    }
  }

  async function worker(): Promise<void> {
    for (;;) {
      const index = next++;
      if (index >= plan.trades) return;
      if (Date.now() >= plan.deadline || isStopped()) {
        result.notSent += plan.trades - index;
        next = plan.trades;
        return;
      }
      await sleep(startedAt + index * interval - Date.now());
      result.attempted++;
      onStart(index);
      await trade(index);
    }
  }

  await Promise.all(Array.from({ length: plan.concurrency }, () => worker()));
  return result;
}
