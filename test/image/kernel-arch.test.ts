import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import {
  FILE_TYPE_HEADER_BYTES,
  readFileType,
  readKernelInfo,
  sniffFileType,
  sniffKernel,
} from '../../src/image/kernel-arch.js';

/** A minimal ELF identification + e_type + e_machine (20 bytes is all the sniffer needs). */
function elfHeader(options: { bits: 32 | 64; littleEndian: boolean; machine: number; type?: number }): Buffer {
  const header = Buffer.alloc(64);
  header.set([0x7f, 0x45, 0x4c, 0x46, options.bits === 64 ? 2 : 1, options.littleEndian ? 1 : 2, 1], 0);
  if (options.littleEndian) {
    header.writeUInt16LE(options.type ?? 2, 16);
    header.writeUInt16LE(options.machine, 18);
  } else {
    header.writeUInt16BE(options.type ?? 2, 16);
    header.writeUInt16BE(options.machine, 18);
  }
  return header;
}

/** An x86 boot sector + setup header as Documentation/arch/x86/boot.rst lays it out. */
function bzImageHeader(options: { protocol: number; xloadflags?: number; version?: string }): Buffer {
  const header = Buffer.alloc(0x4000);
  header.write('MZ', 0, 'latin1');
  header.set([0x55, 0xaa], 0x1fe);
  header.write('HdrS', 0x202, 'latin1');
  header.writeUInt16LE(options.protocol, 0x206);
  if (options.xloadflags !== undefined) header.writeUInt16LE(options.xloadflags, 0x236);
  if (options.version !== undefined) {
    const pointer = 0x3000;
    header.writeUInt16LE(pointer, 0x20e);
    header.write(`${options.version}\0`, pointer + 0x200, 'latin1');
  }
  return header;
}

/** The 64-byte arm64 Image header (Documentation/arch/arm64/booting.rst), with an EFI "MZ" stub. */
function arm64ImageHeader(imageSize = 0x2000000n, flags = 0xan): Buffer {
  const header = Buffer.alloc(64);
  header.write('MZ', 0, 'latin1');
  header.writeBigUInt64LE(0n, 8);
  header.writeBigUInt64LE(imageSize, 16);
  header.writeBigUInt64LE(flags, 24);
  header.write('ARM\x64', 0x38, 'latin1');
  return header;
}

describe('sniffKernel: ELF', () => {
  const cases: [string, Parameters<typeof elfHeader>[0], string, 32 | 64][] = [
    ['x86-64', { bits: 64, littleEndian: true, machine: 0x3e }, 'amd64', 64],
    ['aarch64', { bits: 64, littleEndian: true, machine: 0xb7 }, 'arm64', 64],
    ['i386', { bits: 32, littleEndian: true, machine: 0x03 }, '386', 32],
    ['arm', { bits: 32, littleEndian: true, machine: 0x28 }, 'arm', 32],
    ['riscv64', { bits: 64, littleEndian: true, machine: 0xf3 }, 'riscv64', 64],
    ['s390x', { bits: 64, littleEndian: false, machine: 0x16 }, 's390x', 64],
    ['ppc64le', { bits: 64, littleEndian: true, machine: 0x15 }, 'ppc64le', 64],
    ['ppc64 big-endian', { bits: 64, littleEndian: false, machine: 0x15 }, 'ppc64', 64],
    ['mips64le', { bits: 64, littleEndian: true, machine: 0x08 }, 'mips64le', 64],
    ['loong64', { bits: 64, littleEndian: true, machine: 0x102 }, 'loong64', 64],
  ];
  for (const [label, options, architecture, bits] of cases) {
    test(label, () => {
      const info = sniffKernel(elfHeader(options));
      assert.equal(info.format, 'elf');
      assert.equal(info.architecture, architecture);
      assert.equal(info.bits, bits);
    });
  }

  test('detail names class, byte order, type and machine', () => {
    assert.equal(sniffKernel(elfHeader({ bits: 64, littleEndian: true, machine: 0x3e })).detail, 'ELF 64-bit LSB executable, x86-64');
    assert.equal(
      sniffKernel(elfHeader({ bits: 64, littleEndian: false, machine: 0x16, type: 3 })).detail,
      'ELF 64-bit MSB shared object, IBM S/390',
    );
  });

  test('unknown machine and invalid class give no architecture', () => {
    const unknown = sniffKernel(elfHeader({ bits: 64, littleEndian: true, machine: 0x1234 }));
    assert.equal(unknown.format, 'elf');
    assert.equal(unknown.architecture, undefined);
    assert.match(unknown.detail, /unknown machine 0x1234/);
    const invalid = elfHeader({ bits: 64, littleEndian: true, machine: 0x3e });
    invalid[4] = 9;
    assert.deepEqual(sniffKernel(invalid), { format: 'elf', detail: 'ELF with an invalid class or byte order' });
  });

  test('truncated ELF headers are reported, not thrown', () => {
    const full = elfHeader({ bits: 64, littleEndian: true, machine: 0xb7 });
    assert.equal(sniffKernel(full.subarray(0, 4)).format, 'elf');
    assert.equal(sniffKernel(full.subarray(0, 19)).architecture, undefined);
    assert.match(sniffKernel(full.subarray(0, 19)).detail, /too short/);
    assert.equal(sniffKernel(full.subarray(0, 20)).architecture, 'arm64');
  });

  test('the running node binary matches process.arch', { skip: process.platform !== 'linux' }, async () => {
    const expected: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm', s390x: 's390x', ppc64: 'ppc64le', riscv64: 'riscv64' };
    const info = await readKernelInfo(process.execPath);
    assert.equal(info.format, 'elf');
    assert.equal(info.architecture, expected[process.arch]);
  });
});

describe('sniffKernel: bzImage and arm64 Image', () => {
  test('a 64-bit bzImage (XLF_KERNEL_64) is amd64, with its version', () => {
    const info = sniffKernel(bzImageHeader({ protocol: 0x020f, xloadflags: 0x1f, version: '6.1.0-lapin (root@build) #1 SMP' }));
    assert.deepEqual(info, {
      format: 'bzimage',
      architecture: 'amd64',
      bits: 64,
      detail: 'x86 bzImage, 64-bit, boot protocol 2.15, version 6.1.0-lapin (root@build) #1 SMP',
    });
  });

  test('a bzImage without XLF_KERNEL_64 is 386', () => {
    const info = sniffKernel(bzImageHeader({ protocol: 0x020c, xloadflags: 0 }));
    assert.equal(info.architecture, '386');
    assert.equal(info.bits, 32);
  });

  test('an old boot protocol cannot tell 32 from 64 bits and says amd64', () => {
    const info = sniffKernel(bzImageHeader({ protocol: 0x0209, xloadflags: 1 }));
    assert.equal(info.format, 'bzimage');
    assert.equal(info.architecture, 'amd64');
    assert.equal(info.bits, undefined);
    assert.match(info.detail, /x86 bzImage \(32\/64-bit not recorded\), boot protocol 2\.09/);
  });

  test('a version string past the header end is left out', () => {
    const info = sniffKernel(bzImageHeader({ protocol: 0x020f, xloadflags: 1, version: '6.1' }).subarray(0, 0x1000));
    assert.equal(info.architecture, 'amd64');
    assert.doesNotMatch(info.detail, /version/);
  });

  test('the boot flag alone, or HdrS alone, is not a bzImage', () => {
    const header = bzImageHeader({ protocol: 0x020f, xloadflags: 1 });
    header[0x1fe] = 0;
    assert.equal(sniffKernel(header).format, 'unknown');
    assert.equal(sniffFileType(header), 'unknown');
  });

  test('arm64 Image', () => {
    assert.deepEqual(sniffKernel(arm64ImageHeader()), {
      format: 'arm64-image',
      architecture: 'arm64',
      bits: 64,
      detail: 'arm64 Linux Image, little-endian, image size 33554432',
    });
    assert.equal(sniffKernel(arm64ImageHeader(0n, 1n)).detail, 'arm64 Linux Image, big-endian');
    assert.equal(sniffKernel(arm64ImageHeader().subarray(0, 0x3c)).format, 'arm64-image');
    assert.equal(sniffKernel(arm64ImageHeader().subarray(0, 0x3b)).format, 'unknown');
  });

  test('non-kernels say what they are', () => {
    assert.match(sniffKernel(Buffer.from([0x1f, 0x8b, 8, 0])).detail, /gzip-compressed/);
    assert.match(sniffKernel(Buffer.from('070701')).detail, /cpio archive/);
    assert.match(sniffKernel(Buffer.from('MZ\x90\x00')).detail, /PE\/COFF/);
    assert.deepEqual(sniffKernel(new Uint8Array(0)), { format: 'unknown', detail: 'empty file' });
    assert.deepEqual(sniffKernel(Buffer.from('hello')), { format: 'unknown', detail: 'no known kernel header' });
  });
});

describe('sniffFileType', () => {
  function at(offset: number, bytes: number[] | string, length = FILE_TYPE_HEADER_BYTES): Buffer {
    const header = Buffer.alloc(length);
    if (typeof bytes === 'string') header.write(bytes, offset, 'latin1');
    else header.set(bytes, offset);
    return header;
  }
  function ext(logBlockSize = 2): Buffer {
    const header = at(1024 + 56, [0x53, 0xef], 2048);
    header.writeUInt32LE(logBlockSize, 1024 + 24);
    return header;
  }

  test('each known type', () => {
    assert.equal(sniffFileType(Buffer.from('07070100000001')), 'cpio-newc');
    assert.equal(sniffFileType(Buffer.from('070702')), 'cpio-newc');
    assert.equal(sniffFileType(Buffer.from('070707')), 'cpio-odc');
    assert.equal(sniffFileType(ext()), 'ext');
    assert.equal(sniffFileType(at(0, 'hsqs')), 'squashfs');
    assert.equal(sniffFileType(at(0x8001, 'CD001')), 'iso9660');
    assert.equal(sniffFileType(at(1024, [0xe2, 0xe1, 0xf5, 0xe0])), 'erofs');
    assert.equal(sniffFileType(Buffer.from([0x1f, 0x8b, 0x08])), 'gzip');
    assert.equal(sniffFileType(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04])), 'zstd');
    assert.equal(sniffFileType(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00])), 'xz');
    assert.equal(sniffFileType(at(257, 'ustar\x0000', 512)), 'tar');
    assert.equal(sniffFileType(at(257, 'ustar  \0', 512)), 'tar');
    assert.equal(sniffFileType(elfHeader({ bits: 64, littleEndian: true, machine: 0x3e })), 'elf');
    assert.equal(sniffFileType(bzImageHeader({ protocol: 0x020f })), 'bzimage');
    assert.equal(sniffFileType(arm64ImageHeader()), 'arm64-image');
    assert.equal(sniffFileType(Buffer.alloc(FILE_TYPE_HEADER_BYTES)), 'unknown');
  });

  test('an ext magic with an absurd block size is not ext', () => {
    assert.equal(sniffFileType(ext(40)), 'unknown');
  });

  test('magics cut short by the end of the buffer are unknown', () => {
    assert.equal(sniffFileType(Buffer.from('07070')), 'unknown');
    assert.equal(sniffFileType(ext().subarray(0, 1024 + 57)), 'unknown');
    assert.equal(sniffFileType(at(0x8001, 'CD001').subarray(0, 0x8005)), 'unknown');
    assert.equal(sniffFileType(Buffer.from([0xfd, 0x37, 0x7a])), 'unknown');
  });

  test('never throws: random bytes and every prefix of every sample header', () => {
    const samples = [
      elfHeader({ bits: 64, littleEndian: false, machine: 0x15 }),
      bzImageHeader({ protocol: 0x020f, xloadflags: 1, version: '6.6' }),
      arm64ImageHeader(),
      ext(),
      at(0x8001, 'CD001'),
    ];
    for (const sample of samples) {
      for (let length = 0; length <= Math.min(sample.length, 0x300); length++) {
        sniffKernel(sample.subarray(0, length));
        sniffFileType(sample.subarray(0, length));
      }
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2200 }), fc.nat({ max: 7 }), (bytes, shift) => {
        // An offset view checks that reads honour byteOffset.
        const view = new Uint8Array(Buffer.concat([Buffer.alloc(shift), bytes]).buffer, shift, bytes.length);
        const info = sniffKernel(view);
        assert.ok(['elf', 'bzimage', 'arm64-image', 'unknown'].includes(info.format));
        assert.equal(typeof sniffFileType(view), 'string');
      }),
      { numRuns: 300 },
    );
  });

  test('reads honour the view offset of a Uint8Array', () => {
    const backing = Buffer.concat([Buffer.from('junk'), elfHeader({ bits: 64, littleEndian: true, machine: 0xb7 })]);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 4, 64);
    assert.equal(sniffKernel(view).architecture, 'arm64');
  });
});

describe('reading from disk', () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lapin-kernel-'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('readKernelInfo reads the header of a large file', async () => {
    const path = join(work, 'bzImage');
    await writeFile(path, bzImageHeader({ protocol: 0x020f, xloadflags: 1, version: '6.6.1' }));
    await truncate(path, 64 * 1024 * 1024);
    const info = await readKernelInfo(path);
    assert.equal(info.architecture, 'amd64');
    assert.match(info.detail, /version 6\.6\.1$/);
  });

  test('readKernelInfo on a file shorter than the header', async () => {
    const path = join(work, 'tiny');
    await writeFile(path, elfHeader({ bits: 32, littleEndian: true, machine: 0x28 }).subarray(0, 20));
    assert.equal((await readKernelInfo(path)).architecture, 'arm');
  });

  test('readFileType sees an ISO 9660 descriptor at 0x8001', async () => {
    const path = join(work, 'image.iso');
    const header = Buffer.alloc(0x9000);
    header.write('CD001', 0x8001, 'latin1');
    await writeFile(path, header);
    assert.equal(await readFileType(path), 'iso9660');
  });

  test('unreadable paths are LapinErrors', async () => {
    await assert.rejects(readKernelInfo(join(work, 'missing')), (error: unknown) => {
      assert.ok(error instanceof LapinError);
      assert.match(error.message, /^kernel .*missing: no such file$/);
      assert.equal(error.exitCode, 2);
      return true;
    });
    await assert.rejects(readKernelInfo(work), (error: unknown) => {
      assert.ok(error instanceof LapinError);
      assert.match(error.message, /is a directory, not a regular file/);
      return true;
    });
    // A FIFO is refused at once instead of blocking the open forever.
    const fifo = join(work, 'fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    await assert.rejects(readKernelInfo(fifo), (error: unknown) => {
      assert.ok(error instanceof LapinError);
      assert.match(error.message, /is a FIFO, not a regular file/);
      return true;
    });
  });

  test('an unreadable kernel is one sentence with a hint and exit 2, not "EACCES" with exit 1', async () => {
    const file = join(work, 'locked kernel');
    await writeFile(file, Buffer.alloc(4096));
    await chmod(file, 0o600);
    await chmod(work, 0o755);
    // As an unprivileged user: root reads any file.
    const script = `import('${new URL('../../src/image/kernel-arch.ts', import.meta.url).href}').then((m) => m.readKernelInfo(${JSON.stringify(file)})).then(() => console.log('read'), (e) => console.log(JSON.stringify({ message: e.message, hint: e.hint, exitCode: e.exitCode })))`;
    const child = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', cwd: '/' });
    assert.equal(child.status, 0, child.stderr);
    const error = JSON.parse(child.stdout) as { message: string; hint: string; exitCode: number };
    assert.match(error.message, /^kernel .*locked kernel: permission denied$/);
    assert.match(error.hint, /readable/);
    assert.equal(error.exitCode, 2);
  });
});
