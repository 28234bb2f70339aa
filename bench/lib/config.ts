/** Sizes and durations of one run: full, or --quick (small sizes, a few minutes). */
export interface BenchConfig {
  quick: boolean;
  /** PENDING events in the drain backlog (and rows for the metrics-query and size measures). */
  drainEvents: number;
  /** Longest a slow contender (naive relay, pg-boss) drains before its rate is taken. */
  timeBoxSeconds: number;
  /** Longest a fast contender may take for the whole backlog before the run counts as failed. */
  drainLimitSeconds: number;
  writeSeconds: number;
  warmupSeconds: number;
  pgbenchSeconds: number;
  /**
   * Offered trade rates (2 events each) for our relay woken per commit (own process and in-process); the
   * lowest, on mostly idle cores, shows the floor of the path itself.
   */
  latencyRates: number[];
  /** graphile-worker's rates: 250 trades/s is the 500 events/s of the figures in issue 6. */
  graphileRates: number[];
  pollingRates: number[];
  latencySeconds: number;
  keepUpSeconds: number;
  keepUpRates: number[];
  outageSeconds: number;
  /** PENDING events the durability scenario drains with and without WAIT, and then loses and repairs. */
  durabilityEvents: number;
  /** Trades (2 events each) the consumer scenario writes, publishes and then consumes. */
  consumerTrades: number;
  /** Longest a consumer contender consumes before its rate is taken. */
  consumerTimeBoxSeconds: number;
  log: (line: string) => void;
}

export function benchConfig(quick: boolean, log: (line: string) => void): BenchConfig {
  return quick
    ? {
        quick,
        drainEvents: 100_000,
        timeBoxSeconds: 8,
        drainLimitSeconds: 60,
        writeSeconds: 8,
        warmupSeconds: 2,
        pgbenchSeconds: 5,
        latencyRates: [50, 250, 500, 1000, 2000],
        graphileRates: [250, 500],
        pollingRates: [500, 1000],
        latencySeconds: 5,
        keepUpSeconds: 15,
        keepUpRates: [1000, 2000, 3000, 4000, 5000, 6000],
        outageSeconds: 10,
        durabilityEvents: 20_000,
        consumerTrades: 5_000,
        consumerTimeBoxSeconds: 15,
        log,
      }
    : {
        quick,
        drainEvents: 1_000_000,
        timeBoxSeconds: 45,
        drainLimitSeconds: 600,
        writeSeconds: 30,
        warmupSeconds: 5,
        pgbenchSeconds: 20,
        latencyRates: [50, 250, 500, 1000, 2000],
        graphileRates: [250, 500],
        pollingRates: [500, 1000, 2000],
        latencySeconds: 20,
        keepUpSeconds: 60,
        keepUpRates: [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000],
        outageSeconds: 30,
        durabilityEvents: 100_000,
        consumerTrades: 20_000,
        consumerTimeBoxSeconds: 30,
        log,
      };
}
