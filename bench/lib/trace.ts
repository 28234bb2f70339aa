/** What the latency scenario stamps events with: one clock and one way to tell which trade an event belongs to. */
import { performance } from 'node:perf_hooks';

/** The epoch clock with sub-millisecond resolution, which every process and thread here shares. */
export const epochNow = () => performance.timeOrigin + performance.now();

/** A trade's id from one of its events' data: trade_executed carries it as `id`, position_updated as `tradeId`. */
export function tradeIdOf(data: string): string | undefined {
  const parsed = JSON.parse(data) as { id?: string; tradeId?: string };
  return parsed.tradeId ?? parsed.id;
}
