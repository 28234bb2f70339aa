#!/usr/bin/env node
// Runs one test tier (unit | int | e2e) with node's test runner. Node 20 does not expand globs in
// --test, so the files are found here. Tiers run their files `TEST_CONCURRENCY` at a time (default:
// unit all at once, the others one at a time on this 2-core machine's shared services).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const tier = process.argv[2];
if (!['unit', 'int', 'e2e'].includes(tier)) {
  console.error('usage: run-tests.mjs unit|int|e2e [filter]');
  process.exit(2);
}
const filter = process.argv[3];
const roots = ['packages', 'services', 'ops', 'bench'];
const files = [];
function walk(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path);
    else if (entry.name.endsWith(`.${tier}.test.ts`) && (!filter || path.includes(filter))) files.push(path);
  }
}
roots.forEach(walk);
files.sort();
if (files.length === 0) {
  console.error(`no ${tier} tests found`);
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? (tier === 'unit' ? String(files.length) : '1');
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
