import { readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { LapinError, UsageError, formatPosition, type SourcePosition } from './errors.js';
import { openArchiveOutput, writeArchive, writeArchiveFile, type ArchiveFile } from './export/archive.js';
import { requireFreshDirectory, trackTemporary, untrackTemporary } from './export/atomic.js';
import { writeLayoutDirectory } from './export/layout-dir.js';
import { writeLocalDirectory } from './export/local-dir.js';
import type { PushOptions } from './registry/push.js';
import type { PullPolicy, PulledImage } from './registry/pull.js';
import { copySourceImages, imagesOf } from './plan/images.js';
import { addLinuxGuestParts } from './plan/linux-guest.js';
import { ExecutionNeeded } from './plan/execution.js';
import type { BuiltBase } from './builder/external.js';
import type { FsNode } from './image/tree.js';
import { DEFAULT_FILE_NAMES, compile, detectSyntax } from './frontends/index.js';
import { MAX_DEFINITION_BYTES, definitionTooLarge } from './frontends/limits.js';
import { withBunnyDefaults } from './frontends/containerfile.js';
import { BlobStore, type BlobTarget } from './image/blob-store.js';
import { applyCopy, type CopyEnvironment } from './image/copy.js';
import { loadContextIgnore, type ContextIgnore } from './image/dockerignore.js';
import { ImageFilesystem, treePath } from './image/filesystem.js';
import {
  MEDIA_TYPE_CONFIG,
  MEDIA_TYPE_MANIFEST,
  imageConfigJson,
  manifestJson,
  partitionLayers,
  type Descriptor,
  type Image,
  type Platform,
} from './image/image.js';
import { checkSourceDateEpoch } from './image/epoch.js';
import { readKernelInfo } from './image/kernel-arch.js';
import { sourceFilePath } from './image/layer-member.js';
import { applySolo5Notes, bufferReader, readSolo5Notes, readSolo5NotesFromFile } from './image/solo5.js';
import { tarSize, type Compression, type LayerBlob } from './image/layer.js';
import { LayerCache, defaultCacheDir, writeLayerCached } from './image/layer-cache.js';
import { formatReference, parseReference } from './image/reference.js';
import type { Finding } from './plan/rules.js';
import { FILE_KEYS } from './plan/rules.js';
import { finalizeMetadata } from './plan/finalize.js';
import type { UruncRelease } from './plan/releases.js';
import type { Architecture, BlockOp, BuildPlan, FsOp, InitrdOp, Syntax } from './plan/types.js';
import { URUNC_JSON_PATH, uruncJson } from './plan/urunc-json.js';
import { URUNC_KEYS } from './plan/urunc-keys.js';
import { resolveRootfsFile } from './rootfs/detect.js';
import { recordCompletedOutput, sweepStaleTemporaries, temporaryName, writeFileAtomically } from './temporaries.js';
import { writeRootfsImage } from './rootfs/image.js';
import { count, formatBytes } from './human.js';
import { makeDirectories } from './mkdirp.js';

/** Where a build's image goes (buildx's --output). */
export type OutputSpec =
  | { type: 'oci' | 'docker'; dest: string; tar?: boolean }
  | { type: 'local'; dest: string }
  /** Push to a registry under `names`, or every -t name when absent. */
  | { type: 'registry'; dest?: undefined; names?: string[] }
  /** Hand the image to a local engine (--load): docker's API socket, or containerd through ctr. */
  | { type: 'load'; dest?: undefined; engine: 'docker' | 'containerd'; namespace?: string; address?: string; snapshotter?: string };

export type BuildEvent =
  | { kind: 'step'; message: string }
  | { kind: 'warning'; message: string }
  /** Bytes of one layer written so far, out of about `total`. */
  | { kind: 'progress'; id: string; message: string; done: number; total: number }
  /** A long step with no byte count (mke2fs, cpio, a load) starts; `end` with the same id follows. */
  | { kind: 'begin'; id: string; message: string }
  | { kind: 'end'; id: string };

export interface BuildOptions {
  /** Build context directory; files are read only from inside it. Default ".". */
  context?: string;
  /** Definition file; looked up in the context when absent. */
  file?: string;
  syntax?: Syntax;
  /** Image names (NAME[:TAG]); args.nix may supply one. */
  tags?: string[];
  /** Default: an archive named after the image in the current directory. */
  outputs?: OutputSpec[];
  buildArgs?: Record<string, string>;
  /** The Containerfile stage to build (--target); later stages are not built. */
  target?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  /** "linux/amd64" or "linux/arm64". */
  platform?: string;
  /** Time written into layers and the config, in seconds; SOURCE_DATE_EPOCH or 0 by default. */
  sourceDateEpoch?: number;
  /** "warn" turns refusals under urunc's rules into warnings, for guests newer than lapin. */
  uruncChecks?: 'error' | 'warn';
  /** The urunc release whose rules are enforced (default: the newest, 0.8). */
  uruncVersion?: UruncRelease;
  compression?: Compression;
  compressionLevel?: number;
  /** Reuse layers whose inputs are unchanged (default true); see docs/performance.md. */
  cache?: boolean;
  /** Default: $LAPIN_CACHE_DIR, $XDG_CACHE_HOME/lapin or ~/.cache/lapin. */
  cacheDir?: string;
  /** Size in bytes of block rootfs images built from files; overrides rootfs.size. */
  rootfsSize?: number;
  /** Where `dest: "-"` archives go. */
  stdout?: Writable;
  /** Current directory for relative paths and default outputs. */
  cwd?: string;
  onEvent?: (event: BuildEvent) => void;
  /** Registry access for pushes and pulls: insecure hosts, credentials, retries, upload sizes. */
  registry?: PushOptions;
  /** Base images: pull when not cached (default), always, or never. */
  pull?: PullPolicy;
  /** The builder for Containerfiles with RUN (buildah, podman or docker); default the first installed. */
  builder?: string;
  /** A Containerfile's Linux guest: the image its kernel (/.boot/kernel) is copied from; default bunny's for the monitor. */
  kernelImage?: string;
  /** A Containerfile's Linux guest: the image its init (/urunit) is copied from; default bunny's urunit image. */
  initImage?: string;
}

export interface BuildResult {
  /** Manifest digest. */
  digest: string;
  configDigest: string;
  manifest: Descriptor;
  names: string[];
  platform: Platform;
  urunc: Record<string, string>;
  outputs: Array<{ type: string; dest: string }>;
  warnings: string[];
  syntax: Syntax;
  file: string;
  /** Where the definition file names the kernel (a bunnyfile's kernel.path), for errors about it. */
  kernelAt?: SourcePosition;
}

const PLATFORMS: Record<string, Architecture> = { 'linux/amd64': 'amd64', 'linux/arm64': 'arm64', 'linux/arm64/v8': 'arm64' };

/** Builds an image from a bunnyfile, Containerfile or args.nix and writes it to its outputs. */
export async function build(options: BuildOptions = {}): Promise<BuildResult> {
  const cleanups: Array<() => Promise<void>> = [];
  try {
    return await buildImage(options, cleanups);
  } finally {
    for (const cleanup of cleanups) await cleanup();
  }
}

async function buildImage(options: BuildOptions, cleanups: Array<() => Promise<void>>): Promise<BuildResult> {
  const cwd = options.cwd ?? process.cwd();
  const contextDir = path.resolve(cwd, options.context ?? '.');
  const warnings: string[] = [];
  const emit = (event: BuildEvent): void => {
    if (event.kind === 'warning') warnings.push(event.message);
    options.onEvent?.(event);
  };

  const contextStats = await stat(contextDir).catch(() => undefined);
  if (!contextStats?.isDirectory()) throw new UsageError(`build context ${contextDir} is not a directory`);
  const file = await locateDefinition(contextDir, options.file, cwd);
  const displayFile = displayPath(file, cwd);
  // Refused before it is read: a definition file is small (src/frontends/limits.ts).
  if (((await stat(file).catch(() => undefined))?.size ?? 0) > MAX_DEFINITION_BYTES) throw definitionTooLarge(displayFile);
  const text = await readFile(file, 'utf8').catch((error: unknown) => {
    throw new LapinError(`cannot read ${displayFile}: ${(error as Error).message}`);
  });
  const syntax = options.syntax ?? detectSyntax(displayFile, text);
  // As with buildx: --platform gives TARGETPLATFORM, TARGETARCH..., this machine BUILDPLATFORM... (src/frontends/platform-args.ts).
  const buildArgs = options.buildArgs ?? {};
  const platforms = { ...(options.platform ? { platform: options.platform } : {}), buildPlatform: `linux/${process.arch === 'x64' ? 'amd64' : process.arch}` };
  // RUN and the other instructions lapin does not apply itself: the Dockerfile part runs on a real builder.
  let builtBase: BuiltBase | undefined;
  const compiled = await compile(text, displayFile, syntax, buildArgs, { ...platforms, ...(options.target === undefined ? {} : { target: options.target }) }).catch(async (error: unknown) => {
    if (!(error instanceof ExecutionNeeded)) throw error;
    const external = await import('./builder/external.js');
    builtBase = await external.runOnBuilder(error, { file, context: contextDir, buildArgs: options.buildArgs ?? {}, ...(options.builder ? { builder: options.builder } : {}), ...(options.target ? { target: options.target } : {}), ...(options.platform ? { platform: options.platform } : {}), emit });
    cleanups.push(builtBase.cleanup);
    return external.packagingPlan(displayFile, builtBase.reference);
  });
  emit({ kind: 'step', message: `read ${displayFile} as ${syntax}${options.target === undefined ? '' : `, up to stage ${options.target}`}` });
  const ignore = await loadContextIgnore(contextDir, file, (p) => displayPath(p, cwd));
  if (ignore) emit({ kind: 'step', message: `excluding what ${ignore.file} names from the build context` });
  for (const warning of compiled.warnings ?? []) {
    emit({ kind: 'warning', message: `${warning.at ? `${formatPosition(warning.at)}: ` : ''}${warning.message}` });
  }
  // Registry images the plan reads (FROM, kernel.from, rootfs.from, COPY --from=IMAGE): pulled or found in
  // the cache. The registry code loads only then: it is a good part of start-up otherwise.
  let registry = imagesOf(compiled).length > 0 ? await loadRegistry() : undefined;
  const pullOptions = { ...options.registry, policy: options.pull ?? 'missing', ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}), ...(options.platform ? { platform: options.platform } : {}), onEvent: emit } as const;
  const pulled = new Map<string, PulledImage>(builtBase ? [[builtBase.reference, builtBase.image]] : []);
  if (registry) for (const [reference, image] of await registry.base.pullPlanImages(compiled, pullOptions, pulled)) pulled.set(reference, image);
  const finalBase = compiled.base.kind === 'image' ? pulled.get(compiled.base.reference) : undefined;
  const configBase = finalBase ?? (compiled.configFrom ? pulled.get(compiled.configFrom.value) : undefined);
  let inherited = registry ? registry.base.inheritBaseConfig(compiled, configBase) : compiled;
  // A builder's image carries the file's LABELs: bunny's defaults fill in what they leave out.
  if (builtBase) inherited = { ...inherited, urunc: withBunnyDefaults(inherited.urunc) };
  // A rootfs image's own urunc values do not describe the image made out of it.
  const guest = addLinuxGuestParts(configBase === finalBase ? inherited : { ...inherited, urunc: compiled.urunc }, options);
  const plan = guest.plan;
  if (guest.parts.length > 0) {
    for (const part of guest.parts) emit({ kind: 'step', message: `Linux guest: ${part.role} ${part.path} from ${part.image} (${part.chosenBy})` });
    registry ??= await loadRegistry();
    const more = await registry.base.pullPlanImages(plan, pullOptions, pulled).catch((error: unknown) => {
      throw error instanceof LapinError && error.at === undefined
        ? new LapinError(error.message, { hint: `${error.hint ? `${error.hint}; ` : ''}--kernel-image and --init-image (or LABEL lapin.kernel-image, lapin.init-image, bunny.urunit=false) choose other images` })
        : error;
    });
    for (const [reference, image] of more) pulled.set(reference, image);
  }

  const names = imageNames(plan, options.tags ?? []);
  const mtime = options.sourceDateEpoch !== undefined ? checkSourceDateEpoch(options.sourceDateEpoch, `sourceDateEpoch ${options.sourceDateEpoch}`) : sourceDateEpochFromEnv();
  // A local rootfs file's kind (initrd or block) decides urunc values, so it is read before they are final.
  const rootfsDecision = await resolveRootfsFile(plan, contextDir);
  if (rootfsDecision) {
    emit({ kind: 'step', message: rootfsDecision.message });
    if (rootfsDecision.warning) emit({ kind: 'warning', message: rootfsDecision.warning });
  }
  const metadata = finalizeMetadata(plan, {
    ...(options.annotations ? { annotations: options.annotations } : {}),
    ...(options.labels ? { labels: options.labels } : {}),
  }, options.uruncVersion);
  const findings: Finding[] = [...metadata.findings];

  const outputs = options.outputs && options.outputs.length > 0 ? options.outputs : [defaultOutput(names, cwd)];
  await checkOutputs(outputs, cwd, options.stdout !== undefined, names);

  // Temporaries left by builds killed with SIGKILL (or a power loss): their owners are gone.
  await sweepStaleTemporaries(temporaryDirs(outputs, cwd, options));
  const staging = path.join(os.tmpdir(), temporaryName('lapin-'));
  trackTemporary(staging);
  let direct: ArchiveFile | undefined;
  const written: Array<{ type: string; dest: string }> = [];
  let current: OutputSpec | undefined;
  try {
    await makeDirectories(staging);
    const baseNodes = new Set<FsNode>();
    const rootfs = await assembleFilesystem(plan, { contextDir, ...(ignore ? { ignore } : {}), mtime, staging, ...(options.rootfsSize !== undefined ? { rootfsSize: options.rootfsSize } : {}), emit, pulled, ...(registry ? { registry } : {}), baseNodes });
    if (rootfs.get(URUNC_JSON_PATH)) emit({ kind: 'warning', message: '/urunc.json from the input is replaced by the one lapin writes' });
    // A Solo5 kernel's manifest names its devices; urunc's names must match (before urunc.json is written).
    const kernelNode = metadata.urunc.binary === undefined ? undefined : rootfs.resolve(metadata.urunc.binary);
    if (kernelNode?.type === 'file') {
      const notes = kernelNode.source.kind === 'bytes' ? readSolo5Notes(bufferReader(Buffer.from(kernelNode.source.data))) : readSolo5NotesFromFile(await sourceFilePath(kernelNode.source));
      const solo5 = applySolo5Notes(notes, metadata, URUNC_KEYS, options.uruncVersion);
      for (const message of solo5.steps) emit({ kind: 'step', message });
      for (const message of solo5.warnings) emit({ kind: 'warning', message });
    }
    const urunc = uruncJson(metadata.urunc);
    rootfs.put({ type: 'file', path: URUNC_JSON_PATH, mode: 0o644, uid: 0, gid: 0, mtime, size: urunc.length, source: { kind: 'bytes', data: urunc } });

    for (const key of FILE_KEYS) {
      const value = metadata.urunc[key];
      if (value === undefined) continue;
      const node = rootfs.resolve(value);
      if (node?.type !== 'file') {
        const at = metadata.uruncAt[key];
        findings.push({
          severity: 'error',
          message: `com.urunc.unikernel.${key} names ${value}, which ${node ? 'is not a regular file' : 'is not in the image'}`,
          ...(at ? { at } : {}),
          hint: 'copy the file there, or point the value at where it is',
        });
      }
    }

    const platform = await decidePlatform(plan, options.platform, rootfs, metadata.urunc.binary, emit);
    reportFindings(findings, options.uruncChecks ?? 'error', emit);

    const store = new BlobStore(path.join(staging, 'blobs'));
    // A lone archive output takes the layers as they are made, with no staging copy (docs/performance.md).
    const archiveRecords = options.cache === false ? undefined : (options.cacheDir ?? defaultCacheDir());
    direct = await openArchiveOutput(outputs, cwd, mtime, archiveRecords);
    const image = await writeImage({ plan, rootfs, metadata, store, target: direct ?? store, platform, names, mtime, options, emit, staging, ...(finalBase && registry ? { base: { name: finalBase.reference.display, layers: registry.base.baseLayers(finalBase) } } : {}), baseNodes });

    for (const output of outputs) {
      current = output;
      if (output.type === 'registry') {
        // Loaded only to push: the registry client is a good part of lapin's start-up otherwise.
        const { pushToRegistry } = await import('./export/registry.js');
        const pushed = await pushToRegistry(image, output.names ?? names, { ...options.registry, onEvent: emit });
        for (const item of pushed) {
          written.push({ type: 'registry', dest: item.name });
          recordCompletedOutput(`pushed ${item.name}`);
          emit({ kind: 'step', message: `pushed ${item.name}@${item.digest}` });
        }
        continue;
      }
      if (output.type === 'load') {
        const { loadImage } = await import('./export/load.js');
        emit({ kind: 'begin', id: `load ${output.engine}`, message: `loading into ${output.engine}` });
        const loaded = await loadImage(image, output, mtime).finally(() => emit({ kind: 'end', id: `load ${output.engine}` }));
        const where = loaded.namespace !== undefined ? `${loaded.engine} (namespace ${loaded.namespace})` : loaded.engine;
        for (const name of loaded.names) {
          written.push({ type: 'load', dest: `${loaded.engine}:${name}` });
          recordCompletedOutput(`loaded into ${where} as ${name}`);
          emit({ kind: 'step', message: `loaded into ${where} as ${name}` });
        }
        continue;
      }
      const dest = output.dest === '-' ? '-' : path.resolve(cwd, output.dest);
      let unchanged = false;
      const writing = `write ${written.length} ${dest}`;
      emit({ kind: 'begin', id: writing, message: `writing ${describeOutput(output)} to ${dest === '-' ? 'stdout' : displayPath(dest, cwd)}` });
      try {
        if (output.type === 'local') {
          await writeLocalDirectory(rootfs.list(), dest);
        } else if (output.tar === false) {
          await writeLayoutDirectory(image, dest);
        } else if (dest === '-') {
          await writeArchive(image, options.stdout as Writable, mtime);
        } else if (direct) {
          const rewritten = await direct.finish(image);
          unchanged = !rewritten;
        } else {
          await writeArchiveFile(image, dest, mtime);
        }
      } finally {
        emit({ kind: 'end', id: writing });
      }
      written.push({ type: output.type, dest });
      recordCompletedOutput(dest === '-' ? 'written to stdout' : displayPath(dest, cwd));
      // A cache hit says so in its one line instead of "wrote".
      if (unchanged) emit({ kind: 'step', message: `${displayPath(dest, cwd)} already holds this image, unchanged since lapin wrote it` });
      else emit({ kind: 'step', message: `wrote ${describeOutput(output)} to ${dest === '-' ? 'stdout' : displayPath(dest, cwd)}` });
    }

    return {
      digest: image.manifest.digest,
      configDigest: image.config.digest,
      manifest: image.manifest,
      names,
      platform,
      urunc: metadata.urunc,
      outputs: written,
      warnings,
      syntax,
      file: displayFile,
      ...(compiled.urunc.binary?.at ? { kernelAt: compiled.urunc.binary.at } : {}),
    };
  } catch (error) {
    // A later output failed: say which outputs are complete, not that all was removed.
    throw current !== undefined && written.length > 0 ? partialOutputError(error, current, written, cwd) : error;
  } finally {
    await direct?.abort();
    await rm(staging, { recursive: true, force: true });
    untrackTemporary(staging);
  }
}

type RegistryModules = { base: typeof import('./registry/base.js'); extract: typeof import('./registry/extract.js') };

async function loadRegistry(): Promise<RegistryModules> {
  const [base, extract] = await Promise.all([import('./registry/base.js'), import('./registry/extract.js')]);
  return { base, extract };
}

async function locateDefinition(contextDir: string, file: string | undefined, cwd: string): Promise<string> {
  if (file !== undefined) {
    const resolved = path.resolve(cwd, file);
    const stats = await stat(resolved).catch(() => undefined);
    if (!stats) throw new LapinError(`definition file ${file} not found`, { hint: 'check the -f path; it is relative to the current directory' });
    if (!stats.isFile()) throw new LapinError(`definition file ${file} is not a file`);
    return resolved;
  }
  for (const name of DEFAULT_FILE_NAMES) {
    const candidate = path.join(contextDir, name);
    if ((await stat(candidate).catch(() => undefined))?.isFile()) return candidate;
  }
  throw new LapinError(`no ${DEFAULT_FILE_NAMES.join(', ')} in ${contextDir}`, { hint: 'pass -f FILE' });
}

function sourceDateEpochFromEnv(): number {
  const raw = process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return 0;
  if (!/^\d+$/.test(raw)) throw new UsageError(`SOURCE_DATE_EPOCH=${raw} is not a number of seconds`);
  return checkSourceDateEpoch(Number(raw), `SOURCE_DATE_EPOCH=${raw.length > 40 ? `${raw.slice(0, 40)}...` : raw}`);
}

function imageNames(plan: BuildPlan, tags: string[]): string[] {
  const given = [...tags];
  if (given.length === 0 && plan.name) given.push(plan.tag ? `${plan.name.value}:${plan.tag.value}` : plan.name.value);
  const names: string[] = [];
  for (const tag of given) {
    let reference;
    try {
      reference = parseReference(tag);
    } catch (error) {
      if (plan.name && tags.length === 0 && error instanceof LapinError) {
        throw new LapinError(error.message, { ...(plan.name.at ? { at: plan.name.at } : {}), ...(error.hint ? { hint: error.hint } : {}) });
      }
      throw error;
    }
    const name = formatReference(reference);
    if (!names.includes(name)) names.push(name);
  }
  return names;
}

interface AssembleContext {
  contextDir: string;
  ignore?: ContextIgnore;
  mtime: number;
  staging: string;
  /** --rootfs-size: overrides the size of block images built from files. */
  rootfsSize?: number;
  emit?: (event: BuildEvent) => void;
  /** Pulled registry images by reference, and the final base's nodes (kept out of new layers). */
  pulled?: ReadonlyMap<string, PulledImage>;
  /** Loaded when the plan reads registry images. */
  registry?: RegistryModules;
  baseNodes?: Set<FsNode>;
}

function requireRegistry(context: AssembleContext): RegistryModules {
  if (!context.registry) throw new LapinError('internal: registry code was not loaded for a pulled image');
  return context.registry;
}

/** Runs the plan's stages and final operations into an in-memory tree. */
async function assembleFilesystem(plan: BuildPlan, context: AssembleContext): Promise<ImageFilesystem> {
  const stages = new Map<string, ImageFilesystem>();
  const env: CopyEnvironment = { contextDir: context.contextDir, stages, mtime: context.mtime, ...(context.ignore ? { ignore: context.ignore } : {}) };
  const baseData = path.join(context.staging, 'base');
  const copiedImages = copySourceImages(plan);
  for (const [reference, image] of context.pulled ?? []) {
    // COPY --from=IMAGE reads the image's files like a stage's.
    if (!copiedImages.has(reference)) continue;
    const fs = new ImageFilesystem({ mtime: context.mtime });
    await requireRegistry(context).base.seedFilesystem(fs, image, baseData);
    stages.set(reference, fs);
  }
  for (const [index, stage] of plan.stages.entries()) {
    const fs = new ImageFilesystem({ mtime: context.mtime });
    const stageBase = stage.base.kind === 'image' ? context.pulled?.get(stage.base.reference) : undefined;
    if (stageBase) await requireRegistry(context).base.seedFilesystem(fs, stageBase, baseData);
    await applyOps(fs, stage.ops, env, context);
    stages.set(String(index), fs);
    if (stage.name) stages.set(stage.name, fs);
  }
  const rootfs = new ImageFilesystem({ mtime: context.mtime });
  const finalBase = plan.base.kind === 'image' ? context.pulled?.get(plan.base.reference) : undefined;
  if (finalBase) for (const node of await requireRegistry(context).base.seedFilesystem(rootfs, finalBase, baseData)) context.baseNodes?.add(node);
  await applyOps(rootfs, plan.ops, env, context);
  return rootfs;
}

async function applyOps(target: ImageFilesystem, ops: FsOp[], env: CopyEnvironment, context: AssembleContext): Promise<void> {
  for (const op of ops) {
    if (op.kind === 'copy') await applyCopy(target, op, env);
    else if (op.kind === 'block') await applyBlock(target, op, env, context);
    else await applyInitrd(target, op, env, context);
  }
}

/** A rootfs file's tree: the op's registry image flattened (whiteouts applied) when it names one, then its entries on top. */
async function rootfsTree(op: InitrdOp | BlockOp, env: CopyEnvironment, context: AssembleContext): Promise<ImageFilesystem> {
  const tree = new ImageFilesystem({ mtime: context.mtime });
  let fromImage: Set<FsNode> | undefined;
  if (op.baseImage !== undefined) {
    const image = context.pulled?.get(op.baseImage.value);
    if (!image) throw new LapinError(`internal: ${op.baseImage.value} was not pulled`);
    fromImage = await requireRegistry(context).base.seedFilesystem(tree, image, path.join(context.staging, 'base'));
  }
  for (const entry of op.entries) await applyCopy(tree, entry, env);
  if (fromImage) requireRegistry(context).extract.relinkHardlinks(tree, fromImage);
  return tree;
}

/** Builds a newc initrd from the op's image and entries and places it in the image. */
async function applyInitrd(target: ImageFilesystem, op: InitrdOp, env: CopyEnvironment, context: AssembleContext): Promise<void> {
  const initrd = await rootfsTree(op, env, context);
  const id = `initrd ${op.destination}`;
  context.emit?.({ kind: 'begin', id, message: `writing initrd rootfs ${op.destination} (cpio, ${count(initrd.size, 'entry', 'entries')})` });
  const { file, size } = await writeRootfsImage(initrd, { kind: 'initrd' }, context);
  context.emit?.({ kind: 'end', id });
  context.emit?.({ kind: 'step', message: `initrd rootfs ${op.destination}: ${count(initrd.size, 'entry', 'entries')}, ${formatBytes(size)}${op.baseImage ? `, from ${op.baseImage.value}` : ''}` });
  target.put(
    { type: 'file', path: treePath(op.destination), mode: 0o644, uid: 0, gid: 0, mtime: context.mtime, size, source: { kind: 'path', path: file } },
    op.at,
  );
}

/** Builds an ext image from the op's image and entries (e2fsprogs) and places it in the image. */
async function applyBlock(target: ImageFilesystem, op: BlockOp, env: CopyEnvironment, context: AssembleContext): Promise<void> {
  const tree = await rootfsTree(op, env, context);
  const size = context.rootfsSize ?? op.size?.value;
  let written;
  const id = `block ${op.destination}`;
  context.emit?.({ kind: 'begin', id, message: `writing block rootfs ${op.destination} (mke2fs, ${op.filesystem}, ${count(tree.size, 'entry', 'entries')})` });
  try {
    written = await writeRootfsImage(tree, { kind: 'block', filesystem: op.filesystem, ...(size !== undefined ? { size } : {}) }, context);
  } catch (error) {
    // Size problems point at rootfs.size when the file gave it.
    const at = context.rootfsSize === undefined ? (op.size?.at ?? op.at) : undefined;
    if (error instanceof LapinError && error.at === undefined && at !== undefined) {
      throw new LapinError(error.message, { at, exitCode: error.exitCode, ...(error.hint ? { hint: error.hint } : {}) });
    }
    throw error;
  } finally {
    context.emit?.({ kind: 'end', id });
  }
  context.emit?.({ kind: 'step', message: `block rootfs ${op.destination}: ${op.filesystem}, ${count(tree.size, 'entry', 'entries')}, ${formatBytes(written.size)}${op.baseImage ? `, from ${op.baseImage.value}` : ''}` });
  target.put(
    { type: 'file', path: treePath(op.destination), mode: 0o644, uid: 0, gid: 0, mtime: context.mtime, size: written.size, source: { kind: 'path', path: written.file } },
    op.at,
  );
}

async function decidePlatform(
  plan: BuildPlan,
  requested: string | undefined,
  rootfs: ImageFilesystem,
  binary: string | undefined,
  emit: (event: BuildEvent) => void,
): Promise<Platform> {
  let flagArchitecture: Architecture | undefined;
  if (requested !== undefined) {
    flagArchitecture = PLATFORMS[requested];
    if (!flagArchitecture) throw new UsageError(`unsupported platform ${requested}`, `use ${Object.keys(PLATFORMS).slice(0, 2).join(' or ')}`);
  }
  const declared = plan.architecture;
  if (flagArchitecture && declared && declared.value !== flagArchitecture) {
    throw new LapinError(`--platform ${requested} contradicts architecture ${declared.value} in the file`, {
      ...(declared.at ? { at: declared.at } : {}),
      hint: 'drop one of them',
    });
  }
  const chosen = flagArchitecture ?? declared?.value;
  let detected: string | undefined;
  const kernel = binary === undefined ? undefined : rootfs.resolve(binary);
  if (kernel?.type === 'file' && kernel.source.kind !== 'bytes') {
    const info = await readKernelInfo(await sourceFilePath(kernel.source));
    detected = info.architecture;
    if (detected !== undefined) emit({ kind: 'step', message: `kernel ${binary}: ${info.detail}` });
  }
  if (chosen !== undefined) {
    if (detected !== undefined && detected !== chosen) {
      const where = declared?.at ? `${formatPosition(declared.at)}: ` : '';
      emit({ kind: 'warning', message: `${where}the kernel is built for ${detected} but the image is declared ${chosen}` });
    }
    return { os: 'linux', architecture: chosen };
  }
  if (detected === 'amd64' || detected === 'arm64') return { os: 'linux', architecture: detected };
  return { os: 'linux', architecture: 'amd64' };
}

function reportFindings(findings: Finding[], mode: 'error' | 'warn', emit: (event: BuildEvent) => void): void {
  const describe = (f: Finding): string => `${f.at ? `${formatPosition(f.at)}: ` : ''}${f.message}${f.hint ? ` (${f.hint})` : ''}`;
  const errors = findings.filter((f) => f.severity === 'error');
  for (const f of findings) {
    if (f.severity === 'warning' || mode === 'warn') emit({ kind: 'warning', message: describe(f) });
  }
  if (errors.length > 0 && mode === 'error') {
    const [first, ...rest] = errors;
    const f = first as Finding;
    const more = rest.length > 0 ? `\n${rest.map(describe).join('\n')}` : '';
    throw new LapinError(`${f.message}${more}`, {
      ...(f.at ? { at: f.at } : {}),
      hint: `${f.hint ? `${f.hint}; ` : ''}--urunc-checks=warn builds it anyway`,
    });
  }
}

interface WriteImageInput {
  plan: BuildPlan;
  rootfs: ImageFilesystem;
  metadata: ReturnType<typeof finalizeMetadata>;
  store: BlobStore;
  /** Where blobs are written: `store`, or the output archive itself. */
  target: BlobTarget;
  platform: Platform;
  names: string[];
  mtime: number;
  options: BuildOptions;
  emit: (event: BuildEvent) => void;
  /** Files lapin made under here are new each build: the cache keys them on content. */
  staging: string;
  /** The pulled base image: its layers go first, and its nodes (baseNodes) stay out of the new layers. */
  base?: { name: string; layers: ReturnType<RegistryModules['base']['baseLayers']> };
  baseNodes?: ReadonlySet<FsNode>;
}

/** The layer cache, or none when it is turned off or cannot be created. */
async function openLayerCache(options: BuildOptions, emit: (event: BuildEvent) => void): Promise<LayerCache | undefined> {
  if (options.cache === false) return undefined;
  const cache = new LayerCache(options.cacheDir ?? defaultCacheDir(), { onWarning: (message) => emit({ kind: 'warning', message }) });
  try {
    await makeDirectories(path.join(cache.blobs.dir, 'sha256'));
    return cache;
  } catch (error) {
    cache.turnOff(error);
    return undefined;
  }
}

async function writeImage(input: WriteImageInput): Promise<Image> {
  const { rootfs, metadata, store, target, platform, names, mtime, options } = input;
  // The file a value names, through symlinks, is what the guest boots.
  const pathsOf = (keys: readonly string[]): string[] =>
    keys
      .map((k) => metadata.urunc[k])
      .filter((v): v is string => v !== undefined)
      .flatMap((v) => [treePath(v), rootfs.resolve(v)?.path].filter((p): p is string => p !== undefined));
  const baseNodes = input.baseNodes ?? new Set<FsNode>();
  const contents = partitionLayers(rootfs.list().filter((node) => !baseNodes.has(node)), {
    kernel: pathsOf(['binary']),
    rootfs: pathsOf(['initrd', 'block']),
    metadata: [URUNC_JSON_PATH],
  });
  const layers: LayerBlob[] = [];
  const inherited = input.base?.layers ?? [];
  for (const layer of inherited) {
    await target.addFile(layer.digest, layer.size, layer.file);
    layers.push({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size, diffId: layer.diffId });
  }
  const cache = await openLayerCache(options, input.emit);
  for (const [index, content] of contents.entries()) {
    const total = tarSize(content.nodes);
    const progress = (done: number): void =>
      input.emit({ kind: 'progress', id: `layer-${index}`, message: `layer ${content.description}`, done, total });
    const layerOptions = {
      compression: options.compression ?? 'gzip',
      ...(options.compressionLevel !== undefined ? { level: options.compressionLevel } : {}),
      onProgress: progress,
    };
    const layer = await writeLayerCached(content.nodes, target, layerOptions, cache, [input.staging]);
    layers.push({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size, diffId: layer.diffId });
    const from = layer.cached ? ', cached' : '';
    input.emit({ kind: 'step', message: `layer ${content.description}: ${layer.digest} (${formatBytes(layer.size)}${from})` });
  }
  const created = new Date(mtime * 1000).toISOString().replace(/\.000Z$/, 'Z');
  const configBytes = imageConfigJson({
    platform,
    created,
    config: metadata.config,
    diffIds: layers.map((l) => l.diffId),
    history: [...inherited.map((_, i) => `lapin: layer ${i + 1} of ${input.base?.name ?? 'the base'}`), ...contents.map((c) => `lapin: ${c.description}`)],
  });
  const configBlob = await target.putBytes(configBytes);
  const config: Descriptor = { mediaType: MEDIA_TYPE_CONFIG, ...configBlob };
  const manifestBytes = manifestJson(config, layers, metadata.annotations);
  const manifestBlob = await target.putBytes(manifestBytes);
  return { store, manifest: { mediaType: MEDIA_TYPE_MANIFEST, ...manifestBlob }, config, layers, platform, names };
}

/** Where this build's temporaries (and those of killed builds before it) live. */
function temporaryDirs(outputs: OutputSpec[], cwd: string, options: BuildOptions): string[] {
  const dirs = [os.tmpdir()];
  if (options.cache !== false) {
    const cache = new LayerCache(options.cacheDir ?? defaultCacheDir());
    dirs.push(path.join(cache.blobs.dir, 'sha256'), ...cache.recordDirs());
  }
  for (const output of outputs) {
    if (output.dest !== undefined && output.dest !== '-') dirs.push(path.dirname(path.resolve(cwd, output.dest)));
  }
  return dirs;
}

/** Finds unusable outputs before any work is done. */
async function checkOutputs(outputs: OutputSpec[], cwd: string, haveStdout: boolean, names: string[]): Promise<void> {
  for (const output of outputs) {
    if (output.type === 'registry') {
      if ((output.names ?? names).length === 0) throw new UsageError('pushing needs an image name', 'add -t REGISTRY/NAME:TAG');
      continue;
    }
    if (output.type === 'load') {
      if (output.engine === 'containerd' && names.length === 0) throw new UsageError('--load=containerd needs an image name', 'add -t NAME[:TAG]');
      await (await import('./export/load.js')).checkLoadTarget(output);
      continue;
    }
    const isDirectory = output.type === 'local' || output.tar === false;
    if (output.dest === '-') {
      if (isDirectory) throw new UsageError(`${output.type === 'local' ? 'type=local' : 'tar=false'} needs a directory as dest, not -`);
      if (!haveStdout) throw new UsageError('dest=- needs a stdout stream');
      continue;
    }
    const dest = path.resolve(cwd, output.dest);
    const parent = await stat(path.dirname(dest)).catch(() => undefined);
    if (!parent?.isDirectory()) throw new LapinError(`cannot write ${output.dest}: ${path.dirname(dest)} is not a directory`, { hint: 'create it first' });
    if (isDirectory) await requireFreshDirectory(dest);
    else if ((await stat(dest).catch(() => undefined))?.isDirectory()) {
      throw new LapinError(`cannot write the archive to ${output.dest}: it is a directory`, { hint: 'name a file, e.g. image.tar, or add tar=false' });
    }
  }
}

function describeOutput(output: OutputSpec): string {
  if (output.type === 'registry') return 'registry';
  if (output.type === 'load') return output.engine;
  if (output.type === 'local') return 'rootfs directory';
  return output.tar === false ? 'OCI layout directory' : `${output.type} archive`;
}

/** Relative to cwd when inside it, absolute otherwise. */
function displayPath(p: string, cwd: string): string {
  const relative = path.relative(cwd, p);
  return relative === '' || relative.startsWith('..') ? p : relative;
}

function defaultOutput(names: string[], cwd: string): OutputSpec {
  const first = names[0];
  if (first === undefined) return { type: 'oci', dest: path.join(cwd, 'image.tar') };
  const ref = parseReference(first);
  const repo = ref.path.split('/').at(-1) as string;
  return { type: 'oci', dest: path.join(cwd, `${repo}-${ref.tag}.tar`) };
}

/** Writes buildx-style build metadata (through a flushed temporary and a rename). */
export async function writeMetadataFile(file: string, result: BuildResult): Promise<void> {
  const document = {
    'containerimage.digest': result.digest,
    'containerimage.config.digest': result.configDigest,
    'containerimage.descriptor': { ...result.manifest, platform: result.platform },
    'image.name': result.names.join(','),
  };
  try {
    await writeFileAtomically(path.resolve(file), `${JSON.stringify(document, null, 2)}\n`);
  } catch (error) {
    const done = result.outputs.map((o) => describeWritten(o)).join(', ');
    throw new LapinError(`cannot write the metadata file ${file} (${reasonOf(error)}); the image itself is complete${done ? `: ${done}` : ''}`, {
      hint: 'fix the metadata path or free space, and build again to write it',
    });
  }
}

function reasonOf(error: unknown): string {
  if (error instanceof LapinError) return error.describe();
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return 'no space left on the device';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'no such directory';
  return (error as Error).message;
}

function describeWritten(output: { type: string; dest: string }): string {
  if (output.type === 'registry') return `pushed ${output.dest}`;
  if (output.type === 'load') return `loaded into ${output.dest}`;
  return output.dest === '-' ? 'written to stdout' : `${output.dest}`;
}

/** A later output failed: that one is gone, the earlier ones are complete and stay. */
function partialOutputError(error: unknown, output: OutputSpec, written: Array<{ type: string; dest: string }>, cwd: string): LapinError {
  const failed = output.dest !== undefined && output.dest !== '-' ? ` ${displayPath(path.resolve(cwd, output.dest), cwd)}` : '';
  const done = written.map((o) => (o.type === 'registry' || o.type === 'load' ? describeWritten(o) : displayPath(o.dest, cwd))).join(', ');
  return new LapinError(`writing the ${describeOutput(output)}${failed} failed (${reasonOf(error)}); nothing of it was left, and the earlier output${written.length > 1 ? 's are' : ' is'} complete and kept: ${done}`, {
    hint: 'fix that output and build again',
  });
}
