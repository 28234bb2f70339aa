/**
 * Profiles for the targets we fall short of: Linux `perf record` (cpu-clock, call graphs) over one
 * window of a run, for our Node.js processes (started with `--perf-basic-prof-only-functions`, so perf
 * can name JIT-compiled JavaScript) and for their PostgreSQL backends. Each sample's call stack is
 * matched against a few named parts; a part's share counts the samples whose stack passes through it,
 * callees included, so nested parts overlap. The raw files are deleted.
 *
 * perf rather than V8's own profiler: V8's charges time spent in native code after a call to the
 * native function called last (in the service, `writev` took half of all samples where perf found a
 * tenth).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileAsync } from './infra.ts';

/** Node flags for a process to be profiled: perf reads JIT function names from /tmp/perf-<pid>.map. */
export const PROFILED_NODE_ARGS = ['--perf-basic-prof-only-functions'];

export interface ProfilePart {
  name: string;
  /** Share of all samples whose call stack passes through this part. */
  share: number;
}

export interface ProcessProfile {
  samples: number;
  parts: ProfilePart[];
}

export interface WindowProfile {
  seconds: number;
  /** Our Node.js processes (relays, or the service with its relay). */
  node: ProcessProfile | null;
  /** Their PostgreSQL backends. */
  postgres: ProcessProfile | null;
}

type Parts = readonly (readonly [string, RegExp])[];

/** Parts of a Node.js process, by the code its stack passes through. */
export const NODE_PARTS: Parts = [
  ['node-postgres (pg, pg-protocol, pg-pool)', /node_modules\/pg(-protocol|-pool)?\//],
  ['node-redis (@redis/client)', /node_modules\/@redis\/client\//],
  [
    'HTTP: Fastify, its JSON parsing and validation, Node http',
    /node_modules\/(fastify|find-my-way|avvio|secure-json-parse|fast-json-stringify|ajv)\/|node:_http_|llhttp/,
  ],
  ['prom-client (metrics)', /node_modules\/prom-client\//],
  ['the outbox library (packages/outbox)', /packages\/outbox\/src\//],
  ['the trading service (services/trading)', /services\/trading\/src\//],
  ['socket writes (kernel included)', /StreamBase::Writev|StreamBase::WriteString/],
  ['garbage collection', /v8::internal::(Heap::|Scavenger|MarkCompact|MinorMarkCompact)/],
  ['system calls (kernel)', /^do_syscall_64$/],
];

/** Parts of PostgreSQL's work, by the exported functions that do them. */
export const POSTGRES_PARTS: Parts = [
  ['executor start-up (plan set-up per statement)', /^standard_ExecutorStart$/],
  ['scans (index and heap reads)', /^ExecScan$/],
  ['index entries added (inserts, non-HOT updates)', /^ExecInsertIndexTuples$/],
  ['  of which bottom-up deletion of old versions', /^_bt_bottomupdel_pass$/],
  ['heap rows written (insert, update, delete)', /^heap_(insert|update|delete)$/],
  ['page pruning while reading', /^heap_page_prune_opt$/],
  ['CHECK and NOT NULL constraints', /^ExecConstraints$/],
  ['foreign-key checks', /^AfterTriggerEndQuery$/],
  ['commit (WAL flush included)', /^CommitTransactionCommand$/],
  ['system calls (network, WAL writes)', /^do_syscall_64$/],
];

/** True when `perf record` can sample processes here (installed, and allowed to). */
export async function perfUsable(): Promise<boolean> {
  try {
    await execFileAsync('perf', ['record', '-e', 'cpu-clock', '-o', '/dev/null', '--', 'true'], {
      timeout: 10_000,
    });
    return true;
  } catch {
    return false;
  }
}

/** `perf script -F ip,sym` output: one block of "address symbol" lines per sample. */
export function summarizePerfScript(output: string, parts: Parts): ProcessProfile {
  const counts = new Array<number>(parts.length).fill(0);
  let samples = 0;
  for (const block of output.split(/\n\s*\n/)) {
    const frames: string[] = [];
    for (const line of block.split('\n')) {
      const trimmed = line.trim();
      const space = trimmed.indexOf(' ');
      if (space > 0) frames.push(trimmed.slice(space + 1));
    }
    if (frames.length === 0) continue;
    samples++;
    parts.forEach(([, pattern], index) => {
      if (frames.some((frame) => pattern.test(frame))) counts[index] = (counts[index] ?? 0) + 1;
    });
  }
  return {
    samples,
    parts: parts.map(([name], index) => ({
      name,
      share: samples === 0 ? 0 : (counts[index] ?? 0) / samples,
    })),
  };
}

/** Samples `pids` for `seconds` and summarises them by `parts`; null when perf is unusable here. */
async function profileProcesses(
  pids: number[],
  seconds: number,
  parts: Parts,
): Promise<ProcessProfile | null> {
  if (pids.length === 0) return null;
  const dir = mkdtempSync(join(tmpdir(), 'bench-perf-'));
  const data = join(dir, 'perf.data');
  try {
    await new Promise<void>((resolve, reject) => {
      const perf = spawn(
        'perf',
        [
          'record',
          '-e',
          'cpu-clock',
          '-F',
          '499',
          '-g',
          '-o',
          data,
          '-p',
          pids.join(','),
          '--',
          'sleep',
          String(seconds),
        ],
        { stdio: 'ignore' },
      );
      perf.on('error', reject);
      perf.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`perf record exited ${code}`))));
    });
    const { stdout } = await execFileAsync('perf', ['script', '-i', data, '-F', 'ip,sym'], {
      maxBuffer: 1024 * 1024 * 1024,
      timeout: 300_000,
    });
    return summarizePerfScript(stdout, parts);
  } catch {
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Profiles one window of a run: our Node.js processes (spawned with PROFILED_NODE_ARGS) and their
 * PostgreSQL backends, over the same `seconds`. A part that cannot be taken comes back null rather than
 * failing the run. Deletes the processes' perf maps afterwards.
 */
export async function profileWindow(
  nodePids: number[],
  postgresPids: number[],
  seconds: number,
): Promise<WindowProfile> {
  if (!(await perfUsable())) return { seconds, node: null, postgres: null };
  try {
    const [node, postgres] = await Promise.all([
      profileProcesses(nodePids, seconds, NODE_PARTS),
      profileProcesses(postgresPids, seconds, POSTGRES_PARTS),
    ]);
    return { seconds, node, postgres };
  } finally {
    for (const pid of nodePids) rmSync(`/tmp/perf-${pid}.map`, { force: true });
  }
}
