/**
 * build(): the pipeline, stage by stage (docs/architecture.md):
 *
 *   options → definition → per platform (compile → pull bases → assemble →
 *   write image) → index (with `platforms`) → sinks
 *
 * Each stage is a module under pipeline/ with a typed hand-off; the sinks
 * (export/sink.ts, one file each) are checked before any work and take
 * the image and its names.
 */
import path from 'node:path';
import type { SourcePosition } from './errors.js';
import { LapinError, UsageError } from './errors.js';
import { writeToSinks, type ArtifactShape, type Sink, type SinkContext } from './export/sink.js';
import { openSink } from './export/sinks/index.js';
import { BlobStore, type BlobTarget } from './image/blob-store.js';
import type { ContextIgnore } from './image/dockerignore.js';
import { builtImage, type Image } from './image/image.js';
import { formatReference, parseReference } from './image/reference.js';
import type { ImageIndexModel } from './image/model.js';
import { makeDirectories } from './mkdirp.js';
import { assemble, settleMetadata, type AssembledImage, type SettledMetadata, type StrictKernel } from './pipeline/assemble.js';
import { pullBases, type Bases } from './pipeline/bases.js';
import { compileDefinition, reportPlanWarnings } from './pipeline/compile.js';
import { readContextIgnore, readDefinition, type Definition } from './pipeline/definition.js';
import { imageNames, outputsOf, resolveSettings, sourceDateEpoch, type BuildSettings } from './pipeline/options.js';
import { indexOfImages } from './pipeline/index.js';
import { checkBuildPlatform, checkPlatformList, formatPlatform } from './pipeline/platform.js';
import { openStaging, type Staging } from './pipeline/staging.js';
import type { BuildOptions, BuildResult, IndexBuildResult, OutputSpec } from './pipeline/types.js';
import { writeImage } from './pipeline/write.js';

export type { BuildEvent, BuildOptions, BuildResult, IndexBuildResult, OutputSpec } from './pipeline/types.js';
export { checkMetadataFile, writeMetadataFile } from './pipeline/metadata.js';

/**
 * Builds an image from a bunnyfile, Containerfile or args.nix and writes it
 * to its outputs; with `platforms`, one image per platform and an image
 * index over them.
 */
export async function build(options: BuildOptions & { platforms: readonly string[] }): Promise<IndexBuildResult>;
export async function build(options?: BuildOptions): Promise<BuildResult>;
export async function build(options: BuildOptions = {}): Promise<BuildResult | IndexBuildResult> {
  const settings = await resolveSettings(options);
  try {
    return options.platforms === undefined ? await buildImage(settings) : await buildIndex(settings, options.platforms);
  } finally {
    for (const cleanup of settings.cleanups) await cleanup();
  }
}

async function buildImage(settings: BuildSettings): Promise<BuildResult> {
  const { options, cwd, emit } = settings;
  const definition = await readDefinition(settings);
  // As buildx: "aarch64", "linux/arm64/v8" and "LINUX/ARM64" are linux/arm64 for every stage (pipeline/platform.ts).
  const platform = options.platform === undefined ? undefined : checkBuildPlatform(options.platform);
  const prepared = await preparePlatform(definition, settings, platform, () => readContextIgnore(settings, definition));
  const names = imageNames(prepared.bases.plan, options.tags ?? []);
  const mtime = sourceDateEpoch(options);
  const settled = await settleMetadata(prepared.bases.plan, settings);
  const sinks = await openSinks(outputsOf(options, names, cwd), settings, names);
  const staging = await openStaging(sinks, settings);
  try {
    const store = new BlobStore(path.join(staging.dir, 'blobs'));
    // A lone archive output takes the layers as they are made, with no staging copy (docs/performance.md).
    const only = sinks.length === 1 ? sinks[0] : undefined;
    const target = async (): Promise<BlobTarget> => (await only?.openStream?.(mtime, settings.cacheDir)) ?? store;
    const built = await producePlatform({ ...prepared, settled }, settings, { mtime, staging: staging.dir, store, target });
    const context: SinkContext = { cwd, mtime, emit, ...(options.stdout ? { stdout: options.stdout } : {}), ...(options.registry ? { registry: options.registry } : {}), written: [] };
    await writeToSinks(sinks, { kind: 'image', image: builtImage(built.image), rootfs: () => built.assembled.rootfs.list() }, names, context);
    return {
      digest: built.image.manifest.digest,
      configDigest: built.image.config.digest,
      manifest: built.image.manifest,
      names: reportedNames(names, options.outputs),
      platform: built.assembled.platform,
      urunc: settled.metadata.urunc,
      outputs: context.written,
      warnings: settings.warnings,
      syntax: definition.syntax,
      file: definition.displayFile,
      ...(prepared.kernelAt ? { kernelAt: prepared.kernelAt } : {}),
    };
  } finally {
    for (const sink of sinks) await sink.close?.();
    await staging.remove();
  }
}

/**
 * Several platforms: each one compiled, pulled, assembled and written into
 * one store (a layer two platforms share is stored once), then the index
 * over them goes to the sinks.
 */
async function buildIndex(settings: BuildSettings, given: readonly string[]): Promise<IndexBuildResult> {
  const { options, cwd, emit } = settings;
  const platforms = checkPlatformList(given);
  if (options.platform !== undefined) throw new UsageError('give platform or platforms, not both');
  const definition = await readDefinition(settings);
  let ignore: Promise<ContextIgnore | undefined> | undefined;
  const readIgnore = (): Promise<ContextIgnore | undefined> => (ignore ??= readContextIgnore(settings, definition));
  let opened: { names: string[]; mtime: number; sinks: Sink[]; staging: Staging; store: BlobStore } | undefined;
  try {
    const builds: Array<BuiltPlatform & { settled: SettledMetadata }> = [];
    for (const [i, platform] of platforms.entries()) {
      emit({ kind: 'step', message: `building ${platform}` });
      const prepared = await preparePlatform(definition, settings, platform, readIgnore);
      // The names and outputs come from the first platform's plan; they are checked before its files are assembled.
      const names = opened?.names ?? imageNames(prepared.bases.plan, options.tags ?? []);
      const mtime = opened?.mtime ?? sourceDateEpoch(options);
      const settled = await settleMetadata(prepared.bases.plan, settings);
      if (!opened) {
        const sinks = await openSinks(outputsOf(options, names, cwd), settings, names, { kind: 'index', platforms });
        if (options.strategy !== undefined && !sinks.some((s) => s.output.type === 'registry')) {
          throw new UsageError('--strategy says what to do with the index already at the -t name in a registry', 'add --push');
        }
        const staging = await openStaging(sinks, settings);
        opened = { names, mtime, sinks, staging, store: new BlobStore(path.join(staging.dir, 'blobs')) };
      }
      const { store } = opened;
      // Each platform's own temporaries (pulled data, rootfs images); the store is shared.
      const staging = path.join(opened.staging.dir, String(i));
      await makeDirectories(staging);
      const built = await producePlatform({ ...prepared, settled }, settings, { mtime, staging, store, target: async () => store, strictKernel: { file: definition.displayFile, syntax: definition.syntax, ...(prepared.kernelAt ? { at: prepared.kernelAt } : {}) } });
      builds.push({ ...built, settled });
    }
    if (!opened) throw new LapinError('internal: no platform was built');
    const { names, mtime, sinks } = opened;
    const index = await indexOfImages(builds.map((b) => builtImage(b.image)), 'the build');
    const context: SinkContext = { cwd, mtime, emit, ...(options.stdout ? { stdout: options.stdout } : {}), ...(options.registry ? { registry: options.registry } : {}), written: [], ...(settings.cacheDir !== undefined ? { recordDir: settings.cacheDir } : {}) };
    await writeToSinks(sinks, { kind: 'index', index, ...(options.strategy ? { strategy: options.strategy } : {}) }, names, context);
    // No index sink (only --load): the index the sinks would have written.
    const written = context.index ?? (await indexDescriptor(index));
    const file = definition.displayFile;
    return {
      digest: written.digest,
      index: written,
      platforms: builds.map((b) => formatPlatform(b.assembled.platform)),
      builds: builds.map((b) => ({ digest: b.image.manifest.digest, configDigest: b.image.config.digest, manifest: b.image.manifest, names, platform: b.assembled.platform, urunc: b.settled.metadata.urunc, outputs: [], warnings: settings.warnings, syntax: definition.syntax, file })),
      names,
      outputs: context.written,
      warnings: settings.warnings,
      syntax: definition.syntax,
      file,
    };
  } finally {
    for (const sink of opened?.sinks ?? []) await sink.close?.();
    await opened?.staging.remove();
  }
}

/** The index over the built images, computed and not written. */
async function indexDescriptor(index: ImageIndexModel): Promise<{ mediaType: string; digest: string; size: number }> {
  const [{ createIndex }, { indexSource }] = await Promise.all([import('./imagetools/create.js'), import('./pipeline/index.js')]);
  const created = await createIndex({ tags: [], sources: [indexSource(index, 'the build')], dryRun: true });
  return { mediaType: created.mediaType, digest: created.digest, size: created.bytes.length };
}

/** One platform's plan with its bases pulled: enough to name the image and check the outputs. */
interface PreparedPlatform {
  platform: string | undefined;
  bases: Bases;
  ignore: ContextIgnore | undefined;
  /** Where the file names the kernel (the compiled plan's, before a base's config fills it in). */
  kernelAt?: SourcePosition;
}

/** Per platform, before any output is written: compile, then pull the bases. */
async function preparePlatform(definition: Definition, settings: BuildSettings, platform: string | undefined, ignore: () => Promise<ContextIgnore | undefined>): Promise<PreparedPlatform> {
  const compiled = await compileDefinition(definition, settings, platform);
  const contextIgnore = await ignore();
  reportPlanWarnings(compiled.plan, settings);
  const bases = await pullBases(compiled, settings, platform);
  const kernelAt = compiled.plan.urunc.binary?.at;
  return { platform, bases, ignore: contextIgnore, ...(kernelAt ? { kernelAt } : {}) };
}

interface BuiltPlatform {
  image: Image;
  assembled: AssembledImage;
}

/** Per platform: assemble the file tree, then write the layers, config and manifest to the target. */
async function producePlatform(
  prepared: PreparedPlatform & { settled: SettledMetadata },
  settings: BuildSettings,
  /** `target` is opened once the tree is assembled and checked: where the blobs go. */
  where: { mtime: number; staging: string; store: BlobStore; target: () => Promise<BlobTarget>; strictKernel?: StrictKernel },
): Promise<BuiltPlatform> {
  const { bases, settled, platform, ignore } = prepared;
  const { mtime, staging } = where;
  const assembled = await assemble({ bases, settled, settings, ...(ignore ? { ignore } : {}), mtime, staging, platform, ...(where.strictKernel ? { strictKernel: where.strictKernel } : {}) });
  const { finalBase, registry } = bases;
  const image = await writeImage({
    plan: bases.plan,
    rootfs: assembled.rootfs,
    metadata: settled.metadata,
    store: where.store,
    target: await where.target(),
    platform: assembled.platform,
    mtime,
    options: settings.options,
    emit: settings.emit,
    staging,
    ...(finalBase && registry ? { base: { name: finalBase.reference.display, layers: registry.base.baseLayers(finalBase) } } : {}),
    baseNodes: assembled.baseNodes,
  });
  return { image, assembled };
}

/** The image's names, or with no -t the outputs' own (buildx's name=), as buildx's image.name has them. */
function reportedNames(names: string[], outputs: readonly OutputSpec[] | undefined): string[] {
  if (names.length > 0) return names;
  return [...new Set((outputs ?? []).flatMap((output) => (output.names ?? []).map((name) => formatReference(parseReference(name)))))];
}

/** A sink per output, each checked in order before any work is done. */
async function openSinks(outputs: readonly OutputSpec[], settings: BuildSettings, names: readonly string[], shape: ArtifactShape = { kind: 'image' }): Promise<Sink[]> {
  const sinks: Sink[] = [];
  for (const given of outputs) {
    // An archive's or a load's own names (buildx's name=) are full names, as the -t names are.
    const output = given.type !== 'registry' && given.names !== undefined ? { ...given, names: given.names.map((name) => formatReference(parseReference(name))) } : given;
    const sink = await openSink(output, { cwd: settings.cwd, haveStdout: settings.options.stdout !== undefined });
    await sink.check(output.names ?? names, shape);
    sinks.push(sink);
  }
  return sinks;
}
