import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { type Backoff, backoffDelay } from '../backoff.ts';
import type { CloudEvent } from '../cloudevents.ts';
import { driverCode, invalidOption } from '../errors.ts';
import { positiveInteger } from '../options.ts';
import {
  type RedisTarget,
  type ResolvedRedisTarget,
  redisConnectionFactory,
  resolveRedisTarget,
} from '../redis/connection.ts';
import { decodeEntry } from '../redis/entry.ts';
import { companionKey, keySlot } from '../redis/slot.ts';
import { queryRows } from '../sql/client.ts';
import {
  deliveriesUsed,
  HeldEntries,
  type HoldReason,
  type Ordering,
  type OrderingPosition,
  type SequenceVerdict,
  sequenceVerdict,
  shouldDeadLetter,
  subjectVersionOrdering,
} from './decisions.ts';
import { DEAD_LETTER_PREFIX, entriesOfRead, fieldsOf, isNoGroup, type RawEntry, RedisLink } from './redis.ts';
import { resolveInboxTable } from './schema.ts';
import {
  advanceSequenceQuery,
  insertInboxQuery,
  lockSequenceQuery,
  pruneInboxQuery,
  type SequenceRow,
  tryPruneLockQuery,
  unlockPruneQuery,
} from './sql.ts';

/** What a handler gets besides the event: the transaction to write in, and where the event came from. */
export interface HandlerContext {
  /** A client inside the transaction that records the event in the inbox: write with it, do not commit. */
  db: pg.PoolClient;
  stream: string;
  entryId: string;
  /** 1 on the first delivery; more after handler failures or a consumer that died holding it. */
  delivery: number;
}

export type Handler<Data> = (event: CloudEvent<Data>, context: HandlerContext) => Promise<void>;

/**
 * Redis holding the streams: `url` (one server), `clusterNodes` or `sentinel`, as for the publisher.
 * In a cluster each stream is read and acknowledged on the node serving its slot.
 * @defaultValue url 'redis://127.0.0.1:6379'
 */
export interface ConsumerOptions<Data = unknown> extends RedisTarget {
  /** The consumer's own PostgreSQL: holds the inbox, and the handler writes through it. */
  pool: pg.Pool;
  /** Consumer group: every group gets every event once; the consumers of a group share them. */
  group: string;
  /** Streams to consume (the relay writes one per event type). */
  streams: string[];
  /**
   * This consumer's name in the group; must be unique among the group's live consumers.
   * @defaultValue '<hostname>-<pid>-<random>'
   */
  consumer?: string;
  /** Applies one event inside the inbox transaction; throw to refuse it (it is retried). */
  handler: Handler<Data>;
  /**
   * Checks and types an event's data before the handler sees it; throw for an event that can never be
   * applied: it goes to the dead-letter stream at once.
   * @defaultValue none: `data` is passed on as decoded from JSON
   */
  parse?: (event: CloudEvent) => CloudEvent<Data>;
  /**
   * Reads an event's ordering key and sequence; `false` applies every event in no particular order.
   * @defaultValue subjectVersionOrdering: key `subject`, sequence `data.version` when it is a number
   */
  ordering?: Ordering | false;
  /**
   * The sequence of an ordering key's first event: an unseen key waits for it.
   * @defaultValue 1
   */
  firstSequence?: number;
  /**
   * The inbox table (see inboxSchema).
   * @defaultValue 'event_inbox'
   */
  inboxTable?: string;
  /**
   * Entries read per stream and call.
   * @defaultValue 100
   */
  batchSize?: number;
  /**
   * Longest a read waits for new entries (XREADGROUP BLOCK); also bounds how long stop() waits.
   * @defaultValue 2000
   */
  blockMs?: number;
  /**
   * An entry left unacknowledged this long by a consumer that stopped answering (crashed, frozen) is
   * claimed by another one (XAUTOCLAIM). Entries this consumer holds back are touched well within it.
   * @defaultValue 30000
   */
  claimIdleMs?: number;
  /**
   * Deliveries (handler failures, and deliveries to consumers that died holding it) after which an
   * event goes to the dead-letter stream. An event waiting for its predecessor is never dead-lettered.
   * @defaultValue 5
   */
  maxDeliveries?: number;
  /**
   * The dead-letter stream of a stream; in a cluster it must share the stream's hash slot.
   * @defaultValue deadLetterStreamName: `{<stream>}:dead-letter:<group>`
   */
  deadLetterStream?: (stream: string, group: string) => string;
  /**
   * Most entries held back (deferred or failed) at once; past it the consumer reads nothing new until
   * some are applied, which bounds its memory.
   * @defaultValue 1000
   */
  maxHeld?: number;
  /**
   * Wait before trying a deferred event again (its predecessor may be applied by another consumer).
   * @defaultValue { initialMs: 20, maxMs: 1000 }
   */
  deferBackoff?: Backoff;
  /**
   * Wait before running a failed handler again.
   * @defaultValue { initialMs: 200, maxMs: 10000 }
   */
  retryBackoff?: Backoff;
  /**
   * Wait while Redis or PostgreSQL is unreachable; outages spend no delivery.
   * @defaultValue { initialMs: 100, maxMs: 5000 }
   */
  outageBackoff?: Backoff;
  /**
   * Longest wait for one Redis call (beyond a read's block time); past it the connection is replaced.
   * @defaultValue 5000
   */
  timeoutMs?: number;
  /**
   * Inbox rows of this group are deleted once older than this, and once their stream holds no entry
   * from before they were processed (see the README's pruning rule); 0 keeps them forever. Must be at
   * least how long an event can come back: the relay's outbox retention (its repair publishes events
   * again from there) and any operator republish window.
   * @defaultValue 604800 (7 days)
   */
  inboxRetentionSeconds?: number;
  /**
   * Rows deleted per statement when pruning; a pass repeats it until a batch comes back short.
   * @defaultValue 1000
   */
  inboxPruneBatchSize?: number;
  /**
   * Time between prune passes (one consumer of the group at a time prunes).
   * @defaultValue 60000
   */
  inboxPruneIntervalMs?: number;
}

/** One stream's backlog in the consumer's group (see OutboxConsumer.groupInfo). */
export interface GroupInfo {
  stream: string;
  lag: number | null;
  pending: number;
  deadLetters: number;
}

/** What the consumer reports; the Prometheus adapter and logs subscribe. */
export interface ConsumerEvents {
  /**
   * An entry was acknowledged: `applied` (the handler ran and committed, `seconds` its time),
   * `duplicate` (already in the inbox) or `stale` (its sequence was passed already).
   */
  processed: [
    {
      stream: string;
      type: string;
      eventId: string;
      entryId: string;
      outcome: 'applied' | 'duplicate' | 'stale';
      seconds: number;
    },
  ];
  /** An entry claimed from a consumer that stopped answering. */
  redelivered: [{ stream: string; entryId: string; delivery: number }];
  /** An event held back because an earlier one of its ordering key has not been applied yet. */
  deferred: [{ stream: string; eventId: string; key: string; sequence: number; lastApplied: string }];
  /** The handler threw; the event is retried until it has used its deliveries. */
  failed: [{ stream: string; eventId: string; error: Error; deliveries: number }];
  /** An event went to the dead-letter stream. */
  deadLettered: [
    {
      stream: string;
      deadLetterStream: string;
      entryId: string;
      eventId: string | undefined;
      error: string;
      deliveries: number;
    },
  ];
  /** Redis or PostgreSQL could not be reached; nothing was spent. */
  fault: [{ kind: 'redis' | 'database'; error: Error }];
  /** A prune pass deleted inbox rows (only the consumer holding the group's prune lock prunes). */
  pruned: [{ rows: number; batches: number }];
  running: [{ running: boolean }];
}

interface ResolvedConsumerOptions<Data> {
  redis: ResolvedRedisTarget;
  pool: pg.Pool;
  group: string;
  streams: string[];
  consumer: string;
  handler: Handler<Data>;
  parse: ((event: CloudEvent) => CloudEvent<Data>) | undefined;
  ordering: Ordering | undefined;
  firstSequence: number;
  inboxTable: string;
  batchSize: number;
  blockMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
  deadLetterStream: (stream: string, group: string) => string;
  maxHeld: number;
  deferBackoff: Backoff;
  retryBackoff: Backoff;
  outageBackoff: Backoff;
  timeoutMs: number;
  inboxRetentionSeconds: number;
  inboxPruneBatchSize: number;
  inboxPruneIntervalMs: number;
}

/**
 * The default dead-letter stream of a stream and group: in the stream's hash slot, so moving an entry
 * there and acknowledging it is one script, in a Redis Cluster too.
 */
export function deadLetterStreamName(stream: string, group: string): string {
  return companionKey(stream, `dead-letter:${group}`);
}

function resolveBackoff(field: string, value: Backoff | undefined, fallback: Backoff): Backoff {
  const initialMs = positiveInteger(`${field}.initialMs`, value?.initialMs, fallback.initialMs);
  const maxMs = positiveInteger(`${field}.maxMs`, value?.maxMs, fallback.maxMs);
  if (maxMs < initialMs) throw invalidOption(`${field}.maxMs`, 'must not be below initialMs');
  return { initialMs, maxMs };
}

const NAME = /^[A-Za-z0-9_.:{}-]{1,200}$/;

export function resolveConsumerOptions<Data>(options: ConsumerOptions<Data>): ResolvedConsumerOptions<Data> {
  if (typeof options !== 'object' || options === null) throw invalidOption('options', 'are required');
  const { pool, handler } = options;
  if (typeof pool !== 'object' || pool === null || typeof pool.connect !== 'function')
    throw invalidOption('pool', 'must be a pg Pool');
  if (typeof handler !== 'function') throw invalidOption('handler', 'must be a function');
  if (typeof options.group !== 'string' || !NAME.test(options.group))
    throw invalidOption('group', 'must be 1-200 letters, digits or _.:{}-');
  const streams = options.streams;
  if (
    !Array.isArray(streams) ||
    streams.length === 0 ||
    streams.some((s) => typeof s !== 'string' || s === '')
  )
    throw invalidOption('streams', 'must be a non-empty list of stream names');
  if (new Set(streams).size !== streams.length) throw invalidOption('streams', 'must not repeat a stream');
  const consumer = options.consumer ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  if (typeof consumer !== 'string' || !NAME.test(consumer))
    throw invalidOption('consumer', 'must be 1-200 letters, digits or _.:{}-');
  const redis = resolveRedisTarget(options);
  if (options.parse !== undefined && typeof options.parse !== 'function')
    throw invalidOption('parse', 'must be a function');
  if (options.ordering !== undefined && options.ordering !== false && typeof options.ordering !== 'function')
    throw invalidOption('ordering', 'must be a function or false');
  if (options.deadLetterStream !== undefined && typeof options.deadLetterStream !== 'function')
    throw invalidOption('deadLetterStream', 'must be a function of stream and group');
  const firstSequence = options.firstSequence ?? 1;
  if (!Number.isSafeInteger(firstSequence) || firstSequence < 0)
    throw invalidOption('firstSequence', `must be a whole number of 0 or more, got ${String(firstSequence)}`);
  const inboxRetentionSeconds = options.inboxRetentionSeconds ?? 7 * 24 * 3600;
  if (!Number.isSafeInteger(inboxRetentionSeconds) || inboxRetentionSeconds < 0)
    throw invalidOption(
      'inboxRetentionSeconds',
      `must be a whole number of 0 (keep forever) or more, got ${String(options.inboxRetentionSeconds)}`,
    );
  const resolved: ResolvedConsumerOptions<Data> = {
    redis,
    pool,
    group: options.group,
    streams: [...streams],
    consumer,
    handler,
    parse: options.parse,
    ordering: options.ordering === false ? undefined : (options.ordering ?? subjectVersionOrdering),
    firstSequence,
    inboxTable: resolveInboxTable({ table: options.inboxTable }),
    batchSize: positiveInteger('batchSize', options.batchSize, 100, 10_000),
    blockMs: positiveInteger('blockMs', options.blockMs, 2000, 60_000),
    claimIdleMs: positiveInteger('claimIdleMs', options.claimIdleMs, 30_000),
    maxDeliveries: positiveInteger('maxDeliveries', options.maxDeliveries, 5, 1000),
    deadLetterStream: options.deadLetterStream ?? deadLetterStreamName,
    maxHeld: positiveInteger('maxHeld', options.maxHeld, 1000),
    deferBackoff: resolveBackoff('deferBackoff', options.deferBackoff, { initialMs: 20, maxMs: 1000 }),
    retryBackoff: resolveBackoff('retryBackoff', options.retryBackoff, { initialMs: 200, maxMs: 10_000 }),
    outageBackoff: resolveBackoff('outageBackoff', options.outageBackoff, { initialMs: 100, maxMs: 5000 }),
    timeoutMs: positiveInteger('timeoutMs', options.timeoutMs, 5000),
    inboxRetentionSeconds,
    inboxPruneBatchSize: positiveInteger('inboxPruneBatchSize', options.inboxPruneBatchSize, 1000, 100_000),
    inboxPruneIntervalMs: positiveInteger('inboxPruneIntervalMs', options.inboxPruneIntervalMs, 60_000),
  };
  for (const stream of resolved.streams) {
    let dead: string;
    try {
      dead = resolved.deadLetterStream(stream, resolved.group);
    } catch (error) {
      throw invalidOption('deadLetterStream', `cannot name one for "${stream}": ${asError(error).message}`);
    }
    if (typeof dead !== 'string' || dead === '' || resolved.streams.includes(dead))
      throw invalidOption(
        'deadLetterStream',
        `must name a stream apart from the consumed ones, got "${dead}"`,
      );
    if (redis.kind === 'cluster' && keySlot(dead) !== keySlot(stream))
      throw invalidOption(
        'deadLetterStream',
        `"${dead}" must share the hash slot of "${stream}" in a cluster (e.g. "{${stream}}:dead")`,
      );
  }
  // Held entries are touched three times per idle period, so a live consumer never loses them.
  if (resolved.claimIdleMs < 300) throw invalidOption('claimIdleMs', 'must be at least 300');
  return resolved;
}

/** One delivered entry on its way through the consumer. */
interface Delivery {
  stream: string;
  entryId: string;
  fields: Record<string, string>;
  /** Redis's delivery count. */
  delivery: number;
  /** Handler failures seen by this consumer. */
  failures: number;
  lastError: string | undefined;
  event: CloudEvent | undefined;
  position: OrderingPosition | undefined;
}

const heldId = (stream: string, entryId: string) => `${stream}\n${entryId}`;

/**
 * The streams one blocking read covers, on a connection of its own: all of them on one server; in a
 * cluster those of one hash slot (a multi-key XREADGROUP must not cross slots, and a blocked
 * connection serves nothing else). `result` is set when the outstanding read ends.
 */
interface Reader {
  streams: string[];
  link: RedisLink;
  pending: Promise<void> | undefined;
  result: { entries: RawEntry[] } | { error: unknown } | undefined;
}

/**
 * PostgreSQL could not be reached or dropped the session: retry, spend nothing. Reads pg's error bare
 * or wrapped in an OutboxError (a handler's writer.write(), say).
 */
export function isTransientDatabaseError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = driverCode(error);
  if (code !== undefined) {
    // 08: connection, 53: resources, 57P: shutdown, 40001/40P01: serialization failure, deadlock.
    if (/^(08|53|57P)/.test(code) || code === '40001' || code === '40P01') return true;
    if (/^E(CONNREFUSED|CONNRESET|PIPE|TIMEDOUT|HOSTUNREACH|NETUNREACH|AI_AGAIN)$/.test(code)) return true;
  }
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect/.test(
    message,
  );
}

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));

/** Atomically adds the dead letter and acknowledges the original: never one without the other. */
const DEAD_LETTER_SCRIPT = `
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
return redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
`;

/**
 * Consumes the relay's streams in a consumer group and applies each event once: the handler's writes
 * and the event's inbox row commit together, the entry is acknowledged after the commit, and an event
 * already in the inbox is acknowledged without running the handler. Per ordering key, events apply in
 * sequence across all consumers of the group. See the package README for the guarantees.
 */
export class OutboxConsumer<Data = unknown> extends EventEmitter<ConsumerEvents> {
  private readonly options: ResolvedConsumerOptions<Data>;
  private readonly readers: Reader[];
  private readonly commands: RedisLink;
  private readonly held: HeldEntries<Delivery>;
  /** Entry ids to acknowledge, per stream, sent after each round (or retried when Redis is down). */
  private readonly acks = new Map<string, Set<string>>();
  private readonly claimCursors = new Map<string, string>();
  private loop: Promise<void> | undefined;
  private pruneLoop: Promise<void> | undefined;
  private interruptPrune: (() => void) | undefined;
  private stopping = false;
  private groupsReady = false;
  private nextClaim = 0;
  private nextTouch = 0;
  private interruptSleep: (() => void) | undefined;

  constructor(options: ConsumerOptions<Data>) {
    super();
    this.options = resolveConsumerOptions(options);
    const { redis, timeoutMs, streams } = this.options;
    const connect = redisConnectionFactory(redis, { connectTimeoutMs: timeoutMs, resp: 2 });
    // Blocking reads get connections of their own, so acknowledgements and claims never queue behind them.
    this.commands = new RedisLink(connect, timeoutMs);
    const bySlot = new Map<number, string[]>();
    for (const stream of streams) {
      const slot = redis.kind === 'cluster' ? keySlot(stream) : 0;
      bySlot.set(slot, [...(bySlot.get(slot) ?? []), stream]);
    }
    this.readers = [...bySlot.values()].map((group) => ({
      streams: group,
      link: new RedisLink(connect, timeoutMs),
      pending: undefined,
      result: undefined,
    }));
    this.held = new HeldEntries<Delivery>(this.options);
  }

  get name(): string {
    return this.options.consumer;
  }

  get group(): string {
    return this.options.group;
  }

  get streams(): readonly string[] {
    return this.options.streams;
  }

  get running(): boolean {
    return this.loop !== undefined && !this.stopping;
  }

  /** Entries this consumer holds back (deferred or failed), unacknowledged. */
  get heldCount(): number {
    return this.held.size;
  }

  /** Creates the groups (from the start of each stream) and starts consuming in the background. */
  start(): void {
    if (this.loop !== undefined) return;
    this.stopping = false;
    this.loop = this.run();
    if (this.options.inboxRetentionSeconds > 0) this.pruneLoop = this.runPrunes();
    this.emit('running', { running: true });
  }

  /**
   * Finishes the entry being applied and acknowledges what was applied, then closes the connections.
   * Held entries stay pending in the group: another consumer claims them after `claimIdleMs`.
   */
  async stop(): Promise<void> {
    if (this.loop === undefined) {
      // Never started (e.g. used only for pruneInbox): its connections still need closing.
      this.closeLinks();
      return;
    }
    this.stopping = true;
    this.interruptSleep?.();
    this.interruptPrune?.();
    await Promise.all([this.loop, this.pruneLoop]);
    await this.flushAcks().catch(() => {});
    this.closeLinks();
    this.pruneLoop = undefined;
    this.loop = undefined;
    this.emit('running', { running: false });
  }

  private closeLinks(): void {
    for (const reader of this.readers) reader.link.close();
    this.commands.close();
  }

  /**
   * Per stream, the group's backlog: entries not yet delivered (`lag`, null when Redis cannot tell),
   * pending, and dead letters waiting for a replay (the length of its dead-letter stream).
   */
  async groupInfo(): Promise<GroupInfo[]> {
    const info: GroupInfo[] = [];
    for (const stream of this.options.streams) {
      const groups = (await this.commands.send(['XINFO', 'GROUPS', stream], { key: stream })) as unknown[];
      for (const group of groups) {
        const fields = fieldsOf(group);
        if (fields.name !== this.options.group) continue;
        const lag = fields.lag === undefined || fields.lag === '' ? null : Number(fields.lag);
        const dead = this.options.deadLetterStream(stream, this.options.group);
        const deadLetters = Number(await this.commands.send(['XLEN', dead], { key: dead }));
        info.push({
          stream,
          lag: Number.isFinite(lag) ? lag : null,
          pending: Number(fields.pending ?? 0),
          deadLetters,
        });
      }
    }
    return info;
  }

  /** Waits `ms` or until stop(); `slot` says which of the two loops waits, so each is woken alone. */
  private async sleep(
    ms: number,
    slot: 'interruptSleep' | 'interruptPrune' = 'interruptSleep',
  ): Promise<void> {
    if (this.stopping || ms <= 0) return;
    let done = () => {};
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => done(), ms);
      done = () => {
        clearTimeout(timer);
        resolve();
      };
      this[slot] = done;
    });
    if (this[slot] === done) this[slot] = undefined;
  }

  /** Prunes the inbox every `inboxPruneIntervalMs` until stop(); a failed pass waits for the next. */
  private async runPrunes(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.pruneInbox();
      } catch (error) {
        // PostgreSQL's errors carry a severity; the rest came from Redis.
        const database = isTransientDatabaseError(error) || (error instanceof Error && 'severity' in error);
        this.emit('fault', { kind: database ? 'database' : 'redis', error: asError(error) });
      }
      await this.sleep(this.options.inboxPruneIntervalMs, 'interruptPrune');
    }
  }

  /**
   * One prune pass, if no other consumer of the group is pruning (a session advisory lock per inbox
   * table and group): deletes, in batches of `inboxPruneBatchSize`, this group's rows processed more
   * than `inboxRetentionSeconds` ago whose entry is no longer in its stream, so no recreated group or
   * claim can deliver it again. Returns the rows deleted, or undefined when another consumer held the
   * lock (or retention is off).
   */
  async pruneInbox(): Promise<number | undefined> {
    const { pool, inboxTable, group, streams, inboxRetentionSeconds, inboxPruneBatchSize } = this.options;
    if (inboxRetentionSeconds === 0) return undefined;
    // The oldest entry of each stream first: rows processed after it may belong to entries still there.
    const oldest = new Map<string, string | null>();
    for (const stream of streams) {
      const reply = await this.commands.send(['XRANGE', stream, '-', '+', 'COUNT', '1'], { key: stream });
      oldest.set(stream, entriesOfRead([[stream, reply]])[0]?.entryId ?? null);
    }
    const client = await pool.connect();
    const ignore = () => {};
    client.on('error', ignore);
    let broken: Error | undefined;
    try {
      const [lock] = await queryRows<{ locked: boolean }>(client, tryPruneLockQuery([inboxTable, group]));
      if (lock?.locked !== true) return undefined;
      let pruned = 0;
      let batches = 0;
      try {
        for (const [stream, entryId] of oldest) {
          const [ms = null, sequence = null] = entryId === null ? [] : entryId.split('-');
          for (;;) {
            const result = await client.query(
              pruneInboxQuery(inboxTable, [
                group,
                stream,
                String(inboxRetentionSeconds),
                ms,
                sequence,
                String(inboxPruneBatchSize),
              ]),
            );
            pruned += result.rowCount ?? 0;
            batches++;
            if ((result.rowCount ?? 0) < inboxPruneBatchSize || this.stopping) break;
          }
        }
      } finally {
        await client.query(unlockPruneQuery([inboxTable, group]));
      }
      if (pruned > 0) this.emit('pruned', { rows: pruned, batches });
      return pruned;
    } catch (error) {
      // A session that may still hold the lock is closed, not reused: closing it releases the lock.
      broken = asError(error);
      throw error;
    } finally {
      client.off('error', ignore);
      client.release(broken);
    }
  }

  private async run(): Promise<void> {
    let outages = 0;
    while (!this.stopping) {
      try {
        if (!this.groupsReady) await this.createGroups();
        await this.flushAcks();
        // Entries a read delivered while the last batch was applied go first: left waiting past
        // claimIdleMs, the claim below would take them back as a second delivery.
        await this.applyFinishedReads();
        const now = Date.now();
        if (now >= this.nextTouch) await this.touchHeld();
        if (now >= this.nextClaim) await this.claimIdle();
        await this.runDue();
        await this.flushAcks();
        if (this.stopping) break;
        await this.readNew();
        await this.flushAcks();
        outages = 0;
      } catch (error) {
        if (isNoGroup(error)) {
          // The stream or group is gone (Redis lost data, or someone deleted it): create it again, at
          // once the first time, with backoff if it keeps vanishing.
          this.groupsReady = false;
          if (outages++ > 0) await this.sleep(backoffDelay(this.options.outageBackoff, outages));
          continue;
        }
        this.emit('fault', { kind: 'redis', error: asError(error) });
        await this.sleep(backoffDelay(this.options.outageBackoff, outages++));
      }
    }
    await this.finishReads();
  }

  /** On stop: waits for the reads still out (at most blockMs) and applies what they delivered. */
  private async finishReads(): Promise<void> {
    await Promise.all(this.readers.map((reader) => reader.pending));
    await this.applyFinishedReads().catch(() => {});
  }

  /**
   * Creates the group on each stream from its first entry, never from `$`: after Redis lost data the
   * relay publishes the lost events again, and a group starting at `$` would skip them. Entries
   * applied before are found in the inbox.
   */
  private async createGroups(): Promise<void> {
    for (const stream of this.options.streams) {
      try {
        await this.commands.send(['XGROUP', 'CREATE', stream, this.options.group, '0', 'MKSTREAM'], {
          key: stream,
        });
      } catch (error) {
        if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) throw error;
      }
    }
    this.groupsReady = true;
  }

  /**
   * Starts a blocking read on each reader that has none out (unless full of held entries), then waits
   * until one ends or a held entry is due, and applies what the ended reads delivered. A read left out
   * carries over to the next round, so one quiet slot never delays another.
   */
  private async readNew(): Promise<void> {
    const { blockMs, maxHeld } = this.options;
    if (this.held.size < maxHeld) {
      for (const reader of this.readers) if (reader.pending === undefined) this.startRead(reader);
    }
    const out = this.readers.flatMap((reader) => (reader.pending === undefined ? [] : [reader.pending]));
    const nextDue = this.held.nextDue();
    const wait = nextDue === undefined ? blockMs : Math.max(0, nextDue - Date.now());
    if (out.length === 0) await this.sleep(Math.max(1, wait));
    else if (this.readers.every((reader) => reader.result === undefined)) {
      await Promise.race([...out, this.sleep(wait)]);
      // A read that ended first leaves the sleep's timer: end it.
      this.interruptSleep?.();
    }
    await this.applyFinishedReads();
  }

  /** Applies what the reads that ended delivered; then throws the first read error, if any. */
  private async applyFinishedReads(): Promise<void> {
    const { entries, error } = this.takeReadEntries();
    for (const entry of entries) await this.process(this.newDelivery(entry, 1));
    if (error !== undefined) throw error;
  }

  private startRead(reader: Reader): void {
    const { batchSize, blockMs, group, consumer } = this.options;
    const { streams } = reader;
    reader.pending = reader.link
      .send(
        [
          'XREADGROUP',
          'GROUP',
          group,
          consumer,
          'COUNT',
          String(batchSize),
          'BLOCK',
          String(blockMs),
          'STREAMS',
          ...streams,
          ...streams.map(() => '>'),
        ],
        { key: streams[0], extraMs: blockMs },
      )
      .then(
        (reply) => {
          reader.result = { entries: entriesOfRead(reply) };
        },
        (error: unknown) => {
          reader.result = { error };
        },
      );
  }

  /** The entries of the reads that ended (they are then out no more), and the first error among them. */
  private takeReadEntries(): { entries: RawEntry[]; error: unknown } {
    const entries: RawEntry[] = [];
    let error: unknown;
    for (const reader of this.readers) {
      const result = reader.result;
      if (result === undefined) continue;
      reader.result = undefined;
      reader.pending = undefined;
      if ('error' in result) error ??= result.error;
      else entries.push(...result.entries);
    }
    return { entries, error };
  }

  private newDelivery(entry: RawEntry, delivery: number): Delivery {
    return { ...entry, delivery, failures: 0, lastError: undefined, event: undefined, position: undefined };
  }

  /** Tries the held entries that are due, in the order they were first held. */
  private async runDue(): Promise<void> {
    for (const delivery of this.held.takeDue(Date.now())) {
      if (this.stopping) {
        // Left pending in the group; nothing is lost by not trying it now.
        this.held.hold(
          heldId(delivery.stream, delivery.entryId),
          delivery.position?.key,
          'unavailable',
          delivery,
          Date.now(),
        );
        continue;
      }
      await this.process(delivery);
    }
  }

  /**
   * Claims entries that other consumers left unacknowledged for `claimIdleMs` (they crashed or froze),
   * one page per stream and round.
   */
  private async claimIdle(): Promise<void> {
    const { streams, group, consumer, claimIdleMs, batchSize } = this.options;
    this.nextClaim = Date.now() + Math.max(100, Math.floor(claimIdleMs / 2));
    for (const stream of streams) {
      const cursor = this.claimCursors.get(stream) ?? '0-0';
      const reply = (await this.commands.send(
        ['XAUTOCLAIM', stream, group, consumer, String(claimIdleMs), cursor, 'COUNT', String(batchSize)],
        { key: stream },
      )) as [string, unknown[], unknown];
      this.claimCursors.set(stream, String(reply[0]));
      const claimed = entriesOfRead([[stream, reply[1]]]).filter(
        (entry) => !this.held.has(heldId(stream, entry.entryId)),
      );
      if (claimed.length === 0) continue;
      const counts = await this.deliveryCounts(stream, claimed);
      for (const entry of claimed) {
        const delivery = counts.get(entry.entryId) ?? 2;
        this.emit('redelivered', { stream, entryId: entry.entryId, delivery });
        await this.process(this.newDelivery(entry, delivery));
      }
    }
  }

  /** Redis's delivery count of entries this consumer holds (XAUTOCLAIM does not return it). */
  private async deliveryCounts(stream: string, entries: RawEntry[]): Promise<Map<string, number>> {
    const first = entries[0]?.entryId ?? '-';
    const last = entries[entries.length - 1]?.entryId ?? '+';
    const rows = (await this.commands.send(
      [
        'XPENDING',
        stream,
        this.options.group,
        first,
        last,
        String(entries.length + this.held.size),
        this.options.consumer,
      ],
      { key: stream },
    )) as unknown[][];
    return new Map(rows.map((row) => [String(row[0]), Number(row[3])]));
  }

  /** Resets the idle time of held entries (without counting a delivery), so no one claims them. */
  private async touchHeld(): Promise<void> {
    this.nextTouch = Date.now() + Math.max(100, Math.floor(this.options.claimIdleMs / 3));
    const byStream = new Map<string, string[]>();
    for (const id of this.held.ids()) {
      const [stream = '', entryId = ''] = id.split('\n');
      const ids = byStream.get(stream) ?? [];
      ids.push(entryId);
      byStream.set(stream, ids);
    }
    for (const [stream, ids] of byStream) {
      for (let start = 0; start < ids.length; start += 500) {
        await this.commands.send(
          [
            'XCLAIM',
            stream,
            this.options.group,
            this.options.consumer,
            '0',
            ...ids.slice(start, start + 500),
            'JUSTID',
          ],
          { key: stream },
        );
      }
    }
  }

  private ack(delivery: Delivery): void {
    const ids = this.acks.get(delivery.stream) ?? new Set<string>();
    ids.add(delivery.entryId);
    this.acks.set(delivery.stream, ids);
  }

  /** Sends the acknowledgements gathered; on failure they stay and go with the next round. */
  private async flushAcks(): Promise<void> {
    for (const [stream, ids] of this.acks) {
      if (ids.size === 0) continue;
      const batch = [...ids];
      await this.commands.send(['XACK', stream, this.options.group, ...batch], { key: stream });
      for (const id of batch) ids.delete(id);
    }
  }

  private hold(delivery: Delivery, reason: HoldReason): void {
    this.held.hold(
      heldId(delivery.stream, delivery.entryId),
      delivery.position?.key,
      reason,
      delivery,
      Date.now(),
    );
  }

  /** Decodes the entry (once) and reads its ordering position; a message when it can never be applied. */
  private prepare(delivery: Delivery): string | undefined {
    if (delivery.event !== undefined) return undefined;
    try {
      let event = decodeEntry(delivery.fields);
      if (this.options.parse !== undefined) event = this.options.parse(event);
      const position = this.options.ordering?.(event);
      if (position !== undefined) {
        if (
          typeof position.key !== 'string' ||
          position.key === '' ||
          !Number.isSafeInteger(position.sequence)
        )
          throw new Error(
            `ordering gave no usable key and whole-number sequence: ${JSON.stringify(position)}`,
          );
      }
      delivery.event = event;
      delivery.position = position;
      return undefined;
    } catch (error) {
      return asError(error).message;
    }
  }

  /** Applies one delivered entry, or holds it back, or dead-letters it. Never throws for PostgreSQL trouble. */
  private async process(delivery: Delivery): Promise<void> {
    const id = heldId(delivery.stream, delivery.entryId);
    const refused = this.prepare(delivery);
    if (refused !== undefined) {
      await this.deadLetter(delivery, `cannot be decoded: ${refused}`);
      return;
    }
    const event = delivery.event as CloudEvent;
    const position = delivery.position;
    const { pool, group, inboxTable, firstSequence, maxDeliveries } = this.options;

    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      this.emit('fault', { kind: 'database', error: asError(error) });
      this.hold(delivery, 'unavailable');
      return;
    }
    // A session the server ends while we hold it emits 'error' on the client: without a listener that
    // would crash the process. The failing query reports it instead.
    const ignore = () => {};
    client.on('error', ignore);
    let outcome: 'applied' | 'duplicate' | 'stale' | 'deferred' | 'dead-letter';
    let seconds = 0;
    let lastApplied = '';
    let handlerRan = false;
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const inserted = await queryRows(
        client,
        insertInboxQuery(inboxTable, [group, event.id, event.type, delivery.stream, delivery.entryId]),
      );
      let verdict: SequenceVerdict = 'apply';
      if (inserted.length > 0 && position !== undefined) {
        const [row] = await queryRows<SequenceRow>(
          client,
          lockSequenceQuery(inboxTable, [group, position.key, String(firstSequence - 1)]),
        );
        lastApplied = row?.last_sequence ?? '';
        verdict = sequenceVerdict(BigInt(lastApplied), BigInt(position.sequence));
      }
      if (inserted.length === 0) outcome = 'duplicate';
      else if (verdict === 'stale') outcome = 'stale';
      else if (verdict === 'defer') outcome = 'deferred';
      else if (shouldDeadLetter(delivery.delivery, delivery.failures, maxDeliveries)) outcome = 'dead-letter';
      else outcome = 'applied';

      if (outcome !== 'applied') await client.query('ROLLBACK');
      else {
        handlerRan = true;
        const started = performance.now();
        await this.options.handler(event as CloudEvent<Data>, {
          db: client,
          stream: delivery.stream,
          entryId: delivery.entryId,
          delivery: delivery.delivery + delivery.failures,
        });
        seconds = (performance.now() - started) / 1000;
        handlerRan = false;
        if (position !== undefined)
          await client.query(
            advanceSequenceQuery(inboxTable, [group, position.key, String(position.sequence)]),
          );
        await client.query('COMMIT');
      }
    } catch (error) {
      const failure = asError(error);
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = failure;
      }
      if (handlerRan && !isTransientDatabaseError(error)) {
        delivery.failures++;
        delivery.lastError = failure.message;
        this.emit('failed', {
          stream: delivery.stream,
          eventId: event.id,
          error: failure,
          deliveries: deliveriesUsed(delivery.delivery, delivery.failures),
        });
        this.hold(delivery, 'failed');
      } else {
        // Our own statements, or the connection, failed: an outage, not the event's fault.
        this.emit('fault', { kind: 'database', error: failure });
        this.hold(delivery, 'unavailable');
      }
      return;
    } finally {
      client.off('error', ignore);
      client.release(broken);
    }

    if (outcome === 'deferred' && position !== undefined) {
      this.emit('deferred', {
        stream: delivery.stream,
        eventId: event.id,
        key: position.key,
        sequence: position.sequence,
        lastApplied,
      });
      this.hold(delivery, 'deferred');
      return;
    }
    if (outcome === 'dead-letter') {
      const used = deliveriesUsed(delivery.delivery, delivery.failures);
      await this.deadLetter(
        delivery,
        delivery.lastError ??
          `delivered ${used + 1} times; the consumers holding it stopped before finishing`,
      );
      return;
    }
    this.held.release(id);
    this.ack(delivery);
    this.emit('processed', {
      stream: delivery.stream,
      type: event.type,
      eventId: event.id,
      entryId: delivery.entryId,
      outcome: outcome as 'applied' | 'duplicate' | 'stale',
      seconds,
    });
    if (outcome === 'applied' && position !== undefined) this.held.wake(position.key, Date.now());
  }

  /**
   * Moves an entry to the dead-letter stream with the reason, and acknowledges it, in one script. Its
   * ordering key's later events keep waiting: its sequence was not applied.
   */
  private async deadLetter(delivery: Delivery, error: string): Promise<void> {
    const dead = this.options.deadLetterStream(delivery.stream, this.options.group);
    const deliveries = deliveriesUsed(delivery.delivery, delivery.failures);
    const fields: string[] = [];
    for (const [name, value] of Object.entries(delivery.fields)) {
      if (!name.startsWith(DEAD_LETTER_PREFIX)) fields.push(name, value);
    }
    fields.push(
      `${DEAD_LETTER_PREFIX}stream`,
      delivery.stream,
      `${DEAD_LETTER_PREFIX}entry`,
      delivery.entryId,
      `${DEAD_LETTER_PREFIX}group`,
      this.options.group,
      `${DEAD_LETTER_PREFIX}error`,
      error,
      `${DEAD_LETTER_PREFIX}deliveries`,
      String(deliveries),
      `${DEAD_LETTER_PREFIX}at`,
      new Date().toISOString(),
    );
    try {
      await this.commands.send(
        [
          'EVAL',
          DEAD_LETTER_SCRIPT,
          '2',
          dead,
          delivery.stream,
          this.options.group,
          delivery.entryId,
          ...fields,
        ],
        { key: dead },
      );
    } catch (failure) {
      this.emit('fault', { kind: 'redis', error: asError(failure) });
      this.hold(delivery, 'unavailable');
      return;
    }
    this.held.release(heldId(delivery.stream, delivery.entryId));
    this.emit('deadLettered', {
      stream: delivery.stream,
      deadLetterStream: dead,
      entryId: delivery.entryId,
      eventId: delivery.fields.id,
      error,
      deliveries,
    });
  }
}
