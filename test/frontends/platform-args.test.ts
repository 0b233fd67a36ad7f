// Issue 13 "Each platform gets its own inputs": BuildKit's platform args as
// compile inputs (never the machine's), ${TARGETARCH} in a bunnyfile's paths,
// and an args.nix that is a function of the platform.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LapinError } from '../../src/errors.js';
import { parseBunnyfile } from '../../src/frontends/bunnyfile.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import { compile } from '../../src/frontends/index.js';
import { parseArgsNix } from '../../src/frontends/nix.js';
import { platformArgs } from '../../src/frontends/platform-args.js';
import type { BuildPlan, CopyOp } from '../../src/plan/types.js';

function copies(plan: BuildPlan): CopyOp[] {
  return plan.ops.filter((op): op is CopyOp => op.kind === 'copy');
}

function caught(run: () => unknown): LapinError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof LapinError, `expected a LapinError, got ${String(error)}`);
    return error;
  }
  return assert.fail('expected an error');
}

const LABELS = [
  'FROM scratch',
  'ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT',
  'LABEL tp=$TARGETPLATFORM to=$TARGETOS ta=$TARGETARCH tv=$TARGETVARIANT bp=$BUILDPLATFORM bo=$BUILDOS ba=$BUILDARCH bv=$BUILDVARIANT',
  '',
].join('\n');

describe('BuildKit platform args', () => {
  test('each of the eight from its platform, as buildx sets them', () => {
    const plan = parseContainerfile(LABELS, 'Containerfile', {}, { platform: 'linux/arm64', buildPlatform: 'linux/amd64' });
    assert.deepEqual(plan.config.labels, { tp: 'linux/arm64', to: 'linux', ta: 'arm64', tv: '', bp: 'linux/amd64', bo: 'linux', ba: 'amd64', bv: '' });
  });

  test('the build platform is an input, not this machine', () => {
    const plan = parseContainerfile(LABELS, 'Containerfile', {}, { buildPlatform: 'linux/arm64' });
    // Without --platform the target is the build platform (BuildKit's buildPlatformOpt).
    assert.equal(plan.config.labels.ba, 'arm64');
    assert.equal(plan.config.labels.ta, 'arm64');
    // Without a build platform it is the target's, then linux/amd64: never process.arch.
    assert.equal(parseContainerfile(LABELS, 'Containerfile', {}, { platform: 'linux/arm64' }).config.labels.ba, 'arm64');
    assert.equal(parseContainerfile(LABELS, 'Containerfile').config.labels.ba, 'amd64');
  });

  test('platforms are normalized as containerd does; variants kept where they mean something', () => {
    const values = (platform: string) => Object.fromEntries([...platformArgs({ platform, buildPlatform: 'linux/amd64' })].filter(([name]) => name.startsWith('TARGET')));
    assert.deepEqual(values('linux/arm64/v8'), { TARGETPLATFORM: 'linux/arm64', TARGETOS: 'linux', TARGETARCH: 'arm64', TARGETVARIANT: '' });
    assert.deepEqual(values('linux/aarch64'), { TARGETPLATFORM: 'linux/arm64', TARGETOS: 'linux', TARGETARCH: 'arm64', TARGETVARIANT: '' });
    assert.deepEqual(values('linux/x86_64'), { TARGETPLATFORM: 'linux/amd64', TARGETOS: 'linux', TARGETARCH: 'amd64', TARGETVARIANT: '' });
    assert.deepEqual(values('linux/amd64/v1'), { TARGETPLATFORM: 'linux/amd64', TARGETOS: 'linux', TARGETARCH: 'amd64', TARGETVARIANT: '' });
    assert.deepEqual(values('linux/amd64/v3'), { TARGETPLATFORM: 'linux/amd64/v3', TARGETOS: 'linux', TARGETARCH: 'amd64', TARGETVARIANT: 'v3' });
    assert.deepEqual(values('Linux/ARM'), { TARGETPLATFORM: 'linux/arm/v7', TARGETOS: 'linux', TARGETARCH: 'arm', TARGETVARIANT: 'v7' });
    assert.deepEqual(values('arm64'), { TARGETPLATFORM: 'linux/arm64', TARGETOS: 'linux', TARGETARCH: 'arm64', TARGETVARIANT: '' });
  });

  test('a --build-arg of the same name replaces that one value alone, as in BuildKit', () => {
    const plan = parseContainerfile(LABELS, 'Containerfile', { TARGETPLATFORM: 'linux/riscv64', BUILDVARIANT: 'x' }, { platform: 'linux/arm64', buildPlatform: 'linux/amd64' });
    assert.equal(plan.config.labels.tp, 'linux/riscv64');
    assert.equal(plan.config.labels.ta, 'arm64');
    assert.equal(plan.config.labels.bv, 'x');
  });
});

describe('Containerfile: platform args per platform', () => {
  const text = [
    'ARG TARGETARCH',
    'ARG KERNEL=kernel-${TARGETARCH}',
    'FROM scratch',
    'ARG TARGETOS',
    'ARG TARGETARCH',
    'ARG KERNEL',
    'ARG FLAVOUR=${TARGETOS}-${TARGETARCH}',
    'COPY ${KERNEL} /unikernel/kernel',
    'COPY rootfs-$TARGETARCH.img /unikernel/rootfs',
    'LABEL flavour=$FLAVOUR',
    '',
  ].join('\n');

  test('in COPY sources and ARG defaults, global and in the stage', () => {
    for (const [platform, arch] of [['linux/amd64', 'amd64'], ['linux/arm64', 'arm64']] as const) {
      const plan = parseContainerfile(text, 'Containerfile', {}, { platform, buildPlatform: 'linux/amd64' });
      assert.deepEqual(copies(plan).map((op) => op.sources), [[`kernel-${arch}`], [`rootfs-${arch}.img`]]);
      assert.equal(plan.config.labels.flavour, `linux-${arch}`);
    }
  });

  test('global scope: a stage sees one only after ARG redeclares it', () => {
    const plan = parseContainerfile('FROM scratch\nLABEL before=x$TARGETARCH\nARG TARGETARCH\nLABEL after=x$TARGETARCH\n', 'Containerfile', {}, { platform: 'linux/arm64' });
    assert.deepEqual(plan.config.labels, { before: 'x', after: 'xarm64' });
  });

  test('compile() passes --platform and the build platform through', async () => {
    const plan = await compile(LABELS, 'Containerfile', 'containerfile', {}, { platform: 'linux/arm64', buildPlatform: 'linux/arm64' });
    assert.equal(plan.config.labels.ta, 'arm64');
    assert.equal(plan.config.labels.ba, 'arm64');
  });
});

const BUNNYFILE = (kernel: string, extra = '') => `version: v0.1
platforms:
  framework: linux
  monitor: qemu
${extra}kernel:
  from: local
  path: ${kernel}
`;

describe('bunnyfile: ${TARGETARCH} in paths', () => {
  test('kernel.path follows --platform, with Docker values', () => {
    const text = BUNNYFILE('build/${TARGETOS}/vmlinux-${TARGETARCH}');
    assert.deepEqual(copies(parseBunnyfile(text, 'bunnyfile', { platform: 'linux/amd64' }))[0]?.sources, ['build/linux/vmlinux-amd64']);
    assert.deepEqual(copies(parseBunnyfile(text, 'bunnyfile', { platform: 'linux/arm64/v8' }))[0]?.sources, ['build/linux/vmlinux-arm64']);
    assert.deepEqual(copies(parseBunnyfile(BUNNYFILE('"k-${TARGETPLATFORM}${TARGETVARIANT}"'), 'bunnyfile', { platform: 'linux/amd64/v2' }))[0]?.sources, ['k-linux/amd64/v2v2']);
  });

  test('without --platform: platforms.architecture (bunny\'s target architecture), else the build platform', () => {
    const text = BUNNYFILE('vmlinux-${TARGETARCH}', '');
    assert.deepEqual(copies(parseBunnyfile(text, 'bunnyfile', { buildPlatform: 'linux/arm64' }))[0]?.sources, ['vmlinux-arm64']);
    assert.deepEqual(copies(parseBunnyfile(text, 'bunnyfile'))[0]?.sources, ['vmlinux-amd64']);
    const declared = text.replace('  monitor: qemu\n', '  monitor: qemu\n  architecture: aarch64\n');
    assert.deepEqual(copies(parseBunnyfile(declared, 'bunnyfile', { buildPlatform: 'linux/amd64' }))[0]?.sources, ['vmlinux-arm64']);
  });

  test('rootfs.path, include (both forms) and image references', () => {
    const text = `version: v0.1
platforms:
  framework: linux
  monitor: qemu
kernel:
  from: registry.example/kernels:6.1-\${TARGETARCH}
  path: /boot/vmlinuz-\${TARGETARCH}
rootfs:
  from: scratch
  type: initrd
  include:
    - busybox-\${TARGETARCH}:/bin/busybox
    - from: registry.example/tools:\${TARGETARCH}
      source: /usr/bin/tool-\${TARGETARCH}
      destination: /opt/\${TARGETARCH}/tool
`;
    const plan = parseBunnyfile(text, 'bunnyfile', { platform: 'linux/arm64' });
    assert.deepEqual(plan.base, { kind: 'image', reference: 'registry.example/kernels:6.1-arm64', at: { file: 'bunnyfile', line: 6, column: 9 } });
    assert.equal(plan.urunc.binary?.value, '/boot/vmlinuz-arm64');
    assert.deepEqual(plan.ops.map((op) => (op.kind === 'initrd' ? op.entries.map((e) => [e.fromStage, e.sources, e.destination]) : op.kind)), [
      [
        [undefined, ['busybox-arm64'], '/bin/busybox'],
        ['registry.example/tools:arm64', ['/usr/bin/tool-arm64'], '/opt/arm64/tool'],
      ],
    ]);
    const local = text.replace('kernel:\n  from: registry.example/kernels:6.1-${TARGETARCH}\n  path: /boot/vmlinuz-${TARGETARCH}', 'kernel:\n  from: local\n  path: k').replace(/rootfs:[^]*/, 'rootfs:\n  from: local\n  type: initrd\n  path: initrd-${TARGETARCH}.cpio\n');
    assert.equal(copies(parseBunnyfile(local, 'bunnyfile', { platform: 'linux/amd64' }))[1]?.sources[0], 'initrd-amd64.cpio');
  });

  test('every other $ stays as written; $${TARGETARCH} is a literal ${TARGETARCH}', () => {
    const plan = parseBunnyfile(BUNNYFILE('"a$b/$TARGETARCH/${HOME}/$${TARGETARCH}/${lower}"'), 'bunnyfile', { platform: 'linux/arm64' });
    assert.deepEqual(copies(plan)[0]?.sources, ['a$b/$TARGETARCH/${HOME}/${TARGETARCH}/${lower}']);
    assert.equal(plan.warnings, undefined);
  });

  test('a ${NAME} that looks meant for lapin stays as written, with a warning at it', () => {
    const plan = parseBunnyfile(BUNNYFILE('kernel-${TARGETARC}-${BUILDARCH}'), 'bunnyfile', { platform: 'linux/arm64' });
    assert.deepEqual(copies(plan)[0]?.sources, ['kernel-${TARGETARC}-${BUILDARCH}']);
    assert.deepEqual(plan.warnings, [
      {
        message: '${TARGETARC} is left as written: a bunnyfile replaces only ${TARGETPLATFORM}, ${TARGETOS}, ${TARGETARCH} and ${TARGETVARIANT} (did you mean ${TARGETARCH}?)',
        at: { file: 'bunnyfile', line: 7, column: 16 },
      },
      {
        message: '${BUILDARCH} is left as written: a bunnyfile replaces only ${TARGETPLATFORM}, ${TARGETOS}, ${TARGETARCH} and ${TARGETVARIANT}',
        at: { file: 'bunnyfile', line: 7, column: 29 },
      },
    ]);
  });

  test('a --build-arg TARGETARCH is consumed, as in a Containerfile', async () => {
    const plan = await compile(BUNNYFILE('k-${TARGETARCH}'), 'bunnyfile', 'bunnyfile', { TARGETARCH: 'riscv64', OTHER: '1' }, { platform: 'linux/amd64' });
    assert.deepEqual(copies(plan)[0]?.sources, ['k-riscv64']);
    assert.deepEqual(plan.warnings, [{ message: 'one or more build-args [OTHER] were not consumed: a bunnyfile has no ARG' }]);
  });
});

const NIX = `{ TARGETARCH, TARGETOS ? "linux", ... }:
{
  name = "hello-\${TARGETOS}";
  files = {
    "./kernel-\${TARGETARCH}" = "/unikernel/kernel";
    "./rootfs.cpio" = "/unikernel/\${ TARGETARCH }.cpio";
  };
  labels = {
    arch = TARGETARCH;
    note = ''
      built for \${TARGETARCH}, not ''\${TARGETARCH}
    '';
  };
  annotations = {
    unikernelType = "linux";
    hypervisor = "qemu";
    binary = "/unikernel/kernel";
    cmdline = "literal \\\${TARGETARCH}";
  };
}
`;

describe('args.nix: a function of the platform', () => {
  test('the arguments it names are the platform\'s, in strings and as values', () => {
    for (const arch of ['amd64', 'arm64']) {
      const plan = parseArgsNix(NIX, 'args.nix', { platform: `linux/${arch}` });
      assert.equal(plan.name?.value, 'hello-linux');
      assert.deepEqual(copies(plan).map((op) => [op.sources[0], op.destination]), [
        [`kernel-${arch}`, '/unikernel/kernel'],
        ['rootfs.cpio', `/unikernel/${arch}.cpio`],
      ]);
      assert.deepEqual(plan.config.labels, { arch, note: `built for ${arch}, not \${TARGETARCH}\n` });
      assert.equal(plan.urunc.cmdline?.value, 'literal ${TARGETARCH}');
    }
  });

  test('without --platform: the file\'s architecture, else the build platform', () => {
    assert.equal(parseArgsNix(NIX, 'args.nix', { buildPlatform: 'linux/arm64' }).config.labels.arch, 'arm64');
    const declared = NIX.replace('  name =', '  architecture = "aarch64";\n  name =');
    assert.equal(parseArgsNix(declared, 'args.nix', { buildPlatform: 'linux/amd64' }).config.labels.arch, 'arm64');
  });

  test('${TARGETARCH} in a file that is not a function: Nix\'s undefined variable, at it', () => {
    const error = caught(() => parseArgsNix('{\n  files = { "./k-${TARGETARCH}" = "/k"; };\n}\n', 'args.nix', { platform: 'linux/arm64' }));
    assert.equal(error.describe(), "args.nix:2:20: undefined variable 'TARGETARCH' (make args.nix a function of it: { TARGETARCH, ... }: { ... })");
    const outside = caught(() => parseArgsNix('{ TARGETOS }:\n{ name = TARGETARCH; }\n', 'args.nix'));
    assert.equal(outside.describe(), "args.nix:2:10: undefined variable 'TARGETARCH' (add it to the function's arguments: { TARGETARCH, ... }:)");
  });

  test('an argument lapin does not pass needs a default; other interpolation stays refused', () => {
    const error = caught(() => parseArgsNix('{ TARGETARCH, pkgs }: { }', 'args.nix'));
    assert.equal(error.describe(), "args.nix:1:15: args.nix is a function of 'pkgs', which lapin does not pass (lapin passes TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT; give 'pkgs' a default: pkgs ? \"value\")");
    assert.deepEqual(parseArgsNix('{ pkgs ? null, ... }: { name = "x"; }', 'args.nix').name?.value, 'x');
    assert.match(caught(() => parseArgsNix('{ TARGETARCH }: { name = "${TARGETARCH + "x"}"; }', 'args.nix')).describe(), /^args\.nix:1:27: unsupported Nix construct: string interpolation/);
    assert.match(caught(() => parseArgsNix('{ n ? 1 }: { name = "${n}"; }', 'args.nix')).describe(), /^args\.nix:1:24: cannot coerce an? [a-z]+ 'n' to a string/);
    assert.match(caught(() => parseArgsNix('{ a ? 1, a ? 2 }: { }', 'args.nix', {})).describe(), /^args\.nix:1:10: duplicate function argument 'a'/);
  });
});
