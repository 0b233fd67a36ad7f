// The engine tests' own model of urunc's lookup (engines-urunc.ts), on
// recordings written here: the release rules it must follow before it is
// trusted to judge lapin's inspect.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Recording, StoredImage } from './engines-harness.js';
import { goStdBase64, uruncLookup } from './engines-urunc.js';

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const full = (values: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(values).map(([key, value]) => [`com.urunc.unikernel.${key}`, value]));
const qemuUnikraft = { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/.boot/kernel' };

function recording(annotations: Record<string, string>, uruncJson?: Record<string, string>): Recording {
  return {
    id: 'c',
    spec: { annotations: full(annotations), process: { args: ['x'] } },
    rootfs: [{ type: 'd', mode: '755', size: 0, path: '/.boot' }, { type: 'f', mode: '755', size: 9, path: '/.boot/kernel' }],
    ...(uruncJson ? { uruncJson: JSON.stringify(full(uruncJson)) } : {}),
    argv: [],
    handedToRunc: false,
  };
}

const encoded = (values: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(values).map(([key, value]) => [key, b64(value)]));
const short = (outcome: { source: string; runs: boolean }): string => `${outcome.source}/${outcome.runs}`;

describe("the engine tests' model of urunc", () => {
  test('Go base64: padded standard alphabet only, CR/LF skipped', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const text = Buffer.from(bytes).toString('base64');
        assert.equal(goStdBase64(text), Buffer.from(bytes).toString('latin1'));
        assert.equal(goStdBase64(text.replace(/(.{4})/g, '$1\n')), Buffer.from(bytes).toString('latin1'));
      }),
    );
    for (const bad of ['qemu=', 'abc', '/.boot/kernel', 'aGk', 'aG=k', '-_-_']) assert.equal(goStdBase64(bad), undefined, bad);
    assert.equal(goStdBase64(''), '');
    // Plain text that happens to be base64 decodes to something else.
    assert.notEqual(goStdBase64('qemu'), 'qemu');
  });

  test('urunc < 0.7: any spec value makes it decode the spec strictly, and a failure hands the container to runc', () => {
    assert.equal(short(uruncLookup('pre-0.7', 'podman', { recording: recording(qemuUnikraft, encoded(qemuUnikraft)) })), 'spec-annotations/false');
    assert.equal(short(uruncLookup('pre-0.7', 'podman', { recording: recording(encoded(qemuUnikraft)) })), 'spec-annotations/true');
    // useDMBlock alone does not count: /urunc.json is read.
    assert.equal(short(uruncLookup('pre-0.7', 'docker', { recording: recording({ useDMBlock: 'true' }, encoded(qemuUnikraft)) })), 'uruncJson/true');
    assert.equal(short(uruncLookup('pre-0.7', 'docker', { recording: recording({}, qemuUnikraft) })), 'none/false');
    assert.equal(short(uruncLookup('pre-0.7', 'docker', { recording: recording({}) })), 'none/false');
  });

  test('urunc 0.7: plain spec values once the three required keys are there, else /urunc.json', () => {
    assert.equal(short(uruncLookup('0.7', 'podman', { recording: recording(qemuUnikraft) })), 'spec-annotations/true');
    assert.equal(short(uruncLookup('0.7', 'podman', { recording: recording({ unikernelType: 'unikraft', hypervisor: 'qemu' }, encoded(qemuUnikraft)) })), 'uruncJson/true');
    assert.equal(short(uruncLookup('0.7', 'podman', { recording: recording({ ...qemuUnikraft, hypervisor: 'hvt' }) })), 'spec-annotations/false');
    assert.equal(short(uruncLookup('0.7', 'docker', { recording: recording({ ...qemuUnikraft, binary: '/nowhere' }) })), 'spec-annotations/false');
  });

  test("urunc 0.8's shim: spec, then manifest annotations, then labels, key by key, for containerd's images only", () => {
    const stored: StoredImage = { name: 'i', manifestAnnotations: full({ unikernelType: 'unikraft', hypervisor: 'firecracker' }), labels: full({ unikernelType: 'mirage', binary: '/.boot/kernel' }) };
    assert.equal(short(uruncLookup('0.8', 'cri', { recording: recording({}), stored })), 'image-metadata/true');
    assert.equal(uruncLookup('0.8', 'cri', { recording: recording({ hypervisor: 'qemu' }), stored }).values.hypervisor, 'qemu');
    assert.equal(short(uruncLookup('0.7', 'cri', { recording: recording({}), stored })), 'none/false');
    assert.equal(short(uruncLookup('0.8', 'podman', { recording: recording({}) })), 'none/false');
  });
});
