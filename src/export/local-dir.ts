import { chmod, lchown, link, lutimes, mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fsPath } from '../image/names.js';
import { copySourceFile } from '../image/source-file.js';
import type { FsNode } from '../image/tree.js';
import { requireFreshDirectory, writeAtomically } from './atomic.js';
import { makeDirectories } from '../mkdirp.js';

/**
 * Writes the image's final rootfs as plain files (buildx's `type=local`).
 * Ownership is kept only when running as root, as buildx does.
 */
export async function writeLocalDirectory(nodes: readonly FsNode[], dest: string): Promise<void> {
  await requireFreshDirectory(dest);
  const asRoot = process.getuid?.() === 0;
  // Before chmod: chown clears setuid and setgid bits.
  const own = async (target: string | Buffer, node: FsNode): Promise<void> => {
    if (asRoot) await lchown(target, node.uid, node.gid);
  };
  await writeAtomically(dest, async (root) => {
    await makeDirectories(root);
    const directories: FsNode[] = [];
    for (const node of nodes) {
      // Exact bytes for names that are not UTF-8 (names.ts).
      const target = fsPath(path.join(root, ...node.path.split('/')));
      switch (node.type) {
        case 'dir':
          await mkdir(target, { recursive: true });
          directories.push(node);
          break;
        case 'file':
          if (node.source.kind === 'bytes') await writeFile(target, node.source.data);
          else await copySourceFile(node.source, target);
          await own(target, node);
          await chmod(target, node.mode);
          await utimes(target, node.mtime, node.mtime);
          break;
        case 'symlink':
          await symlink(fsPath(node.target), target);
          await own(target, node);
          await lutimes(target, node.mtime, node.mtime).catch(() => undefined);
          break;
        case 'hardlink':
          await link(fsPath(path.join(root, ...node.target.split('/'))), target);
          break;
      }
    }
    // Directory modes and times last: writing children would change them.
    for (const dir of directories.reverse()) {
      const target = fsPath(path.join(root, ...dir.path.split('/')));
      await own(target, dir);
      await chmod(target, dir.mode);
      await utimes(target, dir.mtime, dir.mtime);
    }
  });
}
