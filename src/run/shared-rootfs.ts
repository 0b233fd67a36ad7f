/**
 * mountRootfs for `lapin run`: urunc hands a Linux guest the container's own
 * rootfs when it has no initrd and no block image mounted at "/". With the
 * 9pfs backend (urunc pkg/unikontainers/hypervisors/qemu.go, BuildExecCmd)
 * qemu exports the rootfs directory as
 *   -fsdev local,id=rootfs9p,security_model=none,path=DIR
 *   -device virtio-9p-pci,fsdev=rootfs9p,mount_tag=fs0
 * and the guest mounts it as root (`root=fs0 rootfstype=9p`, monitor.ts).
 * lapin unpacks the image's layers into a directory and shares that.
 */
import { createWriteStream } from 'node:fs';
import { makeDirectories } from '../mkdirp.js';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { writeLocalDirectory } from '../export/local-dir.js';
import { flattenLayers } from '../registry/extract.js';
import type { ImageSource } from '../source/types.js';
import { rootfsType, type MonitorCommand, type MonitorRequest } from './monitor.js';

/** The 9p mount tag urunc's guests mount as root. */
export const ROOTFS_MOUNT_TAG = 'fs0';

/**
 * The container rootfs as urunc's monitor sees it when shared: urunc mounts
 * it at /cntrRootfs in the monitor's own rootfs (containerRootfsMountPath)
 * and exports that path. `lapin run --print` shows it there.
 */
export const CONTAINER_ROOTFS_PATH = '/cntrRootfs';

/** Whether urunc would share the container rootfs over 9p for this request (qemu, linux). */
export function sharesRootfs(request: MonitorRequest): boolean {
  return request.guest === 'linux' && request.monitor === 'qemu' && rootfsType(request) === '9pfs';
}

/** qemu's arguments exporting `dir` as urunc's 9pfs rootfs. */
export function sharedRootfsArgs(dir: string): string[] {
  // qemu reads "," as the next option; ",," is a comma in the value.
  return ['-fsdev', `local,id=rootfs9p,security_model=none,path=${dir.replaceAll(',', ',,')}`, '-device', `virtio-9p-pci,fsdev=rootfs9p,mount_tag=${ROOTFS_MOUNT_TAG}`];
}

/** Unpacks the image's layers (whiteouts applied) into `dir`, which must not exist, as a container runtime would. */
export async function unpackRootfs(source: ImageSource, dir: string, work: string): Promise<void> {
  const { manifest } = await source.manifest();
  const { config } = await source.config();
  const diffIds = config.rootfs?.diff_ids ?? [];
  const layersDir = path.join(work, 'layers');
  await makeDirectories(layersDir);
  const layers: Array<{ file: string; digest: string; diffId?: string }> = [];
  for (const [index, layer] of manifest.layers.entries()) {
    const file = path.join(layersDir, String(index));
    await pipeline(await source.blob(layer), createWriteStream(file));
    const diffId = diffIds[index];
    layers.push({ file, digest: layer.digest, ...(diffId !== undefined ? { diffId } : {}) });
  }
  const nodes = await flattenLayers(layers, path.join(work, 'data'), source.name);
  await writeLocalDirectory(nodes, dir);
}

/** The monitor command with the rootfs shared: the 9p export goes before -append, and the "shares nothing" note is dropped. */
export function withSharedRootfs(command: MonitorCommand, dir: string): MonitorCommand {
  const append = command.args.lastIndexOf('-append');
  const at = append === -1 ? command.args.length : append;
  const args = [...command.args.slice(0, at), ...sharedRootfsArgs(dir), ...command.args.slice(at)];
  return { ...command, args, notes: command.notes.filter((note) => !note.startsWith('mountRootfs:')) };
}
