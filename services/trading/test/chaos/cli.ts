import { parseArgs } from 'node:util';
import { killLeftovers } from '../e2e/stack.ts';
import type { FaultCounts } from './faults.ts';
import {
  CHAOS_MODES,
  type ChaosSummary,
  DEFAULT_CHAOS_OPTIONS,
  resolveChaosOptions,
  runChaos,
} from './harness.ts';

/**
 * `npm run chaos -- --trades N --duration S [...]`: one chaos run against real processes; prints the
 * summary and exits 0 when every check held, 1 when one failed, 2 on bad arguments.
 */

const d = DEFAULT_CHAOS_OPTIONS;
const USAGE = `usage: npm run chaos -- [options]
  --trades N            trades to send (default ${d.trades})
  --duration S          seconds the trades are spread over; faults fall inside (default ${d.durationSeconds})
  --concurrency N       requests in flight (default ${d.concurrency})
  --accounts N          accounts trading (default ${d.accounts})
  --symbols N           symbols traded (default ${d.symbols})
  --mode NAME           a named setup: ${Object.keys(CHAOS_MODES).join(', ')} (default: the options below)
  --relays N            standalone relays running together (default ${d.relays})
  --service-relay       the service runs the relay inside its process too (RELAY_ENABLED=true)
  --delete-published    relays delete events as they publish them (OUTBOX_DELETE_PUBLISHED=true)
  --volatile-redis      Redis keeps nothing on disk: each Redis kill loses the streams
  --reporting N         reporting service processes consuming the streams, checked after (default ${d.reportingConsumers})
  --relay-kills N       relay SIGKILLs (default ${d.faults.relayKill})
  --redis-kills N       redis-server SIGKILLs and restarts (default ${d.faults.redisKill})
  --pg-terminations N   rounds of pg_terminate_backend (default ${d.faults.pgTerminate})
  --service-kills N     service SIGKILLs and restarts (default ${d.faults.serviceKill})
  --relay-freezes N     relay SIGSTOP/SIGCONT, with its sessions ended or left open (default ${d.faults.relayFreeze})
  --reporting-kills N   reporting process SIGKILLs and restarts (default ${d.faults.reportingKill})
  --retries N           retries of an idempotent trade after an unknown outcome (default ${d.retries})
  --drain-timeout S     longest wait for the outbox to drain after the load (default ${d.drainTimeoutSeconds})
  --seed N              seed of the trade and fault plan (default: random, printed)
  --json                print the summary as JSON
  --quiet               no progress lines on stderr
  --help`;

class UsageError extends Error {}

const INTEGER_OPTIONS = {
  trades: 'trades',
  duration: 'durationSeconds',
  concurrency: 'concurrency',
  accounts: 'accounts',
  symbols: 'symbols',
  relays: 'relays',
  reporting: 'reportingConsumers',
  retries: 'retries',
  'drain-timeout': 'drainTimeoutSeconds',
  seed: 'seed',
} as const;

const FAULT_OPTIONS = {
  'relay-kills': 'relayKill',
  'redis-kills': 'redisKill',
  'pg-terminations': 'pgTerminate',
  'service-kills': 'serviceKill',
  'relay-freezes': 'relayFreeze',
  'reporting-kills': 'reportingKill',
} as const satisfies Record<string, keyof FaultCounts>;

function wholeNumber(name: string, raw: string): number {
  if (!/^\d{1,10}$/.test(raw)) throw new UsageError(`--${name} must be a whole number, got "${raw}"`);
  return Number(raw);
}

function parse(argv: string[]) {
  const names = [...Object.keys(INTEGER_OPTIONS), ...Object.keys(FAULT_OPTIONS)];
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        ...Object.fromEntries(names.map((name) => [name, { type: 'string' as const }])),
        mode: { type: 'string' },
        'service-relay': { type: 'boolean', default: false },
        'delete-published': { type: 'boolean', default: false },
        'volatile-redis': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values } = parsed;
  const input: Record<string, number> = {};
  for (const [flag, option] of Object.entries(INTEGER_OPTIONS)) {
    const raw = values[flag];
    if (typeof raw === 'string') input[option] = wholeNumber(flag, raw);
  }
  const faults: Partial<FaultCounts> = {};
  for (const [flag, kind] of Object.entries(FAULT_OPTIONS)) {
    const raw = values[flag];
    if (typeof raw === 'string') faults[kind] = wholeNumber(flag, raw);
  }
  let mode = {};
  if (typeof values.mode === 'string') {
    if (!Object.hasOwn(CHAOS_MODES, values.mode)) {
      throw new UsageError(
        `--mode must be one of ${Object.keys(CHAOS_MODES).join(', ')}, got "${values.mode}"`,
      );
    }
    mode = CHAOS_MODES[values.mode as keyof typeof CHAOS_MODES];
  }
  // Explicit flags win over the mode's settings.
  const flags = {
    ...(values['service-relay'] === true ? { serviceRelay: true } : {}),
    ...(values['delete-published'] === true ? { deletePublished: true } : {}),
    ...(values['volatile-redis'] === true ? { volatileRedis: true } : {}),
  };
  return {
    input: { ...mode, ...input, ...flags, faults },
    json: values.json === true,
    quiet: values.quiet === true,
    help: values.help === true,
  };
}

function format(summary: ChaosSummary): string {
  const t = summary.trades;
  const e = summary.events;
  const f = summary.faults;
  const r = summary.reporting;
  const counts = (record: Record<string, number>) =>
    Object.keys(record).length === 0
      ? ''
      : ` (${Object.entries(record)
          .map(([key, n]) => `${key}: ${n}`)
          .join(', ')})`;
  return [
    `chaos run ${summary.ok ? 'PASSED' : 'FAILED'} (seed ${summary.seed})`,
    `setup      ${summary.setup.relays} standalone relays${summary.setup.serviceRelay ? ', relay in the service' : ''}${summary.setup.deletePublished ? ', deletePublished' : ''}${summary.setup.volatileRedis ? ', Redis without persistence' : ''}`,
    `trades     attempted ${t.attempted} of ${t.requested}, accepted (201) ${t.accepted}, rejected ${t.rejectedTotal}${counts(t.rejected)}, unknown ${t.unknownTotal}${counts(t.unknown)}`,
    `           in database ${t.inDatabase}; retries ${t.retries}, resolved by retry ${t.resolvedByRetry}, replayed ${t.replayed}; 5xx seen${counts(t.serverErrors) || ' none'}`,
    `events     outbox ${e.outbox}, published (stream entries) ${e.published}, pending ${e.pending}, failed ${e.failed}`,
    `           lost ${e.lost}, duplicated ${e.duplicated}, out of order ${e.outOfOrder}, gaps ${e.gaps}, orphans ${e.orphans}`,
    `           wrong positions ${e.wrongPositions}, oversold ${e.oversold}, 5xx outside faults ${e.serverErrorsOutsideFaults}`,
    ...(r === undefined
      ? []
      : [
          `reporting  ${r.consumers} consumers; positions ${r.positions}, ledger rows ${r.ledgerRows}, applies ${r.applies} by ${r.consumersApplying} consumer names`,
          `           positions differing ${r.positionsDiffering}, ledger missing ${r.ledgerMissing}, twice ${r.ledgerDuplicated}, wrong ${r.ledgerWrong}; applied out of turn ${r.appliedOutOfTurn}, apply record incomplete ${r.applyRecordIncomplete}`,
        ]),
    `faults     relay SIGKILL ${f.relayKill}, redis SIGKILL ${f.redisKill}, pg_terminate_backend rounds ${f.pgTerminate} (${f.pgBackendsTerminated} sessions), service SIGKILL ${f.serviceKill}, relay freezes ${f.relayFreeze} (oldest pending while frozen ${f.frozenMaxPendingSeconds.toFixed(1)} s), reporting SIGKILL ${f.reportingKill}`,
    `seconds    load ${summary.seconds.load.toFixed(1)}, drain ${summary.seconds.drain.toFixed(1)}, reporting catch-up ${summary.seconds.catchUp.toFixed(1)}, total ${summary.seconds.total.toFixed(1)}`,
    ...(summary.problems.length === 0
      ? ['checks     all held']
      : summary.problems.map((p) => `PROBLEM    ${p}`)),
    ...(summary.logs === undefined ? [] : [`logs       ${summary.logs}`]),
  ].join('\n');
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parse>;
  let options: ReturnType<typeof resolveChaosOptions>;
  try {
    args = parse(process.argv.slice(2));
    if (args.help) {
      console.log(USAGE);
      return 0;
    }
    options = resolveChaosOptions(args.input);
  } catch (error) {
    if (error instanceof UsageError || error instanceof RangeError) {
      console.error(`${error.message}\n${USAGE}`);
      return 2;
    }
    throw error;
  }

  // First Ctrl-C: stop the load and clean up (drop the database, stop the processes); second: kill now.
  const abort = new AbortController();
  const interrupt = () => {
    if (abort.signal.aborted) {
      void killLeftovers().then(() => process.exit(130));
      return;
    }
    console.error('interrupted: stopping the run and cleaning up (Ctrl-C again to kill at once)');
    abort.abort();
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);

  const summary = await runChaos(
    { ...options, log: args.quiet ? () => {} : (line) => console.error(line) },
    abort.signal,
  );
  console.log(args.json ? JSON.stringify(summary, null, 2) : format(summary));
  if (abort.signal.aborted) return 130;
  return summary.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  },
);
