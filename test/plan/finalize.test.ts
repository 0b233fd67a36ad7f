import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { finalizeMetadata } from '../../src/plan/finalize.js';
import { emptyConfig, type BuildPlan } from '../../src/plan/types.js';
import { uruncJson } from '../../src/plan/urunc-json.js';

function plan(urunc: Record<string, string>, config: Partial<BuildPlan['config']> = {}): BuildPlan {
  return {
    syntax: 'bunnyfile',
    file: 'bunnyfile',
    base: { kind: 'scratch' },
    stages: [],
    ops: [],
    config: { ...emptyConfig(), ...config },
    urunc: Object.fromEntries(Object.entries(urunc).map(([k, v]) => [k, { value: v }])),
    annotations: {},
  };
}

const base = { unikernelType: 'linux', hypervisor: 'qemu', binary: '/.boot/kernel' };

describe('finalizeMetadata', () => {
  test('cmd becomes the cmdline when the input gave no cmdline', () => {
    const m = finalizeMetadata(plan(base, { cmd: { value: ['/bin/init', '-v'] } }));
    assert.equal(m.urunc.cmdline, '/bin/init -v');
    assert.deepEqual(m.config.cmd, ['/bin/init', '-v']);
  });

  test('entrypoint and cmd together make the cmdline, as urunc >= 0.7 joins process args', () => {
    const m = finalizeMetadata(plan(base, { entrypoint: { value: ['/init'] }, cmd: { value: ['a'] } }));
    assert.equal(m.urunc.cmdline, '/init a');
  });

  test('a cmdline alone becomes Cmd', () => {
    const m = finalizeMetadata(plan({ ...base, cmdline: 'console=ttyS0  init=/x' }));
    assert.deepEqual(m.config.cmd, ['console=ttyS0', 'init=/x']);
    assert.equal(m.urunc.cmdline, 'console=ttyS0  init=/x');
  });

  test('an empty cmdline gives Cmd [""], which docker run accepts and urunc joins to ""', () => {
    const m = finalizeMetadata(plan({ ...base, cmdline: '' }));
    assert.deepEqual(m.config.cmd, ['']);
    assert.equal(m.config.cmd?.join(' '), m.urunc.cmdline);
    assert.equal(m.urunc.cmdline, '');
    assert.equal(m.config.labels['com.urunc.unikernel.cmdline'], '');
  });

  test('Linux args after an empty first one are a warning: urunc writes no init= and drops them (linux.go `if l.App != ""`)', () => {
    const m = finalizeMetadata(plan(base, { cmd: { value: ['', 'quiet'] } }));
    assert.match(m.findings.find((f) => f.severity === 'warning')?.message ?? '', /start with an empty one: urunc then writes no init= and drops the rest/);
    assert.deepEqual(finalizeMetadata(plan(base, { cmd: { value: [''] } })).findings, []);
    assert.deepEqual(finalizeMetadata(plan({ ...base, unikernelType: 'unikraft' }, { cmd: { value: ['', 'quiet'] } })).findings.filter((f) => /empty one/.test(f.message)), []);
  });

  test('a cmdline that disagrees with cmd is an error', () => {
    const m = finalizeMetadata(plan({ ...base, cmdline: 'x' }, { cmd: { value: ['y'] } }));
    assert.match(m.findings.find((f) => f.severity === 'error')?.message ?? '', /disagrees with the process args/);
  });

  test('useDMBlock and mountRootfs mirror each other', () => {
    assert.equal(finalizeMetadata(plan({ ...base, useDMBlock: 'false' })).urunc.mountRootfs, 'false');
    assert.equal(finalizeMetadata(plan({ ...base, mountRootfs: 'true' })).urunc.useDMBlock, 'true');
    const clash = finalizeMetadata(plan({ ...base, mountRootfs: 'true', useDMBlock: 'false' }));
    assert.match(clash.findings[0]?.message ?? '', /contradicts/);
  });

  test('a useDMBlock that is no boolean is one finding about useDMBlock, not also about mountRootfs', () => {
    for (const [key, other] of [['useDMBlock', 'mountRootfs'], ['mountRootfs', 'useDMBlock']] as const) {
      const m = finalizeMetadata(plan({ ...base, [key]: 'yes' }));
      const errors = m.findings.filter((f) => f.severity === 'error');
      assert.equal(errors.length, 1, errors.map((f) => f.message).join('\n'));
      assert.match(errors[0]?.message ?? '', new RegExp(`${key} "yes" is not a boolean`));
      assert.ok(!m.findings.some((f) => f.message.includes(other)));
      assert.equal(m.urunc[other], undefined);
    }
  });

  test('empty values are dropped, except cmdline', () => {
    const m = finalizeMetadata(plan({ ...base, initrd: '', block: '', unikernelVersion: '' }));
    assert.deepEqual(Object.keys(m.urunc), ['unikernelType', 'hypervisor', 'binary', 'cmdline']);
  });

  test('command-line labels and annotations override urunc values and add extras', () => {
    const m = finalizeMetadata(plan(base), {
      annotations: { 'com.urunc.unikernel.hypervisor': 'firecracker', 'org.example.note': 'n' },
      labels: { team: 'a' },
    });
    assert.equal(m.urunc.hypervisor, 'firecracker');
    assert.equal(m.annotations['org.example.note'], 'n');
    assert.equal(m.annotations['com.urunc.unikernel.hypervisor'], 'firecracker');
    assert.equal(m.config.labels.team, 'a');
    assert.equal(m.config.labels['com.urunc.unikernel.hypervisor'], 'firecracker');
  });

  test('values are identical in labels, annotations and urunc.json', () => {
    const m = finalizeMetadata(plan({ ...base, cmdline: 'console=ttyS0' }));
    const decoded = Object.fromEntries(
      Object.entries(JSON.parse(uruncJson(m.urunc).toString()) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]),
    );
    for (const [key, value] of Object.entries(decoded)) {
      assert.equal(m.annotations[key], value);
      assert.equal(m.config.labels[key], value);
    }
    assert.equal(decoded['com.urunc.unikernel.hypervisor'], 'qemu');
  });
});
