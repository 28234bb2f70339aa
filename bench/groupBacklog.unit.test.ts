import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backlogOfGroup } from './lib/infra.ts';

test("a group's backlog is its lag plus its pending entries", () => {
  const reply = [
    { name: 'other', consumers: 1, pending: 7, 'last-delivered-id': '5-0', 'entries-read': 9, lag: 1 },
    { name: 'g', consumers: 1, pending: 3, 'last-delivered-id': '3-0', 'entries-read': 3, lag: 2 },
  ];
  assert.equal(backlogOfGroup(reply, 'g'), 5);
  assert.equal(backlogOfGroup(reply, 'other'), 8);
});

test('the backlog is unknown without the group or its lag', () => {
  assert.equal(backlogOfGroup([], 'g'), null);
  assert.equal(backlogOfGroup(null, 'g'), null);
  // Redis reports no lag when it cannot tell (entries deleted from the stream, say).
  assert.equal(backlogOfGroup([{ name: 'g', pending: 0, lag: null }], 'g'), null);
});
