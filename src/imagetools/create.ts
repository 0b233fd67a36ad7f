/**
 * `lapin imagetools create`: one image index over images that already
 * exist (registry references, OCI archives, layouts), as `docker buildx
 * imagetools create` makes one. Platforms are read from the images; what a
 * platform seen twice means is the strategy (kraft's names). The index goes
 * to a registry (pushIndex) or to an OCI archive or layout.
 */
import { constants, createWriteStream } from 'node:fs';
import { open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { makeDirectories } from '../mkdirp.js';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import tar from 'tar-stream';
import { UsageError } from '../errors.js';
import { archiveUnchanged, fileStamp, rememberArchive } from '../export/archive-record.js';
import { requireFreshDirectory, writeAtomically } from '../export/atomic.js';
import { dockerLoadEntry, hostPlatform, indexDockerManifestJson } from '../export/index-archive.js';
import { digestHex, sha256Digest } from '../image/digest.js';
import { formatReference, parseReference } from '../image/reference.js';
import { fsyncDirectory, fsyncPath, temporaryName, trackTemporary, untrackTemporary } from '../temporaries.js';
import type { PushEvent, PushOptions, PushedName } from '../registry/push.js';
import { formatPlatform, MEDIA_OCI_INDEX, openImageIndex, samePlatform, type ImageIndex, type IndexEntry } from '../source/image-index.js';
import { SourceError } from '../source/open.js';
import { parsePlatform, type Platform } from '../pipeline/platform.js';
import type { SourceDescriptor } from '../source/types.js';

/**
 * What a platform given twice means (kraft pkg's --strategy):
 * - abort: an error (the default);
 * - overwrite: the later source's image replaces the earlier one;
 * - merge: the index already at the target is read first and kept; a source
 *   replaces its platform there, two sources with one platform are an error.
 */
export type MergeStrategy = 'abort' | 'overwrite' | 'merge';

export interface IndexOutput {
  /** OCI archive (tar) or, with tar false, a layout directory. */
  type: 'oci';
  dest: string;
  tar: boolean;
  /** How step lines name dest (a build shows it relative to its cwd); default dest. */
  shownAs?: string;
}

export interface CreateIndexOptions {
  /** NAME[:TAG]s: pushed to, or (with output) written as the index's ref.name. */
  tags: readonly string[];
  /** Source names, or sources already open (a build's images: pipeline/index.ts). */
  sources: ReadonlyArray<string | ImageIndex>;
  strategy?: MergeStrategy;
  /**
   * Only these platforms of the sources (buildx's --platform, in any form it
   * takes: "aarch64" is linux/arm64); each must be in some source. The index
   * already at the target (merge) keeps all of its own.
   */
  platforms?: readonly string[];
  output?: IndexOutput;
  /** Print the index instead of writing it anywhere. */
  dryRun?: boolean;
  registry?: PushOptions;
  onEvent?: (event: PushEvent) => void;
  /**
   * Where to remember the archives written (a build's cache directory), so
   * that an archive output already holding this very index, untouched since,
   * is left as it is (as a single build's archive: export/archive-record.ts).
   * Undefined: always write.
   */
  recordDir?: string;
}

export interface CreatedIndex {
  digest: string;
  mediaType: string;
  bytes: Buffer;
  platforms: string[];
  pushed: PushedName[];
}

/** `type=oci,dest=PATH[,tar=false]`, buildx's --output syntax. */
export function parseIndexOutput(text: string): IndexOutput {
  const fields = new Map<string, string>();
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`--output ${JSON.stringify(text)}: ${JSON.stringify(part)} is not KEY=VALUE`, 'use type=oci,dest=PATH[,tar=false]');
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1));
  }
  const type = fields.get('type');
  if (type !== 'oci') throw new UsageError(`--output: type ${JSON.stringify(type ?? '')} is not one imagetools writes`, 'use type=oci,dest=PATH for an OCI archive, with tar=false for a layout directory');
  const dest = fields.get('dest');
  if (!dest) throw new UsageError('--output type=oci needs dest=PATH', 'name the archive, e.g. dest=index.tar');
  const tarValue = fields.get('tar') ?? 'true';
  if (tarValue !== 'true' && tarValue !== 'false') throw new UsageError(`--output: tar=${tarValue} is not true or false`);
  for (const key of fields.keys()) if (!['type', 'dest', 'tar'].includes(key)) throw new UsageError(`--output: unknown key ${JSON.stringify(key)}`, 'imagetools create takes type, dest and tar');
  return { type: 'oci', dest, tar: tarValue === 'true' };
}

function indexBytes(entries: readonly IndexEntry[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_OCI_INDEX,
      manifests: entries.map((e) => ({ mediaType: e.descriptor.mediaType, digest: e.descriptor.digest, size: e.manifestBytes.length, platform: e.platform })),
    }),
  );
}

/** Lays entries out in order, applying the strategy to platforms seen twice. */
export function combine(existing: readonly IndexEntry[], sources: ReadonlyArray<{ name: string; entries: readonly IndexEntry[] }>, strategy: MergeStrategy): IndexEntry[] {
  const out: Array<{ entry: IndexEntry; from: string; existing: boolean }> = existing.map((entry) => ({ entry, from: 'the index at the target', existing: true }));
  for (const source of sources) {
    for (const entry of source.entries) {
      const at = out.findIndex((o) => samePlatform(o.entry.platform, entry.platform));
      if (at < 0) {
        out.push({ entry, from: source.name, existing: false });
        continue;
      }
      const seen = out[at] as (typeof out)[number];
      if (seen.entry.descriptor.digest === entry.descriptor.digest) continue;
      if (strategy === 'overwrite' || (strategy === 'merge' && seen.existing)) {
        out[at] = { entry, from: source.name, existing: false };
        continue;
      }
      throw new UsageError(`${source.name} and ${seen.from} both have an image for ${formatPlatform(entry.platform)}`, strategy === 'merge' ? 'give one image per platform' : '--strategy overwrite keeps the later one; or give one image per platform');
    }
  }
  return out.map((o) => o.entry);
}

async function openAll(sources: ReadonlyArray<string | ImageIndex>, options: CreateIndexOptions): Promise<ImageIndex[]> {
  const opened: ImageIndex[] = [];
  try {
    for (const source of sources) {
      const index = typeof source === 'string' ? await openImageIndex(source, { ...(options.registry ? { registry: options.registry } : {}) }) : source;
      opened.push(index);
      if (index.transport === 'docker-archive' || index.transport === 'docker-daemon') {
        throw new SourceError(`${typeof source === 'string' ? source : index.name}: a docker archive keeps no manifest digests, so its image cannot go in an index unchanged`, 'save it as an OCI archive (skopeo copy docker-archive:... oci-archive:...) or push it to a registry first');
      }
    }
    return opened;
  } catch (error) {
    await Promise.all(opened.map((o) => o.close()));
    throw error;
  }
}

/**
 * Refuses an output that cannot be written before any source is read, as build does: a
 * missing parent (the tar writer's error escaped as a stack trace), an archive over a
 * directory, and a merge into a layout directory, which is only ever renamed over a
 * missing or empty one.
 */
async function checkOutput(output: IndexOutput, strategy: MergeStrategy): Promise<void> {
  const parent = await stat(path.dirname(path.resolve(output.dest))).catch(() => undefined);
  if (!parent?.isDirectory()) throw new UsageError(`cannot write ${output.dest}: ${path.dirname(path.resolve(output.dest))} is not a directory`, 'create it first');
  const existing = await stat(output.dest).catch(() => undefined);
  if (output.tar && existing?.isDirectory()) throw new UsageError(`cannot write the archive to ${output.dest}: it is a directory`, 'name a file, e.g. index.tar, or add tar=false');
  if (!output.tar && strategy === 'merge' && existing) {
    throw new UsageError(`--strategy merge cannot write the layout directory ${output.dest} over itself: a directory output is only renamed over a missing or empty one`, `give oci:${output.dest} as a SOURCE and write a new directory, or merge into an archive: tar=true`);
  }
  if (!output.tar) await requireFreshDirectory(output.dest);
}

/** The index already at the target, for --strategy merge; none when there is nothing there yet. */
async function existingEntries(options: CreateIndexOptions): Promise<ImageIndex | undefined> {
  const target = options.output ? (options.output.tar ? `oci-archive:${options.output.dest}` : `oci:${options.output.dest}`) : `docker://${formatReference(parseReference(options.tags[0] as string))}`;
  if (options.output) {
    if (!(await stat(options.output.dest).catch(() => undefined))) return undefined;
  }
  try {
    return await openImageIndex(target, { ...(options.registry ? { registry: options.registry } : {}) });
  } catch (error) {
    if (!options.output && error instanceof SourceError && /was not found in/.test(error.message)) return undefined;
    throw error;
  }
}

export async function createIndex(options: CreateIndexOptions): Promise<CreatedIndex> {
  if (options.sources.length === 0) throw new UsageError('imagetools create needs at least one SOURCE', 'name images: registry references, oci-archive:PATH, oci:DIR');
  if (options.tags.length === 0 && !options.output && !options.dryRun) throw new UsageError('imagetools create needs -t NAME (a registry to push to) or --output type=oci,dest=PATH', 'or --dry-run to print the index');
  for (const tag of options.tags) parseReference(tag);
  const strategy = options.strategy ?? 'abort';
  if (strategy === 'merge' && options.tags.length === 0 && !options.output) throw new UsageError('--strategy merge needs -t NAME or --output: the index to merge into');
  const wanted = options.platforms?.map((text) => ({ text, platform: wantedPlatform(text) }));
  if (options.output && !options.dryRun) await checkOutput(options.output, strategy);
  const opened = await openAll(options.sources, options);
  const existing = strategy === 'merge' ? await existingEntries(options) : undefined;
  if (existing) opened.push(existing);
  if (strategy === 'merge' && !options.output && options.tags.length > 1) {
    // buildx's --append reads the first tag's index alone; lapin build --strategy merge merges each -t with its own.
    const [first, ...rest] = options.tags.map((t) => formatReference(parseReference(t)));
    const held = existing ? existing.entries.map((e) => formatPlatform(e.platform)).join(', ') || 'no platform' : 'nothing yet';
    options.onEvent?.({ kind: 'step', message: `--strategy merge merges into the index at ${first} (the first -t; it holds ${held}), and ${rest.join(', ')} get${rest.length === 1 ? 's' : ''} that same index, whatever ${rest.length === 1 ? 'it holds' : 'they hold'} now (as docker buildx imagetools create --append)` });
  }
  try {
    const sources = opened.filter((o) => o !== existing).map((o) => ({ name: o.name, entries: o.entries }));
    const entries = combine(existing?.entries ?? [], wanted ? onlyPlatforms(sources, wanted) : sources, strategy);
    const bytes = indexBytes(entries);
    const created: CreatedIndex = { digest: sha256Digest(bytes), mediaType: MEDIA_OCI_INDEX, bytes, platforms: entries.map((e) => formatPlatform(e.platform)), pushed: [] };
    if (options.dryRun) return created;
    if (options.output) {
      const written = await writeIndexOutput(options.output, entries, created, options.tags, options.recordDir);
      const shown = options.output.shownAs ?? options.output.dest;
      options.onEvent?.({ kind: 'step', message: written ? `wrote ${shown} (index ${created.digest})` : `${shown} already holds this image index (${created.digest}), unchanged since lapin wrote it` });
      if (options.output.tar) options.onEvent?.({ kind: 'step', message: dockerLoadNote(entries, options.tags) });
      return created;
    }
    const { pushIndex } = await import('../registry/push-index.js');
    const images = entries.map((e) => ({
      manifest: { mediaType: e.descriptor.mediaType, digest: e.descriptor.digest, bytes: e.manifestBytes },
      blobs: [e.manifest.config, ...e.manifest.layers],
      ...(e.repository ? { repository: e.repository } : {}),
      blob: (d: SourceDescriptor) => e.blob(d),
    }));
    created.pushed = await pushIndex(images, { mediaType: created.mediaType, digest: created.digest, bytes }, options.tags, { ...options.registry, ...(options.onEvent ? { onEvent: options.onEvent } : {}) });
    return created;
  } finally {
    await Promise.all(opened.map((o) => o.close()));
  }
}

/** A --platform value, normalized as buildx reads it (pipeline/platform.ts). */
function wantedPlatform(text: string): Platform {
  const platform = parsePlatform(text);
  if (!platform) throw new UsageError(`--platform ${JSON.stringify(text)} is not a platform`, 'write OS/ARCH[/VARIANT] as buildx takes it, e.g. linux/arm64 or arm64');
  return platform;
}

/** The sources' entries for the platforms asked for; one asked for that no source has is an error. */
function onlyPlatforms(sources: ReadonlyArray<{ name: string; entries: readonly IndexEntry[] }>, wanted: ReadonlyArray<{ text: string; platform: Platform }>): Array<{ name: string; entries: IndexEntry[] }> {
  for (const { text, platform } of wanted) {
    if (sources.some((s) => s.entries.some((e) => samePlatform(e.platform, platform)))) continue;
    const offered = [...new Set(sources.flatMap((s) => s.entries.map((e) => formatPlatform(e.platform))))].join(', ');
    throw new UsageError(`--platform ${text}: no source has an image for ${formatPlatform(platform)} (they have ${offered || 'none'})`);
  }
  return sources.map((s) => ({ name: s.name, entries: s.entries.filter((e) => wanted.some((w) => samePlatform(e.platform, w.platform))) }));
}

/** What docker 20.10's load takes from the archive (it reads manifest.json, not the index). */
function dockerLoadNote(entries: readonly IndexEntry[], tags: readonly string[]): string {
  const host = formatPlatform(hostPlatform());
  const entry = dockerLoadEntry(entries);
  if (!entry) return `no ${host} image (this machine's platform), so no docker manifest.json: docker load of it fails (docker 20.10 reads no image index)`;
  const names = tags.map((t) => formatReference(parseReference(t)));
  return `docker load takes ${formatPlatform(entry.platform)} (this machine's platform) ${names.length > 0 ? `as ${names.join(', ')}` : 'untagged'}: docker 20.10 reads no image index (ctr import --all-platforms and skopeo copy --all take every platform)`;
}

/** Bump when the index archive's layout changes, so recorded archives are rewritten. */
const INDEX_ARCHIVE_FORMAT = 1;

/**
 * An OCI layout: index.json names the new index (tagged with each NAME's
 * tag), which names every manifest. Returns false when the archive at dest
 * is the one lapin last wrote there with these bytes, and was left alone.
 */
async function writeIndexOutput(output: IndexOutput, entries: readonly IndexEntry[], created: CreatedIndex, tags: readonly string[], recordDir: string | undefined): Promise<boolean> {
  const refs = tags.length > 0 ? tags.map((t) => parseReference(t)) : [undefined];
  const indexJson = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_OCI_INDEX,
      manifests: refs.map((ref) => ({
        mediaType: created.mediaType,
        digest: created.digest,
        size: created.bytes.length,
        ...(ref ? { annotations: { 'io.containerd.image.name': formatReference(ref), 'org.opencontainers.image.ref.name': ref.tag } } : {}),
      })),
    }),
  );
  // Each blob once, however many platforms share it.
  const blobs = new Map<string, { size: number; read: () => Promise<Readable> }>();
  const bytesBlob = (data: Buffer) => ({ size: data.length, read: async () => Readable.from([data]) });
  blobs.set(created.digest, bytesBlob(created.bytes));
  for (const entry of entries) {
    blobs.set(entry.descriptor.digest, bytesBlob(entry.manifestBytes));
    for (const d of [entry.manifest.config, ...entry.manifest.layers]) if (!blobs.has(d.digest)) blobs.set(d.digest, { size: d.size, read: () => entry.blob(d) });
  }
  const layout = JSON.stringify({ imageLayoutVersion: '1.0.0' });
  if (!output.tar) {
    await requireFreshDirectory(output.dest);
    await writeAtomically(output.dest, async (dir) => {
      await makeDirectories(path.join(dir, 'blobs', 'sha256'));
      await writeFile(path.join(dir, 'oci-layout'), layout);
      await writeFile(path.join(dir, 'index.json'), indexJson);
      for (const [digest, blob] of blobs) await pipeline(await blob.read(), verifying(digest, blob.size), createWriteStream(path.join(dir, 'blobs', 'sha256', digestHex(digest))));
    });
    return true;
  }
  // For docker 20.10, which reads no index: the host platform's image (src/export/index-archive.ts).
  const dockerManifest = indexDockerManifestJson(dockerLoadEntry(entries), refs.flatMap((ref) => (ref ? [formatReference(ref)] : [])));
  // The archive's bytes follow from these alone: blobs are named by their digests, and checked against them as they are copied.
  const identity = createHash('sha256')
    .update(JSON.stringify({ format: INDEX_ARCHIVE_FORMAT, blobs: [...blobs].map(([digest, blob]) => [digest, blob.size]) }))
    .update(indexJson)
    .update(dockerManifest ?? Buffer.alloc(0))
    .digest('hex');
  const dest = path.resolve(output.dest);
  if (recordDir !== undefined && (await archiveUnchanged(recordDir, dest, identity))) return false;
  const stamp = await writeFileThrough(dest, async (file) => {
    const pack = tar.pack();
    const written = pipeline(pack, createWriteStream(file));
    const header = (name: string, size: number, type: 'file' | 'directory' = 'file') => ({ name, size, type, mode: type === 'directory' ? 0o755 : 0o644, mtime: new Date(0), uid: 0, gid: 0 });
    const add = (name: string, data: Buffer) => new Promise<void>((resolve, reject) => pack.entry(header(name, data.length), data, (error) => (error ? reject(error) : resolve())));
    try {
      await add('oci-layout', Buffer.from(layout));
      await add('index.json', indexJson);
      if (dockerManifest) await add('manifest.json', dockerManifest);
      await new Promise<void>((resolve, reject) => pack.entry(header('blobs/', 0, 'directory'), (error) => (error ? reject(error) : resolve())));
      await new Promise<void>((resolve, reject) => pack.entry(header('blobs/sha256/', 0, 'directory'), (error) => (error ? reject(error) : resolve())));
      for (const [digest, blob] of blobs) {
        const sink = pack.entry(header(`blobs/sha256/${digestHex(digest)}`, blob.size));
        await pipeline(await blob.read(), verifying(digest, blob.size), sink);
      }
      pack.finalize();
    } catch (error) {
      pack.destroy(error as Error);
      await written.catch(() => undefined);
      throw error;
    }
    await written;
  });
  if (recordDir !== undefined) await rememberArchive(recordDir, dest, identity, stamp).catch(() => undefined);
  return true;
}

/**
 * Writes the file `dest` through a temporary sibling, flushed, then renamed
 * into place; removed on failure. Returns the stamp of the file renamed,
 * read through a descriptor: whatever another build renames over dest
 * meanwhile is not taken for this one's (export/archive-record.ts).
 */
async function writeFileThrough(dest: string, write: (temporary: string) => Promise<void>): Promise<string> {
  const temporary = path.join(path.dirname(dest), temporaryName(`.${path.basename(dest)}.lapin-tmp-`));
  trackTemporary(temporary);
  try {
    await write(temporary);
    await fsyncPath(temporary);
    const handle = await open(temporary, constants.O_RDONLY | constants.O_NOFOLLOW);
    let stamp: string;
    try {
      await rename(temporary, dest);
      stamp = fileStamp(await handle.stat({ bigint: true }));
    } finally {
      await handle.close();
    }
    await fsyncDirectory(path.dirname(dest));
    return stamp;
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  } finally {
    untrackTemporary(temporary);
  }
}

/** Passes a blob through, refusing it at the end unless it has the digest and size the manifest lists. */
function verifying(digest: string, size: number): Transform {
  const hash = createHash('sha256');
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      seen += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      const actual = `sha256:${hash.digest('hex')}`;
      // A damaged source is bad input (exit 2), as the readers say of a damaged manifest.
      if (actual !== digest) callback(new SourceError(`blob ${digest} read from its source does not match its digest (got ${actual}); nothing was written`));
      else callback(seen === size ? null : new SourceError(`blob ${digest} is ${seen} bytes, but its manifest says ${JSON.stringify(size)}; nothing was written`));
    },
  });
}
