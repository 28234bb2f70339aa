import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventLatencies, percentile, ratio, slope, summarize } from './lib/stats.ts';

test('percentile uses the nearest rank', () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile([7], 95), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test('summarize sorts its input', () => {
  const summary = summarize([5, 1, 4, 2, 3]);
  assert.deepEqual([summary.p50, summary.max, summary.mean, summary.count], [3, 5, 3, 5]);
});

test('slope of a flat series is 0 and of a line its gradient', () => {
  assert.equal(
    slope([
      { x: 0, y: 3 },
      { x: 1, y: 3 },
      { x: 2, y: 3 },
    ]),
    0,
  );
  assert.equal(
    slope([
      { x: 0, y: 1 },
      { x: 1, y: 3 },
      { x: 2, y: 5 },
    ]),
    2,
  );
});

test('ratio is null when a side is missing', () => {
  assert.equal(ratio(1, 2), 0.5);
  assert.equal(ratio(null, 2), null);
  assert.equal(ratio(1, 0), null);
});

test("eventLatencies measures each arrival from its trade's commit and counts what never arrived", () => {
  const commits = new Map([
    ['t1', 100],
    ['t2', 200],
    ['t3', 300],
  ]);
  // t1 complete, t2 one of its two events, t3 none; t9 was not committed in the window and is ignored.
  const arrivals = new Map([
    ['t1', [101.5, 104]],
    ['t2', [210]],
    ['t9', [1]],
  ]);
  const { values, missing } = eventLatencies(commits, arrivals, 2);
  assert.deepEqual(values, [1.5, 4, 10]);
  assert.equal(missing, 3);
});
