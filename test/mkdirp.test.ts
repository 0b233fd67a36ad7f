import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { makeDirectories } from '../src/mkdirp.js';

test('makeDirectories ends under procfs, where recursive fs.mkdir loops forever', async () => {
  // Node 20's mkdir({recursive: true}) never settles here: mkdir says ENOENT although /proc exists.
  const outcome = await Promise.race([
    makeDirectories('/proc/.lapin-x/a').then(
      () => 'made',
      (error: NodeJS.ErrnoException) => error.code,
    ),
    new Promise((resolve) => setTimeout(() => resolve('hung'), 5000).unref()),
  ]);
  assert.equal(outcome, 'ENOENT');
});

test('makeDirectories makes missing parents, accepts existing directories and refuses a file', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'lapin mkdirp '));
  try {
    await makeDirectories(path.join(root, 'a', 'b', 'c'));
    assert.ok((await stat(path.join(root, 'a', 'b', 'c'))).isDirectory());
    await makeDirectories(path.join(root, 'a', 'b'));
    await writeFile(path.join(root, 'f'), '');
    await assert.rejects(makeDirectories(path.join(root, 'f')), { code: 'EEXIST' });
    await assert.rejects(makeDirectories(path.join(root, 'f', 'g')), { code: 'ENOTDIR' });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
