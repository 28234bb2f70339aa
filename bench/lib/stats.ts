/** Pure helpers for the benchmark's numbers. */

/** Nearest-rank percentile of already sorted values; NaN when there are none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (p <= 0) return sorted[0] as number;
  if (p >= 100) return sorted[sorted.length - 1] as number;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.max(0, rank - 1)] as number;
}

export interface Summary {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const sum = sorted.reduce((total, value) => total + value, 0);
  return {
    count: sorted.length,
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] as number),
  };
}

/** Least-squares slope of y over x (0 for fewer than two points). */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const meanX = points.reduce((total, p) => total + p.x, 0) / n;
  const meanY = points.reduce((total, p) => total + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - meanX) * (p.y - meanY);
    den += (p.x - meanX) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** a / b, or null when either side is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !b)
    return null;
  return a / b;
}

/**
 * Latencies (ms) of every event of the trades whose commit was seen: each arrival of a trade's events
 * less its commit, and how many of the `eventsPerTrade` events of each trade never arrived.
 */
export function eventLatencies(
  commits: ReadonlyMap<string, number>,
  arrivals: ReadonlyMap<string, readonly number[]>,
  eventsPerTrade: number,
): { values: number[]; missing: number } {
  const values: number[] = [];
  let missing = 0;
  for (const [tradeId, committed] of commits) {
    const arrived = arrivals.get(tradeId) ?? [];
    for (const at of arrived) values.push(at - committed);
    missing += Math.max(0, eventsPerTrade - arrived.length);
  }
  return { values, missing };
}
