// Stand-ins for urunc's "existing container as a Linux microVM" tutorial,
// built by hand (no lapin code) and pushed to a test docker-registry: an app
// image (two layers, a script as Cmd, Env), a kernel image (the kernel at
// /kernel, as the tutorial's bunnyfile names it, and at /.boot/kernel, as
// bunny's linux-kernel-* images hold it) and a urunit image (/urunit).
import path from 'node:path';
import { skopeoPush } from '../registry/harness.js';
import { fakeElfKernel, writeOciArchive, type HandBlobs, type HandFile } from './hand-image.js';

export const APP_SCRIPT = '#!/bin/sh\necho "app says: $*"\n';
export const APP_CMD = ['/usr/local/bin/app.sh', '--greet', 'hello'];
export const APP_ENV = ['PATH=/usr/local/bin:/usr/bin:/bin', 'APP_MODE=stand-in'];
export const MODULES_DEP = 'kernel/fs/standin.ko:\n';
export const URUNIT_SCRIPT = '#!/bin/sh\nexec "$@"\n';

export interface StandInOptions {
  /** Files the app image also holds (e.g. a real busybox), in a layer of their own. */
  extraAppFiles?: HandFile[];
  appCmd?: string[];
  /** The app's script at /usr/local/bin/app.sh. */
  appScript?: string;
  kernel?: Buffer;
  urunit?: string;
}

export interface StandIns {
  app: string;
  kernel: string;
  init: string;
  /** The app image's blobs: its layers must reach the new image unchanged. */
  appBlobs: HandBlobs;
  kernelBytes: Buffer;
  urunit: string;
}

async function push(work: string, host: string, name: string, image: Parameters<typeof writeOciArchive>[1]): Promise<{ reference: string; blobs: HandBlobs }> {
  const archive = path.join(work, `${name.replace(/[/:]/g, '_')}.oci.tar`);
  const blobs = await writeOciArchive(archive, image);
  const reference = `${host}/${name}`;
  await skopeoPush(archive, reference);
  return { reference, blobs };
}

/** Pushes the three stand-ins under `prefix` to the registry at `host`. */
export async function pushStandIns(work: string, host: string, prefix: string, options: StandInOptions = {}): Promise<StandIns> {
  const kernelBytes = options.kernel ?? fakeElfKernel();
  const urunit = options.urunit ?? URUNIT_SCRIPT;
  const appLayers: HandFile[][] = [
    [
      { name: 'usr/', type: 'directory' },
      { name: 'usr/local/', type: 'directory' },
      { name: 'usr/local/bin/', type: 'directory' },
      { name: 'usr/local/bin/app.sh', body: options.appScript ?? APP_SCRIPT, mode: 0o755 },
      { name: 'etc/', type: 'directory' },
      { name: 'etc/os-release', body: 'ID=stand-in\n' },
    ],
    [{ name: 'etc/app.conf', body: 'mode=stand-in\n' }],
  ];
  if (options.extraAppFiles) appLayers.unshift(options.extraAppFiles);
  const app = await push(work, host, `${prefix}/app:alpine`, { layers: appLayers, cmd: options.appCmd ?? APP_CMD, env: APP_ENV, labels: { 'org.example.app': 'stand-in' } });
  const kernel = await push(work, host, `${prefix}/linux-kernel-qemu:v6.14`, {
    layers: [
      [
        { name: 'kernel', body: kernelBytes, mode: 0o644 },
        { name: '.boot/', type: 'directory' },
        { name: '.boot/kernel', body: kernelBytes, mode: 0o644 },
        { name: 'lib/', type: 'directory' },
        { name: 'lib/modules/', type: 'directory' },
        { name: 'lib/modules/modules.dep', body: MODULES_DEP },
      ],
    ],
  });
  const init = await push(work, host, `${prefix}/urunit:latest`, { layers: [[{ name: 'urunit', body: urunit, mode: 0o755 }]] });
  return { app: app.reference, kernel: kernel.reference, init: init.reference, appBlobs: app.blobs, kernelBytes, urunit };
}
