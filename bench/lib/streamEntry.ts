/** An event as a stream entry, for the bench's own XADDs (the direct-publish design, Redis's limit). */

export interface EntryAttributes {
  id: string;
  type: string;
  source: string;
  subject: string;
  time: string;
  /** The JSON text of the event's data. */
  data: string;
}

/**
 * The entry's field-value pairs as the relay's publish script writes them: CloudEvents attributes in
 * structured order, JSON data (no trace context).
 */
export function streamEntryFields(event: EntryAttributes): string[] {
  return [
    'id',
    event.id,
    'type',
    event.type,
    'source',
    event.source,
    'subject',
    event.subject,
    'time',
    event.time,
    'specversion',
    '1.0',
    'datacontenttype',
    'application/json',
    'data',
    event.data,
  ];
}
