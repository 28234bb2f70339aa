import { invalidOption } from './errors.ts';

/** Where the outbox lives and how events written to it are labelled. Shared by writer, relay and admin. */
export interface OutboxOptions {
  /**
   * Table holding the events (optionally schema-qualified).
   * @defaultValue 'event_outbox'
   */
  table?: string;
  /**
   * LISTEN/NOTIFY channel the writer notifies and the relay listens on.
   * @defaultValue the table name with `_` and `.` kept, e.g. 'event_outbox'
   */
  channel?: string;
  /**
   * Send a NOTIFY in the writing transaction so relays wake at commit. Turn off under very heavy write
   * load (NOTIFY serialises commits on a global lock) and rely on the relay's polling.
   * @defaultValue true
   */
  notify?: boolean;
}

export interface ResolvedOutboxOptions {
  table: string;
  channel: string;
  notify: boolean;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$/;

export function resolveOutboxOptions(options: OutboxOptions = {}): ResolvedOutboxOptions {
  const table = options.table ?? 'event_outbox';
  // The table name is spliced into SQL text, so it must be a plain lower-case identifier.
  if (!IDENTIFIER.test(table))
    throw invalidOption('table', `must be a lower-case SQL identifier, got "${table}"`);
  const channel = options.channel ?? table.replace('.', '_');
  if (!IDENTIFIER.test(channel) || channel.includes('.')) {
    throw invalidOption('channel', `must be a lower-case SQL identifier, got "${channel}"`);
  }
  return { table, channel, notify: booleanOption('notify', options.notify, true) };
}

export function booleanOption(field: string, value: boolean | undefined, fallback: boolean): boolean {
  const result = value ?? fallback;
  if (typeof result !== 'boolean') throw invalidOption(field, `must be true or false, got ${String(value)}`);
  return result;
}

export function positiveInteger(
  field: string,
  value: number | undefined,
  fallback: number,
  max = 2 ** 31 - 1,
): number {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < 1 || result > max) {
    throw invalidOption(field, `must be a whole number from 1 to ${max}, got ${String(value)}`);
  }
  return result;
}

export function nonNegativeInteger(field: string, value: number | undefined, fallback: number): number {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < 0) {
    throw invalidOption(field, `must be a whole number of 0 or more, got ${String(value)}`);
  }
  return result;
}
