// The outage log's decisions with a fake clock: what an outage of Redis or the database writes, and what
// it no longer writes (one line per failed attempt).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type LogSink, OutageLog } from '../src/outage-log.ts';

interface Line {
  level: 'error' | 'warn' | 'info';
  fields: Record<string, unknown>;
  message: string;
}

function recorder(): { sink: LogSink; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: Line['level']) => (fields: Record<string, unknown>, message: string) =>
    lines.push({ level, fields, message });
  return { sink: { error: at('error'), warn: at('warn'), info: at('info') }, lines };
}

test('an outage writes a line when it begins, one per summary interval, and one when it ends', () => {
  const { sink, lines } = recorder();
  const log = new OutageLog(sink, 10_000, 'the relay retries');
  // 30 s of failures every 5 ms, with the timer ticking every second: 6,000 attempts.
  for (let now = 0; now < 30_000; now += 5) {
    log.failed('broker', 'OOM command not allowed', 500, now);
    if (now % 1000 === 0) log.tick(now);
  }
  log.recovered('broker', 30_000);
  assert.deepEqual(
    lines.map((line) => `${line.level} ${line.message}`),
    [
      'error Redis unreachable: the relay retries; further failures are summarised',
      'warn Redis still unreachable',
      'warn Redis still unreachable',
      'info Redis reachable again',
    ],
  );
  assert.deepEqual(lines.at(-1)?.fields, {
    dependency: 'broker',
    failedAttempts: 3_000_000,
    downForMs: 30_000,
  });
  assert.equal(lines[1]?.fields.err, 'OOM command not allowed');
  assert.equal(lines[1]?.fields.downForMs, 10_000);
  // The two summaries and the end account for every failure after the first.
  assert.equal(
    Number(lines[1]?.fields.failedAttempts) + Number(lines[2]?.fields.failedAttempts),
    Number(lines[2]?.fields.totalFailedAttempts) - 500,
  );
});

test('Redis and the database are tracked apart; a recovery of one does not end the other', () => {
  const { sink, lines } = recorder();
  const log = new OutageLog(sink, 60_000, 'the relay retries');
  log.failed('database', 'connection refused', 1, 0);
  log.failed('broker', 'ECONNREFUSED', 10, 100);
  log.recovered('broker', 200);
  log.failed('database', 'connection refused', 1, 300);
  assert.equal(log.isDown('database'), true);
  log.recovered('database', 1000);
  log.recovered('database', 1100);
  assert.deepEqual(
    lines.map((line) => `${line.level} ${line.message}`),
    [
      'error the database unreachable: the relay retries; further failures are summarised',
      'error Redis unreachable: the relay retries; further failures are summarised',
      'info Redis reachable again',
      'info the database reachable again',
    ],
  );
  assert.deepEqual(lines[3]?.fields, { dependency: 'database', failedAttempts: 2, downForMs: 1000 });
});

test('refused events are logged at once, then summed per interval', () => {
  const { sink, lines } = recorder();
  const log = new OutageLog(sink, 10_000, 'the relay retries');
  for (let now = 0; now <= 25_000; now += 100) {
    log.refusedEvents('ERR too large', 2, now);
    log.tick(now);
  }
  assert.deepEqual(
    lines.map((line) => `${line.message} ${String(line.fields.count)}`),
    [
      'Redis refused events; they will be retried 2',
      'Redis refused more events; they will be retried 200',
      'Redis refused more events; they will be retried 200',
    ],
  );
});
