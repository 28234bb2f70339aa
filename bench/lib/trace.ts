/** What the latency scenario stamps events with: one clock and one way to tell which trade an event belongs to. */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

/** The epoch clock with sub-millisecond resolution, which every process and thread here shares. */
export const epochNow = () => performance.timeOrigin + performance.now();

/** A trade's id from one of its events' data: trade_executed carries it as `id`, position_updated as `tradeId`. */
export function tradeIdOf(data: string): string | undefined {
  const parsed = JSON.parse(data) as { id?: string; tradeId?: string };
  return parsed.tradeId ?? parsed.id;
}

/** How late an event loop ran its timers, in ms: a busy loop, or a process waiting for a core. */
export interface LoopDelay {
  p99: number;
  max: number;
}

/**
 * Starts watching this process's event loop (a timer every millisecond); the function returned
 * reports how late that timer ran since the last call and starts over.
 */
export function watchLoopDelay(): () => LoopDelay {
  const resolutionMs = 1;
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs });
  histogram.enable();
  // The histogram holds each whole interval between timer runs, the resolution included.
  const late = (ns: number) => Math.max(0, ns / 1e6 - resolutionMs);
  return () => {
    const delay = { p99: late(histogram.percentile(99)), max: late(histogram.max) };
    histogram.reset();
    return delay;
  };
}
