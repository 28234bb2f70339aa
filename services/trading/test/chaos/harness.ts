import { sleep, waitFor } from '@astra/test-support';
import pg from 'pg';
import { createApiKey } from '../../src/http/auth.ts';
import { HttpClient } from '../e2e/http.ts';
import { type RelayHandle, type ReportingHandle, type ServiceHandle, Stack } from '../e2e/stack.ts';
import {
  FAULT_KINDS,
  type FaultActions,
  type FaultCounts,
  type FaultKind,
  type FaultRecord,
  injectFaults,
  planFaults,
} from './faults.ts';
import { type LoadResult, runLoad, type Trader } from './load.ts';
import { Random } from './random.ts';
import { type ReportingVerification, verifyRun } from './verify.ts';

/**
 * The chaos run: the real service, standalone relays and reporting consumers as OS processes, a
 * throwaway redis-server with an fsynced append-only file, fresh databases; a bounded, paced load of
 * trades over HTTP while faults hit every part; then a bounded drain, a bounded wait for reporting to
 * catch up, and the checks of verify.ts. Everything it starts is stopped and
 * the database dropped, whatever happens.
 *
 * How the system under test is set up is a set of independent options (where relays run, whether they
 * delete what they publish, ...); CHAOS_MODES names the combinations the test suite runs. A new mode
 * is a new option handled where the stack is started (and, if it changes what must hold, in verify.ts)
 * plus an entry in CHAOS_MODES.
 */

export interface ChaosOptions {
  /** Trades to send. */
  trades: number;
  /** The trades are paced over this long, and the faults fall inside it. */
  durationSeconds: number;
  /** Requests in flight at once (one keep-alive connection each). */
  concurrency: number;
  accounts: number;
  symbols: number;
  /** Standalone relays running side by side (0 needs `serviceRelay`). */
  relays: number;
  /**
   * The service runs the relay inside its own process (RELAY_ENABLED=true), as `npm start` does, beside
   * any standalone relays; a service SIGKILL then also kills a relay. @defaultValue false
   */
  serviceRelay: boolean;
  /**
   * Every relay deletes each event as it publishes it (OUTBOX_DELETE_PUBLISHED=true): the checks then
   * take the streams as the events' only record. @defaultValue false
   */
  deletePublished: boolean;
  /**
   * Redis keeps nothing on disk: every redisKill loses every stream, and the relays must find the loss
   * and publish the lost events again from the outbox. @defaultValue false (an fsynced append-only file)
   */
  volatileRedis: boolean;
  /**
   * Reporting service processes (`npm run reporting`) consuming the run's streams into their own
   * database, one consumer group; checked against the trading database after the run. @defaultValue 2
   */
  reportingConsumers: number;
  faults: FaultCounts;
  /** Extra tries of an idempotent trade after an unknown outcome. */
  retries: number;
  requestTimeoutMs: number;
  /** Longest wait, after the load, for the outbox to have no PENDING row. */
  drainTimeoutSeconds: number;
  seed: number;
  /** Progress lines. */
  log: (line: string) => void;
}

export const DEFAULT_FAULTS: FaultCounts = {
  relayKill: 3,
  redisKill: 1,
  pgTerminate: 2,
  serviceKill: 1,
  relayFreeze: 0,
  reportingKill: 2,
};

/** The relays' stall timeout in chaos runs: the least the relay accepts with its default backoff. */
export const CHAOS_STALL_TIMEOUT_MS = 10_000;
/** How long a relay stays frozen with its session open: three stall timeouts. */
const FROZEN_OPEN_MS = 3 * CHAOS_STALL_TIMEOUT_MS;

export const DEFAULT_CHAOS_OPTIONS: Omit<ChaosOptions, 'seed' | 'log'> = {
  trades: 5000,
  durationSeconds: 45,
  concurrency: 16,
  accounts: 40,
  symbols: 10,
  relays: 2,
  serviceRelay: false,
  deletePublished: false,
  volatileRedis: false,
  reportingConsumers: 2,
  faults: DEFAULT_FAULTS,
  retries: 4,
  requestTimeoutMs: 10_000,
  drainTimeoutSeconds: 120,
};

/** Each option with the range the harness accepts. */
export const OPTION_LIMITS = {
  trades: [1, 1_000_000],
  durationSeconds: [1, 3600],
  concurrency: [1, 256],
  accounts: [1, 10_000],
  symbols: [1, 500],
  relays: [0, 8],
  reportingConsumers: [0, 4],
  retries: [0, 10],
  requestTimeoutMs: [100, 120_000],
  drainTimeoutSeconds: [1, 3600],
} as const satisfies Partial<Record<keyof ChaosOptions, readonly [number, number]>>;

export const FAULT_LIMIT = 100;

export function resolveChaosOptions(
  options: Partial<Omit<ChaosOptions, 'faults'>> & { faults?: Partial<FaultCounts> } = {},
): ChaosOptions {
  const resolved: ChaosOptions = {
    ...DEFAULT_CHAOS_OPTIONS,
    seed: Math.floor(Math.random() * 2 ** 31),
    log: () => {},
    ...options,
    faults: { ...DEFAULT_FAULTS, ...options.faults },
  };
  for (const [name, [min, max]] of Object.entries(OPTION_LIMITS)) {
    const value = resolved[name as keyof typeof OPTION_LIMITS];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(`${name} must be a whole number from ${min} to ${max}, got ${value}`);
    }
  }
  for (const kind of FAULT_KINDS) {
    const value = resolved.faults[kind];
    if (!Number.isInteger(value) || value < 0 || value > FAULT_LIMIT) {
      throw new RangeError(`faults.${kind} must be a whole number from 0 to ${FAULT_LIMIT}, got ${value}`);
    }
  }
  if (resolved.relays === 0 && !resolved.serviceRelay) {
    throw new RangeError('relays must be at least 1 unless the service runs the relay (serviceRelay)');
  }
  if (resolved.relays === 0 && resolved.faults.relayKill + resolved.faults.relayFreeze > 0) {
    throw new RangeError('faults.relayKill and relayFreeze need standalone relays (relays >= 1)');
  }
  if (resolved.faults.relayFreeze > 0 && resolved.relays + (resolved.serviceRelay ? 1 : 0) < 2) {
    throw new RangeError('faults.relayFreeze needs a second relay to take over (relays >= 2)');
  }
  if (resolved.reportingConsumers === 0 && resolved.faults.reportingKill > 0) {
    throw new RangeError('faults.reportingKill needs reporting consumers (reportingConsumers >= 1)');
  }
  if (!Number.isInteger(resolved.seed) || resolved.seed < 0 || resolved.seed >= 2 ** 32) {
    throw new RangeError(`seed must be a whole number from 0 to ${2 ** 32 - 1}, got ${resolved.seed}`);
  }
  return resolved;
}

/**
 * The setups the suite runs, by name (`npm run chaos -- --mode NAME`). Each sets only the options that
 * make it what it is; counts and durations come from the caller.
 */
export const CHAOS_MODES = {
  /** Standalone relays only, the service without its relay. */
  'standalone-relays': { relays: 2, serviceRelay: false, deletePublished: false },
  /** The relay inside the service, as `npm start` runs it, beside one standalone relay. */
  'service-relay': { relays: 1, serviceRelay: true, deletePublished: false },
  /** Relays that delete each event as they publish it: verified from the streams. */
  'delete-published': { relays: 2, serviceRelay: false, deletePublished: true },
  /** Redis keeps nothing on disk: each Redis kill loses the streams, which the relays repair. */
  'volatile-redis': { relays: 2, serviceRelay: false, deletePublished: false, volatileRedis: true },
} as const satisfies Record<string, Partial<ChaosOptions>>;

export type ChaosMode = keyof typeof CHAOS_MODES;

export interface ChaosSummary {
  ok: boolean;
  seed: number;
  setup: { relays: number; serviceRelay: boolean; deletePublished: boolean; volatileRedis?: boolean };
  trades: {
    requested: number;
    attempted: number;
    notSent: number;
    accepted: number;
    rejected: Record<string, number>;
    rejectedTotal: number;
    unknown: Record<string, number>;
    unknownTotal: number;
    serverErrors: Record<string, number>;
    retries: number;
    resolvedByRetry: number;
    replayed: number;
    inDatabase: number;
  };
  events: {
    outbox: number;
    published: number;
    pending: number;
    failed: number;
    lost: number;
    duplicated: number;
    outOfOrder: number;
    gaps: number;
    orphans: number;
    /** Positions or events whose quantity or average price differs from the replayed trades. */
    wrongPositions: number;
    oversold: number;
    serverErrorsOutsideFaults: number;
  };
  faults: Record<FaultKind, number> & {
    pgBackendsTerminated: number;
    /** The oldest PENDING event's age while a relay was frozen with its session open (seconds). */
    frozenMaxPendingSeconds: number;
  };
  faultLog: FaultRecord[];
  /** The reporting service's view against the trading database (when reporting consumers ran). */
  reporting?: ReportingVerification & { consumers: number };
  /** catchUp: the wait, after the drain, until reporting had applied everything. */
  seconds: { load: number; drain: number; catchUp: number; total: number };
  problems: string[];
  /** Where the processes' logs were kept (only when the run failed). */
  logs?: string;
}

function total(counts: Record<string, number>): number {
  return Object.values(counts).reduce((sum, n) => sum + n, 0);
}

const SYMBOLS = ['AAPL', 'MSFT', 'NVDA', 'AMZN', 'GOOG', 'META', 'TSLA', 'BRK.B', 'JPM', 'V'];

function symbolList(count: number): string[] {
  return Array.from({ length: count }, (_, i) => SYMBOLS[i] ?? `SYM${i}`);
}

export async function runChaos(
  input: Partial<Omit<ChaosOptions, 'faults'>> & { faults?: Partial<FaultCounts> } = {},
  signal?: AbortSignal,
): Promise<ChaosSummary> {
  const options = resolveChaosOptions(input);
  const { log } = options;
  const random = new Random(options.seed);
  const began = Date.now();
  // A crash of a process under test ends the load and the faults at once: it is the finding.
  let crashed = () => false;
  const stopped = () => signal?.aborted === true || crashed();
  log(`chaos run, seed ${options.seed}: ${options.trades} trades over ${options.durationSeconds} s`);

  const stack = await Stack.create({
    label: 'chaos',
    durableRedis: !options.volatileRedis,
    env: {
      RELAY_POLL_INTERVAL_MS: '250',
      RELAY_STALL_TIMEOUT_MS: String(CHAOS_STALL_TIMEOUT_MS),
      ...(options.deletePublished ? { OUTBOX_DELETE_PUBLISHED: 'true' } : {}),
    },
  });
  crashed = () => stack.crashes.length > 0;
  let ok = false;
  let http: HttpClient | undefined;
  let killer: pg.Client | undefined;
  /** The harness's own pool on the reporting database, for the catch-up wait and the checks. */
  let reportingPool: pg.Pool | undefined;
  /** Each slot's replacement being started after a reportingKill (never rejects); awaited before reuse. */
  const reportingStarts: Promise<void>[] = [];
  const reportingStartFailures: string[] = [];
  try {
    let service: ServiceHandle = await stack.startService({ relay: options.serviceRelay });
    const relays: RelayHandle[] = [];
    for (let i = 0; i < options.relays; i++) relays.push(await stack.startRelay());
    const reporting: ReportingHandle[] = [];
    for (let i = 0; i < options.reportingConsumers; i++) reporting.push(await stack.startReporting());
    const reportingUrl = options.reportingConsumers > 0 ? await stack.reportingDatabaseUrl() : undefined;
    if (reportingUrl !== undefined) {
      reportingPool = new pg.Pool({
        connectionString: reportingUrl,
        max: 2,
        application_name: 'chaos-harness',
      });
      reportingPool.on('error', () => {});
    }

    // The admin key through the CLI as a user makes one; the accounts' keys straight in the database
    // (one CLI process per account would cost seconds each on this machine).
    const admin = `Bearer ${await stack.createKey({ admin: true })}`;
    const traders: Trader[] = [];
    for (let i = 0; i < options.accounts; i++) {
      const accountId = `acct-${String(i).padStart(4, '0')}`;
      traders.push({
        accountId,
        authorization: `Bearer ${await createApiKey(stack.db.pool, accountId, false)}`,
      });
      if (i % 5 === 0) traders.push({ accountId, authorization: admin });
    }

    // Its own session, so pg_backend_pid() spares exactly this one.
    killer = new pg.Client({ connectionString: stack.db.url, application_name: 'chaos-harness' });
    killer.on('error', () => {});
    await killer.connect();
    let backendsTerminated = 0;
    const terminator = killer;
    const reportingDatabase = reportingUrl === undefined ? '' : new URL(reportingUrl).pathname.slice(1);
    const terminateAll = async () => {
      const result = await terminator.query<{ terminated: number }>(
        `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS terminated
         FROM pg_stat_activity WHERE datname IN (current_database(), $1) AND pid <> pg_backend_pid()`,
        [reportingDatabase],
      );
      const terminated = result.rows[0]?.terminated ?? 0;
      backendsTerminated += terminated;
      return terminated;
    };
    let freezes = 0;
    /** The oldest PENDING event's age, sampled while a relay was frozen with its session open. */
    let frozenMaxPendingSeconds = 0;

    const actions: FaultActions = {
      relayKill: async (rnd) => {
        const index = rnd.int(0, relays.length - 1);
        const victim = relays[index] as RelayHandle;
        await victim.process.kill('SIGKILL');
        await sleep(rnd.int(0, 1500));
        const replacement = await stack.startRelay();
        relays[index] = replacement;
        return `${victim.process.name} (pid ${victim.process.pid}) SIGKILLed; ${replacement.process.name} started`;
      },
      redisKill: async (rnd) => {
        await stack.redis.kill();
        const down = rnd.int(500, 3000);
        await sleep(down);
        await stack.redis.restart();
        return `redis-server SIGKILLed, restarted on port ${stack.redis.port} after ${down} ms`;
      },
      pgTerminate: async () => `pg_terminate_backend on ${await terminateAll()} sessions`,
      relayFreeze: async (rnd) => {
        const victim = relays[rnd.int(0, relays.length - 1)] as RelayHandle;
        const sessionOpen = freezes++ % 2 === 1;
        victim.process.signalGroup('SIGSTOP');
        try {
          if (!sessionOpen) {
            const terminated = await terminateAll();
            // Longer than the journal's confirmation delay (5 s): the journal has forgotten its batch.
            await sleep(7000);
            return `${victim.process.name} frozen 7 s, ${terminated} sessions ended meanwhile`;
          }
          // Longer than the stall timeout: the other relays must end its session and take over.
          const until = Date.now() + FROZEN_OPEN_MS;
          while (Date.now() < until) {
            const age = await terminator.query<{ seconds: number | null }>(
              "SELECT extract(epoch FROM now() - min(created_at))::float8 AS seconds FROM event_outbox WHERE status = 'PENDING'",
            );
            frozenMaxPendingSeconds = Math.max(frozenMaxPendingSeconds, age.rows[0]?.seconds ?? 0);
            await sleep(250);
          }
          return `${victim.process.name} frozen ${FROZEN_OPEN_MS / 1000} s with its session open`;
        } finally {
          victim.process.signalGroup('SIGCONT');
        }
      },
      reportingKill: async (rnd) => {
        const index = rnd.int(0, reporting.length - 1);
        const down = rnd.int(0, 1500);
        await reportingStarts[index];
        const victim = reporting[index] as ReportingHandle;
        await victim.process.kill('SIGKILL');
        // The replacement starts in the background: a start takes seconds on a busy host, and the
        // faults planned after this one must still fall inside the load.
        reportingStarts[index] = sleep(down)
          .then(() => stack.startReporting())
          .then(
            (replacement) => {
              reporting[index] = replacement;
              log(
                `${replacement.process.name} (consumer ${replacement.consumer}) started for ${victim.process.name}`,
              );
            },
            (error: unknown) => {
              reportingStartFailures.push(error instanceof Error ? error.message : String(error));
            },
          );
        return `${victim.process.name} (consumer ${victim.consumer}) SIGKILLed; a replacement starts in ${down} ms`;
      },
      serviceKill: async () => {
        const victim = service;
        await victim.process.kill('SIGKILL');
        service = await stack.startService({ relay: options.serviceRelay, port: victim.port });
        return `${victim.process.name} (pid ${victim.process.pid}) SIGKILLed; ${service.process.name} started`;
      },
    };

    http = new HttpClient(service.port, { maxSockets: options.concurrency });
    const durationMs = options.durationSeconds * 1000;
    const plan = planFaults(options.faults, durationMs, random);
    const loadStart = Date.now();
    // Faults follow the load's progress, not the clock: on a slow host the load falls behind its pace,
    // and faults planned by the clock would then all land early in it.
    let started = 0;
    let loadDone = false;
    const [load, faultLog] = await Promise.all([
      runLoad(
        http,
        {
          trades: options.trades,
          durationMs,
          // The load is bounded: nothing starts later than this, however slow the system gets. Generous,
          // so a busy 2-core host falls behind the pace without failing the run.
          deadline: loadStart + 4 * durationMs + 120_000,
          concurrency: options.concurrency,
          traders,
          symbols: symbolList(options.symbols),
          retries: options.retries,
          requestTimeoutMs: options.requestTimeoutMs,
          seed: options.seed,
        },
        stopped,
        () => {
          started++;
        },
      ).finally(() => {
        loadDone = true;
      }),
      injectFaults(
        plan,
        actions,
        random,
        loadStart,
        log,
        () => stopped() || loadDone,
        () => started / options.trades,
      ),
    ]);
    const loadSeconds = (Date.now() - loadStart) / 1000;
    log(
      `load done in ${loadSeconds.toFixed(1)} s: ${load.accepted.length} accepted, ${total(load.rejected)} rejected, ${total(load.unknown)} unknown`,
    );

    // Drain: the relays publish what is left (bounded).
    const drainStart = Date.now();
    const problems: string[] = [];
    await Promise.all(reportingStarts);
    for (const failure of reportingStartFailures)
      problems.push(`a reporting replacement did not start: ${failure}`);
    for (const fault of faultLog) {
      if (fault.error !== undefined)
        problems.push(`fault ${fault.kind} could not be injected: ${fault.error}`);
    }
    for (const kind of FAULT_KINDS) {
      const injected = faultLog.filter((fault) => fault.kind === kind && fault.error === undefined).length;
      if (injected < options.faults[kind])
        problems.push(`${kind}: ${injected} of ${options.faults[kind]} injected`);
    }
    if (load.notSent > 0) problems.push(`${load.notSent} trades not sent (deadline, crash or interrupt)`);
    let drained = false;
    try {
      if (stopped()) throw new Error('no drain: the run was stopped');
      await waitFor(
        'no PENDING outbox rows',
        async () => {
          if (stopped()) throw new Error('aborted');
          const result = await stack.db.pool.query<{ pending: number }>(
            "SELECT count(*)::int AS pending FROM event_outbox WHERE status = 'PENDING'",
          );
          return result.rows[0]?.pending === 0;
        },
        options.drainTimeoutSeconds * 1000,
        250,
      );
      // A Redis that lost the streams: wait until every loss is repaired (markers back in step).
      if (options.volatileRedis)
        await waitFor(
          'every stream repaired',
          () => streamsInStep(stack),
          options.drainTimeoutSeconds * 1000,
          250,
        );
      drained = true;
    } catch (error) {
      problems.push(error instanceof Error ? error.message : String(error));
    }
    const drainSeconds = (Date.now() - drainStart) / 1000;
    log(`drain done in ${drainSeconds.toFixed(1)} s`);

    // Reporting catches up: entries a killed consumer held are claimed only once idle (30 s by
    // default), and later versions of their positions wait for them. Bounded like the drain.
    const catchUpStart = Date.now();
    if (reportingPool !== undefined && drained) {
      const pool = reportingPool;
      await waitFor(
        'reporting caught up',
        async () => {
          if (stopped()) throw new Error('aborted');
          return reportingCaughtUp(stack.db.pool, pool);
        },
        options.drainTimeoutSeconds * 1000,
        500,
      ).catch((error: unknown) => problems.push(error instanceof Error ? error.message : String(error)));
    }
    const catchUpSeconds = (Date.now() - catchUpStart) / 1000;
    if (reportingPool !== undefined) log(`reporting caught up in ${catchUpSeconds.toFixed(1)} s`);
    log('checking');

    for (const crash of stack.crashes) problems.push(crash);
    const unknownTotal = total(load.unknown);
    const verification = await verifyRun(stack.db.pool, stack.redis.url, load.accepted, unknownTotal, {
      serverErrors: load.serverErrorLog,
      faultWindows: faultLog.map((fault) => ({
        kind: fault.kind,
        start: loadStart + fault.startedMs,
        end: loadStart + fault.startedMs + fault.tookMs,
      })),
      deletePublished: options.deletePublished,
      ...(reportingPool === undefined ? {} : { reportingPool }),
    });
    problems.push(...verification.problems);
    ok = problems.length === 0;
    const faults = Object.fromEntries(
      FAULT_KINDS.map((kind) => [
        kind,
        faultLog.filter((f) => f.kind === kind && f.error === undefined).length,
      ]),
    ) as Record<FaultKind, number>;
    return summarize(
      options,
      load,
      verification,
      faults,
      backendsTerminated,
      frozenMaxPendingSeconds,
      faultLog,
      {
        load: loadSeconds,
        drain: drainSeconds,
        catchUp: catchUpSeconds,
        total: (Date.now() - began) / 1000,
      },
      problems,
      ok ? undefined : stack.workDir,
    );
  } catch (error) {
    throw new Error(
      `chaos run failed (logs kept in ${stack.workDir}): ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  } finally {
    http?.close();
    await killer?.end().catch(() => {});
    await reportingPool?.end().catch(() => {});
    // A replacement still starting would spawn after the stack closed.
    await Promise.all(reportingStarts);
    await stack.close({ keepLogs: !ok });
  }
}

/**
 * True once Redis's marker of every stream and partition equals the outbox's durable record: no loss
 * is waiting for its repair.
 */
async function streamsInStep(stack: Stack): Promise<boolean> {
  const { rows } = await stack.db.pool.query<{ stream: string; partition_no: number; last_entry_id: string }>(
    'SELECT stream, partition_no, last_entry_id FROM event_outbox_streams',
  );
  const states = new Map<string, Map<string, string>>();
  for (const stream of new Set(rows.map((row) => row.stream))) {
    const fields = (await stack.redis.cli(['HGETALL', `{${stream}}:outbox-state`])).split('\n');
    const state = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) state.set(fields[i] as string, fields[i + 1] as string);
    states.set(stream, state);
  }
  return rows.every((row) => states.get(row.stream)?.get(`m${row.partition_no}`) === row.last_entry_id);
}

/**
 * True once reporting holds as many ledger rows as trading has trades and its positions add up to the
 * same versions: every event applied (reporting can only hold what trading published, so equal totals
 * mean equal views unless something is wrong, which the checks then show in detail).
 */
async function reportingCaughtUp(trading: pg.Pool, reporting: pg.Pool): Promise<boolean> {
  // `trades` in trading, `ledger` in reporting: a fixed table name, never a value.
  const totals = (trades: 'trades' | 'ledger') =>
    `SELECT (SELECT count(*) FROM positions)::int AS positions,
            (SELECT coalesce(sum(version), 0) FROM positions)::text AS versions,
            (SELECT count(*) FROM ${trades})::int AS trades`;
  type Totals = { positions: number; versions: string; trades: number };
  const [want, have] = await Promise.all([
    trading.query<Totals>(totals('trades')),
    reporting.query<Totals>(totals('ledger')),
  ]);
  const [a, b] = [want.rows[0], have.rows[0]];
  return (
    a !== undefined &&
    b !== undefined &&
    a.positions === b.positions &&
    a.versions === b.versions &&
    a.trades === b.trades
  );
}

function summarize(
  options: ChaosOptions,
  load: LoadResult,
  verification: Awaited<ReturnType<typeof verifyRun>>,
  faults: Record<FaultKind, number>,
  pgBackendsTerminated: number,
  frozenMaxPendingSeconds: number,
  faultLog: FaultRecord[],
  seconds: ChaosSummary['seconds'],
  problems: string[],
  logs: string | undefined,
): ChaosSummary {
  return {
    ok: problems.length === 0,
    seed: options.seed,
    setup: {
      relays: options.relays,
      serviceRelay: options.serviceRelay,
      deletePublished: options.deletePublished,
      ...(options.volatileRedis ? { volatileRedis: true } : {}),
    },
    trades: {
      requested: options.trades,
      attempted: load.attempted,
      notSent: load.notSent,
      accepted: load.accepted.length,
      rejected: load.rejected,
      rejectedTotal: total(load.rejected),
      unknown: load.unknown,
      unknownTotal: total(load.unknown),
      serverErrors: load.serverErrors,
      retries: load.retries,
      resolvedByRetry: load.resolvedByRetry,
      replayed: load.replayed,
      inDatabase: verification.tradesInDatabase,
    },
    events: {
      outbox: verification.outboxRows,
      published: verification.streamEntries,
      pending: verification.outboxByStatus.PENDING ?? 0,
      failed: verification.outboxByStatus.FAILED ?? 0,
      lost: verification.lost,
      duplicated: verification.duplicated,
      outOfOrder: verification.outOfOrder,
      gaps: verification.gaps,
      orphans: verification.orphans,
      wrongPositions: verification.wrongPositions,
      oversold: verification.oversold,
      serverErrorsOutsideFaults: verification.serverErrorsOutsideFaults,
    },
    faults: { ...faults, pgBackendsTerminated, frozenMaxPendingSeconds },
    faultLog,
    ...(verification.reporting === undefined
      ? {}
      : { reporting: { consumers: options.reportingConsumers, ...verification.reporting } }),
    seconds,
    problems,
    ...(logs === undefined ? {} : { logs }),
  };
}
