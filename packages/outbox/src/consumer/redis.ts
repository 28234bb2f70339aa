import { ErrorReply } from '@redis/client';
import { brokerError, brokerTimeout, OutboxError } from '../errors.ts';
import type { RedisConnection } from '../redis/connection.ts';

/** Fields the consumer adds to a dead letter; a replay strips them. */
export const DEAD_LETTER_PREFIX = 'deadletter.';

/** A stream entry as Redis returns it: its id and its fields as name, value pairs. */
export interface RawEntry {
  stream: string;
  entryId: string;
  fields: Record<string, string>;
}

/**
 * One Redis connection (or cluster client) with a bounded wait per call: a hung Redis cannot stall
 * the consumer, and a call that times out replaces the connection (and whatever was queued on it). So
 * does a READONLY refusal: the connection still points at a primary that a failover demoted.
 */
export class RedisLink {
  private connection: RedisConnection;
  private connecting: Promise<void> | undefined;

  constructor(
    private readonly newConnection: () => RedisConnection,
    private readonly timeoutMs: number,
  ) {
    this.connection = this.open();
  }

  private open(): RedisConnection {
    const connection = this.newConnection();
    this.connecting = connection.connect().then(
      () => {},
      () => {
        // A cluster or sentinel client unreachable at start does not retry by itself: start over.
        if (this.connection === connection) this.connecting = undefined;
      },
    );
    return connection;
  }

  private replace(): void {
    try {
      this.connection.destroy();
    } catch {
      // It was never open.
    }
    this.connection = this.open();
  }

  /**
   * Sends one command; `key` routes it in a cluster (its first key), `extraMs` widens the wait for a
   * command that blocks on purpose.
   * Throws OutboxErrors.
   */
  async send(
    args: string[],
    { key, extraMs = 0 }: { key?: string; extraMs?: number } = {},
  ): Promise<unknown> {
    if (this.connecting === undefined) this.replace();
    const connecting = this.connecting;
    const connection = this.connection;
    const limit = this.timeoutMs + extraMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(brokerTimeout(limit)), limit);
    });
    try {
      return await Promise.race([
        (async () => {
          await connecting;
          return connection.send(key, args);
        })(),
        timeout,
      ]);
    } catch (error) {
      const stale =
        (error instanceof OutboxError && error.code === 'OUTBOX_BROKER_TIMEOUT') ||
        (error instanceof ErrorReply && error.message.startsWith('READONLY'));
      // Only once per connection: calls that were in flight on it all fail the same way.
      if (stale && this.connection === connection) this.replace();
      // Same message (NOGROUP, BUSYGROUP checks read it), node-redis's error as the cause.
      throw brokerError(error);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    try {
      this.connection.destroy();
    } catch {
      // It was never open.
    }
  }
}

/** Field name, value pairs as an object (a repeated name keeps its first value, as the relay writes none). */
export function fieldsOf(pairs: unknown): Record<string, string> {
  const fields: Record<string, string> = {};
  if (!Array.isArray(pairs)) return fields;
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const name = String(pairs[i]);
    if (!(name in fields)) fields[name] = String(pairs[i + 1]);
  }
  return fields;
}

/** Entries of an XREADGROUP reply ([[stream, [[id, fields], ...]], ...] or null). */
export function entriesOfRead(reply: unknown): RawEntry[] {
  const entries: RawEntry[] = [];
  if (!Array.isArray(reply)) return entries;
  for (const streamReply of reply) {
    if (!Array.isArray(streamReply)) continue;
    const [stream, list] = streamReply as [unknown, unknown];
    if (!Array.isArray(list)) continue;
    for (const entry of list) {
      if (!Array.isArray(entry)) continue;
      const [entryId, pairs] = entry as [unknown, unknown];
      // A pending entry whose data was deleted comes back with no fields: nothing to apply.
      if (pairs === null) continue;
      entries.push({ stream: String(stream), entryId: String(entryId), fields: fieldsOf(pairs) });
    }
  }
  return entries;
}

/** True for Redis's "no such group (or stream)" refusal: the group must be created again. */
export function isNoGroup(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOGROUP');
}
