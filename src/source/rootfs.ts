/**
 * The image's root file system as a container runtime would see it: layers
 * applied in order, honouring whiteouts (`.wh.NAME`) and opaque directories
 * (`.wh..wh..opq`). Only metadata is kept for every path; file contents are
 * captured just for the paths asked for (a header, the whole file in memory,
 * or the whole file written to disk).
 */
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { byteNameExtract, layerName } from '../image/layer-names.js';
import { LayerDecompressor } from './decompress.js';
import { SourceError } from './errors.js';
import { layerNameProblem, PathTree } from './path-tree.js';
import type { ImageSource, SourceDescriptor } from './types.js';

export type EntryType = 'file' | 'directory' | 'symlink' | 'link' | 'other';

export interface RootfsEntry {
  /** Absolute, normalized: "/.boot/kernel". */
  path: string;
  type: EntryType;
  size: number;
  mode: number;
  /** Symlink target as written, or the absolute path a hard link names. */
  linkname: string;
  /** Index of the layer the entry comes from. */
  layer: number;
  /** The first bytes (a 'header' capture) or all of them (a 'content' capture). */
  data?: Buffer;
  /** Where a 'file' capture wrote the contents. */
  file?: string;
}

export type Capture = { kind: 'header'; bytes: number } | { kind: 'content'; maxBytes: number } | { kind: 'file'; dir: string };

export interface FlattenOptions {
  /** What to keep of the file at this path (asked for every regular file). */
  capture?: (path: string) => Capture | undefined;
  /** Stop reading layers early is not possible (a later layer may delete a file), so every layer is read. */
  onLayer?: (index: number, count: number) => void;
  /** Paths kept at most; default ROOTFS_ENTRY_LIMIT. */
  maxEntries?: number;
}

export interface FlatRootfs {
  entries: Map<string, RootfsEntry>;
  layerCount: number;
}

/** "./a//b/" → "/a/b". */
export function normalizeImagePath(name: string): string {
  const normalized = posix.normalize(`/${name}`);
  return normalized.length > 1 ? normalized.replace(/\/+$/, '') : normalized;
}

const WHITEOUT = '.wh.';
/** Paths kept for the flattened rootfs (a few hundred bytes each): far more than any unikernel image, bounded memory. */
export const ROOTFS_ENTRY_LIMIT = 2_000_000;
const OPAQUE = '.wh..wh..opq';

async function readLayer(
  stream: Readable,
  layer: number,
  entries: Map<string, RootfsEntry>,
  tree: PathTree,
  capture: FlattenOptions['capture'],
  what: string,
  maxEntries: number,
): Promise<void> {
  const extract = byteNameExtract();
  const feeding = pipeline(stream, new LayerDecompressor(what), extract as unknown as NodeJS.WritableStream);
  // Settled here, so a failure is never an unhandled rejection whatever the loop below does.
  const fed = feeding.then(
    () => undefined,
    (error: unknown) => {
      extract.destroy(error as Error);
      return error;
    },
  );
  // A path cleared once in this layer needs no second walk (hostile layers repeat whiteouts).
  const cleared = new Set<string>();
  const clear = (path: string, includeSelf: boolean): void => {
    const key = `${includeSelf ? 's' : 'c'}${path}`;
    if (cleared.has(key)) return;
    cleared.add(key);
    tree.removeBelow(path, includeSelf, (key) => {
      const entry = entries.get(key);
      if (entry && entry.layer < layer) entries.delete(key);
      return !entries.has(key);
    });
  };
  let fileNumber = 0;
  try {
    try {
      for await (const entry of extract) {
        const header = entry.header;
        const problem = layerNameProblem(header.name, 'name') ?? layerNameProblem(header.linkname ?? '', 'link target');
        if (problem !== undefined) throw new SourceError(`${what}: layer ${layer + 1} has ${problem}`, 'a hostile or broken image');
        const path = normalizeImagePath(layerName(header.name));
        const linkname = layerName(header.linkname ?? '');
        const base = posix.basename(path);
        const dir = posix.dirname(path);
        if (base === OPAQUE) {
          clear(dir, false);
          entry.resume();
          continue;
        }
        if (base.startsWith(WHITEOUT)) {
          clear(posix.join(dir, base.slice(WHITEOUT.length)), true);
          entry.resume();
          continue;
        }
        const type: EntryType =
          header.type === 'file' || header.type === 'contiguous-file' ? 'file' : header.type === 'directory' ? 'directory' : header.type === 'symlink' ? 'symlink' : header.type === 'link' ? 'link' : 'other';
        if (type !== 'directory') clear(path, false);
        const record: RootfsEntry = {
          path,
          type,
          size: type === 'file' ? header.size : 0,
          mode: header.mode,
          linkname: type === 'link' ? normalizeImagePath(linkname) : linkname,
          layer,
        };
        const wanted = type === 'file' ? capture?.(path) : undefined;
        if (wanted?.kind === 'file') {
          const file = join(wanted.dir, `layer${layer}-${fileNumber++}`);
          await pipeline(entry as unknown as Readable, createWriteStream(file));
          record.file = file;
        } else if (wanted) {
          const limit = wanted.kind === 'header' ? wanted.bytes : wanted.maxBytes;
          const chunks: Buffer[] = [];
          let kept = 0;
          for await (const chunk of entry as AsyncIterable<Buffer>) {
            if (kept < limit) {
              const part = chunk.subarray(0, limit - kept);
              chunks.push(part);
              kept += part.length;
            }
          }
          record.data = Buffer.concat(chunks);
        } else {
          entry.resume();
          // Wait for the body to be skipped before the next header.
          await new Promise<void>((resolve, reject) => {
            entry.on('end', () => resolve());
            entry.on('error', reject);
          });
        }
        // A later entry for the path replaces the file an earlier one was captured to: disk holds one copy
        // a path, however often a layer repeats it.
        const replaced = entries.get(path)?.file;
        if (replaced !== undefined && replaced !== record.file) await rm(replaced, { force: true });
        entries.set(path, record);
        tree.add(path);
        // Implicit parents count: each costs as much as a path the layer names.
        if (entries.size > maxEntries || tree.size > maxEntries) {
          throw new SourceError(`${what}: the image's layers hold more than ${maxEntries} paths, more than lapin keeps in memory for inspect and run`, 'a hostile or broken image');
        }
      }
    } finally {
      // On a failure in the loop, stop the feeding and wait for it, so nothing runs on after.
      stream.destroy();
    }
    const failure = await fed;
    if (failure !== undefined) throw failure;
  } catch (error) {
    const fedError = await fed;
    if (error instanceof SourceError) throw error;
    if (fedError instanceof SourceError) throw fedError;
    throw new SourceError(`${what}: cannot read layer ${layer + 1}: ${(error as Error).message}`);
  }
}

/** Applies every layer of the image, in order. */
export async function flattenRootfs(source: ImageSource, options: FlattenOptions = {}): Promise<FlatRootfs> {
  const { manifest } = await source.manifest();
  const entries = new Map<string, RootfsEntry>();
  const tree = new PathTree('/');
  const layers: SourceDescriptor[] = manifest.layers;
  for (const [index, descriptor] of layers.entries()) {
    options.onLayer?.(index, layers.length);
    await readLayer(await source.blob(descriptor), index, entries, tree, options.capture, source.name, options.maxEntries ?? ROOTFS_ENTRY_LIMIT);
  }
  return { entries, layerCount: layers.length };
}

export interface ResolvedFile {
  /** The path asked for. */
  path: string;
  /** The regular file it ends at, after symlinks and hard links. */
  entry?: RootfsEntry;
  /** Symlinks followed, in order. */
  via: string[];
  /** Why there is no file: "missing", "a directory", "a symlink loop", ... */
  problem?: string;
}

/** Follows symlinks the way a lookup scoped to the rootfs does: ".." stops at "/", absolute targets start at the rootfs. */
export function resolveFile(rootfs: FlatRootfs, path: string): ResolvedFile {
  const via: string[] = [];
  let current = normalizeImagePath(path);
  for (let hops = 0; hops < 40; hops++) {
    // Resolve symlinks in the parent directories first.
    const parts = current.split('/').filter(Boolean);
    let prefix = '';
    let restarted = false;
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = `${prefix}/${parts[i]}`;
      const parent = rootfs.entries.get(prefix);
      if (parent?.type === 'symlink') {
        const target = parent.linkname.startsWith('/') ? parent.linkname : posix.join(posix.dirname(prefix), parent.linkname);
        via.push(prefix);
        current = normalizeImagePath(posix.join(target, ...parts.slice(i + 1)));
        restarted = true;
        break;
      }
    }
    if (restarted) continue;
    const entry = rootfs.entries.get(current);
    if (!entry) return { path, via, problem: via.length ? `missing (${path} leads to ${current}, which does not exist)` : 'missing' };
    if (entry.type === 'file') return { path, entry, via };
    if (entry.type === 'link') {
      via.push(current);
      current = entry.linkname;
      continue;
    }
    if (entry.type === 'symlink') {
      via.push(current);
      current = normalizeImagePath(entry.linkname.startsWith('/') ? entry.linkname : posix.join(posix.dirname(current), entry.linkname));
      continue;
    }
    return { path, via, problem: entry.type === 'directory' ? 'a directory, not a file' : 'not a regular file' };
  }
  return { path, via, problem: 'a symlink loop' };
}
