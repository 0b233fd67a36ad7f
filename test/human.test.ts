import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { count, formatBytes, formatDuration } from '../src/human.js';

test('sizes in binary units, at most three significant digits', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(189), '189 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1024), '1.0 KiB');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(660602880), '630 MiB');
  assert.equal(formatBytes(1024 * 1024 - 1), '1.0 MiB');
  assert.equal(formatBytes(3 * 1024 ** 3), '3.0 GiB');
  fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 50 }), (n) => /^\d{1,4}(\.\d)? (B|KiB|MiB|GiB|TiB)$/.test(formatBytes(n))));
});

test('singular and plural', () => {
  assert.equal(count(1, 'entry', 'entries'), '1 entry');
  assert.equal(count(0, 'entry', 'entries'), '0 entries');
  assert.equal(count(2, 'layer'), '2 layers');
});

test('durations', () => {
  assert.equal(formatDuration(0.04), '0.0s');
  assert.equal(formatDuration(4.26), '4.3s');
  assert.equal(formatDuration(42.4), '42s');
  assert.equal(formatDuration(125), '2m05s');
  assert.equal(formatDuration(3720), '1h02m');
});
