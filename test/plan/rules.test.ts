import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MONITOR_GUESTS, checkUruncValues, parseGoBool, pathProblem } from '../../src/plan/rules.js';

const valid = { unikernelType: 'mirage', hypervisor: 'hvt', binary: '/unikernel/network.hvt' };

function errors(values: Record<string, string>): string[] {
  return checkUruncValues(values)
    .filter((f) => f.severity === 'error')
    .map((f) => f.message);
}

describe('urunc 0.8 rules', () => {
  test('a valid set passes', () => {
    assert.deepEqual(checkUruncValues(valid), []);
  });

  for (const key of ['unikernelType', 'hypervisor', 'binary']) {
    test(`${key} is required`, () => {
      const values: Record<string, string> = { ...valid };
      delete values[key];
      assert.deepEqual(errors(values), [`missing required urunc value com.urunc.unikernel.${key}`]);
    });
  }

  test('a missing value is reported where the file gives the other values, so the message names the file', () => {
    const hypervisorAt = { file: 'Containerfile', line: 3, column: 7 };
    const [finding] = checkUruncValues({ hypervisor: 'hvt', binary: '/k' }, { hypervisor: hypervisorAt });
    assert.equal(finding?.message, 'missing required urunc value com.urunc.unikernel.unikernelType');
    assert.deepEqual(finding.at, hypervisorAt);
    assert.equal(checkUruncValues({ hypervisor: 'hvt', binary: '/k' })[0]?.at, undefined);
  });

  test('every accepted guest/monitor pair passes and every other pair fails', () => {
    const guests = ['unikraft', 'rumprun', 'mirage', 'mewz', 'linux', 'hermit'];
    for (const monitor of Object.keys(MONITOR_GUESTS)) {
      for (const guest of guests) {
        // hyperlight-unikraft needs an initrd (tested below); give one so only the pair is judged.
        const found = errors({ unikernelType: guest, hypervisor: monitor, binary: '/k', ...(monitor === 'hyperlight-unikraft' ? { initrd: '/i' } : {}) });
        const accepted = MONITOR_GUESTS[monitor]?.includes(guest) ?? false;
        assert.equal(found.length === 0, accepted, `${guest} on ${monitor}`);
        if (!accepted) assert.match(found[0] ?? '', new RegExp(`does not run ${guest} guests on ${monitor}`));
      }
    }
  });

  test('values are case-sensitive', () => {
    assert.match(errors({ ...valid, hypervisor: 'HVT' })[0] ?? '', /unknown hypervisor "HVT"/);
    assert.match(errors({ ...valid, unikernelType: 'Mirage' })[0] ?? '', /unknown unikernelType "Mirage"/);
    assert.match(errors({ ...valid, hypervisor: ' hvt' })[0] ?? '', /unknown hypervisor/);
    // The hint names the spelling urunc takes, without parentheses inside the CLI's own.
    const hints = (values: Record<string, string>): string[] => checkUruncValues(values).filter((f) => f.severity === 'error').map((f) => f.hint ?? '');
    assert.deepEqual(hints({ ...valid, unikernelType: 'Mirage' }), ["write mirage: urunc's values are case-sensitive"]);
    assert.deepEqual(hints({ ...valid, hypervisor: 'kvm' }), ["use one of hvt, spt, qemu, firecracker, cloud-hypervisor, hyperlight-unikraft; urunc's values are case-sensitive"]);
  });

  test('path rules', () => {
    assert.equal(pathProblem('binary', '/.boot/kernel'), undefined);
    assert.equal(pathProblem('binary', 'relative/kernel'), undefined);
    assert.equal(pathProblem('blkMntPoint', '/'), undefined);
    assert.match(pathProblem('binary', '/') ?? '', /names no file/);
    assert.match(pathProblem('binary', '/a b') ?? '', /contains " "/);
    assert.match(pathProblem('binary', '/a//b') ?? '', /"\/\/"/);
    assert.match(pathProblem('binary', '/a/./b') ?? '', /segment/);
    assert.match(pathProblem('binary', '/a/../b') ?? '', /segment/);
    assert.match(pathProblem('binary', '/a/') ?? '', /ends with/);
    assert.match(pathProblem('binary', '..a') ?? '', /starts with "\.\."/);
    assert.match(pathProblem('initrd', '-x') ?? '', /starts with "-"/);
    assert.match(pathProblem('block', '.') ?? '', /is "\."/);
    assert.match(pathProblem('binary', `/${'a'.repeat(4096)}`) ?? '', /longer than 4096/);
    assert.match(pathProblem('binary', '/kernel\u00e9') ?? '', /contains/);
  });

  test('booleans follow Go strconv.ParseBool', () => {
    for (const t of ['1', 't', 'T', 'TRUE', 'true', 'True']) assert.equal(parseGoBool(t), true);
    for (const f of ['0', 'f', 'F', 'FALSE', 'false', 'False']) assert.equal(parseGoBool(f), false);
    for (const bad of ['yes', 'tRUE', '', ' true', 'on']) assert.equal(parseGoBool(bad), undefined);
    assert.match(errors({ ...valid, mountRootfs: 'yes' })[0] ?? '', /mountRootfs "yes" is not a boolean/);
    assert.match(errors({ ...valid, useDMBlock: 'no' })[0] ?? '', /useDMBlock "no" is not a boolean/);
  });

  test('solo5 device names', () => {
    assert.deepEqual(errors({ ...valid, solo5NetDev: 'service0' }), []);
    assert.match(errors({ ...valid, solo5BlkDev: 'bad-name' })[0] ?? '', /not a Solo5 device name/);
    assert.match(errors({ ...valid, solo5BlkDev: 'a'.repeat(68) })[0] ?? '', /not a Solo5 device name/);
  });

  test('unknown keys are warnings, not errors', () => {
    const findings = checkUruncValues({ ...valid, futureKey: 'x' });
    assert.deepEqual(
      findings.map((f) => f.severity),
      ['warning'],
    );
  });
});
