/*
 * bunny's rules, as read in nubificus/bunny (hops/) at v0.0.5, and what lapin does with them:
 * - hops/parse_file.go ParseBunnyfile: yaml.v3 decode (unknown keys ignored, scalars such as
 *   `version: 0.1` read as their text, a single string for a list is a decode error, only the first
 *   document read); rootfs.from defaults to "scratch"; legacy `cmdline` is split on " " into cmd
 *   when cmd is empty, else ignored. lapin: unknown keys, wrong types and extra documents are errors.
 * - hops/parse_file.go FileToInclude.UnmarshalYAML: "src:dst" split at the first ':', empty src is
 *   an error, dst defaults to src, from is local; a mapping needs non-empty source and destination,
 *   from defaults to local.
 * - hops/validate.go: version required and <= v0.1 (hashicorp go-version compare); framework,
 *   monitor, kernel.from, kernel.path required; rootfs: path with from scratch; path with type raw;
 *   from local with type raw; include with from local; include on an image unless type is
 *   explicitly raw.
 * - hops/unikraft.go, hops/generic.go: unikraft supports initrd and raw (default initrd); every
 *   other framework initrd, block and raw (default raw). bunny cannot build a block rootfs from include.
 * - hops/package.go: local kernel -> /.boot/kernel; image kernel stays where it is (binary =
 *   kernel.path, the image is the base); local or built rootfs -> /.boot/rootfs; a rootfs image is
 *   the base; annotations unikernelType, hypervisor, binary, cmdline = cmd joined by " ",
 *   mountRootfs=false, unikernelVersion when set; initrd -> initrd; block -> block and
 *   blkMntPoint=/ (/data for rumprun); raw -> mountRootfs=true. Because from defaults to scratch
 *   before ToPack, a bunnyfile with no rootfs gets the framework's default type: for mirage (the
 *   seed) bunny writes mountRootfs=true, for unikraft an empty initrd (dropped). lapin writes
 *   mountRootfs=false when there is no rootfs section: there is nothing to hand to the guest.
 * - lapin beyond bunny: from an image with an explicit initrd or block type and no path, the image's
 *   files (plus includes) become that rootfs file at /.boot/rootfs; include entries from an image
 *   copy out of it. With a path, bunny's reading (a file inside the image) and bunny's refusal of includes.
 * - lapin-only errors: include on an image with no explicit type, kernel.from scratch,
 *   rootfs.path from an image with the framework's implicit raw type, rootfs.size (lapin's) on anything
 *   but a block built from include. lapin builds a block rootfs from include (bunny refuses), and
 *   reads a local rootfs file without a type at build time (cpio -> initrd, ext -> block) where
 *   bunny falls back to raw,
 *   local rootfs without path, an implicit initrd from an image without path, initrd/block type
 *   with nothing to put in it, envs entries that are not KEY=VALUE, unknown architecture.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseBunnyfile } from '../../src/frontends/bunnyfile.js';
import { LapinError } from '../../src/errors.js';
import type { BlockOp, BuildPlan, CopyOp, InitrdOp } from '../../src/plan/types.js';

const FILE = 'bunnyfile';
const fixture = fileURLToPath(new URL('../fixtures/bunnyfile/bunnyfile', import.meta.url));

function parse(text: string): BuildPlan {
  return parseBunnyfile(text, FILE);
}

/** The LapinError parsing `text` throws; fails the test if it throws anything else or nothing. */
function failure(text: string): LapinError {
  try {
    parse(text);
  } catch (error) {
    assert.ok(error instanceof LapinError, `expected a LapinError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a LapinError, parsing succeeded');
}

function assertFailsAt(text: string, line: number, column: number, message: RegExp): LapinError {
  const error = failure(text);
  assert.match(error.message, message);
  assert.deepEqual(error.at, { file: FILE, line, column }, `position of "${error.message}"`);
  return error;
}

/** A valid header of 7 lines; whatever follows starts on line 8. */
function head(framework = 'unikraft', monitor = 'qemu', kernelFrom = 'local', kernelPath = 'kernel'): string {
  return `version: v0.1\nplatforms:\n  framework: ${framework}\n  monitor: ${monitor}\nkernel:\n  from: ${kernelFrom}\n  path: ${kernelPath}\n`;
}

function values(plan: BuildPlan): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, located] of Object.entries(plan.urunc)) if (located !== undefined) out[key] = located.value;
  return out;
}

describe('bunnyfile: the seed example', () => {
  test('fixture compiles to bunny\'s layout', () => {
    const plan = parseBunnyfile(readFileSync(fixture, 'utf8'), FILE);
    const at = (line: number, column: number) => ({ file: FILE, line, column });
    assert.deepEqual(plan, {
      syntax: 'bunnyfile',
      file: FILE,
      architecture: { value: 'amd64', at: at(6, 17) },
      base: { kind: 'scratch' },
      stages: [],
      ops: [{ kind: 'copy', sources: ['network.hvt'], destination: '/.boot/kernel', at: at(9, 9) }],
      config: { env: [], exposedPorts: [], volumes: [], labels: {} },
      urunc: {
        unikernelType: { value: 'mirage', at: at(4, 14) },
        hypervisor: { value: 'hvt', at: at(5, 12) },
        binary: { value: '/.boot/kernel', at: at(9, 9) },
        cmdline: { value: '', at: at(10, 10) },
        // No rootfs section: nothing to hand to the guest (bunny's parser would say raw).
        mountRootfs: { value: 'false' },
      },
      annotations: {},
    });
  });

  test('the #syntax= first line is a comment', () => {
    const text = readFileSync(fixture, 'utf8');
    assert.ok(text.startsWith('#syntax=harbor.nbfc.io/nubificus/bunny:latest\n'));
    assert.deepEqual(parse(text.split('\n').slice(1).join('\n')).urunc.unikernelType?.value, 'mirage');
  });
});

describe('bunnyfile: version', () => {
  test('is required', () => {
    assertFailsAt('platforms:\n  framework: mirage\n', 1, 1, /missing required field version/);
  });
  for (const accepted of ['v0.1', '0.1', '"0.1"', '0.1.0', 'v0.0.1', '0', 'v0.1-beta', '0.1+build']) {
    test(`accepts ${accepted}`, () => {
      assert.equal(parse(head().replace('v0.1', accepted)).syntax, 'bunnyfile');
    });
  }
  for (const rejected of ['v0.2', '1', '0.1.1', '1.0']) {
    test(`rejects newer ${rejected} at the value`, () => {
      const error = assertFailsAt(head().replace('v0.1', rejected), 1, 10, /unsupported bunnyfile version/);
      assert.match(error.hint ?? '', /v0\.1 or earlier/);
    });
  }
  test('rejects an unparsable version', () => {
    assertFailsAt(head().replace('v0.1', 'latest'), 1, 10, /cannot parse version "latest"/);
  });
  test('rejects a list as version', () => {
    assertFailsAt(head().replace('v0.1', '[1]'), 1, 10, /version must be a string/);
  });
});

describe('bunnyfile: platforms', () => {
  test('framework is required, reported at platforms', () => {
    assertFailsAt('version: v0.1\nplatforms:\n  monitor: qemu\nkernel: {from: local, path: k}\n', 3, 3, /platforms\.framework/);
  });
  test('monitor is required', () => {
    assertFailsAt('version: v0.1\nplatforms:\n  framework: unikraft\nkernel: {from: local, path: k}\n', 3, 3, /platforms\.monitor/);
  });
  test('a missing platforms section reports framework', () => {
    assertFailsAt('version: v0.1\nkernel: {from: local, path: k}\n', 1, 1, /platforms\.framework/);
  });
  test('platforms must be a mapping', () => {
    assertFailsAt('version: v0.1\nplatforms: unikraft\n', 2, 12, /"platforms" must be a mapping/);
  });
  test('version becomes unikernelVersion', () => {
    const plan = parse(head().replace('  monitor: qemu\n', '  monitor: qemu\n  version: 0.17.0\n'));
    assert.deepEqual(plan.urunc.unikernelVersion, { value: '0.17.0', at: { file: FILE, line: 5, column: 12 } });
  });
  test('no version, no unikernelVersion', () => {
    assert.equal(parse(head()).urunc.unikernelVersion, undefined);
  });
  for (const [given, expected] of [['x86', 'amd64'], ['x86_64', 'amd64'], ['amd64', 'amd64'], ['arm', 'arm64'], ['aarch64', 'arm64'], ['arm64', 'arm64']]) {
    test(`architecture ${given} is ${expected}`, () => {
      const plan = parse(head().replace('  monitor: qemu\n', `  monitor: qemu\n  architecture: ${given}\n`));
      assert.equal(plan.architecture?.value, expected);
      assert.deepEqual(plan.architecture?.at, { file: FILE, line: 5, column: 17 });
    });
  }
  test('no architecture, none in the plan', () => {
    assert.equal(parse(head()).architecture, undefined);
  });
  test('unknown architecture is an error at the value', () => {
    assertFailsAt(head().replace('  monitor: qemu\n', '  monitor: qemu\n  architecture: riscv64\n'), 5, 17, /unknown architecture "riscv64"/);
  });
  test('framework and monitor become unikernelType and hypervisor', () => {
    const plan = parse(head('rumprun', 'hvt'));
    assert.deepEqual(plan.urunc.unikernelType, { value: 'rumprun', at: { file: FILE, line: 3, column: 14 } });
    assert.deepEqual(plan.urunc.hypervisor, { value: 'hvt', at: { file: FILE, line: 4, column: 12 } });
  });
});

describe('bunnyfile: kernel', () => {
  test('from is required', () => {
    assertFailsAt('version: v0.1\nplatforms: {framework: mirage, monitor: hvt}\nkernel:\n  path: k\n', 4, 3, /kernel\.from/);
  });
  test('path is required', () => {
    assertFailsAt('version: v0.1\nplatforms: {framework: mirage, monitor: hvt}\nkernel:\n  from: local\n', 4, 3, /kernel\.path/);
  });
  test('a missing kernel section reports kernel.from', () => {
    assertFailsAt('version: v0.1\nplatforms: {framework: mirage, monitor: hvt}\n', 1, 1, /kernel\.from/);
  });
  test('local kernel is copied to /.boot/kernel', () => {
    const plan = parse(head());
    assert.deepEqual(plan.base, { kind: 'scratch' });
    assert.deepEqual(plan.ops, [{ kind: 'copy', sources: ['kernel'], destination: '/.boot/kernel', at: { file: FILE, line: 7, column: 9 } }]);
    assert.equal(plan.urunc.binary?.value, '/.boot/kernel');
  });
  test('kernel from an image stays there and the image is the base', () => {
    const plan = parse(head('unikraft', 'qemu', 'unikraft.org/nginx:latest', '/unikraft/bin/kernel'));
    assert.deepEqual(plan.base, { kind: 'image', reference: 'unikraft.org/nginx:latest', at: { file: FILE, line: 6, column: 9 } });
    assert.deepEqual(plan.ops, []);
    assert.equal(plan.urunc.binary?.value, '/unikraft/bin/kernel');
  });
  test('kernel from scratch is an error', () => {
    assertFailsAt(head('unikraft', 'qemu', 'scratch'), 6, 9, /kernel\.from cannot be scratch/);
  });
  test('kernel from an invalid reference is an error', () => {
    assertFailsAt(head('unikraft', 'qemu', 'Not An Image'), 6, 9, /neither "local" nor a valid image reference/);
  });
});

describe('bunnyfile: rootfs rules', () => {
  test('path with from scratch', () => {
    assertFailsAt(`${head()}rootfs:\n  from: scratch\n  path: rootfs.cpio\n`, 10, 9, /path cannot be set when rootfs\.from is scratch/);
  });
  test('path with from absent (scratch by default)', () => {
    assertFailsAt(`${head()}rootfs:\n  path: rootfs.cpio\n`, 9, 9, /rootfs\.from is scratch/);
  });
  test('path with type raw', () => {
    assertFailsAt(`${head()}rootfs:\n  from: harbor.nbfc.io/foo\n  type: raw\n  path: /x\n`, 11, 9, /path cannot be combined with a raw rootfs/);
  });
  test('from local with type raw', () => {
    assertFailsAt(`${head()}rootfs:\n  from: local\n  type: raw\n`, 9, 9, /raw rootfs cannot come from local/);
  });
  test('include with from local', () => {
    assertFailsAt(`${head()}rootfs:\n  from: local\n  path: r\n  include:\n    - a:/b\n`, 11, 3, /include cannot be combined with rootfs\.from: local/);
  });
  test('include on an image without an explicit type (bunny: only explicit raw)', () => {
    const error = assertFailsAt(`${head('mirage', 'hvt')}rootfs:\n  from: harbor.nbfc.io/foo\n  include:\n    - a:/b\n`, 10, 3, /needs an explicit rootfs\.type/);
    assert.match(error.hint ?? '', /type: raw .*type: initrd or block/);
  });
  test('include on an image with type initrd and a path inside the image', () => {
    const error = assertFailsAt(`${head()}rootfs:\n  from: harbor.nbfc.io/foo\n  type: initrd\n  path: /boot/initrd\n  include: [a]\n`, 12, 3, /cannot add files to \/boot\/initrd, a rootfs file inside the image/);
    assert.match(error.hint ?? '', /drop path/);
  });
  test('unikraft does not support block', () => {
    const error = assertFailsAt(`${head()}rootfs:\n  from: local\n  path: disk.img\n  type: block\n`, 11, 9, /unikraft does not support a block rootfs/);
    assert.match(error.hint ?? '', /initrd, raw/);
  });
  test('unknown rootfs type', () => {
    assertFailsAt(`${head('rumprun')}rootfs:\n  from: local\n  path: r\n  type: ext4\n`, 11, 9, /unknown rootfs type "ext4"/);
  });
  test('path from an image with the implicit raw type of a non-unikraft framework', () => {
    // bunny checks only an explicit raw and would hand the guest the container rootfs.
    const error = assertFailsAt(`${head('hermit')}rootfs:\n  from: harbor.nbfc.io/r\n  path: rootfs.img\n`, 10, 9, /hermit defaults to raw/);
    assert.match(error.hint ?? '', /initrd or block/);
  });
  test('rootfs.size that is not a size', () => {
    assertFailsAt(`${head('linux')}rootfs:\n  type: block\n  size: lots\n  include: [a]\n`, 10, 9, /rootfs\.size "lots" is not a size/);
  });
  test('rootfs.size on anything but a block built from include', () => {
    assertFailsAt(`${head('linux')}rootfs:\n  type: initrd\n  size: 64M\n  include: [a]\n`, 10, 9, /applies only to a block rootfs built from include/);
    assertFailsAt(`${head('linux')}rootfs:\n  from: local\n  path: r.img\n  size: 64M\n`, 11, 9, /applies only to a block rootfs built from include/);
  });
  test('version 0.10 is newer than 0.1', () => {
    assertFailsAt(head().replace('v0.1', '0.10'), 1, 10, /unsupported bunnyfile version 0\.10/);
  });
  test('local rootfs needs a path', () => {
    assertFailsAt(`${head()}rootfs:\n  from: local\n`, 9, 9, /rootfs\.path is required/);
  });
  test('initrd from an image needs a path', () => {
    assertFailsAt(`${head()}rootfs:\n  from: harbor.nbfc.io/foo\n`, 9, 9, /rootfs\.path is required for a initrd rootfs from an image/);
  });
  test('an explicit initrd with nothing in it', () => {
    assertFailsAt(`${head()}rootfs:\n  type: initrd\n`, 9, 9, /initrd rootfs needs content/);
  });
  test('an explicit block with nothing in it', () => {
    assertFailsAt(`${head('linux')}rootfs:\n  type: block\n`, 9, 9, /block rootfs needs content/);
  });
  test('an include from an image copies out of that image', () => {
    const plan = parse(`${head()}rootfs:\n  include:\n    - from: harbor.nbfc.io/tools\n      source: /bin/sh\n      destination: /bin/sh\n`);
    const initrd = plan.ops[1] as InitrdOp;
    assert.deepEqual(initrd.entries, [{ kind: 'copy', sources: ['/bin/sh'], destination: '/bin/sh', fromStage: 'harbor.nbfc.io/tools', at: { file: FILE, line: 10, column: 7 } }]);
    assert.deepEqual(plan.base, { kind: 'scratch' });
  });
  test('kernel and rootfs both from images (urunc\'s tutorial): the rootfs image is the base, the kernel is copied out of its image', () => {
    const plan = parse(`${head('linux', 'qemu', 'harbor.nbfc.io/k', '/kernel')}rootfs:\n  from: redis:alpine\n  type: raw\n`);
    assert.deepEqual(plan.base, { kind: 'image', reference: 'redis:alpine', at: { file: FILE, line: 9, column: 9 } });
    assert.deepEqual(plan.ops, [{ kind: 'copy', sources: ['/kernel'], destination: '/.boot/kernel', fromStage: 'harbor.nbfc.io/k', at: { file: FILE, line: 7, column: 9 } }]);
    assert.equal(plan.urunc.binary?.value, '/.boot/kernel');
    assert.equal(plan.urunc.mountRootfs?.value, 'true');
    assert.equal(plan.configFrom, undefined);
  });
  test('kernel and rootfs both from images, raw with includes from either image', () => {
    const plan = parse(`${head('linux', 'qemu', 'harbor.nbfc.io/k', '/kernel')}rootfs:\n  from: redis:alpine\n  type: raw\n  include:\n    - {from: harbor.nbfc.io/k, source: /modules, destination: /lib/modules}\n    - {from: redis:alpine, source: /etc/os-release, destination: /etc/copy}\n`);
    assert.deepEqual(plan.ops.map((op) => [(op as CopyOp).fromStage, (op as CopyOp).destination]), [['harbor.nbfc.io/k', '/.boot/kernel'], ['harbor.nbfc.io/k', '/lib/modules'], ['redis:alpine', '/etc/copy']]);
  });
  test('kernel from an image with a rootfs path inside another image: the rootfs image is the base', () => {
    const plan = parse(`${head('linux', 'qemu', 'harbor.nbfc.io/k', '/kernel')}rootfs:\n  from: harbor.nbfc.io/r\n  type: block\n  path: /disk.img\n`);
    assert.equal(plan.base.kind === 'image' && plan.base.reference, 'harbor.nbfc.io/r');
    assert.equal((plan.ops[0] as CopyOp).fromStage, 'harbor.nbfc.io/k');
    assert.equal(plan.urunc.binary?.value, '/.boot/kernel');
    assert.equal(plan.urunc.block?.value, '/disk.img');
  });
  test('raw from include with a kernel from an image: scratch base, the kernel copied out of its image', () => {
    const plan = parse(`${head('linux', 'qemu', 'harbor.nbfc.io/k', '/kernel')}rootfs:\n  type: raw\n  include: [a]\n`);
    assert.deepEqual(plan.base, { kind: 'scratch' });
    assert.deepEqual(plan.ops.map((op) => (op as CopyOp).sources[0]), ['/kernel', 'a']);
    assert.equal((plan.ops[0] as CopyOp).fromStage, 'harbor.nbfc.io/k');
    assert.equal(plan.urunc.binary?.value, '/.boot/kernel');
  });
  test('rootfs must be a mapping', () => {
    assertFailsAt(`${head()}rootfs: [a]\n`, 8, 9, /"rootfs" must be a mapping/);
  });
  test('include must be a list', () => {
    assertFailsAt(`${head()}rootfs:\n  include: a:/b\n`, 9, 12, /include must be a list/);
  });
});

describe('bunnyfile: rootfs defaults and layout', () => {
  test('no rootfs, unikraft: no initrd, mountRootfs false', () => {
    const plan = parse(head());
    assert.deepEqual(values(plan), { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/.boot/kernel', cmdline: '', mountRootfs: 'false' });
  });
  test('no rootfs, any other framework: mountRootfs false (bunny would imply raw)', () => {
    assert.equal(parse(head('rumprun', 'hvt')).urunc.mountRootfs?.value, 'false');
  });
  test('an empty rootfs section takes the framework default raw: mountRootfs true', () => {
    assert.equal(parse(`${head('rumprun', 'hvt')}rootfs:\n  from: scratch\n`).urunc.mountRootfs?.value, 'true');
  });
  test('unikraft default type is initrd: includes from scratch become an initrd', () => {
    const plan = parse(`${head()}rootfs:\n  include:\n    - "nginx.conf:/nginx/conf/nginx.conf"\n    - index.html\n`);
    const initrd = plan.ops[1] as InitrdOp;
    assert.equal(initrd.kind, 'initrd');
    assert.equal(initrd.destination, '/.boot/rootfs');
    assert.deepEqual(initrd.entries.map((entry) => [entry.sources, entry.destination]), [
      [['nginx.conf'], '/nginx/conf/nginx.conf'],
      [['index.html'], '/index.html'],
    ]);
    assert.deepEqual(initrd.entries[0]?.at, { file: FILE, line: 10, column: 7 });
    assert.equal(plan.urunc.initrd?.value, '/.boot/rootfs');
    assert.equal(plan.urunc.mountRootfs?.value, 'false');
  });
  test('other frameworks default to raw: includes go into the image rootfs', () => {
    const plan = parse(`${head('linux', 'firecracker')}rootfs:\n  include:\n    - app:/usr/bin/app\n`);
    assert.deepEqual(plan.ops.slice(1), [{ kind: 'copy', sources: ['app'], destination: '/usr/bin/app', at: { file: FILE, line: 10, column: 7 } }]);
    assert.equal(plan.urunc.mountRootfs?.value, 'true');
    assert.equal(plan.urunc.initrd, undefined);
  });
  test('explicit initrd for a non-unikraft framework', () => {
    const plan = parse(`${head('linux')}rootfs:\n  type: initrd\n  include: [init]\n`);
    assert.equal((plan.ops[1] as InitrdOp).kind, 'initrd');
    assert.equal(plan.urunc.initrd?.value, '/.boot/rootfs');
  });
  test('local initrd is copied to /.boot/rootfs', () => {
    const plan = parse(`${head()}rootfs:\n  from: local\n  path: rootfs.cpio\n`);
    assert.deepEqual(plan.ops[1], { kind: 'copy', sources: ['rootfs.cpio'], destination: '/.boot/rootfs', at: { file: FILE, line: 10, column: 9 } });
    assert.equal(plan.urunc.initrd?.value, '/.boot/rootfs');
    assert.equal(plan.urunc.mountRootfs?.value, 'false');
  });
  test('local block: block and blkMntPoint /', () => {
    const plan = parse(`${head('linux')}rootfs:\n  from: local\n  path: disk.ext4\n  type: block\n`);
    assert.deepEqual((plan.ops[1] as CopyOp).destination, '/.boot/rootfs');
    assert.equal(plan.urunc.block?.value, '/.boot/rootfs');
    assert.equal(plan.urunc.blkMntPoint?.value, '/');
    assert.equal(plan.urunc.mountRootfs?.value, 'false');
  });
  test('block from include: an ext4 image for linux at /.boot/rootfs, sized by rootfs.size', () => {
    const plan = parse(`${head('linux')}rootfs:\n  type: block\n  size: 64M\n  include:\n    - init:/init\n`);
    const op = plan.ops[1] as BlockOp;
    assert.equal(op.kind, 'block');
    assert.equal(op.destination, '/.boot/rootfs');
    assert.equal(op.filesystem, 'ext4');
    assert.deepEqual(op.size, { value: 64 * 1024 * 1024, at: { file: FILE, line: 10, column: 9 } });
    assert.deepEqual(op.entries.map((e) => [e.sources, e.destination]), [[['init'], '/init']]);
    assert.equal(plan.urunc.block?.value, '/.boot/rootfs');
    assert.equal(plan.urunc.blkMntPoint?.value, '/');
    assert.equal(plan.urunc.mountRootfs?.value, 'false');
  });
  test('block from include for rumprun is ext2 mounted at /data', () => {
    const plan = parse(`${head('rumprun', 'hvt')}rootfs:\n  type: block\n  include: [data.txt]\n`);
    const op = plan.ops[1] as BlockOp;
    assert.equal(op.filesystem, 'ext2');
    assert.equal(op.size, undefined);
    assert.equal(plan.urunc.blkMntPoint?.value, '/data');
  });
  test('local file without a type: the build detects it (lapin; bunny would fall back to raw)', () => {
    const plan = parse(`${head('linux')}rootfs:\n  from: local\n  path: rootfs.img\n`);
    assert.deepEqual(plan.ops[1], { kind: 'copy', sources: ['rootfs.img'], destination: '/.boot/rootfs', at: { file: FILE, line: 10, column: 9 } });
    assert.equal(plan.urunc.initrd, undefined);
    assert.equal(plan.urunc.block, undefined);
    assert.equal(plan.urunc.mountRootfs?.value, 'false');
    assert.deepEqual(plan.rootfsFile, {
      path: '/.boot/rootfs',
      allowed: ['initrd', 'block'],
      blockMountPoint: '/',
      framework: 'linux',
      at: { file: FILE, line: 10, column: 9 },
    });
  });
  test('local file with a type: the build checks the content against it', () => {
    const plan = parse(`${head('rumprun', 'hvt')}rootfs:\n  from: local\n  path: data.img\n  type: block\n`);
    assert.deepEqual(plan.rootfsFile?.declared, { value: 'block', at: { file: FILE, line: 11, column: 9 } });
    assert.equal(plan.rootfsFile?.blockMountPoint, '/data');
    const unikraft = parse(`${head()}rootfs:\n  from: local\n  path: rootfs.cpio\n`);
    assert.deepEqual(unikraft.rootfsFile?.allowed, ['initrd']);
    assert.equal(unikraft.rootfsFile?.declared?.value, 'initrd');
  });
  test('rumprun block mounts at /data', () => {
    const plan = parse(`${head('rumprun', 'hvt')}rootfs:\n  from: local\n  path: data.img\n  type: block\n`);
    assert.equal(plan.urunc.blkMntPoint?.value, '/data');
  });
  test('raw image rootfs is the base; local kernel is copied onto it', () => {
    const plan = parse(`${head('linux')}rootfs:\n  from: harbor.nbfc.io/app:1.0\n  type: raw\n  include:\n    - cfg:/etc/cfg\n`);
    assert.deepEqual(plan.base, { kind: 'image', reference: 'harbor.nbfc.io/app:1.0', at: { file: FILE, line: 9, column: 9 } });
    assert.deepEqual(plan.ops.map((op) => (op as CopyOp).destination), ['/.boot/kernel', '/etc/cfg']);
    assert.equal(plan.urunc.mountRootfs?.value, 'true');
  });
  test('raw image rootfs without includes', () => {
    const plan = parse(`${head('linux')}rootfs:\n  from: harbor.nbfc.io/app\n`);
    assert.equal(plan.base.kind, 'image');
    assert.equal(plan.urunc.mountRootfs?.value, 'true');
  });
  test('initrd inside an image: the image is the base and initrd is its path', () => {
    const plan = parse(`${head()}rootfs:\n  from: harbor.nbfc.io/initrds\n  path: /boot/initrd\n`);
    assert.equal(plan.base.kind, 'image');
    assert.equal(plan.urunc.initrd?.value, '/boot/initrd');
  });
  test('raw from scratch with no include still mounts the rootfs', () => {
    const plan = parse(`${head()}rootfs:\n  type: raw\n`);
    assert.equal(plan.urunc.mountRootfs?.value, 'true');
    assert.deepEqual(plan.urunc.mountRootfs?.at, { file: FILE, line: 9, column: 9 });
  });
  test('kernel from an image with a local initrd: image is the base, rootfs copied', () => {
    const plan = parse(`${head('unikraft', 'qemu', 'harbor.nbfc.io/foo', '/kernel')}rootfs:\n  from: local\n  path: r.cpio\n`);
    assert.equal(plan.base.kind, 'image');
    assert.equal(plan.urunc.binary?.value, '/kernel');
    assert.deepEqual(plan.ops.map((op) => op.destination), ['/.boot/rootfs']);
    assert.equal(plan.urunc.initrd?.value, '/.boot/rootfs');
  });
});

describe('bunnyfile: include entries', () => {
  const withInclude = (entry: string) => `${head()}rootfs:\n  include:\n    - ${entry}\n`;
  const firstEntry = (text: string) => (parse(text).ops[1] as InitrdOp).entries[0];
  test('"src:dst"', () => {
    assert.deepEqual(firstEntry(withInclude('"a/b:/c/d"'))?.destination, '/c/d');
  });
  test('"src" alone: destination is the source', () => {
    const entry = firstEntry(withInclude('etc/app.conf'));
    assert.deepEqual([entry?.sources, entry?.destination], [['etc/app.conf'], '/etc/app.conf']);
  });
  test('"src:" with an empty destination: destination is the source', () => {
    assert.equal(firstEntry(withInclude('"conf:"'))?.destination, '/conf');
  });
  test('only the first colon splits', () => {
    assert.equal(firstEntry(withInclude('"a:/b:c"'))?.destination, '/b:c');
  });
  test('":dst" has an empty source', () => {
    assertFailsAt(withInclude('":/x"'), 10, 7, /empty source/);
  });
  test('mapping with from defaulting to local', () => {
    const entry = firstEntry(withInclude('{source: a, destination: /b}'));
    assert.deepEqual([entry?.sources, entry?.destination], [['a'], '/b']);
  });
  test('mapping with an explicit from: local', () => {
    assert.equal(firstEntry(withInclude('{from: local, source: a, destination: /b}'))?.destination, '/b');
  });
  test('mapping with an empty source', () => {
    assertFailsAt(withInclude('{source: "", destination: /b}'), 10, 16, /empty source/);
  });
  test('mapping without source', () => {
    assertFailsAt(withInclude('{destination: /b}'), 10, 7, /empty source/);
  });
  test('mapping with an empty destination', () => {
    assertFailsAt(withInclude('{source: a, destination: ""}'), 10, 32, /empty destination/);
  });
  test('mapping without destination', () => {
    assertFailsAt(withInclude('{source: a}'), 10, 7, /empty destination/);
  });
  test('mapping with an unknown key', () => {
    const error = assertFailsAt(withInclude('{source: a, destination: /b, dest: c}'), 10, 36, /unknown key "dest"/);
    assert.match(error.hint ?? '', /from, source, destination/);
  });
  test('a list entry is neither form', () => {
    assertFailsAt(withInclude('[a, b]'), 10, 7, /include entry must be/);
  });
  test('from scratch has nothing to copy', () => {
    assertFailsAt(withInclude('{from: scratch, source: a, destination: /b}'), 10, 14, /from scratch/);
  });
});

describe('bunnyfile: cmd, entrypoint, envs, cmdline', () => {
  test('cmd becomes config.cmd and the cmdline annotation', () => {
    const plan = parse(`${head()}cmd: ["-c", "/nginx/conf/nginx.conf"]\n`);
    assert.deepEqual(plan.config.cmd, { value: ['-c', '/nginx/conf/nginx.conf'], at: { file: FILE, line: 8, column: 6 } });
    assert.equal(plan.urunc.cmdline?.value, '-c /nginx/conf/nginx.conf');
  });
  test('entrypoint becomes config.entrypoint and is not in cmdline', () => {
    const plan = parse(`${head()}entrypoint:\n  - /app\ncmd: [x]\n`);
    assert.deepEqual(plan.config.entrypoint, { value: ['/app'], at: { file: FILE, line: 9, column: 3 } });
    assert.equal(plan.urunc.cmdline?.value, 'x');
  });
  test('legacy cmdline is split on spaces when cmd is empty', () => {
    const plan = parse(`${head()}cmdline: "a b  c"\n`);
    assert.deepEqual(plan.config.cmd?.value, ['a', 'b', '', 'c']);
    assert.equal(plan.urunc.cmdline?.value, 'a b  c');
  });
  test('legacy cmdline is used when cmd is an empty list', () => {
    assert.deepEqual(parse(`${head()}cmd: []\ncmdline: x y\n`).config.cmd?.value, ['x', 'y']);
  });
  test('a cmdline that contradicts cmd is refused at the cmdline (bunny drops it silently)', () => {
    const error = assertFailsAt(`${head()}cmd: [a]\ncmdline: b\n`, 9, 10, /cmdline "b" contradicts cmd \["a"\]/);
    assert.match(error.hint ?? '', /once/);
  });
  test('a cmdline that says what cmd says is accepted', () => {
    const plan = parse(`${head()}cmd: [a, "b"]\ncmdline: a b\n`);
    assert.deepEqual(plan.config.cmd?.value, ['a', 'b']);
    assert.equal(plan.urunc.cmdline?.value, 'a b');
  });
  test('an empty cmdline leaves no cmd and an empty cmdline annotation', () => {
    const plan = parse(`${head()}cmdline: ""\n`);
    assert.equal(plan.config.cmd, undefined);
    assert.equal(plan.urunc.cmdline?.value, '');
  });
  test('cmd as a single string is an error, as in bunny', () => {
    const error = assertFailsAt(`${head()}cmd: /bin/app\n`, 8, 6, /cmd must be a list of strings/);
    assert.match(error.hint ?? '', /YAML list/);
  });
  test('a cmd item that is a mapping is an error at the item', () => {
    assertFailsAt(`${head()}cmd:\n  - a\n  - {b: c}\n`, 10, 5, /each item of cmd must be a string/);
  });
  test('numbers in cmd are taken as written', () => {
    assert.deepEqual(parse(`${head()}cmd: [--port, 0080]\n`).config.cmd?.value, ['--port', '0080']);
  });
  test('envs become config.env', () => {
    assert.deepEqual(parse(`${head()}envs:\n  - A=1\n  - B=\n`).config.env, ['A=1', 'B=']);
  });
  test('an env without = is an error at the item', () => {
    const error = assertFailsAt(`${head()}envs:\n  - A=1\n  - JUSTNAME\n`, 10, 5, /not KEY=VALUE/);
    assert.match(error.hint ?? '', /NAME=value/);
  });
});

describe('bunnyfile: unknown keys and YAML problems', () => {
  test('unknown top-level key, with the known keys in the hint', () => {
    const error = assertFailsAt(`${head()}rootfsx: {}\n`, 8, 1, /unknown key "rootfsx" in the bunnyfile/);
    assert.match(error.hint ?? '', /version, platforms, kernel, rootfs, cmd, entrypoint, envs, cmdline/);
  });
  test('unknown key in platforms', () => {
    assertFailsAt(head().replace('  monitor: qemu\n', '  monitor: qemu\n  arch: x86\n'), 5, 3, /unknown key "arch" in "platforms"/);
  });
  test('unknown key in kernel', () => {
    assertFailsAt(`${head()}`.replace('  path: kernel\n', '  path: kernel\n  format: elf\n'), 8, 3, /unknown key "format" in "kernel"/);
  });
  test('unknown key in rootfs', () => {
    assertFailsAt(`${head()}rootfs:\n  includes: [a]\n`, 9, 3, /unknown key "includes" in "rootfs"/);
  });
  test('the seed flattened without indentation has unknown top-level keys', () => {
    assertFailsAt('version: v0.1\nplatforms:\nframework: mirage\n', 3, 1, /unknown key "framework"/);
  });
  test('YAML syntax error becomes a LapinError with its position', () => {
    assertFailsAt('version: v0.1\nplatforms: [a\n', 3, 1, /YAML syntax error/);
  });
  test('tab indentation', () => {
    const error = failure('version: v0.1\nplatforms:\n\tframework: x\n');
    assert.match(error.message, /YAML syntax error/);
    assert.equal(error.at?.line, 3);
  });
  test('duplicate keys', () => {
    assertFailsAt(`${head()}version: v0.1\n`, 8, 1, /YAML syntax error: Map keys must be unique/);
  });
  test('several documents', () => {
    const error = assertFailsAt(`${head()}---\nversion: v0.1\n`, 8, 1, /one YAML document/);
    assert.match(error.hint ?? '', /---/);
  });
  test('empty file', () => {
    assertFailsAt('', 1, 1, /empty/);
  });
  test('only the #syntax comment', () => {
    assertFailsAt('#syntax=harbor.nbfc.io/nubificus/bunny:latest\n', 1, 1, /empty/);
  });
  test('a top-level list', () => {
    assertFailsAt('- version\n', 1, 1, /the bunnyfile must be a mapping/);
  });
  test('a plain scalar document', () => {
    assertFailsAt('hello\n', 1, 1, /the bunnyfile must be a mapping/);
  });
  test('a non-scalar key', () => {
    assertFailsAt('? [a]\n: b\n', 1, 3, /not a plain name/);
  });
  test('aliases are followed', () => {
    const plan = parse('version: v0.1\nplatforms: {framework: &fw mirage, monitor: hvt}\nkernel: {from: local, path: *fw}\n');
    assert.deepEqual((plan.ops[0] as CopyOp).sources, ['mirage']);
  });
  test('a number as framework is read as written', () => {
    assert.equal(parse(head('1.5')).urunc.unikernelType?.value, '1.5');
  });
});

describe('bunnyfile: a rootfs file made from an image (lapin, beyond bunny)', () => {
  test('type initrd, no path: the image becomes the initrd, includes on top; the image is not the base', () => {
    const plan = parse(`${head('linux')}rootfs:\n  from: registry.example/alpine:3\n  type: initrd\n  include:\n    - app:/usr/bin/app\n    - from: registry.example/tools:1\n      source: /bin/sh\n      destination: /bin/sh\n`);
    assert.deepEqual(plan.base, { kind: 'scratch' });
    const initrd = plan.ops[1] as InitrdOp;
    assert.equal(initrd.kind, 'initrd');
    assert.equal(initrd.destination, '/.boot/rootfs');
    assert.deepEqual(initrd.baseImage, { value: 'registry.example/alpine:3', at: { file: FILE, line: 9, column: 9 } });
    assert.deepEqual(initrd.entries.map((e) => [e.sources, e.destination, e.fromStage]), [
      [['app'], '/usr/bin/app', undefined],
      [['/bin/sh'], '/bin/sh', 'registry.example/tools:1'],
    ]);
    assert.equal(plan.urunc.initrd?.value, '/.boot/rootfs');
    assert.equal(plan.urunc.mountRootfs?.value, 'false');
    assert.equal(plan.urunc.block, undefined);
  });
  test('type block, no include: ext4 for linux at /.boot/rootfs, blkMntPoint /, rootfs.size applies', () => {
    const plan = parse(`${head('linux')}rootfs:\n  from: registry.example/alpine:3\n  type: block\n  size: 64M\n`);
    const block = plan.ops[1] as BlockOp;
    assert.deepEqual([block.kind, block.destination, block.filesystem, block.size?.value, block.baseImage?.value], ['block', '/.boot/rootfs', 'ext4', 64 * 1024 * 1024, 'registry.example/alpine:3']);
    assert.deepEqual(block.entries, []);
    assert.equal(plan.urunc.block?.value, '/.boot/rootfs');
    assert.equal(plan.urunc.blkMntPoint?.value, '/');
    assert.equal(plan.urunc.initrd, undefined);
  });
  test('rumprun: ext2 and blkMntPoint /data', () => {
    const plan = parse(`${head('rumprun', 'hvt')}rootfs:\n  from: registry.example/data:1\n  type: block\n  include: [conf]\n`);
    assert.equal((plan.ops[1] as BlockOp).filesystem, 'ext2');
    assert.equal(plan.urunc.blkMntPoint?.value, '/data');
  });
  test('with a kernel from an image: the kernel is copied out of it, the rootfs image made the initrd and its config kept', () => {
    const plan = parse(`${head('linux', 'qemu', 'registry.example/kernel:1', '/boot/vmlinuz')}rootfs:\n  from: registry.example/alpine:3\n  type: initrd\n`);
    assert.deepEqual(plan.base, { kind: 'scratch' });
    assert.deepEqual(plan.ops[0], { kind: 'copy', sources: ['/boot/vmlinuz'], destination: '/.boot/kernel', fromStage: 'registry.example/kernel:1', at: { file: FILE, line: 7, column: 9 } });
    assert.equal((plan.ops[1] as InitrdOp).baseImage?.value, 'registry.example/alpine:3');
    assert.equal(plan.urunc.binary?.value, '/.boot/kernel');
    assert.equal(plan.configFrom?.value, 'registry.example/alpine:3');
  });
  test('with a path: bunny\'s reading, the path is a rootfs file inside the image, which is the base', () => {
    const plan = parse(`${head('linux')}rootfs:\n  from: registry.example/rootfs:1\n  type: block\n  path: /disk.img\n`);
    assert.deepEqual(plan.base, { kind: 'image', reference: 'registry.example/rootfs:1', at: { file: FILE, line: 9, column: 9 } });
    assert.ok(plan.ops.every((op) => op.kind === 'copy'));
    assert.equal(plan.urunc.block?.value, '/disk.img');
  });
  test('type raw: the image is the base, includes go on top, mountRootfs true', () => {
    const plan = parse(`${head('linux')}rootfs:\n  from: registry.example/alpine:3\n  type: raw\n  include: [app]\n`);
    assert.deepEqual(plan.base, { kind: 'image', reference: 'registry.example/alpine:3', at: { file: FILE, line: 9, column: 9 } });
    assert.deepEqual((plan.ops[1] as CopyOp).sources, ['app']);
    assert.equal(plan.urunc.mountRootfs?.value, 'true');
  });
  test('unikraft: a block made from an image is still refused; the implicit initrd needs an explicit type to convert', () => {
    assertFailsAt(`${head()}rootfs:\n  from: registry.example/alpine:3\n  type: block\n`, 10, 9, /unikraft does not support a block rootfs/);
    const error = assertFailsAt(`${head()}rootfs:\n  from: registry.example/alpine:3\n`, 9, 9, /rootfs\.path is required/);
    assert.match(error.hint ?? '', /set type: initrd to build it from the image's files/);
  });
});
