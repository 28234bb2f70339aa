/**
 * `npm run bench` (full) or `npm run bench -- --quick` (small sizes, a few minutes). Runs the
 * scenarios in one go, prints a table, writes bench/results/<date><suffix>.json and its report
 * BENCHMARKS<suffix>.md: no suffix for a full run of every scenario, `-quick` for --quick, `-partial`
 * for `--only write,drain,latency,keepup,outage,durability,consumer`, so only a full run writes
 * BENCHMARKS.md. `--render bench/results/<file>.json` writes that file's report again.
 */

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TimeoutError } from '@astra/test-support';
import { BACKLOG_AGGREGATES } from './lib/backlog.ts';
import { type BenchConfig, benchConfig } from './lib/config.ts';
import {
  cleanup,
  dropStaleDatabases,
  installCleanupHandlers,
  pressureTotals,
  stopAllChildren,
  withAdmin,
  withTimeout,
} from './lib/infra.ts';
import { ACCOUNTS } from './lib/service.ts';
import {
  type BenchParameter,
  type BenchReport,
  buildRows,
  buildTargets,
  type Machine,
  renderMarkdown,
  renderTable,
  reportFor,
} from './report.ts';
import { CONSUMER_TRADE_RATE, consumerScenario, FOLLOWER_PROCESSES } from './scenarios/consumer.ts';
import { drainScenario, relayConfig } from './scenarios/drain.ts';
import { DURABILITY_TRADE_RATE, durabilityScenario } from './scenarios/durability.ts';
import { keepUpScenario } from './scenarios/keepUp.ts';
import { latencyScenario } from './scenarios/latency.ts';
import { outageScenario } from './scenarios/outage.ts';
import { CONNECTIONS, WRK_THREADS, writePathScenario } from './scenarios/writePath.ts';

const SCENARIOS = ['write', 'drain', 'latency', 'keepup', 'outage', 'durability', 'consumer'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

const repo = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));

function version(command: string, args: string[]): string | null {
  try {
    return (
      execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
        .split('\n')[0]
        ?.trim() ?? null
    );
  } catch (error) {
    // wrk prints its version with a usage message and exits 1.
    const output = (error as { stdout?: string }).stdout;
    return output ? (output.split('\n')[0]?.trim() ?? null) : null;
  }
}

/** The tools the benchmark drives; tells how to get a missing one. */
function checkTools(): { missing: string[]; versions: Record<string, string> } {
  const versions: Record<string, string> = {};
  const missing: string[] = [];
  const tools: [string, string[], string][] = [
    ['wrk', ['--version'], 'apt-get install -y wrk (or: bash scripts/setup-machine.sh)'],
    ['pgbench', ['--version'], 'apt-get install -y postgresql (pgbench comes with it)'],
    ['redis-server', ['--version'], 'apt-get install -y redis-server'],
    ['redis-benchmark', ['--version'], 'apt-get install -y redis-tools (redis-server depends on it)'],
  ];
  for (const [tool, args, hint] of tools) {
    const found = version(tool, args);
    if (found === null) missing.push(`${tool} is missing: ${hint}`);
    else versions[tool] = found;
  }
  return { missing, versions };
}

/** The package version the bench's own dependencies resolve to. */
function installed(name: string): string {
  const require = createRequire(import.meta.url);
  return (require(`${name}/package.json`) as { version: string }).version;
}

/** The run's sizes and settings, recorded in its results so the report states them from there. */
function parameters(config: BenchConfig): Record<string, BenchParameter> {
  const { log: _log, quick: _quick, ...sizes } = config;
  const relay = relayConfig('', '', false);
  return {
    ...sizes,
    writeAccounts: ACCOUNTS,
    wrkConnections: CONNECTIONS,
    wrkThreads: WRK_THREADS,
    drainAggregates: BACKLOG_AGGREGATES,
    drainRelayBatchSize: relay.batchSize,
    drainRelayRebalanceIntervalMs: relay.rebalanceIntervalMs,
    durabilityTradeRate: DURABILITY_TRADE_RATE,
    consumerTradeRate: CONSUMER_TRADE_RATE,
    consumerFollowerProcesses: FOLLOWER_PROCESSES,
    graphileWorker: installed('graphile-worker'),
    pgBoss: installed('pg-boss'),
  };
}

function writeReport(results: string, report: BenchReport): string {
  const file = reportFor(results);
  writeFileSync(repo(file), renderMarkdown(report, buildRows(report), buildTargets(report), results));
  return file;
}

async function machineFacts(versions: Record<string, string>): Promise<Machine> {
  const postgres = await withAdmin(async (client) => {
    const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    return `PostgreSQL ${rows[0]?.v ?? '?'}`;
  });
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    // Not a git checkout.
  }
  return {
    cores: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: os.totalmem() / 1024 ** 3,
    node: process.version,
    postgres,
    redis: /v=(\S+)/.exec(versions['redis-server'] ?? '')?.[1] ?? versions['redis-server'] ?? 'missing',
    wrk: /wrk (\S+)/.exec(versions.wrk ?? '')?.[1] ?? versions.wrk ?? 'missing',
    pgbench: versions.pgbench ?? 'missing',
    redisBenchmark: versions['redis-benchmark'] ?? 'missing',
    os: `${os.type()} ${os.release()}`,
    loadBefore: os.loadavg(),
    loadAfter: [],
    commit,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      render: { type: 'string' },
    },
  });
  if (values.render !== undefined) {
    // npm runs scripts at the root: a relative path is the caller's, from where npm was started.
    const path = resolve(process.env.INIT_CWD ?? process.cwd(), values.render);
    const results = `bench/results/${basename(path)}`;
    const report = JSON.parse(readFileSync(path, 'utf8')) as BenchReport;
    process.stdout.write(`wrote ${writeReport(results, report)} from ${results}\n`);
    return;
  }
  const quick = values.quick;
  const only = values.only?.split(',').map((name) => name.trim()) ?? [...SCENARIOS];
  for (const name of only) {
    if (!(SCENARIOS as readonly string[]).includes(name))
      throw new Error(`unknown scenario ${name}: ${SCENARIOS.join(', ')}`);
  }
  const selected = new Set(only as ScenarioName[]);
  const started = Date.now();
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const config = benchConfig(quick, log);
  installCleanupHandlers();

  // A hard stop, so a wedged run can never hold the machine.
  const deadline = setTimeout(
    () => {
      process.stderr.write('bench: overall time limit reached, cleaning up\n');
      void cleanup().finally(() => process.exit(1));
    },
    (quick ? 20 : 120) * 60_000,
  );
  deadline.unref();

  const stale = await dropStaleDatabases();
  if (stale.length > 0) log(`dropped ${stale.length} databases left by earlier runs`);
  const tools = checkTools();
  for (const line of tools.missing) log(`bench: ${line}`);
  const machine = await machineFacts(tools.versions);
  log(
    `bench (${quick ? 'quick' : 'full'}): ${machine.cores} cores, node ${machine.node}, ${machine.postgres}, ` +
      `redis ${machine.redis}; load average ${machine.loadBefore.map((v) => v.toFixed(2)).join(' ')}`,
  );
  if (machine.loadBefore[0] !== undefined && machine.loadBefore[0] > machine.cores) {
    log('bench: the machine is busy (load average above the core count): absolute numbers will be low');
  }

  const command = `npm run bench${quick ? ' -- --quick' : ''}${values.only ? ` --only ${values.only}` : ''}`;
  const report: BenchReport = {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    command,
    durationSeconds: 0,
    machine,
    parameters: parameters(config),
    errors: [...tools.missing],
  };
  const needs: Record<ScenarioName, string[]> = {
    write: ['wrk', 'pgbench', 'redis-server'],
    drain: ['pgbench', 'redis-server'],
    latency: ['redis-server'],
    keepup: ['redis-server'],
    outage: ['wrk', 'redis-server'],
    durability: ['redis-server'],
    consumer: ['redis-server'],
  };
  const limits: Record<ScenarioName, number> = quick
    ? { write: 4, drain: 6, latency: 4, keepup: 5, outage: 3, durability: 5, consumer: 4 }
    : { write: 10, drain: 45, latency: 10, keepup: 15, outage: 6, durability: 12, consumer: 8 };

  const run = async <T>(
    name: ScenarioName,
    title: string,
    work: () => Promise<T>,
  ): Promise<T | undefined> => {
    if (!selected.has(name)) return undefined;
    const absent = needs[name].filter((tool) => tools.versions[tool] === undefined);
    if (absent.length > 0) {
      report.errors.push(`${title}: skipped, ${absent.join(', ')} missing`);
      return undefined;
    }
    log(`\n== ${title}`);
    const at = Date.now();
    const pressureAt = pressureTotals();
    try {
      return await withTimeout(work(), limits[name] * 60_000, title);
    } catch (error) {
      report.errors.push(`${title}: ${error instanceof Error ? error.message : String(error)}`);
      log(`== ${title} FAILED: ${error instanceof Error ? error.message : String(error)}`);
      // A timed-out scenario may have left processes running: stop them before the next one.
      if (error instanceof TimeoutError) await stopAllChildren();
      return undefined;
    } finally {
      const seconds = (Date.now() - at) / 1000;
      const pressureNow = pressureTotals();
      if (pressureAt !== null && pressureNow !== null && seconds > 0) {
        const pct = (stalledUs: number) => stalledUs / 1e4 / seconds;
        report.pressure = {
          ...report.pressure,
          [name]: {
            cpuPct: pct(pressureNow.cpu - pressureAt.cpu),
            ioPct: pct(pressureNow.io - pressureAt.io),
          },
        };
      }
      log(`== ${title}: ${seconds.toFixed(0)} s`);
    }
  };

  try {
    report.writePath = await run('write', '1. write path', () => writePathScenario(config));
    report.drain = await run(
      'drain',
      `2. relay drain (${config.drainEvents.toLocaleString('en-US')} events)`,
      () => drainScenario(config),
    );
    report.latency = await run('latency', '3. latency', () => latencyScenario(config));
    report.keepUp = await run('keepup', '4. keeping up', () => keepUpScenario(config));
    report.outage = await run('outage', '5. cost: Redis outage under load', () => outageScenario(config));
    report.durability = await run(
      'durability',
      `6. durability: WAIT 1 and the repair of ${config.durabilityEvents.toLocaleString('en-US')} lost events`,
      () => durabilityScenario(config),
    );
    report.consumer = await run(
      'consumer',
      `7. consumer kit: ${config.consumerTrades.toLocaleString('en-US')} trades consumed, and trade to projection`,
      () => consumerScenario(config),
    );
  } finally {
    await cleanup();
  }
  for (const [name, errors] of [
    ['write path', report.writePath?.errors],
    ['drain', report.drain?.errors],
    ['latency', report.latency?.errors],
    ['keeping up', report.keepUp?.errors],
    ['durability', report.durability?.errors],
    ['consumer', report.consumer?.errors],
  ] as const) {
    for (const error of errors ?? []) report.errors.push(`${name}: ${error}`);
  }
  if (report.outage?.error !== undefined) report.errors.push(`outage: ${report.outage.error}`);

  machine.loadAfter = os.loadavg();
  report.durationSeconds = (Date.now() - started) / 1000;
  const rows = buildRows(report);
  const targets = buildTargets(report);
  log(`\n${renderTable(rows, targets)}`);
  if (report.errors.length > 0) log(`\nerrors:\n${report.errors.map((e) => `  ${e}`).join('\n')}`);

  mkdirSync(repo('bench/results'), { recursive: true });
  const day = report.date.slice(0, 10);
  const file = `bench/results/${day}${quick ? '-quick' : ''}${values.only ? '-partial' : ''}.json`;
  writeFileSync(repo(file), `${JSON.stringify({ ...report, table: rows, targets }, null, 2)}\n`);
  log(`\nwrote ${file} and ${writeReport(file, report)}`);
  log(`done in ${(report.durationSeconds / 60).toFixed(1)} minutes`);
}

main().then(
  () => process.exit(0),
  async (error: unknown) => {
    process.stderr.write(
      `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    await cleanup();
    process.exit(1);
  },
);
