// The kernel a build packages: a file with no kernel header (a cpio, a gzip'd
// vmlinuz, text) is a warning at the line that names it, as lapin inspect of
// the image warns; a real kernel header gives none.
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { build } from '../../src/build.js';
import { inspect } from '../../src/inspect/inspect.js';
import { EXAMPLE } from '../registry/helpers.js';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin assemble '));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('a kernel that does not look like one', () => {
  for (const [what, bytes, detail] of [
    ['text', Buffer.from('not a kernel\n'), 'no known kernel header'],
    ["a gzip'd kernel", gzipSync(Buffer.alloc(4096, 1)), 'gzip'],
    ['an empty file', Buffer.alloc(0), 'empty file'],
  ] as const) {
    test(`${what}: a warning at the kernel's line, the one inspect gives the image`, async () => {
      const context = await mkdtemp(path.join(work, 'context '));
      await cp(EXAMPLE, context, { recursive: true });
      await writeFile(path.join(context, 'network.hvt'), bytes);
      const dest = path.join(context, 'out.tar');
      const result = await build({ context, cwd: context, outputs: [{ type: 'oci', dest }], cacheDir: path.join(work, 'cache') });
      const warning = result.warnings.find((w) => w.includes('does not look like a kernel'));
      assert.ok(warning !== undefined, result.warnings.join('\n'));
      assert.match(warning, new RegExp(`^bunnyfile:11:9: the kernel /\\.boot/kernel does not look like a kernel: .*${detail}.* \\(lapin reads ELF, x86 bzImage and arm64 Image headers; check that the file is the kernel itself\\)$`));
      const report = await inspect(dest);
      assert.ok(report.warnings.some((w) => w.message.startsWith('the binary /.boot/kernel does not look like a kernel')), JSON.stringify(report.warnings));
    });
  }

  test('the seed ELF kernel: no such warning', async () => {
    const result = await build({ context: EXAMPLE, cwd: work, outputs: [{ type: 'oci', dest: path.join(work, 'seed.tar') }], cacheDir: path.join(work, 'cache') });
    assert.deepEqual(result.warnings, []);
  });
});
