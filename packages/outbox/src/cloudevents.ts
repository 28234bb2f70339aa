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
const TRACEPARENT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;

export function isValidTraceparent(value: string): boolean {
  return TRACEPARENT.test(value);
}
