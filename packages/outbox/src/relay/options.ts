import type { Backoff } from '../backoff.ts';
import { invalidOption } from '../errors.ts';
import {
  booleanOption,
  nonNegativeInteger,
  type OutboxOptions,
  positiveInteger,
  type ResolvedOutboxOptions,
  resolveOutboxOptions,
} from '../options.ts';
import type { Publisher } from '../publisher.ts';

export interface RelayOptions extends OutboxOptions {
  /** PostgreSQL connection string for the relay's own session (it holds its partition locks). */
  connectionString: string;
  /** Where events go. */
  publisher: Publisher;
  /**
   * Events claimed and published per round trip.
   * @defaultValue 500
   */
  batchSize?: number;
  /**
   * Longest wait between two looks at the table when no NOTIFY arrives (lost notifications, or a
   * pooler without LISTEN). After a full batch the relay looks again at once.
   * @defaultValue 1000
   */
  pollIntervalMs?: number;
  /**
   * LISTEN for the writer's NOTIFY to publish right after each commit.
   * @defaultValue true
   */
  listen?: boolean;
  /**
   * Attempts an event the broker refuses gets before it becomes FAILED. Broker outages spend none.
   * @defaultValue 10
   */
  maxAttempts?: number;
  /**
   * Delay before retrying an event the broker refused, growing with its attempts.
   * @defaultValue { initialMs: 1000, maxMs: 300000 }
   */
  retryBackoff?: Backoff;
  /**
   * Delay between tries while the broker or the database is unreachable.
   * @defaultValue { initialMs: 100, maxMs: 5000 }
   */
  outageBackoff?: Backoff;
  /**
   * How often the relay recounts the live relays and moves towards its fair share of partitions.
   * @defaultValue 2000
   */
  rebalanceIntervalMs?: number;
  /**
   * Delete each event in the statement that would mark it PUBLISHED, instead of keeping it for
   * `retentionSeconds`. The stream entry is then the event's only record (no `stream_entry_id`, no
   * PUBLISHED count), and the database does about half the work per event: a delete writes no
   * new row version and no index entries. Ordering and dedupe are unchanged; retention still removes
   * rows published before the switch.
   * @defaultValue false
   */
  deletePublished?: boolean;
  /**
   * PUBLISHED events older than this are deleted (by the leader relay, in small batches). 0 keeps them.
   * @defaultValue 604800 (7 days)
   */
  retentionSeconds?: number;
  /**
   * Rows deleted per retention statement; one statement runs between two publish rounds.
   * @defaultValue 2000
   */
  retentionBatchSize?: number;
  /**
   * Pause between retention sweeps once nothing old is left.
   * @defaultValue 60000
   */
  retentionIntervalMs?: number;
  /**
   * How long after its PUBLISHED mark committed an event id stays at least in the publisher's dedupe
   * journal before the relay tells the publisher to forget it (confirmations go out once a second, so
   * up to a second longer). The delay covers a publish still in flight from a relay that lost its
   * session (its call times out long before); ids never confirmed expire with the journal's window.
   * @defaultValue 5000
   */
  confirmDelayMs?: number;
  /**
   * Server-side limit for any one relay statement.
   * @defaultValue 30000
   */
  statementTimeoutMs?: number;
  /**
   * A relay whose database session has been idle this long while its partitions have events due for
   * as long (a frozen process: GC pause, SIGSTOP, paused VM) has its session ended by another relay,
   * which takes the partitions over; the broker's fence refuses whatever the frozen one sends when it
   * wakes. Must exceed twice the longest pause of a live relay (rebalance interval, outage backoff).
   * Ending another session needs the same database role or `pg_signal_backend`. 0 turns it off.
   * @defaultValue 15000, or twice the longest pause when that is more
   */
  stallTimeoutMs?: number;
}

/** Every option with its default filled in. */
export type ResolvedRelayOptions = ResolvedOutboxOptions & Required<Omit<RelayOptions, keyof OutboxOptions>>;

function resolveBackoff(field: string, value: Backoff | undefined, fallback: Backoff): Backoff {
  const initialMs = positiveInteger(`${field}.initialMs`, value?.initialMs, fallback.initialMs);
  const maxMs = positiveInteger(`${field}.maxMs`, value?.maxMs, fallback.maxMs);
  if (maxMs < initialMs) throw invalidOption(`${field}.maxMs`, 'must not be below initialMs');
  return { initialMs, maxMs };
}

export function resolveRelayOptions(options: RelayOptions): ResolvedRelayOptions {
  if (typeof options.connectionString !== 'string' || options.connectionString === '') {
    throw invalidOption('connectionString', 'is required');
  }
  if (options.publisher === undefined || typeof options.publisher.publish !== 'function') {
    throw invalidOption('publisher', 'is required');
  }
  const resolved: ResolvedRelayOptions = {
    ...resolveOutboxOptions(options),
    connectionString: options.connectionString,
    publisher: options.publisher,
    batchSize: positiveInteger('batchSize', options.batchSize, 500, 10_000),
    pollIntervalMs: positiveInteger('pollIntervalMs', options.pollIntervalMs, 1000),
    listen: booleanOption('listen', options.listen, true),
    maxAttempts: positiveInteger('maxAttempts', options.maxAttempts, 10),
    retryBackoff: resolveBackoff('retryBackoff', options.retryBackoff, { initialMs: 1000, maxMs: 300_000 }),
    outageBackoff: resolveBackoff('outageBackoff', options.outageBackoff, { initialMs: 100, maxMs: 5000 }),
    rebalanceIntervalMs: positiveInteger('rebalanceIntervalMs', options.rebalanceIntervalMs, 2000),
    deletePublished: booleanOption('deletePublished', options.deletePublished, false),
    retentionSeconds: nonNegativeInteger('retentionSeconds', options.retentionSeconds, 7 * 24 * 3600),
    retentionBatchSize: positiveInteger('retentionBatchSize', options.retentionBatchSize, 2000),
    retentionIntervalMs: positiveInteger('retentionIntervalMs', options.retentionIntervalMs, 60_000),
    confirmDelayMs: nonNegativeInteger('confirmDelayMs', options.confirmDelayMs, 5000),
    statementTimeoutMs: positiveInteger('statementTimeoutMs', options.statementTimeoutMs, 30_000),
    stallTimeoutMs: 0,
  };
  // A live relay can leave its session idle for a rebalance interval or an outage backoff step.
  const longestPause = Math.max(resolved.rebalanceIntervalMs, resolved.outageBackoff.maxMs);
  resolved.stallTimeoutMs = nonNegativeInteger(
    'stallTimeoutMs',
    options.stallTimeoutMs,
    Math.max(15_000, 2 * longestPause),
  );
  if (resolved.stallTimeoutMs > 0 && resolved.stallTimeoutMs < 2 * longestPause) {
    throw invalidOption(
      'stallTimeoutMs',
      `must be 0 or at least twice the longer of rebalanceIntervalMs and outageBackoff.maxMs (${2 * longestPause})`,
    );
  }
  return resolved;
}
