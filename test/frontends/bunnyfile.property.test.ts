import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseBunnyfile } from '../../src/frontends/bunnyfile.js';
import { LapinError } from '../../src/errors.js';
import type { BuildPlan, CopyOp } from '../../src/plan/types.js';

const FILE = 'bunnyfile';
const seed = readFileSync(fileURLToPath(new URL('../fixtures/bunnyfile/bunnyfile', import.meta.url)), 'utf8');

/** A plan, or the LapinError; anything else thrown fails the property. */
function outcome(text: string): BuildPlan | LapinError {
  try {
    return parseBunnyfile(text, FILE);
  } catch (error) {
    if (error instanceof LapinError) return error;
    throw error;
  }
}

/** The error points inside the text: 1-based line and column within that line (or just past its end). */
function assertPositionInRange(error: LapinError, text: string): void {
  assert.ok(error.at, `no position for "${error.message}"`);
  assert.equal(error.at.file, FILE);
  const lines = text.split('\n');
  assert.ok(Number.isInteger(error.at.line) && error.at.line >= 1 && error.at.line <= lines.length, `line ${error.at.line} of ${lines.length}`);
  const line = lines[error.at.line - 1] ?? '';
  assert.ok(Number.isInteger(error.at.column) && error.at.column >= 1 && error.at.column <= line.length + 1, `column ${error.at.column} on a line of ${line.length}`);
}

const IMAGE = 'harbor.nbfc.io/nubificus/app:1.0';
const frameworks = ['unikraft', 'rumprun', 'mirage', 'linux', 'mewz', 'hermit'] as const;
const monitors = ['qemu', 'firecracker', 'hvt', 'spt', 'cloud-hypervisor'] as const;
const rootfsTypes = ['initrd', 'block', 'raw'] as const;

interface IncludeMap {
  from?: string;
  source: string;
  destination: string;
}
type IncludeSpec = string | IncludeMap;

interface Spec {
  framework: string;
  monitor: string;
  kernelFrom: string;
  rootfs?: { from?: string; path?: string; type?: string; include?: IncludeSpec[] };
  cmd?: string[];
}

const includeArb: fc.Arbitrary<IncludeSpec> = fc.oneof(
  fc.constantFrom('a:/b', 'conf', 'x:', 'dir/file:/etc/file'),
  fc.record(
    { from: fc.constantFrom('local', IMAGE), source: fc.constantFrom('s', '/bin/sh'), destination: fc.constantFrom('/d', '/etc/x') },
    { requiredKeys: ['source', 'destination'] },
  ),
);

const specArb: fc.Arbitrary<Spec> = fc.record(
  {
    framework: fc.constantFrom(...frameworks),
    monitor: fc.constantFrom(...monitors),
    kernelFrom: fc.constantFrom('local', 'harbor.nbfc.io/nubificus/kernel:1'),
    rootfs: fc.record(
      {
        from: fc.constantFrom('scratch', 'local', IMAGE),
        path: fc.constantFrom('rootfs.img', '/boot/initrd'),
        type: fc.constantFrom(...rootfsTypes),
        include: fc.array(includeArb, { minLength: 1, maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
    cmd: fc.array(fc.constantFrom('-c', 'x', 'a b', '--flag=1'), { maxLength: 3 }),
  },
  { requiredKeys: ['framework', 'monitor', 'kernelFrom'] },
);

function render(spec: Spec): string {
  const document: Record<string, unknown> = {
    version: 'v0.1',
    platforms: { framework: spec.framework, monitor: spec.monitor },
    kernel: { from: spec.kernelFrom, path: spec.kernelFrom === 'local' ? 'kernel.bin' : '/unikernel/kernel' },
  };
  if (spec.rootfs !== undefined) document.rootfs = spec.rootfs;
  if (spec.cmd !== undefined) document.cmd = spec.cmd;
  return `#syntax=harbor.nbfc.io/nubificus/bunny:latest\n${stringify(document)}`;
}

/** lapin goes beyond bunny here: an image with an explicit initrd or block type and no path becomes that rootfs file. */
function convertsImage(spec: Spec): boolean {
  const rootfs = spec.rootfs ?? {};
  const from = rootfs.from ?? 'scratch';
  return from !== 'scratch' && from !== 'local' && (rootfs.type === 'initrd' || rootfs.type === 'block') && rootfs.path === undefined;
}

/** The bunny rules (hops/validate.go, hops/package.go) that make a spec invalid, less what lapin adds (convertsImage). */
function bunnyRejects(spec: Spec): boolean {
  const rootfs = spec.rootfs ?? {};
  const from = rootfs.from ?? 'scratch';
  const hasIncludes = (rootfs.include ?? []).length > 0;
  return (
    (from === 'scratch' && rootfs.path !== undefined) ||
    (rootfs.path !== undefined && rootfs.type === 'raw') ||
    (from === 'local' && rootfs.type === 'raw') ||
    (hasIncludes && from === 'local') ||
    (hasIncludes && from !== 'scratch' && from !== 'local' && rootfs.type !== 'raw' && !convertsImage(spec)) ||
    (spec.framework === 'unikraft' && rootfs.type === 'block')
  );
}

test('generated bunnyfiles give a plan consistent with bunny\'s rules, or a positioned LapinError', () => {
  let plans = 0;
  fc.assert(
    fc.property(specArb, (spec) => {
      const text = render(spec);
      const result = outcome(text);
      if (result instanceof LapinError) {
        assertPositionInRange(result, text);
        return;
      }
      assert.ok(!bunnyRejects(spec), `bunny rejects this, lapin built it:\n${text}`);
      plans++;
      const plan = result;
      const rootfs = spec.rootfs ?? {};
      const from = rootfs.from ?? 'scratch';
      // lapin reads a local file without a type at build time (detect); bunny would take raw.
      const type = rootfs.type ?? (spec.framework === 'unikraft' ? 'initrd' : from === 'local' ? 'detect' : 'raw');
      const hasIncludes = (rootfs.include ?? []).length > 0;

      assert.equal(plan.syntax, 'bunnyfile');
      assert.deepEqual(plan.stages, []);
      assert.equal(plan.urunc.unikernelType?.value, spec.framework);
      assert.equal(plan.urunc.hypervisor?.value, spec.monitor);
      assert.equal(plan.urunc.cmdline?.value, (spec.cmd ?? []).join(' '));
      const binary = plan.urunc.binary?.value;
      assert.ok(binary !== undefined && binary.startsWith('/'), 'binary always set');
      if (spec.kernelFrom === 'local') {
        assert.equal(binary, '/.boot/kernel');
        const kernelCopy = plan.ops[0] as CopyOp;
        assert.deepEqual([kernelCopy.kind, kernelCopy.sources, kernelCopy.destination], ['copy', ['kernel.bin'], '/.boot/kernel']);
      } else if ((from !== 'scratch' && from !== 'local') || (from === 'scratch' && hasIncludes && type === 'raw')) {
        // bunny's SetBaseAndGetPaths: the rootfs is the base, the kernel is copied out of its image.
        assert.equal(binary, '/.boot/kernel');
        const kernelCopy = plan.ops[0] as CopyOp;
        assert.deepEqual([kernelCopy.kind, kernelCopy.sources, kernelCopy.destination, kernelCopy.fromStage], ['copy', ['/unikernel/kernel'], '/.boot/kernel', spec.kernelFrom]);
      } else {
        assert.equal(binary, '/unikernel/kernel');
        assert.deepEqual(plan.base, { kind: 'image', reference: spec.kernelFrom, at: plan.base.kind === 'image' ? plan.base.at : undefined });
      }
      // No rootfs section means nothing to hand over, whatever the framework's default type.
      const mounts = type === 'raw' && spec.rootfs !== undefined;
      assert.equal(plan.urunc.mountRootfs?.value, mounts ? 'true' : 'false', 'raw rootfs <=> mountRootfs true');
      if (type === 'initrd') {
        const expected = from === 'local' || hasIncludes || convertsImage(spec) ? '/.boot/rootfs' : from === 'scratch' ? undefined : rootfs.path;
        assert.equal(plan.urunc.initrd?.value, expected);
        if (hasIncludes || convertsImage(spec)) assert.ok(plan.ops.some((op) => op.kind === 'initrd' && op.destination === '/.boot/rootfs'));
      } else {
        assert.equal(plan.urunc.initrd, undefined);
      }
      if (type === 'block') {
        assert.ok(plan.urunc.block !== undefined);
        assert.equal(plan.urunc.blkMntPoint?.value, spec.framework === 'rumprun' ? '/data' : '/');
      } else {
        assert.equal(plan.urunc.block, undefined);
        assert.equal(plan.urunc.blkMntPoint, undefined);
      }
      if (from === 'local') assert.equal(plan.rootfsFile?.declared?.value, type === 'detect' ? undefined : type);
      if (convertsImage(spec)) {
        // The image is read into the rootfs file, not built on.
        assert.ok(plan.ops.some((op) => op.kind !== 'copy' && op.baseImage?.value === from && op.destination === '/.boot/rootfs'));
        assert.equal(plan.urunc.mountRootfs?.value, 'false');
      } else if (from !== 'scratch' && from !== 'local') {
        assert.deepEqual(plan.base.kind === 'image' && plan.base.reference, from);
      }
      if (spec.cmd !== undefined && spec.cmd.length > 0) assert.deepEqual(plan.config.cmd?.value, spec.cmd);
    }),
    { numRuns: 400 },
  );
  assert.ok(plans > 40, `only ${plans} generated bunnyfiles built`);
});

const yamlish = fc.constantFrom(...'abcvx01.:-_/[]{}"\'#&*!|>?,%@` \n\t\r'.split(''), 'version', 'platforms', 'kernel', 'rootfs', 'include', '---', '\n  ');

test('arbitrary text gives a plan or a LapinError with an in-range position', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: yamlish, maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 100 })), (text) => {
      const result = outcome(text);
      if (result instanceof LapinError) assertPositionInRange(result, text);
    }),
    { numRuns: 500 },
  );
});

test('mutations of the seed give a plan or a LapinError with an in-range position', () => {
  const edit = fc.record({ at: fc.nat(), remove: fc.nat({ max: 6 }), insert: fc.string({ unit: yamlish, maxLength: 4 }) });
  fc.assert(
    fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
      let text = seed;
      for (const { at, remove, insert } of edits) {
        const index = at % (text.length + 1);
        text = text.slice(0, index) + insert + text.slice(index + remove);
      }
      const result = outcome(text);
      if (result instanceof LapinError) assertPositionInRange(result, text);
    }),
    { numRuns: 500 },
  );
});

test('deeply nested input is a LapinError, not a crash', () => {
  for (const text of ['['.repeat(5000), `a: ${'['.repeat(5000)}${']'.repeat(5000)}`, `version: v0.1\nplatforms: ${'{a: '.repeat(2000)}`]) {
    const result = outcome(text);
    assert.ok(result instanceof LapinError);
    assertPositionInRange(result, text);
  }
});
