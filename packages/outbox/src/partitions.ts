import { PARTITION_COUNT } from './schema.ts';
import { queryRows, type SqlClient } from './sql/client.ts';

/**
 * Which partitions this relay owns. Ownership is a session-level advisory lock per partition, held on
 * the relay's one connection, which also runs its claims and marks:
 * - two relays never own one partition, so an aggregate's events go out from one relay at a time;
 * - when a relay dies, Postgres ends its session and frees its partitions at once (no lease to wait
 *   out), and its unfinished batch was never marked, so the next owner publishes it again (the
 *   publisher's dedupe drops what had reached the stream).
 * Each relay also holds a "presence" lock, so every relay can count the live ones and keep its fair
 * share, ceil(partitions / relays): a relay above it releases the surplus between batches, and a relay
 * below it takes free partitions. One relay at a time also holds the "leader" lock and runs the
 * table-wide chores (gauges, retention).
 */
export class PartitionOwnership {
  private held = new Set<number>();
  private leader = false;

  constructor(
    private readonly db: SqlClient,
    private readonly namespace: LockNamespace,
  ) {}

  get partitions(): number[] {
    return [...this.held].sort((a, b) => a - b);
  }

  get isLeader(): boolean {
    return this.leader;
  }

  get ownsAll(): boolean {
    return this.held.size === PARTITION_COUNT;
  }

  /** Called once per connection: announces this relay. Locks die with the session, so state resets. */
  async join(): Promise<void> {
    this.held.clear();
    this.leader = false;
    await this.db.query({
      text: 'SELECT pg_advisory_lock($1, pg_backend_pid())',
      values: [this.namespace.presence],
    });
  }

  /** Moves towards the fair share. Returns the partitions it took and released. */
  async rebalance(): Promise<{ taken: number[]; released: number[] }> {
    const [state] = await queryRows<{ relays: number; leader: boolean }>(this.db, {
      name: `outbox_relays_${this.namespace.presence}`,
      text: `
SELECT (SELECT count(*)::int FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = $1::int::oid
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS relays,
       pg_try_advisory_lock($2, 0) AS leader`,
      values: [this.namespace.presence, this.namespace.leader],
    });
    const relays = Math.max(1, state?.relays ?? 1);
    // pg_try_advisory_lock stacks: release the extra hold when we were leader already.
    if (state?.leader === true && this.leader) {
      await this.db.query({ text: 'SELECT pg_advisory_unlock($1, 0)', values: [this.namespace.leader] });
    }
    this.leader = state?.leader === true;

    const share = Math.ceil(PARTITION_COUNT / relays);
    const taken: number[] = [];
    const released: number[] = [];
    if (this.held.size > share) {
      const surplus = this.partitions.slice(share);
      await this.db.query({
        text: 'SELECT pg_advisory_unlock($1, p) FROM unnest($2::int[]) AS p',
        values: [this.namespace.partitions, surplus],
      });
      for (const partition of surplus) this.held.delete(partition);
      released.push(...surplus);
    } else if (this.held.size < share) {
      const candidates = shuffle(
        Array.from({ length: PARTITION_COUNT }, (_, partition) => partition).filter((p) => !this.held.has(p)),
      );
      // The executor evaluates the WHERE row by row, so LIMIT stops taking locks at the fair share.
      const rows = await queryRows<{ p: number }>(this.db, {
        text: 'SELECT p FROM unnest($2::int[]) AS p WHERE pg_try_advisory_lock($1, p) LIMIT $3',
        values: [this.namespace.partitions, candidates, share - this.held.size],
      });
      for (const row of rows) {
        this.held.add(row.p);
        taken.push(row.p);
      }
    }
    return { taken, released };
  }

  /**
   * Ends the sessions of relays that have made no progress for `stallMs` while they hold partitions
   * with events waiting that long, or the leader role: a frozen process keeps its session and locks.
   * A live relay queries at least every rebalance and outage backoff step, so its session is never
   * idle that long; one running a slow statement is active, not idle. Safe because the broker fences
   * whatever the ended relay may still send. Returns the relays ended and the partitions they held.
   */
  async endStalled(table: string, stallMs: number): Promise<{ pid: number; partitions: number[] }[]> {
    const held = (classid: string) =>
      `k.pid = r.pid AND k.locktype = 'advisory' AND k.granted AND k.objsubid = 2 AND k.classid = ${classid}::int::oid`;
    return queryRows<{ pid: number; partitions: number[] }>(this.db, {
      name: `outbox_end_stalled_${this.namespace.presence}`,
      text: `
WITH relays AS (
  SELECT r.pid FROM pg_locks r JOIN pg_stat_activity a ON a.pid = r.pid
  WHERE r.locktype = 'advisory' AND r.granted AND r.objsubid = 2 AND r.classid = $1::int::oid
    AND r.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND r.pid <> pg_backend_pid()
    AND a.state = 'idle' AND a.state_change < now() - $4 * interval '1 millisecond'
), stalled AS (
  SELECT r.pid, array(SELECT k.objid::int FROM pg_locks k WHERE ${held('$2')} ORDER BY 1) AS partitions
  FROM relays r
  WHERE EXISTS (SELECT 1 FROM pg_locks k WHERE ${held('$3')})
     OR EXISTS (
       SELECT 1 FROM pg_locks k JOIN ${table} o ON o.partition_no = k.objid::int
       WHERE ${held('$2')} AND o.status = 'PENDING'
         -- next_attempt_at is the write time until a first refusal: "due for that long".
         AND o.next_attempt_at < now() - $4 * interval '1 millisecond')
)
SELECT pid, partitions FROM stalled WHERE pg_terminate_backend(pid, 1000)`,
      values: [this.namespace.presence, this.namespace.partitions, this.namespace.leader, stallMs],
    });
  }

  /** Forgets ownership without talking to the database (its session is gone, and the locks with it). */
  reset(): void {
    this.held.clear();
    this.leader = false;
  }
}

/** The advisory lock keys of one outbox table, so two outboxes in one database never collide. */
export interface LockNamespace {
  partitions: number;
  presence: number;
  leader: number;
}

export function lockNamespace(table: string): LockNamespace {
  return {
    partitions: hash31(`${table}:partition`),
    presence: hash31(`${table}:relay`),
    leader: hash31(`${table}:leader`),
  };
}

/** FNV-1a, folded to a positive int4 so it reads back from pg_locks.classid unchanged. */
function hash31(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) & 0x7fffffff;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}
