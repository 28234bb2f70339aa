// The Prometheus configuration, rules and rule unit tests, checked with promtool from the Debian package.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ALERTS } from './support/alerts.ts';
import { OPS, run } from './support/processes.ts';

const PROMETHEUS_DIR = join(OPS, 'prometheus');
const RULES = join(PROMETHEUS_DIR, 'rules', 'outbox.rules.yml');
const RULE_TESTS = join(PROMETHEUS_DIR, 'tests', 'outbox.rules.test.yml');

test('promtool check config accepts prometheus.yml, its rule glob and its file_sd target files', () => {
  const result = run('promtool', ['check', 'config', join(PROMETHEUS_DIR, 'prometheus.yml')]);
  assert.equal(result.status, 0, result.output);
  // A rule_files glob that matches nothing is not an error for promtool; it is for us.
  assert.match(result.output, /SUCCESS: 1 rule files found/, result.output);
  assert.match(
    result.output,
    new RegExp(`SUCCESS: ${Object.keys(ALERTS).length} rules found`),
    result.output,
  );
});

test('promtool check rules accepts the outbox rules', () => {
  const result = run('promtool', ['check', 'rules', RULES]);
  assert.equal(result.status, 0, result.output);
  assert.match(
    result.output,
    new RegExp(`SUCCESS: ${Object.keys(ALERTS).length} rules found`),
    result.output,
  );
});

test('promtool test rules passes every case of the rule unit tests', () => {
  const result = run('promtool', ['test', 'rules', RULE_TESTS]);
  assert.equal(result.status, 0, result.output);
  assert.match(result.output, /SUCCESS/, result.output);
});

test('every alert has unit-test cases that fire and cases that stay quiet', () => {
  const text = readFileSync(RULE_TESTS, 'utf8');
  const cases = new Map<string, { firing: number; quiet: number }>();
  // Each `- eval_time:` item is one check of one alert; a quiet one says `exp_alerts: []`.
  for (const item of text.split(/^\s+- eval_time:/m).slice(1)) {
    const check = item.split(/^\s+- (?:name|eval_time):/m)[0] ?? '';
    const name = /^\s+alertname:\s*(\S+)\s*$/m.exec(check)?.[1];
    assert.ok(name, `an alert_rule_test item without alertname:\n${check}`);
    const counts = cases.get(name) ?? { firing: 0, quiet: 0 };
    if (/exp_alerts:\s*\[\]/.test(check)) counts.quiet++;
    else if (/exp_alerts:\s*\n\s+- exp_labels:/.test(check)) counts.firing++;
    else assert.fail(`cannot tell whether this ${name} check fires:\n${check}`);
    cases.set(name, counts);
  }
  assert.deepEqual([...cases.keys()].sort(), Object.keys(ALERTS).sort(), 'alerts covered by the unit tests');
  for (const [name, counts] of cases) {
    assert.ok(counts.firing >= 1, `${name} has no firing case`);
    assert.ok(counts.quiet >= 2, `${name} needs quiet cases below the threshold and shorter than its for`);
  }
});

test('promtool test rules fails when a rule no longer matches its tests', () => {
  // The unit tests are only worth something if they catch a changed threshold.
  const dir = mkdtempSync(join(tmpdir(), 'outbox-rules-'));
  try {
    const rules = readFileSync(RULES, 'utf8');
    const changed = rules.replace(
      'max(outbox_pending_events_total) > 10000',
      'max(outbox_pending_events_total) >= 10000',
    );
    assert.notEqual(changed, rules, 'the OutboxPendingHigh expression changed: update this test');
    mkdirSync(join(dir, 'rules'));
    mkdirSync(join(dir, 'tests'));
    writeFileSync(join(dir, 'rules', 'outbox.rules.yml'), changed);
    writeFileSync(join(dir, 'tests', 'outbox.rules.test.yml'), readFileSync(RULE_TESTS));
    const result = run('promtool', ['test', 'rules', join(dir, 'tests', 'outbox.rules.test.yml')]);
    assert.notEqual(result.status, 0, result.output);
    assert.match(result.output, /OutboxPendingHigh stays quiet at exactly 10k/, result.output);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
