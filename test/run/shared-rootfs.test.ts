import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { monitorCommand, type MonitorRequest } from '../../src/run/monitor.js';
import { sharesRootfs, sharedRootfsArgs, unpackRootfs, withSharedRootfs } from '../../src/run/shared-rootfs.js';
import { openSource } from '../../src/source/open.js';
import { writeOciArchive } from '../helpers/hand-image.js';

const raw: MonitorRequest = { guest: 'linux', monitor: 'qemu', kernel: '/k', mountRootfs: true, processArgs: ['/urunit', '/app'], env: [], accel: 'tcg', architecture: 'amd64' };
const work = await mkdtemp(path.join(os.tmpdir(), 'lapin shared-rootfs-'));
after(async () => rm(work, { recursive: true, force: true }));

describe('lapin run shares the container rootfs over 9p as urunc does', () => {
  test('only a linux guest on qemu with mountRootfs and no initrd or root block image', () => {
    assert.equal(sharesRootfs(raw), true);
    assert.equal(sharesRootfs({ ...raw, initrd: '/i' }), false);
    assert.equal(sharesRootfs({ ...raw, block: '/b', blkMntPoint: '/' }), false);
    assert.equal(sharesRootfs({ ...raw, mountRootfs: false }), false);
    assert.equal(sharesRootfs({ ...raw, monitor: 'firecracker' }), false);
    assert.equal(sharesRootfs({ ...raw, guest: 'unikraft' }), false);
  });

  test('urunc\'s -fsdev/-device pair goes before -append; the guest line mounts fs0 as 9p root; the "shares nothing" note goes', () => {
    const command = monitorCommand(raw);
    assert.ok(command.notes.some((n) => n.startsWith('mountRootfs:')));
    const shared = withSharedRootfs(command, '/tmp/root fs');
    const append = shared.args.indexOf('-append');
    assert.deepEqual(shared.args.slice(append - 4, append), sharedRootfsArgs('/tmp/root fs'));
    assert.deepEqual(sharedRootfsArgs('/r'), ['-fsdev', 'local,id=rootfs9p,security_model=none,path=/r', '-device', 'virtio-9p-pci,fsdev=rootfs9p,mount_tag=fs0']);
    assert.equal(sharedRootfsArgs('/a,b')[1], 'local,id=rootfs9p,security_model=none,path=/a,,b', 'a comma in the path is doubled for qemu');
    assert.match(shared.args[append + 1] ?? '', / root=fs0 rw rootfstype=9p rootflags=trans=virtio,version=9p2000\.L,msize=5000000,cache=mmap,posixacl /);
    assert.ok(!shared.notes.some((n) => n.startsWith('mountRootfs:')));
  });

  test('unpackRootfs applies the layers, whiteouts included, into a directory', async () => {
    const archive = path.join(work, 'image.tar');
    await writeOciArchive(archive, {
      layers: [
        [
          { name: 'bin/', type: 'directory' },
          { name: 'bin/app', body: '#!/bin/sh\n', mode: 0o755 },
          { name: 'bin/link', type: 'symlink', linkname: 'app' },
          { name: 'etc/', type: 'directory' },
          { name: 'etc/gone', body: 'x' },
        ],
        [{ name: 'etc/.wh.gone' }, { name: 'etc/new', body: 'new\n' }],
      ],
    });
    const source = await openSource(`oci-archive:${archive}`);
    const dir = path.join(work, 'rootfs');
    try {
      await unpackRootfs(source, dir, path.join(work, 'unpack'));
    } finally {
      await source.close();
    }
    assert.equal(((await lstat(path.join(dir, 'bin/app'))).mode & 0o777).toString(8), '755');
    assert.equal(await readlink(path.join(dir, 'bin/link')), 'app');
    assert.equal(await readFile(path.join(dir, 'etc/new'), 'utf8'), 'new\n');
    await assert.rejects(lstat(path.join(dir, 'etc/gone')), /ENOENT/);
  });
});
