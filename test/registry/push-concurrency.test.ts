// How many blobs a push sends at once: the library option, else
// LAPIN_REGISTRY_PUSH_CONCURRENCY, else 3; anything else is refused in one line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_PUSH_CONCURRENCY, uploadConcurrency } from '../../src/registry/push.js';

test('the option wins, then LAPIN_REGISTRY_PUSH_CONCURRENCY, then the default', () => {
  assert.equal(uploadConcurrency(undefined, {}), DEFAULT_PUSH_CONCURRENCY);
  assert.equal(uploadConcurrency(undefined, { LAPIN_REGISTRY_PUSH_CONCURRENCY: '' }), DEFAULT_PUSH_CONCURRENCY);
  assert.equal(uploadConcurrency(undefined, { LAPIN_REGISTRY_PUSH_CONCURRENCY: '6' }), 6);
  assert.equal(uploadConcurrency(2, { LAPIN_REGISTRY_PUSH_CONCURRENCY: '6' }), 2);
});

test('a bad number is a usage error (exit 2) that names the variable', () => {
  for (const text of ['0', '-1', 'three', '1.5', '65']) {
    assert.throws(() => uploadConcurrency(undefined, { LAPIN_REGISTRY_PUSH_CONCURRENCY: text }), (error: Error & { exitCode?: number }) => {
      assert.match(error.message, /^LAPIN_REGISTRY_PUSH_CONCURRENCY=".*" is not a number of blobs from 1 to 64$/);
      assert.equal(error.exitCode, 2);
      return true;
    });
  }
  assert.throws(() => uploadConcurrency(0, {}), /at least 1/);
});
