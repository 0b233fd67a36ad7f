import { createReadStream } from 'node:fs';
import type { FinalConfig } from '../plan/finalize.js';
import type { Architecture } from '../plan/types.js';
import type { BlobStore } from './blob-store.js';
import type { LayerBlob } from './layer.js';
import { LapinError } from '../errors.js';
import { MEDIA_TYPE_MANIFEST, type Descriptor, type ImageConfig, type ImageModel, type Manifest } from './model.js';
import { comparePaths, type FsNode } from './tree.js';

export { MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, type Descriptor } from './model.js';

/** A platform lapin builds for. */
export interface Platform {
  os: 'linux';
  architecture: Architecture;
  variant?: string;
}

/**
 * What the write stage made (pipeline/write.ts): the descriptors of a built
 * image whose blobs are in `store` (or in the output archive they were
 * streamed into). Everything else reads it as an ImageModel (builtImage below).
 */
export interface Image {
  store: BlobStore;
  manifest: Descriptor;
  manifestBytes: Buffer;
  config: Descriptor;
  configBytes: Buffer;
  layers: LayerBlob[];
  platform: Platform;
}

function parsed<T>(bytes: Buffer, what: string, digest: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new LapinError(`internal: the ${what} lapin wrote (${digest}) is not JSON`);
  }
}

/** A built image as the one image model: its blobs are files of the build's store. */
export function builtImage(image: Image): ImageModel {
  return {
    manifest: async () => ({ manifest: parsed<Manifest>(image.manifestBytes, 'manifest', image.manifest.digest), digest: image.manifest.digest, bytes: image.manifestBytes }),
    config: async () => ({ config: parsed<ImageConfig>(image.configBytes, 'config', image.config.digest), digest: image.config.digest, bytes: image.configBytes }),
    blob: async (descriptor) => createReadStream(image.store.pathOf(descriptor.digest)),
    blobFile: (digest) => image.store.pathOf(digest),
  };
}

/** What a layer holds and why it is separate. */
export interface LayerContent {
  /** Shown in the config history. */
  description: string;
  nodes: FsNode[];
}

/**
 * Splits the final tree into layers by role: the kernel, the guest's rootfs
 * file(s), other files, and /urunc.json. An unchanged kernel then keeps its
 * digest between versions and registries share it.
 */
export function partitionLayers(nodes: readonly FsNode[], roles: { kernel: string[]; rootfs: string[]; metadata: string[] }): LayerContent[] {
  const byPath = new Map(nodes.map((n) => [n.path, n]));
  const kernel = new Set(roles.kernel);
  const rootfs = new Set(roles.rootfs);
  const metadata = new Set(roles.metadata);
  const groups: Array<{ description: string; members: FsNode[] }> = [
    { description: 'kernel', members: [] },
    { description: 'guest rootfs', members: [] },
    { description: 'files', members: [] },
    { description: 'urunc metadata', members: [] },
  ];
  for (const node of nodes) {
    if (node.type === 'dir') continue;
    const index = kernel.has(node.path) ? 0 : rootfs.has(node.path) ? 1 : metadata.has(node.path) ? 3 : 2;
    (groups[index] as { members: FsNode[] }).members.push(node);
  }
  // Directories without files belong with the other files.
  const withChildren = new Set<string>();
  for (const node of nodes) {
    if (node.type !== 'dir') for (const dir of ancestors(node.path)) withChildren.add(dir);
  }
  for (const node of nodes) {
    if (node.type === 'dir' && !withChildren.has(node.path)) {
      (groups[2] as { members: FsNode[] }).members.push(node);
    }
  }

  const layers: LayerContent[] = [];
  for (const group of groups) {
    if (group.members.length === 0) continue;
    const members = new Map<string, FsNode>();
    const inLayer = new Set(group.members.map((m) => m.path));
    for (const member of group.members) {
      for (const dir of ancestors(member.path)) {
        const parent = byPath.get(dir);
        if (parent) members.set(dir, parent);
      }
      members.set(member.path, linkWithinLayer(member, inLayer, byPath));
    }
    layers.push({ description: group.description, nodes: [...members.values()].sort((a, b) => comparePaths(a.path, b.path)) });
  }
  return layers;
}

/** A hard link must point into its own layer; across layers it becomes a copy. */
function linkWithinLayer(node: FsNode, inLayer: Set<string>, byPath: Map<string, FsNode>): FsNode {
  if (node.type !== 'hardlink' || inLayer.has(node.target)) return node;
  const target = byPath.get(node.target);
  if (target?.type !== 'file') return node;
  return { ...target, path: node.path, mode: node.mode, uid: node.uid, gid: node.gid };
}

function ancestors(p: string): string[] {
  const parts = p.split('/');
  const result: string[] = [];
  for (let i = 1; i < parts.length; i++) result.push(parts.slice(0, i).join('/'));
  return result;
}

/** The OCI image config, with docker's field names. Field order is fixed for reproducible bytes. */
export function imageConfigJson(options: {
  platform: Platform;
  created: string;
  config: FinalConfig;
  diffIds: string[];
  history: string[];
}): Buffer {
  const c = options.config;
  const config: Record<string, unknown> = {};
  if (c.user) config.User = c.user;
  if (c.exposedPorts.length > 0) config.ExposedPorts = Object.fromEntries([...c.exposedPorts].sort().map((p) => [p, {}]));
  if (c.env.length > 0) config.Env = c.env;
  if (c.entrypoint) config.Entrypoint = c.entrypoint;
  if (c.cmd) config.Cmd = c.cmd;
  if (c.volumes.length > 0) config.Volumes = Object.fromEntries([...c.volumes].sort().map((v) => [v, {}]));
  if (c.workingDir) config.WorkingDir = c.workingDir;
  if (Object.keys(c.labels).length > 0) config.Labels = c.labels;
  if (c.stopSignal) config.StopSignal = c.stopSignal;
  const document = {
    created: options.created,
    architecture: options.platform.architecture,
    ...(options.platform.variant ? { variant: options.platform.variant } : {}),
    os: options.platform.os,
    config,
    rootfs: { type: 'layers', diff_ids: options.diffIds },
    history: options.history.map((createdBy) => ({ created: options.created, created_by: createdBy, comment: 'lapin' })),
  };
  return Buffer.from(JSON.stringify(document));
}

export function manifestJson(config: Descriptor, layers: LayerBlob[], annotations: Record<string, string>): Buffer {
  const document = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_MANIFEST,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
  return Buffer.from(JSON.stringify(document));
}
