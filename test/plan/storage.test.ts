import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import { finalizeMetadata } from '../../src/plan/finalize.js';
import { checkUruncValues } from '../../src/plan/rules.js';
import { canMountRootfs, checkStorage, STORAGE_TABLE, storageUse } from '../../src/plan/storage.js';

const MONITOR: Readonly<Record<string, string>> = { linux: 'qemu', unikraft: 'qemu', rumprun: 'hvt', mirage: 'hvt', mewz: 'qemu', hermit: 'qemu' };

function findings(values: Record<string, string>): string[] {
  return checkStorage(values).map((f) => `${f.severity}: ${f.message}`);
}

function base(guest: string): Record<string, string> {
  return { unikernelType: guest, hypervisor: MONITOR[guest] as string, binary: '/.boot/kernel' };
}

describe("urunc's storage table", () => {
  // Each guest and each kind, as ../shared/reference/urunc-images.md §1 "Storage each guest can use" has it.
  const expected: Record<string, { initrd: string; block: string; mountRootfs: string }> = {
    linux: { initrd: 'uses', block: 'uses', mountRootfs: 'uses' },
    unikraft: { initrd: 'uses', block: 'fails', mountRootfs: 'uses' },
    rumprun: { initrd: 'fails', block: 'uses', mountRootfs: 'uses' },
    mirage: { initrd: 'fails', block: 'uses', mountRootfs: 'ignores' },
    mewz: { initrd: 'fails', block: 'fails', mountRootfs: 'ignores' },
    hermit: { initrd: 'fails', block: 'fails', mountRootfs: 'ignores' },
  };

  test('every guest urunc knows has a row, with the reference table', () => {
    assert.deepEqual(Object.keys(STORAGE_TABLE).sort(), Object.keys(expected).sort());
    for (const [guest, row] of Object.entries(expected)) {
      for (const kind of ['initrd', 'block', 'mountRootfs'] as const) {
        assert.equal(storageUse(guest, MONITOR[guest], kind), row[kind], `${guest} ${kind}`);
      }
    }
  });

  for (const guest of ['mirage', 'rumprun', 'mewz', 'hermit']) {
    test(`${guest} with an initrd is an error`, () => {
      assert.deepEqual(findings({ ...base(guest), initrd: '/.boot/rootfs' }), [
        `error: ${guest} cannot use an initrd: urunc does not give it one, so the guest would boot without /.boot/rootfs`,
      ]);
    });
  }

  for (const guest of ['mewz', 'hermit', 'unikraft']) {
    test(`${guest} with a block image is an error`, () => {
      assert.deepEqual(findings({ ...base(guest), block: '/.boot/rootfs', blkMntPoint: '/' }), [
        `error: ${guest} cannot use a block image: urunc does not attach /.boot/rootfs for it, so the guest would boot without it`,
      ]);
    });
  }

  test('the kinds each guest takes pass', () => {
    assert.deepEqual(findings({ ...base('mirage'), block: '/.boot/rootfs', blkMntPoint: '/' }), []);
    assert.deepEqual(findings({ ...base('rumprun'), block: '/.boot/rootfs', blkMntPoint: '/data' }), []);
    assert.deepEqual(findings({ ...base('linux'), initrd: '/i' }), []);
    assert.deepEqual(findings({ ...base('linux'), block: '/b', blkMntPoint: '/' }), []);
    assert.deepEqual(findings({ ...base('linux'), mountRootfs: 'true' }), []);
    assert.deepEqual(findings({ ...base('unikraft'), initrd: '/i' }), []);
    assert.deepEqual(findings({ ...base('unikraft'), mountRootfs: 'true' }), []);
    assert.deepEqual(findings({ ...base('rumprun'), mountRootfs: 'true' }), []);
    assert.deepEqual(findings(base('mewz')), []);
  });

  for (const guest of ['mirage', 'mewz', 'hermit']) {
    test(`mountRootfs=true for ${guest} is a warning: urunc ignores it`, () => {
      assert.deepEqual(findings({ ...base(guest), mountRootfs: 'true', useDMBlock: 'true' }), [
        `warning: mountRootfs=true: ${guest} cannot use the container rootfs; urunc ignores it`,
      ]);
      assert.deepEqual(findings({ ...base(guest), useDMBlock: 'True' }), [
        `warning: useDMBlock=true: ${guest} cannot use the container rootfs; urunc ignores it`,
      ]);
    });
  }

  test('mountRootfs=true for unikraft off qemu is a warning (9pfs is set up on qemu only)', () => {
    assert.deepEqual(findings({ ...base('unikraft'), hypervisor: 'firecracker', mountRootfs: 'true' }), [
      'warning: mountRootfs=true: unikraft reads the container rootfs over 9pfs, which urunc sets up on qemu only, not firecracker; urunc ignores it',
    ]);
  });

  test('mountRootfs=true under an initrd or a root block image is not judged: urunc picks those first', () => {
    assert.deepEqual(findings({ ...base('mirage'), block: '/b', blkMntPoint: '/', mountRootfs: 'true' }), []);
    assert.deepEqual(findings({ ...base('mirage'), block: '/b', blkMntPoint: '/data', mountRootfs: 'true' }).length, 1);
  });

  test('rumprun mounts its block image at /data whatever blkMntPoint says: a warning', () => {
    assert.deepEqual(findings({ ...base('rumprun'), block: '/b', blkMntPoint: '/' }), [
      'warning: rumprun mounts its block image at /data whatever blkMntPoint says (/)',
    ]);
  });

  test('hyperlight-unikraft needs an initrd', () => {
    const values = { unikernelType: 'unikraft', hypervisor: 'hyperlight-unikraft', binary: '/k' };
    assert.deepEqual(findings(values), ['error: hyperlight-unikraft needs an initrd, and com.urunc.unikernel.initrd is not set']);
    assert.deepEqual(findings({ ...values, initrd: '/i' }), []);
    // The hint names how each syntax gives an initrd, not only bunnyfile's way.
    const [finding] = checkStorage(values);
    assert.match(finding?.hint ?? '', /rootfs\.type: initrd/);
    assert.match(finding?.hint ?? '', /LABEL com\.urunc\.unikernel\.initrd=PATH/);
    assert.match(finding?.hint ?? '', /annotations\.initrd/);
  });

  test('checkUruncValues applies the table, with the positions the values came from', () => {
    const at = { file: 'bunnyfile', line: 9, column: 3 };
    const found = checkUruncValues({ ...base('mirage'), initrd: '/.boot/rootfs' }, { initrd: at });
    assert.equal(found.length, 1);
    assert.equal(found[0]?.severity, 'error');
    assert.deepEqual(found[0]?.at, at);
    assert.match(found[0]?.hint ?? '', /mirage takes a block image \(a Solo5 block device\) only/);
  });
});

describe('the Containerfile default for mountRootfs', () => {
  const plan = (...labels: string[]) => parseContainerfile(['FROM scratch', 'COPY kernel /kernel', ...labels.map((l) => `LABEL com.urunc.unikernel.${l}`), 'CMD ["x"]', ''].join('\n'), 'Containerfile');

  test('is false for a guest that cannot use the container rootfs, so build does not warn', () => {
    for (const [guest, monitor] of [['mirage', 'hvt'], ['mewz', 'qemu'], ['hermit', 'qemu'], ['unikraft', 'firecracker']] as const) {
      const built = plan(`unikernelType=${guest}`, `hypervisor=${monitor}`, 'binary=/kernel');
      assert.equal(built.urunc.mountRootfs?.value, 'false', guest);
      const metadata = finalizeMetadata(built);
      assert.deepEqual(metadata.findings.map((f) => f.message), [], guest);
    }
  });

  test("is still bunny's true for guests that use it", () => {
    for (const [guest, monitor] of [['linux', 'qemu'], ['unikraft', 'qemu'], ['rumprun', 'hvt']] as const) {
      assert.equal(plan(`unikernelType=${guest}`, `hypervisor=${monitor}`, 'binary=/kernel').urunc.mountRootfs?.value, 'true', guest);
    }
    assert.equal(plan('binary=/kernel').urunc.mountRootfs?.value, 'true');
  });

  test('canMountRootfs: unknown guests keep the default (they are an error of their own)', () => {
    assert.equal(canMountRootfs('plan9', 'qemu'), true);
    assert.equal(canMountRootfs('unikraft', ''), true);
    assert.equal(canMountRootfs('mirage', undefined), false);
  });
});
