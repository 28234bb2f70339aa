import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isValidTracestate } from '../src/cloudevents.ts';

describe('W3C tracestate grammar', () => {
  test('accepts what the specification allows', () => {
    for (const value of [
      'congo=t61rcWkgMzE',
      'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE',
      'rojo=00f067aa0ba902b7 ,\tcongo=t61rcWkgMzE',
      'tenant1@vendor=opaque value',
      'a=1,,b=2',
      '',
      `${'k'.repeat(256)}=v`,
      `k=${'v'.repeat(256)}`,
      Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(','),
    ]) {
      assert.ok(isValidTracestate(value), JSON.stringify(value));
    }
  });

  test('refuses long, crowded or malformed values', () => {
    for (const value of [
      `k=${'v'.repeat(8000)}`,
      Array.from({ length: 40 }, (_, i) => `key${i}=${'v'.repeat(10)}`).join(','),
      Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','),
      'Upper=case',
      'k=',
      'k=a=b',
      'k=é',
      'k=line\nbreak',
      'no-equals-sign',
      '1abc=v',
      `${'k'.repeat(257)}=v`,
      `k=${'v'.repeat(257)}`,
      'tenant@Vendor=v',
      `t@${'s'.repeat(15)}=v`,
    ]) {
      assert.ok(!isValidTracestate(value), JSON.stringify(value).slice(0, 80));
    }
  });
});
