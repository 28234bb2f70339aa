/**
 * The one definition of a stream entry's format: the publisher's arguments, the Lua that turns them
 * into XADD fields (scripts.ts) and the consumer's decoder are all derived from ENTRY_FIELDS, so the
 * relay and its consumers cannot drift apart.
 *
 * An entry carries the CloudEvents 1.0 attributes as fields, in structured-mode order, `data` as JSON
 * text, and the W3C trace context fields only when the event had them.
 */
import type { CloudEvent } from '../cloudevents.ts';
import { OutboxError } from '../errors.ts';
import type { PublishableEvent } from '../publisher.ts';

interface EntryField {
  readonly name: string;
  /** Written by the script itself: the publisher sends no argument for it. */
  readonly constant?: string;
  /** Left out of the entry when its argument is ''. */
  readonly optional?: true;
}

export const ENTRY_FIELDS = [
  { name: 'id' },
  { name: 'type' },
  { name: 'source' },
  { name: 'subject' },
  { name: 'time' },
  { name: 'specversion', constant: '1.0' },
  { name: 'datacontenttype', constant: 'application/json' },
  { name: 'data' },
  { name: 'traceparent', optional: true },
  { name: 'tracestate', optional: true },
] as const satisfies readonly EntryField[];

type FieldName = (typeof ENTRY_FIELDS)[number]['name'];

/** The fields the publisher sends a value for, in argument order. */
export const ENTRY_ARG_FIELDS: readonly FieldName[] = ENTRY_FIELDS.filter(
  (field: EntryField) => field.constant === undefined,
).map((field) => field.name);

/** Values per event the publisher sends (names and constants are added by the script). */
export const ENTRY_ARGS = ENTRY_ARG_FIELDS.length;

/** Offset of a field's value among an event's entry arguments. */
export function entryArgOffset(name: FieldName): number {
  const offset = ENTRY_ARG_FIELDS.indexOf(name);
  if (offset === -1) throw new Error(`${name} is a constant field`);
  return offset;
}

/**
 * Bytes of an entry beyond its values: the names of the fields always present and the constants
 * (optional fields' names are counted by the caller where present).
 */
export const FIXED_FIELD_BYTES = ENTRY_FIELDS.reduce(
  (total, field: EntryField) =>
    field.optional ? total : total + field.name.length + (field.constant?.length ?? 0),
  0,
);

/** What of an event its stream entry carries. */
export type EntryEvent = Pick<
  PublishableEvent,
  'eventId' | 'type' | 'source' | 'aggregateId' | 'time' | 'data'
> &
  Partial<Pick<PublishableEvent, 'traceparent' | 'tracestate'>>;

/**
 * The event's entry arguments, in ENTRY_ARG_FIELDS order ('' for an absent optional field). Written
 * out rather than mapped over the definition: this runs per event on the relay's hot path; the unit
 * tier checks it against ENTRY_ARG_FIELDS.
 */
export function encodeEntryArgs(event: EntryEvent): string[] {
  return [
    event.eventId,
    event.type,
    event.source,
    event.aggregateId,
    event.time,
    event.data,
    event.traceparent ?? '',
    event.tracestate ?? '',
  ];
}

/**
 * The entry's field-value pairs exactly as the publish script writes them, for a producer of entries
 * the consumer kit reads (and the benchmark's direct XADDs).
 */
export function entryFieldValues(event: EntryEvent): string[] {
  const args = encodeEntryArgs(event);
  const pairs: string[] = [];
  let offset = 0;
  for (const field of ENTRY_FIELDS as readonly EntryField[]) {
    const value = field.constant ?? args[offset++] ?? '';
    if (field.optional && value === '') continue;
    pairs.push(field.name, value);
  }
  return pairs;
}

/**
 * Lua for a function `fields(at)` that builds XADD's field list from the event's arguments starting at
 * ARGV[at]: generated from ENTRY_FIELDS, so the script writes exactly what decodeEntry reads.
 */
export function luaEntryFields(): string {
  const fixed: string[] = [];
  const optional: string[] = [];
  let offset = 0;
  for (const field of ENTRY_FIELDS as readonly EntryField[]) {
    if (field.constant !== undefined) {
      fixed.push(`'${field.name}', '${field.constant}'`);
      continue;
    }
    const arg = offset === 0 ? 'ARGV[at]' : `ARGV[at + ${offset}]`;
    offset++;
    if (field.optional) {
      optional.push(
        `  if ${arg} ~= '' then\n    f[#f + 1] = '${field.name}'\n    f[#f + 1] = ${arg}\n  end\n`,
      );
    } else fixed.push(`'${field.name}', ${arg}`);
  }
  return `local function fields(at)\n  local f = { ${fixed.join(', ')} }\n${optional.join('')}  return f\nend`;
}

function invalidEntry(message: string, field: string): OutboxError {
  return new OutboxError('OUTBOX_INVALID_EVENT', message, { field });
}

/**
 * Decodes a stream entry's fields into a CloudEvent. Throws an OutboxError (OUTBOX_INVALID_EVENT, with
 * the field at fault) for an entry the relay would not have written: a missing attribute, a constant
 * with another value, or `data` that is not JSON.
 */
export function decodeEntry(fields: Readonly<Record<string, string>>): CloudEvent {
  const values: Partial<Record<FieldName, string>> = {};
  for (const field of ENTRY_FIELDS as readonly EntryField[]) {
    const value = fields[field.name];
    if (value === undefined || value === '') {
      if (field.optional) continue;
      throw invalidEntry(`stream entry has no ${field.name}`, field.name);
    }
    if (field.constant !== undefined && value !== field.constant) {
      throw invalidEntry(
        `stream entry has ${field.name} "${value}", expected "${field.constant}"`,
        field.name,
      );
    }
    values[field.name as FieldName] = value;
  }
  let data: unknown;
  try {
    data = JSON.parse(values.data as string);
  } catch (error) {
    throw new OutboxError('OUTBOX_INVALID_EVENT', 'stream entry data is not JSON', {
      field: 'data',
      cause: error,
    });
  }
  const event: CloudEvent = {
    specversion: '1.0',
    id: values.id as string,
    source: values.source as string,
    type: values.type as string,
    subject: values.subject as string,
    time: values.time as string,
    datacontenttype: 'application/json',
    data,
  };
  if (values.traceparent !== undefined) event.traceparent = values.traceparent;
  if (values.tracestate !== undefined) event.tracestate = values.tracestate;
  return event;
}
