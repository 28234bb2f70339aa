// The Prometheus configuration, rules and rule unit tests, checked with promtool from the Debian package.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ALERTS, ALWAYS_FIRING, RULE_FILES, RULE_TEST_FILES, SLO_RECORDS } from './support/alerts.ts';
import { OPS, run } from './support/processes.ts';

const PROMETHEUS_DIR = join(OPS, 'prometheus');
const RULES = RULE_FILES.map((file) => join(PROMETHEUS_DIR, 'rules', file));
/** The rule unit tests: the outbox and consumer alerts at 15 s evaluations, the SLO's over hours and days. */
const RULE_TESTS = RULE_TEST_FILES.map((file) => join(PROMETHEUS_DIR, 'tests', file));
/** Alerting and recording rules in the rules files. */
const RULE_COUNT = Object.keys(ALERTS).length + SLO_RECORDS.length;

test('promtool check config accepts prometheus.yml, its rule glob and its file_sd target files', () => {
  const result = run('promtool', ['check', 'config', join(PROMETHEUS_DIR, 'prometheus.yml')]);
  assert.equal(result.status, 0, result.output);
  // A rule_files glob that matches nothing is not an error for promtool; it is for us.
  assert.match(result.output, new RegExp(`SUCCESS: ${RULE_FILES.length} rule files found`), result.output);
  const found = [...result.output.matchAll(/SUCCESS: (\d+) rules found/g)].map((m) => Number(m[1]));
  assert.equal(
    found.reduce((sum, count) => sum + count, 0),
    RULE_COUNT,
    result.output,
  );
});

test('promtool check rules accepts the outbox and consumer rules', () => {
  const result = run('promtool', ['check', 'rules', ...RULES]);
  assert.equal(result.status, 0, result.output);
  const found = [...result.output.matchAll(/SUCCESS: (\d+) rules found/g)].map((m) => Number(m[1]));
  assert.equal(found.length, RULE_FILES.length, result.output);
  assert.equal(
    found.reduce((sum, count) => sum + count, 0),
    RULE_COUNT,
    result.output,
  );
});

test('promtool test rules passes every case of the rule unit tests', () => {
  const result = run('promtool', ['test', 'rules', ...RULE_TESTS], 120_000);
  assert.equal(result.status, 0, result.output);
  assert.match(result.output, /SUCCESS/, result.output);
});

test('every alert has unit-test cases that fire and cases that stay quiet', () => {
  const cases = new Map<string, { firing: number; quiet: number }>();
  // Each `- eval_time:` item is one check of one alert; a quiet one says `exp_alerts: []`. Files apart,
  // so that the last check of one never runs into the header of the next.
  const items = RULE_TESTS.flatMap((file) =>
    readFileSync(file, 'utf8')
      .split(/^\s+- eval_time:/m)
      .slice(1),
  );
  for (const item of items) {
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
    if (ALWAYS_FIRING.has(name)) continue;
    assert.ok(counts.quiet >= 2, `${name} needs quiet cases below the threshold and shorter than its for`);
  }
});

/** Runs the committed unit tests of one rules file (`file`) against a changed copy of it. */
function testChangedRules(change: (rules: string) => string, file = 'outbox.rules.yml') {
  const dir = mkdtempSync(join(tmpdir(), 'outbox-rules-'));
  try {
    mkdirSync(join(dir, 'rules'));
    mkdirSync(join(dir, 'tests'));
    for (const name of RULE_FILES) {
      const rules = readFileSync(join(PROMETHEUS_DIR, 'rules', name), 'utf8');
      const changed = name === file ? change(rules) : rules;
      if (name === file) assert.notEqual(changed, rules, 'the rules changed: update this test');
      writeFileSync(join(dir, 'rules', name), changed);
    }
    // Only the tests of the changed file: the SLO's, over days, take most of the time.
    const copies = RULE_TEST_FILES.flatMap((name) => {
      const tests = readFileSync(join(PROMETHEUS_DIR, 'tests', name), 'utf8');
      if (!tests.includes(`../rules/${file}`)) return [];
      writeFileSync(join(dir, 'tests', name), tests);
      return [join(dir, 'tests', name)];
    });
    return run('promtool', ['test', 'rules', ...copies], 120_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('promtool test rules fails when a rule no longer matches its tests', () => {
  // The unit tests are only worth something if they catch a changed threshold.
  const result = testChangedRules((rules) =>
    rules.replace(
      'max(last_over_time(outbox_pending_events_total[2m])) > 10000',
      'max(last_over_time(outbox_pending_events_total[2m])) >= 10000',
    ),
  );
  assert.notEqual(result.status, 0, result.output);
  assert.match(result.output, /OutboxPendingHigh stays quiet at exactly 10k/, result.output);
});

test('promtool test rules fails when the backlog alerts lose their tolerance of scrape gaps', () => {
  // What the gap cases are there for: the raw gauges, as the rules read them before, miss them.
  const result = testChangedRules((rules) =>
    rules.replace(/max\(last_over_time\((outbox_[a-z_]+)\[2m\]\)\)/g, 'max($1)'),
  );
  assert.notEqual(result.status, 0, result.output);
  for (const name of ['OutboxPendingHigh', 'OutboxOldestPendingTooOld', 'OutboxFailedEvents'])
    assert.match(result.output, new RegExp(`${name} fires through (a )?one-scrape gap`), result.output);
});

test('promtool test rules fails when the SLO threshold moves off 30 s', () => {
  const result = testChangedRules((rules) => rules.replaceAll('le="30"', 'le="60"'));
  assert.notEqual(result.status, 0, result.output);
  assert.match(result.output, /OutboxLatencySLOBurnFast fires at 20% slow events/, result.output);
});

test('promtool test rules fails when the consumer lag alert no longer waits for a backlog that drains', () => {
  // Without its trend clause the alert pages for every burst, however fast it drains.
  const result = testChangedRules(
    (rules) =>
      rules.replace(
        /\n\s+and on \(group, stream\)\n\s+\(\n\s+max by \(group, stream\) \(deriv[^)]+\)\)[\s\S]*?\n\s+\)\n/,
        '\n',
      ),
    'consumer.rules.yml',
  );
  assert.notEqual(result.status, 0, result.output);
  assert.match(
    result.output,
    /OutboxConsumerLagHigh stays quiet at exactly 10k, and for a backlog that drains in time/,
  );
});

test('promtool test rules fails when the consumer gauges lose their tolerance of scrape gaps', () => {
  const result = testChangedRules(
    (rules) => rules.replace(/last_over_time\((outbox_consumer_[a-z_]+)\[2m\]\)/g, '$1'),
    'consumer.rules.yml',
  );
  assert.notEqual(result.status, 0, result.output);
  for (const name of ['OutboxConsumerLagHigh', 'OutboxConsumerDeadLetters'])
    assert.match(result.output, new RegExp(`${name} fires through a one-scrape gap`), result.output);
});
