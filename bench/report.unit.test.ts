import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { type BenchReport, buildRows, buildTargets, renderMarkdown, reportFor } from './report.ts';

const results = new URL('results/', import.meta.url);
const files = readdirSync(results).filter((name) => name.endsWith('.json'));

function render(name: string): string {
  const report = JSON.parse(readFileSync(new URL(name, results), 'utf8')) as BenchReport;
  return renderMarkdown(report, buildRows(report), buildTargets(report), `bench/results/${name}`);
}

test('a report is named like its results file, so only a full run writes BENCHMARKS.md', () => {
  assert.equal(reportFor('bench/results/2026-11-27.json'), 'BENCHMARKS.md');
  assert.equal(reportFor('bench/results/2026-11-26-quick.json'), 'BENCHMARKS-quick.md');
  assert.equal(reportFor('bench/results/2026-12-03-partial.json'), 'BENCHMARKS-partial.md');
  assert.equal(reportFor('bench/results/2026-12-03-quick-partial.json'), 'BENCHMARKS-quick-partial.md');
});

test('every committed results file renders, naming its source and its machine', () => {
  assert.ok(files.length > 0);
  for (const name of files) {
    const report = JSON.parse(readFileSync(new URL(name, results), 'utf8')) as BenchReport;
    const markdown = render(name);
    assert.match(markdown, new RegExp(`Generated from \`bench/results/${name.replace('.', '\\.')}\``));
    assert.ok(markdown.includes(`| commit | ${report.machine.commit} |`), name);
  }
});

test("the report's prose states no figures: every number comes from the results, in tables", () => {
  for (const name of files) {
    const markdown = render(name);
    const prose = markdown
      .split('\n')
      .filter((line) => !line.startsWith('|') && !line.startsWith('#'))
      // What may carry digits: list markers, and the run's own header (its file, date, duration).
      .map((line) => line.replace(/^\d\. /, ''))
      .filter((line) => !/Generated from|Do not edit|minutes\)|samples\)/.test(line));
    assert.deepEqual(
      prose.filter((line) => /\d/.test(line)),
      [],
      name,
    );
  }
});
