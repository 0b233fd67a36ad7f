import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseBunnyfile } from '../../src/frontends/bunnyfile.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import {
  DEFAULT_FIRECRACKER_KERNEL_IMAGE,
  DEFAULT_INIT_IMAGE,
  DEFAULT_QEMU_KERNEL_IMAGE,
  addLinuxGuestParts,
  type LinuxGuestOptions,
} from '../../src/plan/linux-guest.js';
import type { CopyOp } from '../../src/plan/types.js';

const AMD64 = { TARGETPLATFORM: 'linux/amd64', BUILDPLATFORM: 'linux/amd64' };

function guest(lines: string[], options: LinuxGuestOptions = {}): ReturnType<typeof addLinuxGuestParts> {
  return addLinuxGuestParts(parseContainerfile(`${lines.join('\n')}\n`, 'Containerfile', AMD64), options);
}

function copies(result: ReturnType<typeof addLinuxGuestParts>): Array<[string | undefined, string, string]> {
  return result.plan.ops.filter((op): op is CopyOp => op.kind === 'copy' && op.fromStage !== undefined).map((op) => [op.fromStage, op.sources[0] as string, op.destination]);
}

describe('a Containerfile with no urunc labels is a Linux guest (bunny 0.0.5)', () => {
  test('bunny\'s defaults: urunit from its image, prepended to Entrypoint; the qemu kernel image to /.boot/kernel', () => {
    const result = guest(['FROM scratch', 'ENTRYPOINT ["/usr/local/bin/redis-server"]', 'CMD ["--port", "6379"]']);
    assert.deepEqual(copies(result), [
      [DEFAULT_INIT_IMAGE, '/urunit', '/urunit'],
      [DEFAULT_QEMU_KERNEL_IMAGE, '/.boot/kernel', '/.boot/kernel'],
    ]);
    assert.deepEqual(result.plan.config.entrypoint?.value, ['/urunit', '/usr/local/bin/redis-server']);
    assert.deepEqual(result.plan.config.cmd?.value, ['--port', '6379']);
    assert.equal(result.plan.urunc.binary?.value, '/.boot/kernel');
    assert.equal(result.plan.urunc.unikernelType?.value, 'linux');
    assert.equal(result.plan.urunc.hypervisor?.value, 'qemu');
    assert.equal(result.plan.urunc.mountRootfs?.value, 'true');
    assert.deepEqual(result.parts.map((p) => [p.role, p.image, p.chosenBy]), [
      ['init', DEFAULT_INIT_IMAGE, 'default'],
      ['kernel', DEFAULT_QEMU_KERNEL_IMAGE, 'default'],
    ]);
  });

  test('another monitor takes bunny\'s firecracker kernel image', () => {
    const result = guest(['FROM scratch', 'LABEL com.urunc.unikernel.hypervisor=firecracker']);
    assert.deepEqual(copies(result)[1], [DEFAULT_FIRECRACKER_KERNEL_IMAGE, '/.boot/kernel', '/.boot/kernel']);
  });

  test('LABEL bunny.urunit=false leaves the init out; a binary label leaves the kernel out', () => {
    const result = guest(['FROM scratch', 'COPY vmlinuz /boot/vmlinuz', 'LABEL bunny.urunit=false com.urunc.unikernel.binary=/boot/vmlinuz', 'CMD ["/app"]']);
    assert.deepEqual(copies(result), []);
    assert.deepEqual(result.parts, []);
    assert.equal(result.plan.config.entrypoint, undefined);
    assert.equal(result.plan.urunc.binary?.value, '/boot/vmlinuz');
  });

  test('--label bunny.urunit=false and --label binary count as the file\'s labels would', () => {
    const result = guest(['FROM scratch'], { labels: { 'bunny.urunit': 'false', 'com.urunc.unikernel.binary': '/k' } });
    assert.deepEqual(result.parts, []);
  });

  test('flag over label over default, for each image', () => {
    const lines = ['FROM scratch', 'LABEL lapin.kernel-image=reg.example/k:label lapin.init-image=reg.example/i:label'];
    const byLabel = guest(lines);
    assert.deepEqual(byLabel.parts.map((p) => [p.image, p.chosenBy]), [
      ['reg.example/i:label', 'label lapin.init-image'],
      ['reg.example/k:label', 'label lapin.kernel-image'],
    ]);
    const byFlag = guest(lines, { kernelImage: 'reg.example/k:flag', initImage: 'reg.example/i:flag' });
    assert.deepEqual(byFlag.parts.map((p) => [p.image, p.chosenBy]), [
      ['reg.example/i:flag', '--init-image'],
      ['reg.example/k:flag', '--kernel-image'],
    ]);
  });

  test('an Entrypoint that starts with /urunit already gets it once', () => {
    const result = guest(['FROM scratch', 'ENTRYPOINT ["/urunit", "/app"]']);
    assert.deepEqual(result.plan.config.entrypoint?.value, ['/urunit', '/app']);
  });

  test('no Cmd or Entrypoint: the cmdline label becomes Cmd behind the init; one that starts with /urunit gets no second', () => {
    const plain = guest(['FROM scratch', 'LABEL com.urunc.unikernel.cmdline="/app -v"']);
    assert.deepEqual(plain.plan.config.entrypoint?.value, ['/urunit']);
    assert.deepEqual(plain.plan.config.cmd?.value, ['/app', '-v']);
    assert.equal(plain.plan.urunc.cmdline, undefined, 'finalize derives it from the args');
    const withInit = guest(['FROM scratch', 'LABEL com.urunc.unikernel.cmdline="/urunit /usr/sbin/nginx -g \'daemon off;\'"']);
    assert.equal(withInit.plan.config.entrypoint, undefined);
    assert.deepEqual(withInit.plan.config.cmd?.value, ['/urunit', '/usr/sbin/nginx', '-g', "'daemon", "off;'"]);
  });

  test('an image with no Entrypoint gets ["/urunit"], and Cmd follows it', () => {
    const result = guest(['FROM scratch', 'CMD ["/bin/sh", "-c", "echo hi"]']);
    assert.deepEqual(result.plan.config.entrypoint?.value, ['/urunit']);
  });

  test('other guests and other syntaxes are left alone', () => {
    const mirage = guest(['FROM scratch', 'COPY k /k', 'LABEL com.urunc.unikernel.unikernelType=mirage com.urunc.unikernel.hypervisor=hvt com.urunc.unikernel.binary=/k']);
    assert.deepEqual(mirage.parts, []);
    const unikraft = guest(['FROM scratch', 'LABEL com.urunc.unikernel.unikernelType=unikraft']);
    assert.deepEqual(unikraft.parts, [], 'no Linux kernel for a unikraft guest without a binary');
    const bunny = parseBunnyfile('version: v0.1\nplatforms: {framework: linux, monitor: qemu}\nkernel: {from: local, path: k}\n', 'bunnyfile');
    assert.equal(addLinuxGuestParts(bunny).plan, bunny);
  });

  test('--annotation of the guest type wins over the file, as in the image', () => {
    assert.deepEqual(guest(['FROM scratch'], { annotations: { 'com.urunc.unikernel.unikernelType': 'unikraft' } }).parts, []);
  });
});
