import { createHash } from 'node:crypto';
import { ErrorReply } from '@redis/client';
import { brokerError, brokerTimeout, invalidOption, OutboxError } from '../errors.ts';
import { nonNegativeInteger, positiveInteger } from '../options.ts';
import type {
  PublishableEvent,
  Publisher,
  PublishFence,
  PublishMode,
  PublishOutcome,
  StreamCheck,
  StreamVerdict,
} from '../publisher.ts';
import {
  type RedisConnection,
  type RedisTarget,
  redisConnectionFactory,
  resolveRedisTarget,
} from './connection.ts';
import { encodeEntryArgs, FIXED_FIELD_BYTES } from './entry.ts';
import { CHECK_ARGS, CHUNK, CONFIRM_SCRIPT, PUBLISH_SCRIPT } from './scripts.ts';
import { companionKey, journalKey, keySlot } from './slot.ts';

export interface RedisStreamsPublisherOptions extends RedisTarget {
  /**
   * Replicas that must confirm each publish (`WAIT`) before it counts as acknowledged; too few within
   * `waitTimeoutMs` reports the events unavailable (retried, not marked, no attempt spent). 0: no wait.
   * @defaultValue 0
   */
  waitReplicas?: number;
  /**
   * Longest `WAIT` for the replicas; must be below `timeoutMs`.
   * @defaultValue half of timeoutMs
   */
  waitTimeoutMs?: number;
  /**
   * The stream an event goes to. Must not change for an event type while events of it are in flight
   * (dedupe is per stream).
   * @defaultValue the event type, e.g. 'astra.trading.trade_executed.v1'
   */
  stream?: (eventType: string) => string;
  /**
   * Trim each stream to about this many entries on every publish (`XADD MAXLEN ~`).
   * @defaultValue undefined: no trimming
   */
  maxLen?: number;
  /**
   * How long a published event id is remembered to drop a second publish of it (between one and two
   * windows). Must outlast any outage in which a relay can publish but not mark.
   * @defaultValue 604800 (7 days)
   */
  dedupeWindowSeconds?: number;
  /**
   * Longest wait for one Redis call; past it the broker counts as unavailable and the connection is
   * replaced, dropping whatever was queued on it.
   * @defaultValue 2000
   */
  timeoutMs?: number;
  /**
   * Largest event (serialised fields) to send; larger ones are rejected without asking Redis.
   * @defaultValue 1048576
   */
  maxEventBytes?: number;
  /**
   * Cap on commands queued on the connection: memory stays bounded whatever Redis does.
   * @defaultValue 100
   */
  commandsQueueMaxLength?: number;
}

/** Redis refused the call for reasons of its own state, not of the event: retry later. */
const TRANSIENT_REPLY = /^(OOM|LOADING|READONLY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|BUSY|NOREPLICAS|MOVED|ASK)\b/;

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(brokerTimeout(ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');

/** One script call: the streams of one cluster slot (all of them on a single Redis). */
interface Call {
  /** Stream, journal and relay state of each stream, as the script's KEYS triples. */
  keys: string[];
  keyIndex: Map<string, number>;
  checkArgs: string[];
  /** (key index, partition) pairs already checked in this call. */
  checked: Set<string>;
  eventArgs: string[];
  /** Positions in the input (events or checks) answered by this call, in order. */
  positions: number[];
}

function newCall(): Call {
  return { keys: [], keyIndex: new Map(), checkArgs: [], checked: new Set(), eventArgs: [], positions: [] };
}

/** Parses a refusal reply; undefined for an entry id. */
function refusal(reply: string, stream: string, partition: number): StreamVerdict | undefined {
  if (reply === '!fenced') return { status: 'fenced' };
  if (reply === '!unmarked') return { status: 'unmarked' };
  if (reply.startsWith('!lost:')) {
    const [marker = '', count = '0'] = reply.slice(6).split(':');
    return { status: 'lost', stream, partition, marker: marker === '' ? null : marker, count: Number(count) };
  }
  return undefined;
}

/**
 * Publishes to Redis Streams with one Lua script call per batch (per cluster slot), which checks the
 * relay's fence and the streams' markers, adds the events in order, skips the rest of an aggregate
 * after a refusal, and drops ids it has published before. See scripts.ts.
 */
export class RedisStreamsPublisher implements Publisher {
  private readonly streamOf: (eventType: string) => string;
  private readonly maxLen: number;
  private readonly windowSeconds: number;
  private readonly timeoutMs: number;
  private readonly maxEventBytes: number;
  private readonly waitReplicas: number;
  private readonly waitTimeoutMs: number;
  private readonly clustered: boolean;
  private readonly newConnection: () => RedisConnection;
  private connection: RedisConnection;
  private connecting: Promise<void> | undefined;
  private readonly publishSha = sha1(PUBLISH_SCRIPT);
  private readonly confirmSha = sha1(CONFIRM_SCRIPT);

  constructor(options: RedisStreamsPublisherOptions = {}) {
    const target = resolveRedisTarget(options);
    if (options.stream !== undefined && typeof options.stream !== 'function') {
      throw invalidOption('stream', 'must be a function from event type to stream name');
    }
    this.streamOf = options.stream ?? ((type) => type);
    this.maxLen = options.maxLen === undefined ? 0 : positiveInteger('maxLen', options.maxLen, 1);
    this.windowSeconds = positiveInteger('dedupeWindowSeconds', options.dedupeWindowSeconds, 7 * 24 * 3600);
    this.timeoutMs = positiveInteger('timeoutMs', options.timeoutMs, 2000);
    this.maxEventBytes = positiveInteger('maxEventBytes', options.maxEventBytes, 1024 * 1024);
    this.waitReplicas = nonNegativeInteger('waitReplicas', options.waitReplicas, 0);
    this.waitTimeoutMs = positiveInteger(
      'waitTimeoutMs',
      options.waitTimeoutMs,
      Math.max(1, Math.floor(this.timeoutMs / 2)),
    );
    // The WAIT must end before the call's own timeout, or a missing replica reads as a hung Redis.
    if (this.waitReplicas > 0 && this.waitTimeoutMs >= this.timeoutMs)
      throw invalidOption('waitTimeoutMs', 'must be below timeoutMs');
    const queueMax = positiveInteger('commandsQueueMaxLength', options.commandsQueueMaxLength, 100);
    this.clustered = target.kind === 'cluster';
    this.newConnection = redisConnectionFactory(target, {
      connectTimeoutMs: this.timeoutMs,
      commandsQueueMaxLength: queueMax,
    });
    this.connection = this.newConnection();
    this.startConnecting();
  }

  stream(eventType: string): string {
    return this.streamOf(eventType);
  }

  /** Connects in the background: publishing reports `unavailable` until Redis answers. */
  private startConnecting(): void {
    const connection = this.connection;
    this.connecting = connection.connect().catch(() => {
      // A cluster that was unreachable at start does not retry by itself: start over later.
      if (this.connection === connection) this.connecting = undefined;
    });
  }

  /** Drops the connection and everything queued on it, and starts a new one. */
  private replaceConnection(): void {
    try {
      this.connection.destroy();
    } catch {
      // It was never open.
    }
    this.connection = this.newConnection();
    this.startConnecting();
  }

  private async call(
    firstKey: string | undefined,
    sha: string,
    script: string,
    keys: string[],
    args: string[],
  ): Promise<unknown> {
    const send = (command: string, body: string) =>
      this.connection.send(firstKey, [command, body, String(keys.length), ...keys, ...args]);
    return this.bounded(() =>
      send('EVALSHA', sha).catch((error: unknown) => {
        // First call on a server that has not seen the script (or was restarted): send it whole.
        if (error instanceof ErrorReply && error.message.startsWith('NOSCRIPT')) return send('EVAL', script);
        throw error;
      }),
    );
  }

  /**
   * Runs the publish script and, with `waitReplicas`, a WAIT in the same pipeline: WAIT counts the
   * replicas holding this connection's writes, so on another socket it would confirm nothing.
   * Returns the script's replies, and the replicas that confirmed them (Infinity without WAIT).
   */
  private async runPublish(
    firstKey: string | undefined,
    keys: string[],
    args: string[],
    wait: boolean,
  ): Promise<{ replies: string[]; replicas: number }> {
    if (!wait || this.waitReplicas === 0) {
      const replies = (await this.call(firstKey, this.publishSha, PUBLISH_SCRIPT, keys, args)) as string[];
      return { replies, replicas: Infinity };
    }
    // EVAL, not EVALSHA: a NOSCRIPT inside a pipeline would fail the whole pipeline.
    const [replies, replicas] = (await this.bounded(() =>
      this.connection.pipeline(firstKey, [
        ['EVAL', PUBLISH_SCRIPT, String(keys.length), ...keys, ...args],
        ['WAIT', String(this.waitReplicas), String(this.waitTimeoutMs)],
      ]),
    )) as [string[], number];
    return { replies, replicas: Number(replicas) };
  }

  /**
   * Runs `request` once the first connection is up, all within `timeoutMs`. A timeout replaces the
   * connection, so a hung Redis cannot keep commands queued. Throws only OutboxErrors.
   */
  private async bounded<T>(request: () => Promise<T>): Promise<T> {
    if (this.connecting === undefined) this.replaceConnection();
    const connecting = this.connecting;
    try {
      return await withTimeout(
        (async () => {
          await connecting;
          return request();
        })(),
        this.timeoutMs,
      );
    } catch (error) {
      if (error instanceof OutboxError && error.code === 'OUTBOX_BROKER_TIMEOUT') this.replaceConnection();
      throw brokerError(error);
    }
  }

  /** The call for a stream's slot, with the stream's keys added; throws for an unusable stream name. */
  private callFor(calls: Map<number, Call>, stream: string): { call: Call; index: number } {
    const slot = this.clustered ? keySlot(stream) : 0;
    let call = calls.get(slot);
    if (call === undefined) {
      call = newCall();
      calls.set(slot, call);
    }
    let index = call.keyIndex.get(stream);
    if (index === undefined) {
      const keys = [stream, journalKey(stream), companionKey(stream, 'outbox-state')];
      call.keys.push(...keys);
      index = call.keys.length - 2; // Lua's 1-based index of the stream
      call.keyIndex.set(stream, index);
    }
    return { call, index };
  }

  async publish(
    events: readonly PublishableEvent[],
    { fence, mode = 'relay' }: { fence?: PublishFence; mode?: PublishMode } = {},
  ): Promise<PublishOutcome[]> {
    const outcomes: PublishOutcome[] = events.map(() => ({ status: 'held' }));
    // Aggregates that must not advance in this call: one of their events was refused, or (in a
    // cluster) went to another slot's call, whose order with this one nobody guarantees.
    const stopped = new Set<string>();
    const callOfAggregate = new Map<string, Call>();
    const calls = new Map<number, Call>();

    events.forEach((event, position) => {
      if (stopped.has(event.aggregateId)) return;
      const stream = this.streamOf(event.type);
      // The values of the entry's fields, in ENTRY_ARG_FIELDS order (the script adds names and constants).
      const values = encodeEntryArgs(event);
      const size = values.reduce(
        (total, value) => total + Buffer.byteLength(value),
        FIXED_FIELD_BYTES +
          (event.traceparent === null ? 0 : 'traceparent'.length) +
          (event.tracestate === null ? 0 : 'tracestate'.length),
      );
      const refuse = (error: string) => {
        outcomes[position] = { status: 'rejected', error };
        stopped.add(event.aggregateId);
      };
      if (size > this.maxEventBytes) {
        refuse(`event is ${size} bytes, more than maxEventBytes ${this.maxEventBytes}`);
        return;
      }
      let target: { call: Call; index: number };
      try {
        target = this.callFor(calls, stream);
      } catch (error) {
        refuse((error as Error).message);
        return;
      }
      const { call, index } = target;
      const first = callOfAggregate.get(event.aggregateId);
      if (first !== undefined && first !== call) {
        stopped.add(event.aggregateId);
        return;
      }
      callOfAggregate.set(event.aggregateId, call);
      const checkKey = `${index}:${event.partition}`;
      if (fence !== undefined && mode !== 'replay' && !call.checked.has(checkKey)) {
        call.checked.add(checkKey);
        call.checkArgs.push(
          String(index),
          String(event.partition),
          String(fence.epochs.get(event.partition) ?? 0),
          fence.expected(stream, event.partition) ?? '',
          '',
        );
      }
      call.eventArgs.push(String(index), String(event.partition), ...values);
      call.positions.push(position);
    });

    await Promise.all(
      [...calls.values()].map(async (call) => {
        const args = [
          mode,
          String(this.maxLen),
          String(this.windowSeconds),
          String(call.checkArgs.length / CHECK_ARGS),
          ...call.checkArgs,
          ...call.eventArgs,
        ];
        let result: { replies: string[]; replicas: number };
        try {
          result = await this.runPublish(call.keys[0], call.keys, args, mode !== 'replay');
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          for (const position of call.positions)
            outcomes[position] = { status: 'unavailable', error: message };
          return;
        }
        const unconfirmed =
          result.replicas < this.waitReplicas
            ? `WAIT: ${result.replicas} of ${this.waitReplicas} replicas confirmed within ${this.waitTimeoutMs} ms`
            : undefined;
        call.positions.forEach((position, i) => {
          const reply = String(result.replies[i]);
          const event = events[position] as PublishableEvent;
          const stream = this.streamOf(event.type);
          const refused = refusal(reply, stream, event.partition);
          if (reply === '!held') outcomes[position] = { status: 'held' };
          else if (refused !== undefined)
            // A lost marker and a lost state both send the relay to its repair, which tells them apart.
            outcomes[position] =
              refused.status === 'unmarked'
                ? { status: 'lost', stream, partition: event.partition, marker: null, count: 0 }
                : (refused as PublishOutcome);
          else if (reply.startsWith('!err:')) {
            const error = reply.slice(5);
            outcomes[position] = TRANSIENT_REPLY.test(error)
              ? { status: 'unavailable', error }
              : { status: 'rejected', error };
          } else if (unconfirmed !== undefined)
            outcomes[position] = { status: 'unavailable', error: unconfirmed };
          else outcomes[position] = { status: 'published', stream, entryId: reply };
        });
      }),
    );
    return outcomes;
  }

  async check(
    checks: readonly StreamCheck[],
    epochs: ReadonlyMap<number, number>,
    restore = false,
  ): Promise<StreamVerdict[]> {
    const verdicts: StreamVerdict[] = checks.map(() => ({ status: 'ok' }));
    const calls = new Map<number, Call>();
    checks.forEach((check, position) => {
      const { call, index } = this.callFor(calls, check.stream);
      call.checkArgs.push(
        String(index),
        String(check.partition),
        String(epochs.get(check.partition) ?? 0),
        check.expected ?? '',
        String(check.count ?? ''),
      );
      call.positions.push(position);
    });
    await Promise.all(
      [...calls.values()].map(async (call) => {
        const mode = restore ? 'restore' : 'verify';
        const args = [
          mode,
          '0',
          String(this.windowSeconds),
          String(call.positions.length),
          ...call.checkArgs,
        ];
        let result: { replies: string[]; replicas: number };
        try {
          result = await this.runPublish(call.keys[0], call.keys, args, restore);
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          for (const position of call.positions)
            verdicts[position] = { status: 'unavailable', error: message };
          return;
        }
        call.positions.forEach((position, i) => {
          const check = checks[position] as StreamCheck;
          const reply = String(result.replies[i]);
          verdicts[position] =
            refusal(reply, check.stream, check.partition) ??
            (result.replicas < this.waitReplicas
              ? { status: 'unavailable', error: `WAIT: ${result.replicas} of ${this.waitReplicas} replicas` }
              : { status: 'ok' });
        });
      }),
    );
    return verdicts;
  }

  async confirm(events: readonly { eventId: string; stream: string }[]): Promise<void> {
    const byJournal = new Map<string, string[]>();
    for (const { eventId, stream } of events) {
      const key = journalKey(stream);
      const ids = byJournal.get(key) ?? [];
      ids.push(eventId);
      byJournal.set(key, ids);
    }
    await Promise.all(
      [...byJournal].map(async ([key, ids]) => {
        for (let start = 0; start < ids.length; start += CHUNK) {
          await this.call(
            key,
            this.confirmSha,
            CONFIRM_SCRIPT,
            [key],
            [String(this.windowSeconds), ...ids.slice(start, start + CHUNK)],
          );
        }
      }),
    );
  }

  async ping(): Promise<boolean> {
    try {
      await this.bounded(() => this.connection.send(undefined, ['PING']));
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    try {
      this.connection.destroy();
    } catch {
      // It was never open.
    }
  }
}
