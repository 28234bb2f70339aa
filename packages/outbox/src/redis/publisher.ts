import { createHash } from 'node:crypto';
import { createClient, createCluster, ErrorReply } from '@redis/client';
import { invalidOption } from '../errors.ts';
import { positiveInteger } from '../options.ts';
import type { PublishableEvent, Publisher, PublishOutcome } from '../publisher.ts';
import { CONFIRM_SCRIPT, PUBLISH_SCRIPT } from './scripts.ts';
import { journalKey, keySlot } from './slot.ts';

export interface RedisStreamsPublisherOptions {
  /** One Redis server, e.g. 'redis://127.0.0.1:6379'. Give this or `clusterNodes`. */
  url?: string;
  /** Seed nodes of a Redis Cluster, as 'host:port'. */
  clusterNodes?: string[];
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

/** The subset of a node-redis client or cluster the publisher uses. */
interface Connection {
  send(firstKey: string | undefined, args: string[]): Promise<unknown>;
  connect(): Promise<void>;
  destroy(): void;
}

function reconnectDelay(retries: number): number {
  return Math.min(2000, 50 * 2 ** Math.min(retries, 6)) * (0.5 + Math.random() / 2);
}

function connectionFactory(
  options: RedisStreamsPublisherOptions,
  timeoutMs: number,
  queueMax: number,
): () => Connection {
  const socket = { connectTimeout: timeoutMs, reconnectStrategy: reconnectDelay };
  // No offline queue: while disconnected every call fails at once instead of piling up in memory.
  const common = { disableOfflineQueue: true, commandsQueueMaxLength: queueMax, socket };
  const { clusterNodes } = options;
  if (clusterNodes !== undefined && clusterNodes.length > 0) {
    return () => {
      const cluster = createCluster({
        rootNodes: clusterNodes.map((node) => ({ url: `redis://${node}` })),
        defaults: common,
        useReplicas: false,
      });
      cluster.on('error', () => {});
      return {
        send: (firstKey, args) => cluster.sendCommand(firstKey, false, args),
        connect: async () => {
          await cluster.connect();
        },
        destroy: () => cluster.destroy(),
      };
    };
  }
  const url = options.url ?? 'redis://127.0.0.1:6379';
  return () => {
    const client = createClient({ url, ...common });
    // Errors also surface on the calls; without a listener node-redis would crash the process.
    client.on('error', () => {});
    return {
      send: (_firstKey, args) => client.sendCommand(args),
      connect: async () => {
        await client.connect();
      },
      destroy: () => client.destroy(),
    };
  };
}

class TimeoutError extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`Redis did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Bytes of an entry beyond its values: the field names and constant attributes PUBLISH_SCRIPT adds
 * ('traceparent' and 'tracestate' are counted where present).
 */
const FIELD_NAME_BYTES = 'idtypesourcesubjecttimespecversion1.0datacontenttypeapplication/jsondata'.length;

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');

interface Group {
  /** Streams and their journals, as the script's KEYS pairs. */
  keys: string[];
  keyIndex: Map<string, number>;
  args: string[];
  /** Positions in the input of the events sent in this group, in order. */
  positions: number[];
}

/**
 * Publishes to Redis Streams with one Lua script call per batch (per cluster slot), which adds the
 * events in order, skips the rest of an aggregate after a refusal, and drops ids it has published
 * before. See scripts.ts for the dedupe journal.
 */
export class RedisStreamsPublisher implements Publisher {
  private readonly streamOf: (eventType: string) => string;
  private readonly maxLen: number;
  private readonly windowSeconds: number;
  private readonly timeoutMs: number;
  private readonly maxEventBytes: number;
  private readonly clustered: boolean;
  private readonly newConnection: () => Connection;
  private connection: Connection;
  private connecting: Promise<void> | undefined;
  private readonly publishSha = sha1(PUBLISH_SCRIPT);
  private readonly confirmSha = sha1(CONFIRM_SCRIPT);

  constructor(options: RedisStreamsPublisherOptions = {}) {
    if (options.url !== undefined && options.clusterNodes !== undefined && options.clusterNodes.length > 0) {
      throw invalidOption('clusterNodes', 'give either url or clusterNodes, not both');
    }
    if (options.stream !== undefined && typeof options.stream !== 'function') {
      throw invalidOption('stream', 'must be a function from event type to stream name');
    }
    this.streamOf = options.stream ?? ((type) => type);
    this.maxLen = options.maxLen === undefined ? 0 : positiveInteger('maxLen', options.maxLen, 1);
    this.windowSeconds = positiveInteger('dedupeWindowSeconds', options.dedupeWindowSeconds, 7 * 24 * 3600);
    this.timeoutMs = positiveInteger('timeoutMs', options.timeoutMs, 2000);
    this.maxEventBytes = positiveInteger('maxEventBytes', options.maxEventBytes, 1024 * 1024);
    const queueMax = positiveInteger('commandsQueueMaxLength', options.commandsQueueMaxLength, 100);
    this.clustered = (options.clusterNodes?.length ?? 0) > 0;
    this.newConnection = connectionFactory(options, this.timeoutMs, queueMax);
    this.connection = this.newConnection();
    this.startConnecting();
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
   * Runs `request` once the first connection is up, all within `timeoutMs`. A timeout replaces the
   * connection, so a hung Redis cannot keep commands queued.
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
      if (error instanceof TimeoutError) this.replaceConnection();
      throw error;
    }
  }

  async publish(events: readonly PublishableEvent[]): Promise<PublishOutcome[]> {
    const outcomes: PublishOutcome[] = events.map(() => ({ status: 'held' }));
    // Aggregates that must not advance in this call: one of their events was refused, or (in a
    // cluster) went to another slot's call, whose order with this one nobody guarantees.
    const stopped = new Set<string>();
    const groupOfAggregate = new Map<string, Group>();
    const groups = new Map<number, Group>();

    events.forEach((event, position) => {
      if (stopped.has(event.aggregateId)) return;
      const stream = this.streamOf(event.type);
      // The values of the entry's fields, in PUBLISH_SCRIPT's order (it adds names and constants).
      const values = [
        event.eventId,
        event.type,
        event.source,
        event.aggregateId,
        event.time,
        event.data,
        event.traceparent ?? '',
        event.tracestate ?? '',
      ];
      const size = values.reduce(
        (total, value) => total + Buffer.byteLength(value),
        FIELD_NAME_BYTES + (event.traceparent === null ? 0 : 11) + (event.tracestate === null ? 0 : 10),
      );
      if (size > this.maxEventBytes) {
        outcomes[position] = {
          status: 'rejected',
          error: `event is ${size} bytes, more than maxEventBytes ${this.maxEventBytes}`,
        };
        stopped.add(event.aggregateId);
        return;
      }
      const slot = this.clustered ? keySlot(stream) : 0;
      let group = groups.get(slot);
      if (group === undefined) {
        group = {
          keys: [],
          keyIndex: new Map(),
          args: [String(this.maxLen), String(this.windowSeconds)],
          positions: [],
        };
        groups.set(slot, group);
      }
      const first = groupOfAggregate.get(event.aggregateId);
      if (first !== undefined && first !== group) {
        stopped.add(event.aggregateId);
        return;
      }
      groupOfAggregate.set(event.aggregateId, group);
      let index = group.keyIndex.get(stream);
      if (index === undefined) {
        let journal: string;
        try {
          journal = journalKey(stream);
        } catch (error) {
          outcomes[position] = { status: 'rejected', error: (error as Error).message };
          stopped.add(event.aggregateId);
          return;
        }
        group.keys.push(stream, journal);
        index = group.keys.length - 1; // Lua's 1-based index of the stream
        group.keyIndex.set(stream, index);
      }
      group.args.push(String(index), ...values);
      group.positions.push(position);
    });

    await Promise.all(
      [...groups.values()].map(async (group) => {
        let replies: string[];
        try {
          replies = (await this.call(
            group.keys[0],
            this.publishSha,
            PUBLISH_SCRIPT,
            group.keys,
            group.args,
          )) as string[];
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          for (const position of group.positions)
            outcomes[position] = { status: 'unavailable', error: message };
          return;
        }
        group.positions.forEach((position, i) => {
          const reply = String(replies[i]);
          const event = events[position] as PublishableEvent;
          if (reply === '!held') outcomes[position] = { status: 'held' };
          else if (reply.startsWith('!err:')) {
            const error = reply.slice(5);
            outcomes[position] = TRANSIENT_REPLY.test(error)
              ? { status: 'unavailable', error }
              : { status: 'rejected', error };
          } else
            outcomes[position] = { status: 'published', stream: this.streamOf(event.type), entryId: reply };
        });
      }),
    );
    return outcomes;
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
        // Lua's unpack has a limit of a few thousand values: send ids in chunks.
        for (let start = 0; start < ids.length; start += 1000) {
          await this.call(
            key,
            this.confirmSha,
            CONFIRM_SCRIPT,
            [key],
            [String(this.windowSeconds), ...ids.slice(start, start + 1000)],
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
