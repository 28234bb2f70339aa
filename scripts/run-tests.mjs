#!/usr/bin/env node
// Runs one test tier (unit | int | e2e) with node's test runner. Node 20 does not expand globs in
// --test, so the files are found here. Tiers run their files `TEST_CONCURRENCY` at a time (default:
// unit all at once, the others one at a time on this 2-core machine's shared services).
//
//   run-tests.mjs <tier> [filter ...] [--shuffle] [--seed N] [--name PATTERN]
//
// A filter that names an existing file runs exactly that file (so `relay.int.test.ts`'s path does not
// also pick `multi-relay.int.test.ts`); any other filter keeps the files whose path contains it.
// --shuffle (or TEST_SHUFFLE=1) runs the files in a random order from a printed seed, so a test that
// only passes after another one shows up, and the order that broke it can be replayed with
// --seed N (or TEST_SEED=N). --name runs only the tests whose name matches (--test-name-pattern).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, normalize, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = 'usage: run-tests.mjs unit|int|e2e [filter ...] [--shuffle] [--seed N] [--name PATTERN]';
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      shuffle: { type: 'boolean', default: process.env.TEST_SHUFFLE === '1' },
      seed: { type: 'string', default: process.env.TEST_SEED },
      name: { type: 'string' },
    },
  });
} catch (error) {
  console.error(`${error.message}\n${USAGE}`);
  process.exit(2);
}
const [tier, ...filters] = parsed.positionals;
if (!['unit', 'int', 'e2e'].includes(tier)) {
  console.error(USAGE);
  process.exit(2);
}
const seedText = parsed.values.seed;
if (seedText !== undefined && !/^\d{1,10}$/.test(seedText)) {
  console.error(`--seed must be a whole number, got "${seedText}"`);
  process.exit(2);
}

const roots = ['packages', 'services', 'ops', 'bench'];
const all = [];
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
    else if (entry.name.endsWith(`.${tier}.test.ts`)) all.push(path);
  }
}
roots.forEach(walk);
all.sort();

const exact = new Set();
const partial = [];
for (const filter of filters) {
  if (existsSync(filter) && statSync(filter).isFile()) exact.add(normalize(relative('.', resolve(filter))));
  else partial.push(filter);
}
const files =
  filters.length === 0
    ? all
    : all.filter((path) => exact.has(normalize(path)) || partial.some((filter) => path.includes(filter)));
if (files.length === 0) {
  console.error(`no ${tier} tests found${filters.length > 0 ? ` for ${filters.join(' ')}` : ''}`);
  process.exit(1);
}

/** mulberry32: a small seeded generator, so an order can be replayed from its seed. */
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let seed;
if (parsed.values.shuffle || seedText !== undefined) {
  seed = seedText === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(seedText);
  const next = random(seed);
  for (let i = files.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [files[i], files[j]] = [files[j], files[i]];
  }
  console.log(`# ${tier}: ${files.length} files in random order, seed ${seed}`);
  for (const file of files) console.log(`#   ${file}`);
}

const concurrency = process.env.TEST_CONCURRENCY ?? (tier === 'unit' ? String(files.length) : '1');
const nameArgs = parsed.values.name === undefined ? [] : [`--test-name-pattern=${parsed.values.name}`];
const result = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-reporter=spec',
    ...nameArgs,
    ...files,
  ],
  // `@astra/source`: workspace packages resolve to their TypeScript sources, no build needed. Through
  // NODE_OPTIONS the processes the tests start get it too (npm scripts get it from .npmrc).
  {
    stdio: 'inherit',
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --conditions=@astra/source` },
  },
);
const status = result.status ?? 1;
if (status !== 0 && seed !== undefined) {
  console.error(`# ${tier} failed with files in the order of seed ${seed}: replay with`);
  console.error(
    `#   node scripts/run-tests.mjs ${tier} ${filters.join(' ')} --seed ${seed}`.replace(/ +/g, ' '),
  );
}
process.exit(status);
