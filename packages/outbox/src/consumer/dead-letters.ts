import { OutboxError } from '../errors.ts';
import { positiveInteger } from '../options.ts';
import { type RedisTarget, redisConnectionFactory, resolveRedisTarget } from '../redis/connection.ts';
import { DEAD_LETTER_PREFIX, entriesOfRead, RedisLink } from './redis.ts';

/**
 * Redis holding the streams: `url`, `clusterNodes` or `sentinel`, as for the consumer.
 * @defaultValue url 'redis://127.0.0.1:6379'
 */
export interface DeadLettersOptions extends RedisTarget {
  /**
   * Longest wait for one Redis call.
   * @defaultValue 5000
   */
  timeoutMs?: number;
}

/** One dead-lettered event, as the consumer wrote it. */
export interface DeadLetter {
  deadLetterStream: string;
  /** The dead letter's own entry id: what replay takes. */
  entryId: string;
  /** Where the event came from, and its entry id there. */
  stream: string;
  originalEntryId: string;
  group: string;
  eventId: string | undefined;
  type: string | undefined;
  subject: string | undefined;
  error: string;
  deliveries: number;
  at: string;
}

/**
 * Puts the event back at the end of its stream with its original fields (and so its CloudEvents id)
 * and removes the dead letter, in one step. KEYS: dead-letter stream, origin stream; ARGV: dead letter
 * entry id, then the fields to add.
 */
const REPLAY_SCRIPT = `
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
`;

/**
 * Lists and replays a consumer group's dead letters. A replayed event is added to its stream again:
 * every group reads it, and groups that applied it already skip it by its id (inbox) or version.
 */
export class DeadLetters {
  private readonly link: RedisLink;

  constructor(options: DeadLettersOptions = {}) {
    const timeoutMs = positiveInteger('timeoutMs', options.timeoutMs, 5000);
    const connect = redisConnectionFactory(resolveRedisTarget(options), {
      connectTimeoutMs: timeoutMs,
      resp: 2,
    });
    this.link = new RedisLink(connect, timeoutMs);
  }

  /** Dead letters of one dead-letter stream, oldest first. */
  async list(deadLetterStream: string, count = 100): Promise<DeadLetter[]> {
    const limit = positiveInteger('count', count, 100, 10_000);
    const reply = await this.link.send(['XRANGE', deadLetterStream, '-', '+', 'COUNT', String(limit)], {
      key: deadLetterStream,
    });
    return entriesOfRead([[deadLetterStream, reply]]).map(({ entryId, fields }) => ({
      deadLetterStream,
      entryId,
      stream: fields[`${DEAD_LETTER_PREFIX}stream`] ?? '',
      originalEntryId: fields[`${DEAD_LETTER_PREFIX}entry`] ?? '',
      group: fields[`${DEAD_LETTER_PREFIX}group`] ?? '',
      eventId: fields.id,
      type: fields.type,
      subject: fields.subject,
      error: fields[`${DEAD_LETTER_PREFIX}error`] ?? '',
      deliveries: Number(fields[`${DEAD_LETTER_PREFIX}deliveries`] ?? 0),
      at: fields[`${DEAD_LETTER_PREFIX}at`] ?? '',
    }));
  }

  /**
   * Replays one dead letter: adds the event to its stream again and removes the dead letter. Returns
   * the new entry id. Throws OUTBOX_EVENT_NOT_FOUND for an unknown dead letter (nothing changes).
   */
  async replay(deadLetterStream: string, entryId: string): Promise<string> {
    if (!/^\d+-\d+$/.test(entryId))
      throw new OutboxError('OUTBOX_INVALID_OPTION', `entryId: must be a stream entry id, got "${entryId}"`, {
        field: 'entryId',
      });
    const reply = await this.link.send(['XRANGE', deadLetterStream, entryId, entryId], {
      key: deadLetterStream,
    });
    const [letter] = entriesOfRead([[deadLetterStream, reply]]);
    const origin = letter?.fields[`${DEAD_LETTER_PREFIX}stream`];
    if (letter === undefined || origin === undefined)
      throw new OutboxError('OUTBOX_EVENT_NOT_FOUND', `no dead letter ${entryId} in ${deadLetterStream}`, {
        field: 'entryId',
      });
    const fields: string[] = [];
    for (const [name, value] of Object.entries(letter.fields))
      if (!name.startsWith(DEAD_LETTER_PREFIX)) fields.push(name, value);
    return String(
      await this.link.send(['EVAL', REPLAY_SCRIPT, '2', deadLetterStream, origin, entryId, ...fields], {
        key: deadLetterStream,
      }),
    );
  }

  /** Replays every dead letter of the stream, oldest first; returns how many. */
  async replayAll(deadLetterStream: string): Promise<number> {
    let replayed = 0;
    for (;;) {
      const letters = await this.list(deadLetterStream, 500);
      if (letters.length === 0) return replayed;
      for (const letter of letters) {
        await this.replay(deadLetterStream, letter.entryId);
        replayed++;
      }
    }
  }

  close(): void {
    this.link.close();
  }
}
