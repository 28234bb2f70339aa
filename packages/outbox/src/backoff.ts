/** Exponential backoff with "equal jitter": half the delay is fixed, half random, capped. */
export interface Backoff {
  /** First delay in milliseconds. */
  initialMs: number;
  /** Longest delay in milliseconds. */
  maxMs: number;
}

export function backoffDelay(backoff: Backoff, attempt: number, random: () => number = Math.random): number {
  const exponential = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, attempt));
  return Math.round(exponential / 2 + (random() * exponential) / 2);
}
