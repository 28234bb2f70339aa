/** redis-benchmark, Redis's own load generator: the Redis limit the relays are compared with. */
import { cpuSeconds, execFileAsync } from './infra.ts';

export interface RedisBenchmarkRun {
  requestsPerSecond: number;
  /** CPU the Redis server spent per request during the run. */
  redisMicrosPerRequest: number | null;
  note: string;
}

/**
 * Requests per second from `redis-benchmark --csv` running one command. The test column holds the
 * command line, quotes and commas included, so the numbers are read from the end of the line.
 */
export function parseRedisBenchmarkCsv(output: string): number {
  const match = /"([\d.]+)"(?:,"[\d.]+"){6}$/m.exec(output);
  const rps = Number(match?.[1]);
  if (!Number.isFinite(rps) || rps <= 0) {
    throw new Error(`could not read redis-benchmark's output:\n${output.slice(-1500)}`);
  }
  return rps;
}

/**
 * Runs `command` `requests` times against the Redis server at `port` (process `redisPid`), pipelined,
 * after a warm-up of a tenth as many. Each client sends whole pipelines, so a run may do up to
 * clients x pipeline more: noise at the sizes the bench asks for.
 */
export async function runRedisBenchmark(
  port: number,
  redisPid: number,
  command: string[],
  requests: number,
): Promise<RedisBenchmarkRun> {
  // Of the settings tried here (-c 2 to 50, -P 16 to 256), these came out fastest.
  const clients = 8;
  const pipeline = 128;
  const options = [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-c',
    String(clients),
    '-P',
    String(pipeline),
    '--csv',
  ];
  const run = (count: number) =>
    execFileAsync('redis-benchmark', [...options, '-n', String(count), ...command], {
      timeout: 300_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  await run(Math.ceil(requests / 10));
  const before = cpuSeconds(redisPid);
  const { stdout } = await run(requests);
  const after = cpuSeconds(redisPid);
  return {
    requestsPerSecond: parseRedisBenchmarkCsv(stdout),
    redisMicrosPerRequest: before === null || after === null ? null : ((after - before) * 1e6) / requests,
    note: `redis-benchmark -c ${clients} -P ${pipeline}, ${requests.toLocaleString('en-US')} requests`,
  };
}
