import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NODE_PARTS, POSTGRES_PARTS, summarizePerfScript } from './lib/profile.ts';

const share = (parts: { name: string; share: number }[], name: string) =>
  parts.find((part) => part.name === name)?.share;

test('a PostgreSQL part counts once per sample whose stack passes through it', () => {
  const output = [
    '\t  5f1 ExecInsertIndexTuples\n\t  5f2 ExecInsertIndexTuples\n\t  5f3 standard_ExecutorRun\n',
    '\t  6a1 _bt_bottomupdel_pass\n\t  6a2 ExecInsertIndexTuples\n',
    '\t  7b1 ExecScan\n\t  7b2 PostgresMain\n',
    '\t  8c1 [unknown]\n',
  ].join('\n');
  const profile = summarizePerfScript(output, POSTGRES_PARTS);
  assert.equal(profile.samples, 4);
  assert.equal(share(profile.parts, 'index entries added (inserts, non-HOT updates)'), 0.5);
  assert.equal(share(profile.parts, '  of which bottom-up deletion of old versions'), 0.25);
  assert.equal(share(profile.parts, 'scans (index and heap reads)'), 0.25);
  assert.equal(share(profile.parts, 'foreign-key checks'), 0);
});

test('Node.js parts match JIT-compiled frames by the file they come from', () => {
  const output = [
    '\t  1 JS:*parse /work/main/node_modules/pg-protocol/dist/parser.js:26:10\n' +
      '\t  2 JS:*publishBatch file:///work/main/packages/outbox/src/relay.ts:1:100\n',
    '\t  3 node::StreamBase::Writev\n\t  4 JS:*encodeCommand /work/main/node_modules/@redis/client/dist/lib/RESP/encoder.js:4:1\n',
    '\t  5 v8::internal::Heap::CollectGarbage\n',
  ].join('\n\n');
  const profile = summarizePerfScript(output, NODE_PARTS);
  assert.equal(profile.samples, 3);
  assert.equal(share(profile.parts, 'node-postgres (pg, pg-protocol, pg-pool)'), 1 / 3);
  assert.equal(share(profile.parts, 'the outbox library (packages/outbox)'), 1 / 3);
  assert.equal(share(profile.parts, 'node-redis (@redis/client)'), 1 / 3);
  assert.equal(share(profile.parts, 'socket writes (kernel included)'), 1 / 3);
  assert.equal(share(profile.parts, 'garbage collection'), 1 / 3);
  assert.equal(share(profile.parts, 'the trading service (services/trading)'), 0);
});
