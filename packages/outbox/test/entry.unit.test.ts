import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PublishableEvent } from '../src/publisher.ts';
import {
  decodeEntry,
  ENTRY_ARG_FIELDS,
  ENTRY_FIELDS,
  encodeEntryArgs,
  entryArgOffset,
  entryFieldValues,
  luaEntryFields,
} from '../src/redis/entry.ts';
import { EVENT_ARGS, PUBLISH_SCRIPT } from '../src/redis/scripts.ts';

const event: PublishableEvent = {
  rowId: '1',
  partition: 3,
  eventId: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
  type: 'shop.order_paid.v1',
  source: '/shop',
  aggregateType: 'order',
  aggregateId: 'order-7',
  time: '2026-12-03T08:00:00.000Z',
  data: '{"total":"10.50","version":2}',
  traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  tracestate: 'congo=t61rcWkgMzE',
};

/** The entry's fields as the script writes them (relay.int.test.ts holds entryFieldValues to a real XADD). */
function entryOf(published: PublishableEvent): Record<string, string> {
  const pairs = entryFieldValues(published);
  const fields: Record<string, string> = {};
  for (let i = 0; i < pairs.length; i += 2) fields[pairs[i] as string] = pairs[i + 1] as string;
  return fields;
}

describe('the stream entry codec', () => {
  test('the encoder sends each attribute at the offset its definition gives', () => {
    const args = encodeEntryArgs(event);
    assert.equal(args.length, ENTRY_ARG_FIELDS.length);
    const expected: Record<string, string> = {
      id: event.eventId,
      type: event.type,
      source: event.source,
      subject: event.aggregateId,
      time: event.time,
      data: event.data,
      traceparent: event.traceparent as string,
      tracestate: event.tracestate as string,
    };
    for (const name of ENTRY_ARG_FIELDS) assert.equal(args[entryArgOffset(name)], expected[name], name);
    assert.deepEqual(encodeEntryArgs({ ...event, traceparent: null, tracestate: null }).slice(-2), ['', '']);
  });

  test('the publish script is built from the same definition', () => {
    assert.equal(EVENT_ARGS, 2 + ENTRY_ARG_FIELDS.length);
    assert.ok(PUBLISH_SCRIPT.includes(luaEntryFields()));
    // Every field name appears in the generated Lua in definition order.
    const lua = luaEntryFields();
    let at = 0;
    for (const field of ENTRY_FIELDS) {
      const found = lua.indexOf(`'${field.name}'`, at);
      assert.ok(found >= at, `${field.name} in order`);
      at = found;
    }
  });

  test('decoding what the script writes gives back the CloudEvent', () => {
    const decoded = decodeEntry(entryOf(event));
    assert.deepEqual(decoded, {
      specversion: '1.0',
      id: event.eventId,
      source: '/shop',
      type: 'shop.order_paid.v1',
      subject: 'order-7',
      time: event.time,
      datacontenttype: 'application/json',
      data: { total: '10.50', version: 2 },
      traceparent: event.traceparent,
      tracestate: event.tracestate,
    });
    const bare = decodeEntry(entryOf({ ...event, traceparent: null, tracestate: null }));
    assert.equal('traceparent' in bare, false);
    assert.equal('tracestate' in bare, false);
  });

  test('an entry the relay would not write is refused with the field at fault', () => {
    const good = entryOf(event);
    const { subject: _subject, ...noSubject } = good;
    assert.throws(() => decodeEntry(noSubject), { code: 'OUTBOX_INVALID_EVENT', field: 'subject' });
    assert.throws(() => decodeEntry({ ...good, specversion: '0.3' }), {
      code: 'OUTBOX_INVALID_EVENT',
      field: 'specversion',
    });
    assert.throws(() => decodeEntry({ ...good, data: '{"total":' }), {
      code: 'OUTBOX_INVALID_EVENT',
      field: 'data',
    });
    assert.throws(() => decodeEntry({ ...good, id: '' }), { code: 'OUTBOX_INVALID_EVENT', field: 'id' });
  });
});
