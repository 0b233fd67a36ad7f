import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LapinError } from '../errors.js';
import type { ImageFilesystem } from '../image/filesystem.js';
import { byteNameExtract, layerName } from '../image/layer-names.js';
import { comparePaths, type FsNode } from '../image/tree.js';
import { LayerDecompressor } from '../source/decompress.js';
import { PathTree } from '../source/path-tree.js';
import { makeDirectories } from '../mkdirp.js';

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/**
 * A tar entry name as a tree path ("a/b"), or an error when it would land
 * outside the root: any ".." component is refused, whatever it resolves to.
 */
export function safeEntryPath(name: string, image: string): string {
  const trimmed = name.replace(/^(?:\.?\/)+/, '').replace(/\/+$/, '');
  const parts = trimmed.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) {
    throw new LapinError(`${image} has a layer entry ${JSON.stringify(name)} that climbs out of the root with ".."; refusing the image`, {
      hint: 'a hostile or broken image; use another base',
    });
  }
  return parts.join('/');
}

/**
 * Refuses a symlink whose target climbs above the root from where the link
 * is ("../../etc" from /a). Absolute targets are read inside the image, as
 * the guest reads them; an absolute target with ".." past "/" is refused too.
 */
export function checkLinkTarget(linkPath: string, target: string, image: string): void {
  const start = target.startsWith('/') ? [] : linkPath.split('/').slice(0, -1);
  const stack = [...start];
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 0) {
        throw new LapinError(`${image} has a symlink /${linkPath} -> ${target} that points outside the root; refusing the image`, {
          hint: 'a hostile or broken image; use another base',
        });
      }
      stack.pop();
    } else {
      stack.push(part);
    }
  }
}

/**
 * Applies layers in order into one tree, honouring whiteouts (".wh.NAME"
 * removes NAME from the layers below; ".wh..wh..opq" empties its directory
 * of them). File data is written under `dataDir`; the nodes point at it.
 * A layer's `diffId`, when given, is checked against its uncompressed bytes.
 */
export async function flattenLayers(layers: ReadonlyArray<{ file: string; digest: string; diffId?: string }>, dataDir: string, image: string): Promise<FsNode[]> {
  await makeDirectories(dataDir);
  const tree = new Map<string, FsNode>();
  // Whiteouts and opaque directories visit only the subtree they remove (PathTree), so a layer is linear in its entries.
  const below = new PathTree('');
  let counter = 0;
  const removeBelow = (p: string, keep: Set<string>, includeSelf = true): void => {
    below.removeBelow(p, includeSelf, (key) => {
      if (!keep.has(key)) tree.delete(key);
      return !tree.has(key);
    });
  };
  for (const layer of layers) {
    const added = new Set<string>();
    // A path cleared once in this layer needs no second walk (hostile layers repeat whiteouts).
    const cleared = new Set<string>();
    const extract = byteNameExtract();
    const diffHash = createHash('sha256');
    const hashUncompressed = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        diffHash.update(chunk);
        callback(null, chunk);
      },
    });
    // gzip, zstd (through the zstd program, as inspect reads it) or plain, judged by the first bytes.
    const done = pipeline([createReadStream(layer.file), new LayerDecompressor(`${image} (layer ${layer.digest})`), hashUncompressed, extract]);
    extract.on('entry', (header, stream, next) => {
      const handle = async (): Promise<void> => {
        const entryPath = safeEntryPath(layerName(header.name), image);
        const linkname = layerName(header.linkname ?? '');
        const base = path.posix.basename(entryPath);
        const parent = path.posix.dirname(entryPath) === '.' ? '' : path.posix.dirname(entryPath);
        if (base === OPAQUE) {
          if (!cleared.has(`c${parent}`)) removeBelow(parent, added, false);
          cleared.add(`c${parent}`);
          stream.resume();
          return;
        }
        if (base.startsWith(WHITEOUT)) {
          const gone = parent === '' ? base.slice(WHITEOUT.length) : `${parent}/${base.slice(WHITEOUT.length)}`;
          if (!cleared.has(`s${gone}`)) removeBelow(gone, added);
          cleared.add(`s${gone}`);
          stream.resume();
          return;
        }
        if (entryPath === '') {
          stream.resume();
          return;
        }
        const common = {
          path: entryPath,
          mode: (header.mode ?? 0o644) & 0o7777,
          uid: header.uid ?? 0,
          gid: header.gid ?? 0,
          mtime: Math.floor((header.mtime?.getTime() ?? 0) / 1000),
        };
        let node: FsNode | undefined;
        if (header.type === 'file' || header.type === 'contiguous-file') {
          const file = path.join(dataDir, String(counter++));
          await pipeline(stream, createWriteStream(file));
          node = { ...common, type: 'file', size: header.size ?? 0, source: { kind: 'path', path: file } };
        } else {
          stream.resume();
          if (header.type === 'directory') node = { ...common, type: 'dir' };
          else if (header.type === 'symlink') {
            checkLinkTarget(entryPath, linkname, image);
            node = { ...common, type: 'symlink', target: linkname };
          } else if (header.type === 'link') {
            const target = safeEntryPath(linkname, image);
            const targetNode = tree.get(target);
            if (targetNode?.type !== 'file') {
              throw new LapinError(`${image} has a hard link /${entryPath} to /${target}, which is not a file before it; refusing the image`);
            }
            // A copy of the node keeps the layers below independent of this link.
            node = { ...targetNode, ...common, type: 'file' };
          }
          // Devices and FIFOs have no use in a unikernel image's rootfs; they are left out.
        }
        if (!node) return;
        const existing = tree.get(entryPath);
        if (existing && existing.type === 'dir' && node.type !== 'dir') removeBelow(entryPath, new Set());
        // Parents a layer leaves out still have to exist.
        const parts = entryPath.split('/');
        for (let i = 1; i < parts.length; i++) {
          const dir = parts.slice(0, i).join('/');
          const present = tree.get(dir);
          if (!present || present.type !== 'dir') {
            tree.set(dir, { type: 'dir', path: dir, mode: 0o755, uid: 0, gid: 0, mtime: common.mtime });
            added.add(dir);
            below.add(dir);
          }
        }
        tree.set(entryPath, node);
        added.add(entryPath);
        below.add(entryPath);
      };
      handle().then(
        () => next(),
        (error: unknown) => {
          stream.resume();
          extract.destroy(error as Error);
        },
      );
    });
    await done;
    const diffId = `sha256:${diffHash.digest('hex')}`;
    if (layer.diffId !== undefined && diffId !== layer.diffId) {
      throw new LapinError(`${image} has a layer ${layer.digest} whose content is ${diffId}, not the diff_id ${layer.diffId} its config lists; refusing the image`, {
        hint: 'a hostile or broken image; use another base',
      });
    }
  }
  return [...tree.values()].sort((a, b) => comparePaths(a.path, b.path));
}

/**
 * flattenLayers gives each name of a hard-linked file its own node sharing
 * one data file. A rootfs file made from the image links those names again
 * (one inode, data stored once) while they still share data and metadata.
 * Only nodes from the image (`fromImage`) still in the tree count: a file an
 * include put over one of the names is its own file. Returns the links made.
 */
export function relinkHardlinks(tree: ImageFilesystem, fromImage: ReadonlySet<FsNode>): number {
  const owners = new Map<string, FsNode>();
  let linked = 0;
  // In byte order, so the file comes before its links, as the writers want.
  for (const node of tree.list()) {
    if (node.type !== 'file' || node.source.kind !== 'path' || !fromImage.has(node)) continue;
    const owner = owners.get(node.source.path);
    if (owner === undefined) {
      owners.set(node.source.path, node);
      continue;
    }
    if (owner.mode !== node.mode || owner.uid !== node.uid || owner.gid !== node.gid || owner.mtime !== node.mtime) continue;
    tree.put({ type: 'hardlink', path: node.path, mode: node.mode, uid: node.uid, gid: node.gid, mtime: node.mtime, target: owner.path });
    linked++;
  }
  return linked;
}
