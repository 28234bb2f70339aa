/**
 * Logs outages of a dependency (Redis, PostgreSQL) as state changes and a periodic summary, not one line
 * per failed attempt: a relay retries every few milliseconds and an HTTP service fails every request,
 * and a log line per attempt buried the one line that mattered (about 3,600 lines for ten seconds of a
 * Redis refusing writes under load).
 *
 * A pure core: callers pass the clock, so tests drive it without waiting; createOutageLog() below is the
 * shell with a timer.
 */
export type Dependency = 'broker' | 'database';

/** Where the lines go: a pino logger fits. */
export interface LogSink {
  error(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
}

interface Outage {
  since: number;
  /** Failed attempts since the outage began, and since the last line about it. */
  failures: number;
  failuresSinceLine: number;
  lastLine: number;
  lastError: string;
}

const NAMES: Record<Dependency, string> = { broker: 'Redis', database: 'the database' };

export class OutageLog {
  private readonly outages = new Map<Dependency, Outage>();
  /** Events Redis refused (not an outage: those events retry and may turn FAILED). */
  private refused: { count: number; lastError: string; since: number } | undefined;
  private lastRefusalLine = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly sink: LogSink,
    /** How often a line says an outage (or refusals) still go on. */
    readonly summaryIntervalMs: number,
    /** What it means while it lasts, e.g. 'requests that need it fail with 503'. */
    private readonly what: string,
  ) {}

  isDown(dependency: Dependency): boolean {
    return this.outages.has(dependency);
  }

  /** `count` attempts failed because `dependency` did not answer; the first line logs the whole error. */
  failed(dependency: Dependency, failure: Error | string, count: number, now: number): void {
    const error = typeof failure === 'string' ? failure : failure.message;
    const outage = this.outages.get(dependency);
    if (outage !== undefined) {
      outage.failures += count;
      outage.failuresSinceLine += count;
      outage.lastError = error;
      return;
    }
    this.outages.set(dependency, {
      since: now,
      failures: count,
      failuresSinceLine: 0,
      lastLine: now,
      lastError: error,
    });
    this.sink.error(
      { dependency, err: failure },
      `${NAMES[dependency]} unreachable: ${this.what}; further failures are summarised`,
    );
  }

  /** `dependency` answered again; ends its outage, if any, with one line. */
  recovered(dependency: Dependency, now: number): void {
    const outage = this.outages.get(dependency);
    if (outage === undefined) return;
    this.outages.delete(dependency);
    this.sink.info(
      { dependency, failedAttempts: outage.failures, downForMs: now - outage.since },
      `${NAMES[dependency]} reachable again`,
    );
  }

  /** Events the broker refused; logged at once when none was for a while, then in the summaries. */
  refusedEvents(error: string, count: number, now: number): void {
    if (now - this.lastRefusalLine >= this.summaryIntervalMs && this.refused === undefined) {
      this.lastRefusalLine = now;
      this.sink.warn({ count, err: error }, 'Redis refused events; they will be retried');
      return;
    }
    this.refused ??= { count: 0, lastError: error, since: now };
    this.refused.count += count;
    this.refused.lastError = error;
  }

  /** Writes the summaries that are due. Call it every few seconds. */
  tick(now: number): void {
    for (const [dependency, outage] of this.outages) {
      if (now - outage.lastLine < this.summaryIntervalMs) continue;
      this.sink.warn(
        {
          dependency,
          failedAttempts: outage.failuresSinceLine,
          totalFailedAttempts: outage.failures,
          downForMs: now - outage.since,
          err: outage.lastError,
        },
        `${NAMES[dependency]} still unreachable`,
      );
      outage.lastLine = now;
      outage.failuresSinceLine = 0;
    }
    if (this.refused !== undefined && now - this.lastRefusalLine >= this.summaryIntervalMs) {
      this.sink.warn(
        { count: this.refused.count, forMs: now - this.refused.since, err: this.refused.lastError },
        'Redis refused more events; they will be retried',
      );
      this.refused = undefined;
      this.lastRefusalLine = now;
    }
  }
}

/** An OutageLog with its timer (unref'd: it never keeps the process alive); `stop()` ends the timer. */
export function createOutageLog(
  sink: LogSink,
  summaryIntervalMs: number,
  what: string,
): { log: OutageLog; stop(): void } {
  const log = new OutageLog(sink, summaryIntervalMs, what);
  // A quarter of the interval: a summary is at most that late.
  const timer = setInterval(() => log.tick(Date.now()), Math.max(250, Math.floor(summaryIntervalMs / 4)));
  timer.unref();
  return { log, stop: () => clearInterval(timer) };
}
