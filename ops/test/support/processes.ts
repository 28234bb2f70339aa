/**
 * Real Prometheus and Alertmanager processes for tests, on free ports in temporary folders, from the
 * committed configuration. Every wait is bounded; `stop()` ends the process it started and nothing else.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, spawnManaged, waitFor } from '@astra/test-support';

/** Root of the repository. */
export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const OPS = join(REPO, 'ops');

export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr together, for assertion messages. */
  output: string;
}

/** Runs a command to completion (at most `timeoutMs`), from the repository root. */
export function run(command: string, args: string[], timeoutMs = 60_000): CommandResult {
  const result = spawnSync(command, args, { cwd: REPO, encoding: 'utf8', timeout: timeoutMs });
  if (result.error) throw result.error;
  const stdout = result.stdout ?? '';
  const stderr = result.stderr ?? '';
  return { status: result.status, stdout, stderr, output: `${stdout}\n${stderr}` };
}

export interface Daemon {
  /** http://127.0.0.1:<port> */
  url: string;
  /** The temporary folder holding its configuration and data. */
  dir: string;
  /** What the process wrote so far (both streams). */
  logs(): string;
  /** Ends the process (SIGTERM, SIGKILL after 10 s) and removes its folder. */
  stop(): Promise<void>;
}

async function startDaemon(command: string, args: string[], url: string, dir: string): Promise<Daemon> {
  const daemon = spawnManaged(command, command, args, { cwd: dir });
  const stop = async () => {
    await daemon.kill('SIGTERM', 10_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      `${command} to be ready at ${url}`,
      async () => {
        if (!daemon.running) throw new Error(`${command} exited:\n${daemon.output}`);
        const response = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2_000) });
        return response.ok;
      },
      30_000,
      200,
    );
  } catch (error) {
    await stop();
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${daemon.output}`);
  }
  return { url, dir, logs: () => `${daemon.stdout}${daemon.stderr}`, stop };
}

export interface PrometheusOptions {
  /** host:port targets of job trading-service. @defaultValue none */
  tradingService?: string[];
  /** host:port targets of job outbox-relay. @defaultValue none */
  outboxRelay?: string[];
  /** host:port targets of job reporting-service. @defaultValue none */
  reportingService?: string[];
  /** host:port of Alertmanagers to send alerts to. @defaultValue none */
  alertmanagers?: string[];
  /** host:port of this Prometheus, for its own scrape job. @defaultValue none */
  self?: string;
  /** Replaces the committed scrape_interval (and scrape_timeout). @defaultValue as committed */
  scrapeInterval?: string;
  /** Replaces the committed evaluation_interval. @defaultValue as committed */
  evaluationInterval?: string;
}

function replaceOnce(text: string, pattern: RegExp, replacement: string): string {
  const matches = text.match(new RegExp(pattern.source, 'gm'));
  if (matches?.length !== 1) throw new Error(`expected one match of ${pattern} in prometheus.yml`);
  return text.replace(new RegExp(pattern.source, 'm'), replacement);
}

/**
 * Writes a runnable copy of ops/prometheus into `dir`: the committed prometheus.yml (intervals
 * optionally replaced), the committed rules, and file_sd targets files listing the given targets
 * (the Alertmanagers are both sent alerts and scraped, as committed).
 */
export function writePrometheusConfig(dir: string, options: PrometheusOptions = {}): string {
  let config = readFileSync(join(OPS, 'prometheus', 'prometheus.yml'), 'utf8');
  if (options.scrapeInterval !== undefined) {
    config = replaceOnce(config, /^ {2}scrape_interval: .*$/, `  scrape_interval: ${options.scrapeInterval}`);
    config = replaceOnce(config, /^ {2}scrape_timeout: .*$/, `  scrape_timeout: ${options.scrapeInterval}`);
  }
  if (options.evaluationInterval !== undefined) {
    config = replaceOnce(
      config,
      /^ {2}evaluation_interval: .*$/,
      `  evaluation_interval: ${options.evaluationInterval}`,
    );
  }
  writeFileSync(join(dir, 'prometheus.yml'), config);
  cpSync(join(OPS, 'prometheus', 'rules'), join(dir, 'rules'), { recursive: true });
  mkdirSync(join(dir, 'targets'), { recursive: true });
  const targets = (list: string[] | undefined) => JSON.stringify(list?.length ? [{ targets: list }] : []);
  // JSON is YAML, so these are valid file_sd files.
  writeFileSync(join(dir, 'targets', 'trading-service.yml'), targets(options.tradingService));
  writeFileSync(join(dir, 'targets', 'outbox-relay.yml'), targets(options.outboxRelay));
  writeFileSync(join(dir, 'targets', 'reporting-service.yml'), targets(options.reportingService));
  writeFileSync(join(dir, 'targets', 'alertmanager.yml'), targets(options.alertmanagers));
  writeFileSync(
    join(dir, 'targets', 'prometheus.yml'),
    targets(options.self === undefined ? [] : [options.self]),
  );
  return join(dir, 'prometheus.yml');
}

/** Starts `prometheus` on a free port with the committed config and rules (see writePrometheusConfig). */
export async function startPrometheus(options: PrometheusOptions = {}): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-prometheus-'));
  const port = await freePort();
  const config = writePrometheusConfig(dir, { self: `127.0.0.1:${port}`, ...options });
  return startDaemon(
    'prometheus',
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    `http://127.0.0.1:${port}`,
    dir,
  );
}

/**
 * Starts `alertmanager` on a free port, clustering off. `configure` gets the daemon's own folder (for
 * files the configuration refers to) and returns the configuration text.
 */
export async function startAlertmanager(configure: (dir: string) => string): Promise<Daemon> {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-alertmanager-'));
  try {
    writeFileSync(join(dir, 'alertmanager.yml'), configure(dir));
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const port = await freePort();
  // Debian installs the daemon as prometheus-alertmanager.
  const command = run('sh', [
    '-c',
    'command -v alertmanager || command -v prometheus-alertmanager',
  ]).stdout.trim();
  if (command === '') throw new Error('alertmanager is not installed: run scripts/setup-machine.sh');
  return startDaemon(
    command,
    [
      `--config.file=${join(dir, 'alertmanager.yml')}`,
      `--storage.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--cluster.listen-address=',
    ],
    `http://127.0.0.1:${port}`,
    dir,
  );
}
