/**
 * Per platform, step 4: the file tree → layers, config and manifest,
 * written to a blob target (the build's store, or the output archive
 * itself when it is the only output). Layers are split by role
 * (image/image.ts's partitionLayers) and reused from the layer cache.
 */
import path from 'node:path';
import type { BlobStore, BlobTarget } from '../image/blob-store.js';
import { treePath, type ImageFilesystem } from '../image/filesystem.js';
import { MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST, imageConfigJson, manifestJson, partitionLayers, type Descriptor, type Image, type Platform } from '../image/image.js';
import { tarSize, type LayerBlob } from '../image/layer.js';
import { LayerCache, defaultCacheDir, writeLayerCached } from '../image/layer-cache.js';
import type { FsNode } from '../image/tree.js';
import { URUNC_JSON_PATH } from '../plan/urunc-json.js';
import type { BuildPlan } from '../plan/types.js';
import { formatBytes } from '../human.js';
import { makeDirectories } from '../mkdirp.js';
import { blockCacheDir } from '../rootfs/block-cache.js';
import type { ImageMetadata } from './assemble.js';
import type { RegistryModules } from './bases.js';
import type { BuildEvent, BuildOptions } from './types.js';

export interface WriteImageInput {
  plan: BuildPlan;
  rootfs: ImageFilesystem;
  metadata: ImageMetadata;
  store: BlobStore;
  /** Where blobs are written: `store`, or the output archive itself. */
  target: BlobTarget;
  platform: Platform;
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

export async function writeImage(input: WriteImageInput): Promise<Image> {
  const { rootfs, metadata, store, target, platform, mtime, options } = input;
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
  // Block images kept in the cache (rootfs/block-cache.ts) are lapin's own files too, under a new name each build.
  const ownFiles = [input.staging, ...(cache ? [blockCacheDir(cache.dir)] : [])];
  for (const [index, content] of contents.entries()) {
    const total = tarSize(content.nodes);
    const progress = (done: number): void =>
      input.emit({ kind: 'progress', id: `layer-${index}`, message: `layer ${content.description}`, done, total });
    const layerOptions = {
      compression: options.compression ?? 'gzip',
      ...(options.compressionLevel !== undefined ? { level: options.compressionLevel } : {}),
      onProgress: progress,
    };
    const layer = await writeLayerCached(content.nodes, target, layerOptions, cache, ownFiles);
    layers.push({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size, diffId: layer.diffId });
    const from = layer.cached ? ', cached' : layer.members?.reused ? `, ${layer.members.reused} of ${layer.members.reused + layer.members.compressed} gzip members reused` : '';
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
  return { store, manifest: { mediaType: MEDIA_TYPE_MANIFEST, ...manifestBlob }, manifestBytes, config, configBytes, layers, platform };
}

