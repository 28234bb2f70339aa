/**
 * The CloudEvents 1.0 envelope every outbox event carries (structured mode, JSON data), plus the W3C
 * trace context extension attributes when the writer had them.
 */
export interface CloudEvent<Data = unknown> {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: 'application/json';
  data: Data;
  traceparent?: string;
  tracestate?: string;
}

/** W3C trace-context `traceparent`: version 00, non-zero trace and span ids. */
export const TRACEPARENT_PATTERN = '^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$';
const TRACEPARENT = new RegExp(TRACEPARENT_PATTERN);

export function isValidTraceparent(value: string): boolean {
  return TRACEPARENT.test(value);
}

/**
 * W3C trace-context `tracestate` limits: the header may carry at most 32 list members and a vendor may
 * truncate it past 512 characters, so anything longer is refused rather than stored and copied.
 */
export const TRACESTATE_MAX_LENGTH = 512;
export const TRACESTATE_MAX_MEMBERS = 32;

/**
 * One list member, `key=value`: a simple key (`lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`)
 * or a multi-tenant key (`tenant@system`); the value is up to 256 printable ASCII characters other than
 * `,` and `=`, not ending in a space. The same grammar is checked in SQL by insertFrom().
 */
export const TRACESTATE_MEMBER =
  '^([a-z0-9][a-z0-9_*/-]{0,240}@[a-z][a-z0-9_*/-]{0,13}|[a-z][a-z0-9_*/-]{0,255})=[\\x20-\\x2b\\x2d-\\x3c\\x3e-\\x7e]{0,255}[\\x21-\\x2b\\x2d-\\x3c\\x3e-\\x7e]$';
const MEMBER = new RegExp(TRACESTATE_MEMBER);
/** Optional whitespace around the commas that separate list members. */
export const TRACESTATE_SEPARATOR = '[ \\t]*,[ \\t]*';
const SEPARATOR = new RegExp(TRACESTATE_SEPARATOR);

/** W3C trace-context `tracestate`: at most 512 characters and 32 list members (empty ones allowed). */
export function isValidTracestate(value: string): boolean {
  if (value.length > TRACESTATE_MAX_LENGTH) return false;
  const members = value.replace(/^[ \t]+|[ \t]+$/g, '').split(SEPARATOR);
  if (members.length > TRACESTATE_MAX_MEMBERS) return false;
  return members.every((member) => member === '' || MEMBER.test(member));
}
