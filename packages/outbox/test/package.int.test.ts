import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * The library as someone outside this repository gets it: `npm pack` (which builds it), the tarball
 * installed into a scratch project, every subpath imported by plain node (no TypeScript loader, no
 * source condition), and a consumer file type-checked by tsc against the packed declarations.
 */
const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const manifest = JSON.parse(readFileSync(join(PACKAGE_DIR, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, unknown>;
  peerDependencies: Record<string, string>;
};
const SUBPATHS = Object.keys(manifest.exports).filter((subpath) => subpath !== './package.json');
const specifier = (subpath: string) =>
  subpath === '.' ? manifest.name : `${manifest.name}${subpath.slice(1)}`;
const needsPromClient = (subpath: string) => subpath.endsWith('prometheus');

// Plain node: the repository's `@astra/source` condition (NODE_OPTIONS) must not reach the scratch project.
const env: NodeJS.ProcessEnv = { ...process.env };
delete env.NODE_OPTIONS;
delete env.NODE_TEST_CONTEXT;

function run(command: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  return spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 120_000 });
}

function succeeded(result: SpawnSyncReturns<string>, what: string): string {
  assert.equal(
    result.status,
    0,
    `${what} failed:\n${result.stdout}\n${result.stderr}\n${result.error ?? ''}`,
  );
  return result.stdout;
}

/** Imports one subpath in a fresh plain node and prints its export names. */
function importUnderNode(subpath: string, cwd: string): SpawnSyncReturns<string> {
  const script = `const m = await import(${JSON.stringify(specifier(subpath))}); console.log(Object.keys(m).join(','));`;
  return run(process.execPath, ['--input-type=module', '--eval', script], cwd);
}

describe('the packed library', () => {
  let scratch: string;
  let project: string;
  let files: string[];

  before(() => {
    scratch = mkdtempSync(join(tmpdir(), 'outbox-package-'));
    // `npm pack` runs the package's prepack script, which builds dist/ from a clean slate.
    const packed = succeeded(
      run('npm', ['pack', '--json', '--pack-destination', scratch], PACKAGE_DIR),
      'npm pack',
    );
    const [tarball] = JSON.parse(packed.slice(packed.search(/^\[/m))) as {
      filename: string;
      files: { path: string }[];
    }[];
    assert.ok(tarball !== undefined, 'npm pack reported no tarball');
    files = tarball.files.map((file) => file.path);
    project = join(scratch, 'project');
    mkdirSync(project);
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
    );
    succeeded(
      run(
        'npm',
        ['install', '--prefer-offline', '--no-audit', '--no-fund', join(scratch, tarball.filename)],
        project,
      ),
      'npm install of the tarball',
    );
  });

  after(() => {
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  });

  test('holds the built JavaScript and declarations of every subpath, and no sources or tests', () => {
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      if (typeof target === 'string') continue;
      const { types, default: main } = target as { types: string; default: string };
      assert.ok(files.includes(types.slice(2)), `${subpath}: ${types} is packed`);
      assert.ok(files.includes(main.slice(2)), `${subpath}: ${main} is packed`);
    }
    assert.deepEqual(
      files.filter(
        (path) => !/^dist\/.*\.(js|d\.ts)$/.test(path) && !['package.json', 'README.md'].includes(path),
      ),
      [],
    );
  });

  test('plain node imports every subpath; the Prometheus ones need prom-client, a peer', () => {
    for (const subpath of SUBPATHS.filter((subpath) => !needsPromClient(subpath))) {
      const names = succeeded(importUnderNode(subpath, project), `import ${specifier(subpath)}`);
      assert.notEqual(names.trim(), '', `${specifier(subpath)} exports something`);
    }
    for (const subpath of SUBPATHS.filter(needsPromClient)) {
      const result = importUnderNode(subpath, project);
      assert.notEqual(result.status, 0, `${specifier(subpath)} without prom-client fails`);
      assert.match(result.stderr, /Cannot find package 'prom-client'/);
    }

    succeeded(
      run(
        'npm',
        [
          'install',
          '--prefer-offline',
          '--no-audit',
          '--no-fund',
          `prom-client@${manifest.peerDependencies['prom-client']}`,
        ],
        project,
      ),
      'npm install prom-client',
    );
    for (const subpath of SUBPATHS.filter(needsPromClient)) {
      assert.match(succeeded(importUnderNode(subpath, project), `import ${specifier(subpath)}`), /register/);
    }
  });

  test('tsc type-checks a consumer against the packed declarations', () => {
    const namespaces = SUBPATHS.map(
      (subpath, index) => `import * as subpath${index} from '${specifier(subpath)}';`,
    );
    const consumer = `${namespaces.join('\n')}
import { createOutboxWriter, OutboxError, type OutboxErrorCode, OutboxRelay, RedisStreamsPublisher } from '@astra/outbox';
import { OutboxConsumer } from '@astra/outbox/consumer';
import { registerOutboxMetrics } from '@astra/outbox/prometheus';
import pg from 'pg';
import { Registry } from 'prom-client';

export const loaded = [${SUBPATHS.map((_, index) => `subpath${index}`).join(', ')}];
const pool = new pg.Pool();
const writer = createOutboxWriter({ source: '/consumer' });
export const written = writer.write(pool, [{ type: 'a.b.v1', aggregateType: 'a', aggregateId: '1', data: {} }]);
const relay = new OutboxRelay({ connectionString: 'postgres://', publisher: new RedisStreamsPublisher() });
registerOutboxMetrics({ registry: new Registry(), relay });
export const consumer = new OutboxConsumer({ pool, group: 'g', streams: ['s'], handler: async (_event, { db }) => {
  await db.query('SELECT 1');
} });
export function codeOf(error: unknown): OutboxErrorCode | undefined {
  return error instanceof OutboxError ? error.code : undefined;
}
// The declarations are real types, not any: each misuse below must be an error.
// @ts-expect-error source is a string
createOutboxWriter({ source: 1 });
// @ts-expect-error a pool is required
new OutboxConsumer({ group: 'g', streams: ['s'], handler: async () => {} });
`;
    writeFileSync(join(project, 'consumer.ts'), consumer);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2023',
          lib: ['ES2023'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: ['node'],
          strict: true,
          noEmit: true,
          skipLibCheck: false,
        },
        files: ['consumer.ts'],
      }),
    );
    succeeded(run(process.execPath, [TSC, '-p', project], project), 'tsc');
  });
});
