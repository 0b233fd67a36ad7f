import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { engineVerdicts, goBase64, type EngineInputs } from '../../src/inspect/engines.js';
import { parseUruncRelease } from '../../src/plan/releases.js';
import { checkUruncValues } from '../../src/plan/rules.js';

const unikraft = { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikernel/app' };
const b64 = (values: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));

function inputs(part: Partial<EngineInputs>): EngineInputs {
  return {
    annotations: {},
    labels: {},
    uruncJson: { found: false, values: {}, problems: [] },
    processArgs: ['app'],
    imageName: 'IMAGE',
    refusals: () => [],
    ...part,
  };
}

/** "release engine runs|fails source" per path. */
function table(part: Partial<EngineInputs>): string[] {
  return engineVerdicts(inputs(part)).map((v) => `${v.release} ${v.engine} ${v.runs ? 'runs' : 'fails'} ${v.source}`);
}

const json = { found: true, values: unikraft, problems: [] };

describe('engine paths x urunc release lines', () => {
  test('/urunc.json only: every engine on every release reads it', () => {
    assert.deepEqual(table({ uruncJson: json }), ['pre-0.7', '0.7', '0.8'].flatMap((r) => ['docker', 'containerd', 'cri', 'podman'].map((e) => `${r} ${e} runs uruncJson`)));
  });

  test("labels only: only urunc 0.8's shim, under containerd and the CRI, finds them", () => {
    assert.deepEqual(table({ labels: unikraft }).filter((row) => row.includes(' runs ')), ['0.8 containerd runs image-metadata', '0.8 cri runs image-metadata']);
  });

  test('plain-text manifest annotations with /urunc.json: podman hands them to urunc; urunc < 0.7 fails to decode them and runc runs the container', () => {
    const rows = table({ annotations: unikraft, uruncJson: json });
    assert.deepEqual(rows, [
      'pre-0.7 docker runs uruncJson', 'pre-0.7 containerd runs uruncJson', 'pre-0.7 cri runs uruncJson', 'pre-0.7 podman fails spec-annotations',
      '0.7 docker runs uruncJson', '0.7 containerd runs uruncJson', '0.7 cri runs uruncJson', '0.7 podman runs spec-annotations',
      '0.8 docker runs uruncJson', '0.8 containerd runs image-metadata', '0.8 cri runs image-metadata', '0.8 podman runs spec-annotations',
    ]);
    const podman = engineVerdicts(inputs({ annotations: unikraft, uruncJson: json })).find((v) => v.release === 'pre-0.7' && v.engine === 'podman');
    assert.match(podman?.reasons[0] ?? '', /com\.urunc\.unikernel\.binary "\/unikernel\/app" is not base64, so urunc runs the container with runc/);
  });

  test('base64 manifest annotations (urunc < 0.7 style): podman works on pre-0.7, and newer urunc reads them as text', () => {
    const seen: Array<[string, string, Record<string, string>]> = [];
    engineVerdicts(inputs({ annotations: b64(unikraft), refusals: (values, release, source) => (seen.push([release, source, { ...values }]), []) }));
    assert.deepEqual(seen.find(([r, s]) => r === 'pre-0.7' && s === 'spec-annotations')?.[2], unikraft);
    assert.deepEqual(seen.find(([r, s]) => r === '0.8' && s === 'spec-annotations')?.[2], b64(unikraft));
  });

  test('spec > manifest > labels: the shim fills each key from the manifest first', () => {
    const seen: Record<string, string>[] = [];
    engineVerdicts(inputs({ annotations: { hypervisor: 'firecracker' }, labels: unikraft, refusals: (values, release, source) => (release === '0.8' && source === 'image-metadata' && seen.push({ ...values }), []) }));
    assert.deepEqual(seen[0], { ...unikraft, hypervisor: 'firecracker' });
  });

  test('a refusal of the values makes that path fail, with the reason', () => {
    const verdicts = engineVerdicts(inputs({ uruncJson: json, refusals: (_v, release) => (release === 'pre-0.7' ? ['too old'] : []) }));
    assert.deepEqual(verdicts.filter((v) => !v.runs).map((v) => [v.release, v.reasons]), ['docker', 'containerd', 'cri', 'podman'].map(() => ['pre-0.7', ['too old']]));
  });

  test('/urunc.json problems and missing keys are the reasons', () => {
    const broken = engineVerdicts(inputs({ uruncJson: { found: true, values: {}, problems: ['/urunc.json is not valid JSON'] } }));
    assert.ok(broken.every((v) => !v.runs && v.source === 'none' && v.reasons[0] === '/urunc.json is not valid JSON'));
    const partial = engineVerdicts(inputs({ uruncJson: { found: true, values: { unikernelType: 'unikraft' }, problems: [] } }));
    assert.ok(partial.every((v) => v.reasons[0] === '/urunc.json lacks hypervisor, binary'));
  });

  test('no Cmd and no Entrypoint: docker, nerdctl and podman get the command to type, the CRI none (args in the pod spec)', () => {
    const verdicts = engineVerdicts(inputs({ uruncJson: json, processArgs: [], imageName: 'registry.example/net:1' }));
    for (const v of verdicts) {
      if (v.engine === 'docker') assert.deepEqual(v.command, ['docker', 'run', '--runtime', 'io.containerd.urunc.v2', 'registry.example/net:1', 'unikernel']);
      else if (v.engine === 'containerd') assert.deepEqual(v.command, ['nerdctl', 'run', '--runtime', 'io.containerd.urunc.v2', 'registry.example/net:1', 'unikernel']);
      else if (v.engine === 'podman') assert.deepEqual(v.command, ['podman', 'run', '--runtime', 'urunc', 'registry.example/net:1', 'unikernel']);
      else assert.equal(v.command, undefined);
    }
    assert.ok(engineVerdicts(inputs({ uruncJson: json })).every((v) => v.command === undefined));
  });

  test('for any values: 12 verdicts, runs exactly when there are no reasons, a command exactly for docker/nerdctl/podman without Cmd', () => {
    const key = fc.constantFrom('unikernelType', 'hypervisor', 'binary', 'initrd', 'cmdline', 'mountRootfs');
    const values = fc.dictionary(key, fc.string({ maxLength: 12 }));
    fc.assert(fc.property(values, values, values, fc.boolean(), fc.array(fc.string(), { maxLength: 2 }), (annotations, labels, jsonValues, hasJson, processArgs) => {
      const verdicts = engineVerdicts(inputs({ annotations, labels, uruncJson: { found: hasJson, values: jsonValues, problems: [] }, processArgs, refusals: (v) => (v.hypervisor === 'qemu' ? [] : ['not qemu']) }));
      assert.equal(verdicts.length, 12);
      for (const v of verdicts) {
        assert.equal(v.runs, v.reasons.length === 0);
        assert.equal(v.command !== undefined, processArgs.length === 0 && v.engine !== 'cri');
        if (v.source === 'image-metadata') assert.ok(v.release === '0.8' && (v.engine === 'containerd' || v.engine === 'cri'));
        if (v.source === 'spec-annotations') assert.equal(v.engine, 'podman');
        if (v.source === 'none') assert.equal(v.runs, false);
      }
    }));
  });

  test("goBase64 is Go's StdEncoding: padded, standard alphabet", () => {
    assert.equal(goBase64('cWVtdQ=='), 'qemu');
    assert.equal(goBase64('qemu'), Buffer.from('qemu', 'base64').toString('utf8'));
    assert.equal(goBase64('cWVtdQ'), undefined);
    assert.equal(goBase64('/unikernel/app'), undefined);
    assert.equal(goBase64('a-b_'), undefined);
    fc.assert(fc.property(fc.string(), (text) => goBase64(Buffer.from(text).toString('base64')) === Buffer.from(Buffer.from(text)).toString('utf8')));
  });
});

describe('release lines', () => {
  test('--urunc-version names', () => {
    for (const [text, release] of [['0.8', '0.8'], ['v0.8.0', '0.8'], ['0.8.3', '0.8'], ['0.7', '0.7'], ['v0.7.0', '0.7'], ['pre-0.7', 'pre-0.7'], ['0.5.0', 'pre-0.7'], ['v0.6', 'pre-0.7']] as const) {
      assert.equal(parseUruncRelease(text), release, text);
    }
    for (const text of ['0.9', '1.0', 'latest', '', '8']) assert.equal(parseUruncRelease(text), undefined, text);
  });

  const messages = (values: Record<string, string>, release: 'pre-0.7' | '0.7' | '0.8') => checkUruncValues(values, {}, release).map((f) => `${f.severity}: ${f.message}`);

  test('cmdline is never a warning: lapin writes it for urunc < 0.7 on purpose', () => {
    for (const release of ['pre-0.7', '0.7', '0.8'] as const) assert.deepEqual(messages({ ...unikraft, initrd: '/i', cmdline: 'app' }, release), []);
  });

  test('solo5 device names are urunc 0.8 values; vAccel and RPCAddress came with 0.7', () => {
    const solo5 = { unikernelType: 'mirage', hypervisor: 'hvt', binary: '/k', solo5NetDev: 'net0' };
    assert.deepEqual(messages(solo5, '0.8'), []);
    assert.deepEqual(messages(solo5, '0.7'), ['warning: urunc 0.7 does not read com.urunc.unikernel.solo5NetDev (urunc 0.8 does)']);
    const vaccel = { ...unikraft, initrd: '/i', vAccel: 'vsock', RPCAddress: 'vsock://2:2048' };
    assert.deepEqual(messages(vaccel, 'pre-0.7'), [
      'warning: urunc < 0.7 does not read com.urunc.unikernel.vAccel (urunc 0.7 does)',
      'warning: urunc < 0.7 does not read com.urunc.unikernel.RPCAddress (urunc 0.7 does)',
    ]);
    assert.match(messages(vaccel, '0.7').join('\n'), /^warning: vAccel and RPCAddress are read from the OCI spec's annotations only/);
  });

  test('guests and monitors urunc < 0.7 does not have are errors there only', () => {
    assert.deepEqual(messages({ unikernelType: 'hermit', hypervisor: 'qemu', binary: '/k' }, 'pre-0.7'), ['error: urunc < 0.7 has no hermit guest']);
    assert.deepEqual(messages({ unikernelType: 'linux', hypervisor: 'cloud-hypervisor', binary: '/k' }, 'pre-0.7'), ['error: urunc < 0.7 has no cloud-hypervisor monitor']);
    assert.deepEqual(messages({ unikernelType: 'hermit', hypervisor: 'qemu', binary: '/k' }, '0.8'), []);
  });
});
