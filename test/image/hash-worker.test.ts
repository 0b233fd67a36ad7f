// The block hasher's worker must give the sha256 the main thread gives, for
// every block, in any order of settling, and must not keep the process alive.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { BlockHasher } from '../../src/image/hash-worker.js';

test('blocks hashed on the worker (after the first few on the main thread) match createHash, across a close and a restart', async () => {
  const hasher = new BlockHasher();
  const blocks = Array.from({ length: 40 }, (_, i) => randomBytes(i % 5 === 0 ? 1024 * 1024 : 1000 + i * 997));
  const hashes = await Promise.all(blocks.map((b) => hasher.sha256(b)));
  for (const [i, block] of blocks.entries()) assert.equal(hashes[i]?.toString('hex'), createHash('sha256').update(block).digest('hex'), `block ${i}`);
  await hasher.close();
  const again = randomBytes(4096);
  assert.equal((await hasher.sha256(again)).toString('hex'), createHash('sha256').update(again).digest('hex'));
  await hasher.close();
});

test('a block larger than the worker buffers is hashed on the main thread', async () => {
  const hasher = new BlockHasher();
  for (let i = 0; i < 10; i++) await hasher.sha256(Buffer.alloc(10));
  const big = randomBytes(3 * 1024 * 1024);
  assert.equal((await hasher.sha256(big)).toString('hex'), createHash('sha256').update(big).digest('hex'));
  await hasher.close();
});
