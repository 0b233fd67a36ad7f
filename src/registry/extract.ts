import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LapinError } from '../errors.js';
import type { ImageFilesystem } from '../image/filesystem.js';
import { byteNameExtract, layerName } from '../image/layer-names.js';
import { comparePaths, type FileSource, type FsNode } from '../image/tree.js';
import { LayerDecompressor } from '../source/decompress.js';
import { SourceError } from '../source/errors.js';
import { layerNameProblem, PathTree } from '../source/path-tree.js';
import { ROOTFS_ENTRY_LIMIT } from '../source/rootfs.js';
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

/** A layer of a base image, as pulled: its blob, and the diff_id its config lists. */
export interface LayerFile {
  file: string;
  digest: string;
  diffId?: string;
}

/** One change a layer makes to the tree below, in tar order. */
export type LayerRecord =
  | { op: 'opaque'; dir: string }
  | { op: 'whiteout'; path: string }
  | { op: 'put'; node: FsNode }
  /** A hard link: a copy of the file at `target`, which an earlier entry made. */
  | { op: 'link'; path: string; mode: number; uid: number; gid: number; mtime: number; target: string };

/** What a reader of a layer does with a regular file's data: writes it somewhere, or notes where it is. */
export type FileData = (entryPath: string, offset: number, size: number, data: EntryData) => Promise<FileSource>;

/** An entry's data as tar-stream gives it: read it whole, or resume() to skip it. */
export type EntryData = AsyncIterable<Buffer> & { resume(): unknown };

/** tar-stream's header carries where the entry's data starts in the tar (not in its type declarations). */
type HeaderWithOffset = { byteOffset?: number };

/**
 * Reads one layer's tar (compressed as pulled) into records, checking every
 * name (no "..", no symlink out of the root) and, when given, the diff_id
 * against its uncompressed bytes. `fileData` decides what becomes of file data.
 */
export async function readLayerRecords(input: Readable, layer: { digest: string; diffId?: string }, image: string, fileData: FileData): Promise<LayerRecord[]> {
  const records: LayerRecord[] = [];
  const extract = byteNameExtract();
  const diffHash = createHash('sha256');
  const hashUncompressed = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      diffHash.update(chunk);
      callback(null, chunk);
    },
  });
  // gzip, zstd (through the zstd program, as inspect reads it) or plain, judged by the first bytes.
  const done = pipeline([input, new LayerDecompressor(`${image} (layer ${layer.digest})`), hashUncompressed, extract]);
  extract.on('entry', (header, stream, next) => {
    // A damaged layer fails the entry's stream too; the pipeline above reports it, once.
    stream.on('error', () => undefined);
    const handle = async (): Promise<void> => {
      const problem = layerNameProblem(header.name, 'name') ?? layerNameProblem(header.linkname ?? '', 'link target');
      if (problem !== undefined) throw new LapinError(`${image} has a layer ${layer.digest} with ${problem}; refusing the image`, { hint: 'a hostile or broken image; use another base' });
      if (records.length >= ROOTFS_ENTRY_LIMIT) throw new LapinError(`${image} has a layer ${layer.digest} of more than ${ROOTFS_ENTRY_LIMIT} entries, more than lapin keeps in memory; refusing the image`, { hint: 'a hostile or broken image; use another base' });
      const entryPath = safeEntryPath(layerName(header.name), image);
      const linkname = layerName(header.linkname ?? '');
      const base = path.posix.basename(entryPath);
      const parent = path.posix.dirname(entryPath) === '.' ? '' : path.posix.dirname(entryPath);
      if (base === OPAQUE) {
        records.push({ op: 'opaque', dir: parent });
        stream.resume();
        return;
      }
      if (base.startsWith(WHITEOUT)) {
        records.push({ op: 'whiteout', path: parent === '' ? base.slice(WHITEOUT.length) : `${parent}/${base.slice(WHITEOUT.length)}` });
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
      if (header.type === 'file' || header.type === 'contiguous-file') {
        const size = header.size ?? 0;
        const offset = (header as HeaderWithOffset).byteOffset;
        if (offset === undefined) throw new LapinError('internal: the tar reader gave no data offset');
        const source = await fileData(entryPath, offset, size, stream as EntryData);
        records.push({ op: 'put', node: { ...common, type: 'file', size, source } });
        return;
      }
      stream.resume();
      if (header.type === 'directory') records.push({ op: 'put', node: { ...common, type: 'dir' } });
      else if (header.type === 'symlink') {
        checkLinkTarget(entryPath, linkname, image);
        records.push({ op: 'put', node: { ...common, type: 'symlink', target: linkname } });
      } else if (header.type === 'link') {
        records.push({ op: 'link', ...common, target: safeEntryPath(linkname, image) });
      }
      // Devices and FIFOs have no use in a unikernel image's rootfs; they are left out.
    };
    handle().then(
      () => next(),
      (error: unknown) => {
        stream.resume();
        extract.destroy(error as Error);
      },
    );
  });
  try {
    await done;
  } catch (error) {
    if (error instanceof LapinError || error instanceof SourceError) throw error;
    // tar-stream's own sentences ("Unexpected end of data", "Invalid tar header"): the layer is no tar.
    throw new LapinError(`${image} has a layer ${layer.digest} that is not a valid tar (${(error as Error).message}); refusing the image`, {
      hint: 'a hostile or broken image; use another base',
    });
  }
  const diffId = `sha256:${diffHash.digest('hex')}`;
  if (layer.diffId !== undefined && diffId !== layer.diffId) {
    throw new LapinError(`${image} has a layer ${layer.digest} whose content is ${diffId}, not the diff_id ${layer.diffId} its config lists; refusing the image`, {
      hint: 'a hostile or broken image; use another base',
    });
  }
  return records;
}

/**
 * Applies layers' records in order into one tree, honouring whiteouts
 * (".wh.NAME" removes NAME from the layers below; ".wh..wh..opq" empties
 * its directory of them). Returns the nodes in byte order of their paths.
 */
export function applyLayerRecords(layers: Iterable<readonly LayerRecord[]>, image: string): FsNode[] {
  const tree = new Map<string, FsNode>();
  // Whiteouts and opaque directories visit only the subtree they remove (PathTree), so a layer is linear in its entries.
  const below = new PathTree('');
  // Parents a layer leaves out still have to exist. A directory in the tree has all its parents, so the walk
  // up stops at the first one there: a name's components cost one look-up each, not one each per component.
  const addParents = (entryPath: string, mtime: number, added: Set<string>): void => {
    const missing: string[] = [];
    for (let dir = path.posix.dirname(entryPath); dir !== '.' && tree.get(dir)?.type !== 'dir'; dir = path.posix.dirname(dir)) missing.push(dir);
    for (const dir of missing.reverse()) {
      tree.set(dir, { type: 'dir', path: dir, mode: 0o755, uid: 0, gid: 0, mtime });
      added.add(dir);
      below.add(dir);
    }
  };
  const removeBelow = (p: string, keep: Set<string>, includeSelf = true): void => {
    const kept: FsNode[] = [];
    below.removeBelow(p, includeSelf, (key) => {
      const node = tree.get(key);
      if (!keep.has(key)) tree.delete(key);
      else if (node) kept.push(node);
      return !tree.has(key);
    });
    // What this layer put below a whiteout stays, and so do its parents.
    for (const node of kept) addParents(node.path, node.mtime, keep);
  };
  for (const records of layers) {
    const added = new Set<string>();
    // A path cleared once in this layer needs no second walk (hostile layers repeat whiteouts).
    const cleared = new Set<string>();
    for (const record of records) {
      if (record.op === 'opaque') {
        if (!cleared.has(`c${record.dir}`)) removeBelow(record.dir, added, false);
        cleared.add(`c${record.dir}`);
        continue;
      }
      if (record.op === 'whiteout') {
        if (!cleared.has(`s${record.path}`)) removeBelow(record.path, added);
        cleared.add(`s${record.path}`);
        continue;
      }
      let node: FsNode;
      if (record.op === 'link') {
        const targetNode = tree.get(record.target);
        if (targetNode?.type !== 'file') {
          throw new LapinError(`${image} has a hard link /${record.path} to /${record.target}, which is not a file before it; refusing the image`);
        }
        const { op: _op, target: _target, ...common } = record;
        // A copy of the node keeps the layers below independent of this link; the data source is shared.
        node = { ...targetNode, ...common, type: 'file' };
      } else {
        node = record.node;
      }
      const entryPath = node.path;
      const existing = tree.get(entryPath);
      if (existing && existing.type === 'dir' && node.type !== 'dir') removeBelow(entryPath, new Set());
      addParents(entryPath, node.mtime, added);
      if (tree.size > ROOTFS_ENTRY_LIMIT) throw new LapinError(`${image}'s layers hold more than ${ROOTFS_ENTRY_LIMIT} paths, more than lapin keeps in memory; refusing the image`, { hint: 'a hostile or broken image; use another base' });
      tree.set(entryPath, node);
      added.add(entryPath);
      below.add(entryPath);
    }
  }
  return [...tree.values()].sort((a, b) => comparePaths(a.path, b.path));
}

/**
 * Applies layers in order into one tree (applyLayerRecords). File data is
 * written under `dataDir`; the nodes point at it. A layer's `diffId`, when
 * given, is checked against its uncompressed bytes.
 */
export async function flattenLayers(layers: ReadonlyArray<LayerFile>, dataDir: string, image: string): Promise<FsNode[]> {
  await makeDirectories(dataDir);
  let counter = 0;
  const writeData: FileData = async (_entryPath, _offset, _size, data) => {
    const file = path.join(dataDir, String(counter++));
    await pipeline(data, createWriteStream(file));
    return { kind: 'path', path: file };
  };
  const all: LayerRecord[][] = [];
  for (const layer of layers) all.push(await readLayerRecords(createReadStream(layer.file), layer, image, writeData));
  return applyLayerRecords(all, image);
}

/**
 * flattenLayers gives each name of a hard-linked file its own node sharing
 * one data file. A rootfs file made from the image links those names again
 * (one inode, data stored once) while they still share data and metadata.
 * Only nodes from the image (`fromImage`) still in the tree count: a file an
 * include put over one of the names is its own file. Returns the links made.
 */
export function relinkHardlinks(tree: ImageFilesystem, fromImage: ReadonlySet<FsNode>): number {
  // A data file, or the layer member that the link's nodes share.
  const owners = new Map<unknown, FsNode>();
  let linked = 0;
  // In byte order, so the file comes before its links, as the writers want.
  for (const node of tree.list()) {
    if (node.type !== 'file' || node.source.kind === 'bytes' || !fromImage.has(node)) continue;
    const key = node.source.kind === 'path' ? node.source.path : node.source.member;
    const owner = owners.get(key);
    if (owner === undefined) {
      owners.set(key, node);
      continue;
    }
    if (owner.mode !== node.mode || owner.uid !== node.uid || owner.gid !== node.gid || owner.mtime !== node.mtime) continue;
    tree.put({ type: 'hardlink', path: node.path, mode: node.mode, uid: node.uid, gid: node.gid, mtime: node.mtime, target: owner.path });
    linked++;
  }
  return linked;
}
