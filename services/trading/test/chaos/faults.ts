import { sleep } from '@astra/test-support';
import type { Random } from './random.ts';

/**
 * The faults of a chaos run, injected one at a time at random moments of the load:
 * - relayKill: SIGKILL a relay process (mid-batch, between XADD and mark, wherever it is), restart it;
 * - redisKill: SIGKILL redis-server, keep it down a moment, restart it on the same port;
 * - pgTerminate: pg_terminate_backend on every session of the test databases (service pool, relays,
 *   and the reporting database's sessions when reporting consumers run);
 * - serviceKill: SIGKILL the service process mid-request, restart it on the same port;
 * - relayFreeze: SIGSTOP a relay (a GC pause, a paused VM), then SIGCONT it after longer than the
 *   dedupe journal's confirmation delay; in turns with its database sessions ended meanwhile, or
 *   left open for longer than the stall timeout, so another relay has to end them itself;
 * - reportingKill: SIGKILL a reporting consumer process (mid-apply, holding pending entries), restart it
 *   under a new consumer name; the others claim what it held once idle long enough.
 */
export const FAULT_KINDS = [
  'relayKill',
  'redisKill',
  'pgTerminate',
  'serviceKill',
  'relayFreeze',
  'reportingKill',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export type FaultCounts = Record<FaultKind, number>;

/** What the harness does for each fault; each returns a short description of what it did. */
export type FaultActions = Record<FaultKind, (random: Random) => Promise<string>>;

export interface PlannedFault {
  kind: FaultKind;
  /** Milliseconds after the load started, on the planned pace. */
  atMs: number;
  /**
   * Fires once this share (0..1) of the trades has been started: the same point of the load however
   * slow the machine is, so a busy CI host cannot push every fault past the end of the load.
   */
  atShare: number;
}

export interface FaultRecord extends PlannedFault {
  /** When it actually started (a fault waits for the one before it to finish). */
  startedMs: number;
  tookMs: number;
  detail: string;
  error?: string;
}

/**
 * Random moments between 5% and 85% of the load, in time order; freezes between 5% and 35%, since each
 * lasts many seconds and the faults after it wait for it, yet all must fall inside the load.
 */
export function planFaults(counts: FaultCounts, windowMs: number, random: Random): PlannedFault[] {
  const plan: PlannedFault[] = [];
  for (const kind of FAULT_KINDS) {
    const span = kind === 'relayFreeze' ? 0.3 : 0.8;
    for (let i = 0; i < counts[kind]; i++) {
      const share = 0.05 + span * random.next();
      plan.push({ kind, atMs: Math.round(windowMs * share), atShare: share });
    }
  }
  return plan.sort((a, b) => a.atMs - b.atMs);
}

/**
 * Injects the planned faults in order. A failed injection (a restart that did not come up) is
 * recorded and ends the run's faults, since what follows would test a broken setup. With `progress`
 * (the share of trades started, 0..1), each fault waits for its point of the load rather than for a
 * moment of the clock.
 */
export async function injectFaults(
  plan: readonly PlannedFault[],
  actions: FaultActions,
  random: Random,
  startedAt: number,
  log: (line: string) => void,
  stopped: () => boolean,
  progress?: () => number,
): Promise<FaultRecord[]> {
  const records: FaultRecord[] = [];
  for (const fault of plan) {
    if (progress === undefined) await sleep(startedAt + fault.atMs - Date.now());
    else while (progress() < fault.atShare && !stopped()) await sleep(20);
    if (stopped()) break;
    const started = Date.now();
    try {
      const detail = await actions[fault.kind](random);
      records.push({ ...fault, startedMs: started - startedAt, tookMs: Date.now() - started, detail });
      log(`fault ${fault.kind} at ${((started - startedAt) / 1000).toFixed(1)} s: ${detail}`);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      records.push({
        ...fault,
        startedMs: started - startedAt,
        tookMs: Date.now() - started,
        detail: 'injection failed',
        error: message,
      });
      log(`fault ${fault.kind} FAILED: ${message}`);
      break;
    }
  }
  return records;
}
