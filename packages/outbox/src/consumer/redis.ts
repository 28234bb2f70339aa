import { createClient } from '@redis/client';
import { brokerError, brokerTimeout, OutboxError } from '../errors.ts';

/** Fields the consumer adds to a dead letter; a replay strips them. */
export const DEAD_LETTER_PREFIX = 'deadletter.';

/** A stream entry as Redis returns it: its id and its fields as name, value pairs. */
export interface RawEntry {
  stream: string;
  entryId: string;
  fields: Record<string, string>;
}

function createRespTwoClient(url: string, timeoutMs: number) {
  return createClient({
    url,
    RESP: 2,
    // No offline queue: while disconnected every call fails at once instead of piling up in memory.
    disableOfflineQueue: true,
    socket: { connectTimeout: timeoutMs, reconnectStrategy: reconnectDelay },
  });
}

type Client = ReturnType<typeof createRespTwoClient>;

function reconnectDelay(retries: number): number {
  return Math.min(2000, 50 * 2 ** Math.min(retries, 6)) * (0.5 + Math.random() / 2);
}

/**
 * One Redis connection with a bounded wait per call: a hung Redis cannot stall the consumer, and a
 * call that times out replaces the connection (and whatever was queued on it). RESP2, so replies are
 * plain arrays whatever the client's default.
 */
export class RedisLink {
  private client: Client;
  private connecting: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
  ) {
    this.client = this.newClient();
  }

  private newClient(): Client {
    const client = createRespTwoClient(this.url, this.timeoutMs);
    // Errors also surface on the calls; without a listener node-redis would crash the process.
    client.on('error', () => {});
    this.connecting = client.connect().then(
      () => {},
      () => {
        if (this.client === client) this.connecting = undefined;
      },
    );
    return client;
  }

  private replace(): void {
    try {
      this.client.destroy();
    } catch {
      // It was never open.
    }
    this.client = this.newClient();
  }

  /** Sends one command; `extraMs` widens the wait for a command that blocks on purpose. Throws OutboxErrors. */
  async send(args: string[], extraMs = 0): Promise<unknown> {
    if (this.connecting === undefined) this.replace();
    const connecting = this.connecting;
    const limit = this.timeoutMs + extraMs;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(brokerTimeout(limit)), limit);
    });
    try {
      return await Promise.race([
        (async () => {
          await connecting;
          return this.client.sendCommand(args);
        })(),
        timeout,
      ]);
    } catch (error) {
      if (error instanceof OutboxError && error.code === 'OUTBOX_BROKER_TIMEOUT') this.replace();
      // Same message (NOGROUP, BUSYGROUP checks read it), node-redis's error as the cause.
      throw brokerError(error);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    try {
      this.client.destroy();
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
