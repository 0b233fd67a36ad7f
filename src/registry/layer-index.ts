/**
 * A base image's layers indexed, not extracted. A FROM build reuses the
 * base's layers as they are, so their files only need to be known (paths,
 * types, modes, sizes) and their data found again when a step reads it:
 * each file's node points at its data's offset in the layer's tar
 * (FsNode source 'layer', src/image/layer-member.ts). The index of a
 * pulled layer is kept in the pull cache beside the blob, so a second
 * build reads neither the blob nor the index's tar again; the files the
 * image's labels name (its kernel) are kept there too, since the build
 * reads them every time.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobCheck, FsNode, LayerMember } from '../image/tree.js';
import { treePathProblem } from '../image/tree.js';
import { makeDirectories } from '../mkdirp.js';
import { readRegularFile } from '../regular-file.js';
import { shortUruncKey } from '../plan/urunc-keys.js';
import { temporaryName, trackTemporary, untrackTemporary, writeFileAtomically } from '../temporaries.js';
import { applyLayerRecords, checkLinkTarget, readLayerRecords, type EntryData, type LayerFile, type LayerRecord } from './extract.js';

/** A layer to index: where its index is kept (pulled layers), if anywhere. */
export interface IndexableLayer extends LayerFile {
  /** The index file in the pull cache; captured files go to `files/` beside its directory. */
  indexFile?: string;
}

export interface IndexOptions {
  /** Image name for messages. */
  image: string;
  /** Tree paths whose data is kept while indexing (the kernel the labels name). */
  capture: ReadonlySet<string>;
  /** Where readers extract members they need as files. */
  scratch: string;
  /** Where captured files go when the layer has no index file (they are content-addressed). */
  captureDir: string;
}

const INDEX_VERSION = 1;
/** A kept index of two million entries is a few hundred MB. */
const STORED_INDEX_MAX_BYTES = 1024 * 1024 * 1024;
/** A kernel, not a rootfs image: larger named files are read from the layer when needed. */
const CAPTURE_LIMIT = 256 * 1024 * 1024;

type Meta = [path: string, mode: number, uid: number, gid: number, mtime: number];
type StoredEntry =
  | ['o', string]
  | ['w', string]
  | ['d', ...Meta]
  | ['s', ...Meta, string]
  | ['h', ...Meta, string]
  | ['f', ...Meta, size: number, offset: number, captured: string | null];

interface StoredIndex {
  version: number;
  digest: string;
  diffId: string | null;
  entries: StoredEntry[];
}

/** The directory of captured files for an index file: registry/index/files. */
function capturesBeside(indexFile: string): string {
  return path.join(path.dirname(path.dirname(indexFile)), 'files');
}

/** The files the image's labels and annotations name, as tree paths: read by every build on it. */
export function namedFiles(labels: Readonly<Record<string, string>> | undefined, annotations: Readonly<Record<string, string>> | undefined): Set<string> {
  const named = new Set<string>();
  for (const [key, value] of [...Object.entries(labels ?? {}), ...Object.entries(annotations ?? {})]) {
    if (shortUruncKey(key) !== 'binary' || typeof value !== 'string') continue;
    const treePath = value.replace(/^\/+/, '');
    if (treePathProblem(treePath) === undefined) named.add(treePath);
  }
  return named;
}

interface Indexing {
  records: LayerRecord[];
  /** Captured members and the sha256 of their content, their file's name. */
  captured: Map<LayerMember, string>;
}

/** Reads a layer's tar (compressed, from `input`) into records whose files point into `blob`. */
async function indexStream(input: Readable, layer: IndexableLayer, options: IndexOptions, captureDir: string, blobCheck?: BlobCheck): Promise<Indexing> {
  const captured = new Map<LayerMember, string>();
  const records = await readLayerRecords(input, layer, options.image, async (entryPath: string, offset: number, size: number, data: EntryData) => {
    const member: LayerMember = { blob: layer.file, offset, size, what: `${options.image}: /${entryPath}`, entryPath, scratch: options.scratch, ...(blobCheck ? { blobCheck } : {}) };
    if (options.capture.has(entryPath) && size <= CAPTURE_LIMIT) {
      const hex = await captureData(data, captureDir);
      member.file = path.join(captureDir, hex);
      captured.set(member, hex);
    } else {
      data.resume();
    }
    return { kind: 'layer', member };
  });
  return { records, captured };
}

/** Writes data to a content-addressed file under `dir`; returns its sha256 hex. */
async function captureData(data: EntryData, dir: string): Promise<string> {
  await makeDirectories(dir);
  const temporary = path.join(dir, temporaryName('capture.tmp-'));
  trackTemporary(temporary);
  try {
    const hash = createHash('sha256');
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    await pipeline(data, hashing, createWriteStream(temporary));
    const hex = hash.digest('hex');
    await rename(temporary, path.join(dir, hex));
    return hex;
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  } finally {
    untrackTemporary(temporary);
  }
}

function stored(indexing: Indexing, layer: IndexableLayer): StoredIndex {
  const entries: StoredEntry[] = [];
  for (const record of indexing.records) {
    if (record.op === 'opaque') entries.push(['o', record.dir]);
    else if (record.op === 'whiteout') entries.push(['w', record.path]);
    else if (record.op === 'link') entries.push(['h', record.path, record.mode, record.uid, record.gid, record.mtime, record.target]);
    else {
      const node = record.node;
      const meta: Meta = [node.path, node.mode, node.uid, node.gid, node.mtime];
      if (node.type === 'dir') entries.push(['d', ...meta]);
      else if (node.type === 'symlink') entries.push(['s', ...meta, node.target]);
      else if (node.type === 'file' && node.source.kind === 'layer') entries.push(['f', ...meta, node.size, node.source.member.offset, indexing.captured.get(node.source.member) ?? null]);
      else throw new Error(`internal: ${node.path} cannot be kept in a layer index`);
    }
  }
  return { version: INDEX_VERSION, digest: layer.digest, diffId: layer.diffId ?? null, entries };
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isPath = (value: unknown): value is string => typeof value === 'string' && treePathProblem(value) === undefined;
const isMeta = (e: readonly unknown[]): boolean => isPath(e[1]) && isCount(e[2]) && (e[2] as number) <= 0o7777 && isCount(e[3]) && isCount(e[4]) && Number.isSafeInteger(e[5]);

/** The records a kept index holds, or undefined when it is missing, of another layer or damaged (it is made again). */
async function loadIndex(layer: IndexableLayer & { indexFile: string }, options: IndexOptions, blobCheck?: BlobCheck): Promise<LayerRecord[] | undefined> {
  let index: StoredIndex;
  try {
    // Not a regular file (a FIFO would block the build) or bigger than any index: made again.
    index = JSON.parse((await readRegularFile(layer.indexFile, STORED_INDEX_MAX_BYTES)).toString('utf8')) as StoredIndex;
  } catch {
    return undefined;
  }
  if (typeof index !== 'object' || index === null || index.version !== INDEX_VERSION || index.digest !== layer.digest || !Array.isArray(index.entries)) return undefined;
  // An index made without a diff_id check serves only a layer that has none to check.
  if (layer.diffId !== undefined && index.diffId !== layer.diffId) return undefined;
  const captures = capturesBeside(layer.indexFile);
  const records: LayerRecord[] = [];
  for (const entry of index.entries as unknown[]) {
    if (!Array.isArray(entry)) return undefined;
    const kind: unknown = entry[0];
    if (kind === 'o' || kind === 'w') {
      if (typeof entry[1] !== 'string' || (entry[1] !== '' && !isPath(entry[1]))) return undefined;
      records.push(kind === 'o' ? { op: 'opaque', dir: entry[1] } : { op: 'whiteout', path: entry[1] });
      continue;
    }
    if (!isMeta(entry)) return undefined;
    const [, p, mode, uid, gid, mtime] = entry as [string, string, number, number, number, number];
    const common = { path: p, mode, uid, gid, mtime };
    if (kind === 'd' && entry.length === 6) records.push({ op: 'put', node: { ...common, type: 'dir' } });
    else if (kind === 's' && entry.length === 7 && typeof entry[6] === 'string' && linkStaysInside(p, entry[6])) records.push({ op: 'put', node: { ...common, type: 'symlink', target: entry[6] } });
    else if (kind === 'h' && entry.length === 7 && isPath(entry[6])) records.push({ op: 'link', ...common, target: entry[6] });
    else if (kind === 'f' && entry.length === 9 && isCount(entry[6]) && isCount(entry[7]) && (entry[8] === null || (typeof entry[8] === 'string' && /^[0-9a-f]{64}$/.test(entry[8])))) {
      const size = entry[6];
      const member: LayerMember = { blob: layer.file, offset: entry[7], size, what: `${options.image}: /${p}`, entryPath: p, scratch: options.scratch, ...(blobCheck ? { blobCheck } : {}) };
      if (typeof entry[8] === 'string') {
        const file = path.join(captures, entry[8]);
        // A kept file that is gone or damaged is read from the layer instead.
        if (await holdsContent(file, size, entry[8])) member.file = file;
      }
      records.push({ op: 'put', node: { ...common, type: 'file', size, source: { kind: 'layer', member } } });
    } else return undefined;
  }
  return records;
}

/** A kept symlink whose target climbs out of the root was not written by lapin (indexing refuses the layer): the index is made again. */
function linkStaysInside(linkPath: string, target: string): boolean {
  try {
    checkLinkTarget(linkPath, target, '');
    return true;
  } catch {
    return false;
  }
}

/** The blob as it is now, which the members' offsets describe (layer-member.ts reads only these bytes). */
async function checkOf(layer: IndexableLayer): Promise<BlobCheck | undefined> {
  if (!/^sha256:[0-9a-f]{64}$/.test(layer.digest)) return undefined;
  const info = await stat(layer.file).catch(() => undefined);
  return info ? { digest: layer.digest, dev: info.dev, ino: info.ino, size: info.size, mtimeMs: info.mtimeMs } : undefined;
}

async function holdsContent(file: string, size: number, hex: string): Promise<boolean> {
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile() || info.size !== size) return false;
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch {
    return false;
  }
  return hash.digest('hex') === hex;
}

async function keep(layer: IndexableLayer & { indexFile: string }, indexing: Indexing): Promise<void> {
  await makeDirectories(path.dirname(layer.indexFile));
  await writeFileAtomically(layer.indexFile, JSON.stringify(stored(indexing, layer)));
}

/**
 * One layer's records: from its kept index, else read from the blob (and
 * kept when the layer has an index file).
 */
export async function indexLayer(layer: IndexableLayer, options: IndexOptions): Promise<LayerRecord[]> {
  const blobCheck = await checkOf(layer);
  if (layer.indexFile !== undefined) {
    const withIndex = { ...layer, indexFile: layer.indexFile };
    const loaded = await loadIndex(withIndex, options, blobCheck);
    if (loaded) return loaded;
    const indexing = await indexStream(createReadStream(layer.file, { highWaterMark: 1 << 20 }), layer, options, capturesBeside(layer.indexFile), blobCheck);
    await keep(withIndex, indexing);
    return indexing.records;
  }
  return (await indexStream(createReadStream(layer.file, { highWaterMark: 1 << 20 }), layer, options, options.captureDir, blobCheck)).records;
}

/**
 * Indexes a layer from the bytes of its download, as they arrive: `done`
 * resolves once the tar is read; `keep()` files the index once the blob
 * was checked against its digest. A layer that fails here is indexed again
 * from the blob when a build reads it, which reports its problem.
 */
export function indexWhileFetching(input: Readable, layer: IndexableLayer & { indexFile: string }, options: Omit<IndexOptions, 'captureDir'>): { done: Promise<Indexing>; keep: (indexing: Indexing) => Promise<void> } {
  const done = indexStream(input, layer, { ...options, captureDir: capturesBeside(layer.indexFile) }, capturesBeside(layer.indexFile));
  return { done, keep: (indexing) => keep(layer, indexing) };
}

/** The tree of several layers, applied in order, each indexed (indexLayer). */
export async function indexLayers(layers: readonly IndexableLayer[], options: IndexOptions): Promise<FsNode[]> {
  const all: LayerRecord[][] = [];
  for (const layer of layers) all.push(await indexLayer(layer, options));
  return applyLayerRecords(all, options.image);
}
