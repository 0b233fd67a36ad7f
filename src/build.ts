/**
 * build(): the pipeline, stage by stage (docs/architecture.md):
 *
 *   options → definition → per platform (compile → pull bases → assemble →
 *   write image) → sinks
 *
 * Each stage is a module under pipeline/ with a typed hand-off; the sinks
 * (export/sink.ts, one file each) are checked before any work and take
 * the image and its names.
 */
import path from 'node:path';
import type { SourcePosition } from './errors.js';
import { writeToSinks, type Sink, type SinkContext } from './export/sink.js';
import { openSink } from './export/sinks/index.js';
import { BlobStore, type BlobTarget } from './image/blob-store.js';
import type { ContextIgnore } from './image/dockerignore.js';
import type { Image } from './image/image.js';
import { assemble, settleMetadata, type AssembledImage, type SettledMetadata } from './pipeline/assemble.js';
import { pullBases, type Bases } from './pipeline/bases.js';
import { compileDefinition, reportPlanWarnings } from './pipeline/compile.js';
import { readContextIgnore, readDefinition, type Definition } from './pipeline/definition.js';
import { imageNames, outputsOf, resolveSettings, sourceDateEpoch, type BuildSettings } from './pipeline/options.js';
import { openStaging } from './pipeline/staging.js';
import type { BuildOptions, BuildResult, OutputSpec } from './pipeline/types.js';
import { writeImage } from './pipeline/write.js';

export type { BuildEvent, BuildOptions, BuildResult, OutputSpec } from './pipeline/types.js';
export { writeMetadataFile } from './pipeline/metadata.js';

/** Builds an image from a bunnyfile, Containerfile or args.nix and writes it to its outputs. */
export async function build(options: BuildOptions = {}): Promise<BuildResult> {
  const settings = await resolveSettings(options);
  try {
    return await buildImage(settings);
  } finally {
    for (const cleanup of settings.cleanups) await cleanup();
  }
}

async function buildImage(settings: BuildSettings): Promise<BuildResult> {
  const { options, cwd, emit } = settings;
  const definition = await readDefinition(settings);
  const prepared = await preparePlatform(definition, settings, options.platform, () => readContextIgnore(settings, definition));
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
    await writeToSinks(sinks, { kind: 'image', image: built.image, rootfs: () => built.assembled.rootfs.list() }, names, context);
    return {
      digest: built.image.manifest.digest,
      configDigest: built.image.config.digest,
      manifest: built.image.manifest,
      names,
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
  where: { mtime: number; staging: string; store: BlobStore; target: () => Promise<BlobTarget> },
): Promise<BuiltPlatform> {
  const { bases, settled, platform, ignore } = prepared;
  const { mtime, staging } = where;
  const assembled = await assemble({ bases, settled, settings, ...(ignore ? { ignore } : {}), mtime, staging, platform });
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

/** A sink per output, each checked in order before any work is done. */
async function openSinks(outputs: readonly OutputSpec[], settings: BuildSettings, names: readonly string[]): Promise<Sink[]> {
  const sinks: Sink[] = [];
  for (const output of outputs) {
    const sink = await openSink(output, { cwd: settings.cwd, haveStdout: settings.options.stdout !== undefined });
    await sink.check(names);
    sinks.push(sink);
  }
  return sinks;
}
