/**
 * Where a build's result goes: one interface, one file per sink (sinks/).
 * A sink is checked before any work (`check`), may offer a blob target that
 * writes straight into the output (`openStream`, the unchanged-archive
 * shortcut), and then writes the artifact under names given as an argument:
 * the image does not carry them (as ggcr's `tarball.Write(ref, img)`).
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { formatPosition, LapinError, UsageError } from '../errors.js';
import { requireFreshDirectory } from './atomic.js';
import type { BlobTarget } from '../image/blob-store.js';
import type { ImageIndexModel, ImageModel, ImageParts } from '../image/model.js';
import type { FsNode } from '../image/tree.js';
import type { MergeStrategy } from '../imagetools/create.js';
import type { BuildEvent, OutputSpec } from '../pipeline/types.js';
import type { PushOptions } from '../registry/push.js';
import { recordCompletedOutput } from '../temporaries.js';

/**
 * What the pipeline hands to the sinks: one image, built, pulled or opened
 * (image/model.ts), which every image sink writes the same way.
 */
export interface ImageArtifact {
  kind: 'image';
  image: ImageModel;
  /** The image's final file tree (type=local writes it): a build's only. */
  rootfs?: () => readonly FsNode[];
}

/** Several platforms' images, to go out as one image index. */
export interface IndexArtifact {
  kind: 'index';
  index: ImageIndexModel;
  /** For the registry: what to do with the index already at the name. */
  strategy?: MergeStrategy;
}

export type Artifact = ImageArtifact | IndexArtifact;

/** What a sink is checked against before the work: one image, or an index over these platforms. */
export type ArtifactShape = { kind: 'image' } | { kind: 'index'; platforms: readonly string[] };

/** An index written or pushed, as --metadata-file gives it. */
export interface WrittenIndex {
  mediaType: string;
  digest: string;
  size: number;
}

/** One output written, as BuildResult.outputs lists it. */
export interface WrittenOutput {
  type: string;
  dest: string;
  /** The digest pushed under `dest` when it is not the build's own (an index merged with what that name held). */
  digest?: string;
}

export interface SinkContext {
  cwd: string;
  mtime: number;
  emit: (event: BuildEvent) => void;
  stdout?: Writable;
  registry?: PushOptions;
  /** What this build has written so far; each sink adds its own. */
  written: WrittenOutput[];
  /** The index an index sink wrote; a registry's (merged) index wins over a file's. */
  index?: WrittenIndex;
  /** Where an archive sink remembers what it wrote (the cache directory), for the unchanged-archive shortcut; none: always write. */
  recordDir?: string;
}

/** A blob target writing into the output itself; `finish` returns false when the output already held these bytes. */
export interface StreamTarget extends BlobTarget {
  finish(image: ImageParts, names: readonly string[]): Promise<boolean>;
  abort(): Promise<void>;
}

export interface Sink {
  readonly output: OutputSpec;
  /** For messages: "OCI archive", "registry", "docker"... */
  readonly description: string;
  /** Refuses an unusable output before any work is done. */
  check(names: readonly string[], shape: ArtifactShape): Promise<void>;
  /** Where the sink's temporaries live (swept of those of killed builds). */
  temporaryDir?(): string | undefined;
  /** A blob target into the output, used when this sink is the build's only one. */
  openStream?(mtime: number, recordDir: string | undefined): Promise<StreamTarget | undefined>;
  write(artifact: Artifact, names: readonly string[], context: SinkContext): Promise<void>;
  /** Drops what an unfinished stream left; nothing once written. */
  close?(): Promise<void>;
}

/** Writes the artifact to each sink in order; a later failure says which earlier outputs are complete. */
export async function writeToSinks(sinks: readonly Sink[], artifact: Artifact, names: readonly string[], context: SinkContext): Promise<void> {
  for (const sink of sinks) {
    try {
      await sink.write(artifact, sink.output.names ?? names, context);
    } catch (error) {
      throw context.written.length > 0 ? partialOutputError(error, sink, context.written, context.cwd) : error;
    }
  }
}

/**
 * The usual frame of a file output: a begin/end pair around the work, the
 * completed output recorded, and one line saying it was written (or that it
 * already held this image).
 */
export async function writeFileOutput(sink: Sink, dest: string, context: SinkContext, work: () => Promise<{ unchanged?: boolean; said?: boolean } | void>): Promise<void> {
  const { emit, cwd, written } = context;
  const shown = dest === '-' ? 'stdout' : displayPath(dest, cwd);
  const id = `write ${written.length} ${dest}`;
  emit({ kind: 'begin', id, message: `writing ${sink.description} to ${shown}` });
  let unchanged = false;
  let said = false;
  try {
    const done = await work();
    unchanged = done?.unchanged === true;
    said = done?.said === true;
  } finally {
    emit({ kind: 'end', id });
  }
  written.push({ type: sink.output.type, dest });
  recordCompletedOutput(dest === '-' ? 'written to stdout' : displayPath(dest, cwd));
  // A cache hit says so in its one line instead of "wrote"; an index writer says what it wrote itself.
  if (said) return;
  if (unchanged) emit({ kind: 'step', message: `${displayPath(dest, cwd)} already holds this image, unchanged since lapin wrote it` });
  else emit({ kind: 'step', message: `wrote ${sink.description} to ${shown}` });
}

/** Relative to cwd when inside it, absolute otherwise. */
function displayPath(p: string, cwd: string): string {
  const relative = path.relative(cwd, p);
  return relative === '' || relative.startsWith('..') ? p : relative;
}

/** An error's reason in a few words. */
export function reasonOf(error: unknown): string {
  if (error instanceof LapinError) return error.describe();
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return 'no space left on the device';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'no such directory';
  return (error as Error).message;
}

export function describeWritten(output: WrittenOutput): string {
  if (output.type === 'registry') return `pushed ${output.dest}`;
  if (output.type === 'load') return `loaded into ${output.dest}`;
  return output.dest === '-' ? 'written to stdout' : `${output.dest}`;
}

/** A later output failed: that one is gone, the earlier ones are complete and stay. */
function partialOutputError(error: unknown, sink: Sink, written: readonly WrittenOutput[], cwd: string): LapinError {
  const output = sink.output;
  const failed = output.dest !== undefined && output.dest !== '-' ? ` ${displayPath(path.resolve(cwd, output.dest), cwd)}` : '';
  const done = written.map((o) => (o.type === 'registry' || o.type === 'load' ? describeWritten(o) : displayPath(o.dest, cwd))).join(', ');
  const what = output.type === 'registry' ? 'the push' : output.type === 'load' ? `the load into ${sink.description}` : `writing the ${sink.description}${failed}`;
  // The failure's own hint says what to do; it goes last, not in parentheses inside this sentence.
  const reason = error instanceof LapinError ? `${error.at ? `${formatPosition(error.at)}: ` : ''}${error.message}` : reasonOf(error);
  const hint = error instanceof LapinError && error.hint !== undefined ? error.hint : 'fix that output and build again';
  return new LapinError(`${what} failed: ${reason}; nothing of it was left, and the earlier output${written.length > 1 ? 's are' : ' is'} complete and kept: ${done}`, { hint });
}

/** A file or directory output: dest=- only for archives with a stdout; the parent must exist; a directory must be new. */
export async function checkFileOutput(output: { type: string; dest: string }, cwd: string, haveStdout: boolean, isDirectory: boolean): Promise<void> {
  if (output.dest === '-') {
    if (isDirectory) throw new UsageError(`${output.type === 'local' ? 'type=local' : 'tar=false'} needs a directory as dest, not -`);
    if (!haveStdout) throw new UsageError('dest=- needs a stdout stream');
    return;
  }
  const dest = path.resolve(cwd, output.dest);
  const parent = await stat(path.dirname(dest)).catch(() => undefined);
  if (!parent?.isDirectory()) throw new LapinError(`cannot write ${output.dest}: ${path.dirname(dest)} is not a directory`, { hint: 'create it first' });
  if (isDirectory) await requireFreshDirectory(dest);
  else if ((await stat(dest).catch(() => undefined))?.isDirectory()) {
    throw new LapinError(`cannot write the archive to ${output.dest}: it is a directory`, { hint: 'name a file, e.g. image.tar, or add tar=false' });
  }
}

/** The directory a file output's temporaries go in. */
export function fileOutputTemporaryDir(dest: string, cwd: string): string | undefined {
  return dest === '-' ? undefined : path.dirname(path.resolve(cwd, dest));
}

/** Exit 2 for an output that takes one image when the build makes an index. */
export function onePlatformOnly(what: string): UsageError {
  return new UsageError(`${what} takes one platform; a build for several writes an image index`, 'use --output type=oci,dest=PATH[,tar=false] or --push, or build one platform');
}

/**
 * Writes the built index with imagetools create's writer (an OCI archive or
 * layout), which says what it wrote (and what docker load takes of an
 * archive); returns the index.
 */
export async function writeIndexFile(artifact: IndexArtifact, names: readonly string[], dest: string, tar: boolean, context: SinkContext, recordDir?: string): Promise<WrittenIndex> {
  const [{ createIndex }, { indexSource }] = await Promise.all([import('../imagetools/create.js'), import('../pipeline/index.js')]);
  const output = { type: 'oci' as const, dest, tar, shownAs: displayPath(dest, context.cwd) };
  const created = await createIndex({ tags: names, sources: [indexSource(artifact.index, 'the build')], output, onEvent: context.emit, ...(recordDir !== undefined ? { recordDir } : {}) });
  return { mediaType: created.mediaType, digest: created.digest, size: created.bytes.length };
}
