/**
 * Turns an assembled tree (files copied from the context, or an image's
 * layers flattened into an ImageFilesystem) into a rootfs file: a newc cpio
 * initrd or an ext block image. `rootfs.from: <image>` with type initrd or
 * block is meant to flatten the pulled image into an ImageFilesystem, add the
 * include files, and call this.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { LapinError } from '../errors.js';
import { escapeName } from '../image/context-names.js';
import type { ImageFilesystem } from '../image/filesystem.js';
import { hasRawBytes, nameBytes } from '../image/names.js';
import { writeCpioNewc } from './cpio.js';
import { writeExtImage, writeKeptExtImage, type ExtFlavor, type KeptImages } from './ext.js';

export type RootfsImageSpec = { kind: 'initrd' } | { kind: 'block'; filesystem: ExtFlavor; size?: number };

export interface RootfsImageFile {
  /** Where the file was written (inside `staging`, or the block image cache's directory). */
  file: string;
  size: number;
  /** A block image rewritten from the one an earlier build kept: the files and bytes rewritten. */
  patched?: { files: number; bytes: number };
}

/** Writes the tree as an initrd or block image in `staging`; the caller places the file in the image. */
export async function writeRootfsImage(tree: ImageFilesystem, spec: RootfsImageSpec, options: { staging: string; mtime: number; keptImages?: KeptImages | undefined }): Promise<RootfsImageFile> {
  const id = randomBytes(6).toString('hex');
  if (spec.kind === 'initrd') {
    const file = path.join(options.staging, `initrd-${id}.cpio`);
    const { size } = await writeCpioNewc(tree.list(), createWriteStream(file));
    return { file, size };
  }
  // mke2fs -d and debugfs take names as text: a name that is not UTF-8 is refused, not renamed.
  for (const node of tree.list()) {
    const which = [node.path, node.type === 'symlink' ? node.target : ''].find(hasRawBytes);
    if (which !== undefined) {
      throw new LapinError(`block rootfs entry "${escapeName(nameBytes(which))}": the name is not UTF-8, which block images here cannot hold`, {
        hint: 'give it a UTF-8 name, or use an initrd, which keeps the bytes',
        exitCode: 2,
      });
    }
  }
  const extOptions = {
    flavor: spec.filesystem,
    mtime: options.mtime,
    workDir: path.join(options.staging, `block-${id}-work`),
    ...(spec.size === undefined ? {} : { size: spec.size }),
  };
  const file = path.join(options.staging, `block-${id}.img`);
  if (options.keptImages?.cache.enabled) {
    const kept = await writeKeptExtImage(tree.list(), extOptions, options.keptImages, file);
    return { file: kept.file, size: kept.size, ...(kept.patched ? { patched: kept.patched } : {}) };
  }
  const { size } = await writeExtImage(tree.list(), file, extOptions);
  return { file, size };
}
