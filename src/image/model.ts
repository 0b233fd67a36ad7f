/**
 * The one image model, as go-containerregistry's v1.Image and v1.ImageIndex:
 * what a built image (image.ts's builtImage), a pulled one
 * (registry/base.ts's pulledImage) and every opened source (source/open.ts,
 * source/image-index.ts) offer, and all that the sinks (export/), index
 * assembly (imagetools/create.ts, pipeline/index.ts) and inspect read. An
 * image does not carry its names: a sink takes them as an argument.
 */
import { Readable } from 'node:stream';
import { LapinError } from '../errors.js';
import type { Platform } from '../pipeline/platform.js';
import { sha256Digest } from './digest.js';

export const MEDIA_TYPE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_TYPE_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_TYPE_CONFIG = 'application/vnd.oci.image.config.v1+json';

// The platform type and its rules (format, compare, pick) are pipeline/platform.ts's, the only table.
export type { Platform } from '../pipeline/platform.js';

/** An OCI descriptor. Read from someone else's image, its platform's fields may be missing. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string; variant?: string };
}

/** A layer: its descriptor and its diff_id, the sha256 of the uncompressed tar. */
export interface Layer extends Descriptor {
  diffId: string;
}

/** An image manifest. */
export interface Manifest {
  schemaVersion?: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** The fields of an image config lapin reads (a build's base, inspect, run); others are kept in the bytes. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  config?: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[] | null;
    Labels?: Record<string, string> | null;
    WorkingDir?: string;
    User?: string;
    ExposedPorts?: Record<string, unknown>;
    Volumes?: Record<string, unknown>;
    StopSignal?: string;
  };
  rootfs?: { type?: string; diff_ids?: string[] };
  history?: Array<{ created_by?: string; empty_layer?: boolean }>;
}

/**
 * An image, wherever it is: a build's store, the pull cache, an archive, a
 * layout, a registry, a docker daemon.
 */
export interface ImageModel {
  /**
   * The manifest, its digest and exact bytes. A docker save archive keeps no
   * manifest: then `digest` and `bytes` are absent (and the layers' digests
   * are "path:" names of its members).
   */
  manifest(): Promise<{ manifest: Manifest; digest?: string; bytes?: Buffer }>;
  /** The parsed config, its digest, and its bytes when they were read. */
  config(): Promise<{ config: ImageConfig; digest: string; bytes?: Buffer }>;
  /** A blob's bytes as they are stored (compressed layers stay compressed). */
  blob(descriptor: Descriptor): Promise<Readable>;
  /**
   * The file that holds exactly this blob's bytes, when the image keeps it
   * in one (a build's store, the pull cache): sinks then copy or adopt the
   * file instead of reading a stream.
   */
  blobFile?(digest: string): string | undefined;
}

/** How an opened image was reached, as skopeo spells the transport. */
export type SourceTransport = 'oci-archive' | 'oci' | 'docker-archive' | 'docker-daemon' | 'docker';

/**
 * An image opened by name: the model with what the user called it and a way
 * to let it go. Every transport (archive, layout, docker daemon, registry)
 * gives one; inspect and run read nothing else, and the sinks take it as
 * they take a built image.
 */
export interface ImageSource extends ImageModel {
  /** What the user named, for messages: "oci-archive:net.tar:test". */
  readonly name: string;
  readonly transport: SourceTransport;
  /** Frees temporary files (docker-daemon) and open handles. */
  close(): Promise<void>;
}

/** One image of an index. */
export interface IndexEntry {
  platform: Platform;
  /** The descriptor the index lists (or would list) for it. */
  descriptor: Descriptor;
  /** The manifest's bytes exactly as stored; their sha256 is descriptor.digest. */
  manifestBytes: Buffer;
  manifest: Manifest;
  /** A registry repository ("host/path") that holds its blobs, for cross-repository mounts. */
  repository?: { domain: string; path: string };
  /** A blob's bytes as stored. */
  blob(descriptor: Descriptor): Promise<Readable>;
  /** The image itself, with a name for messages (as inspect and run read it). */
  open(): Promise<ImageSource>;
}

/** What an index lists that is not an image to run. */
export interface LeftOut {
  digest: string;
  /** "an attestation", "an artifact (application/spdx+json)", "of type X, not an image". */
  what: string;
}

/** An image index: the images of several platforms (or one image, then `index` is absent and there is one entry). */
export interface ImageIndexModel {
  /** The index itself, when there is one. */
  readonly index?: { digest: string; mediaType: string; annotations?: Record<string, string> };
  readonly entries: readonly IndexEntry[];
  /** What the index lists that is not an image to run: attestations, artifacts, unknown media types. */
  readonly leftOut?: readonly LeftOut[];
}

/** Where a blob's bytes are read from: a file holding exactly them, or a stream from the first byte. */
export type BlobBytes = { file: string } | { open: () => Promise<Readable> };

/**
 * An image model read once into what a sink writes: every descriptor, the
 * manifest's bytes, the platform, and where each blob is.
 */
export interface ImageParts {
  manifest: Descriptor;
  manifestBytes: Buffer;
  config: Descriptor;
  layers: readonly Layer[];
  platform: Platform;
  /** Where the config's or a layer's bytes are, by digest. */
  bytesOf(digest: string): BlobBytes;
}

/** Reads what a sink needs of an image; `what` names it in errors ("the build", a source's name). */
export async function imageParts(image: ImageModel, what: string): Promise<ImageParts> {
  const { manifest, bytes } = await image.manifest();
  if (bytes === undefined) {
    throw new LapinError(`${what} keeps no manifest (a docker save archive), so it cannot be written unchanged`, { hint: 'save it as an OCI archive or push it to a registry first' });
  }
  const { config } = await image.config();
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) throw new LapinError(`${what} lists ${manifest.layers.length} layers but its config has ${diffIds.length} diff_ids`);
  if (!config.os || !config.architecture) throw new LapinError(`${what}: its config names no platform (os and architecture)`);
  const descriptor = (d: Descriptor): Descriptor => ({ mediaType: d.mediaType, digest: d.digest, size: d.size });
  const blobs = new Map([manifest.config, ...manifest.layers].map((d) => [d.digest, d]));
  return {
    manifest: { mediaType: manifest.mediaType ?? MEDIA_TYPE_MANIFEST, digest: sha256Digest(bytes), size: bytes.length },
    manifestBytes: bytes,
    config: descriptor(manifest.config),
    layers: manifest.layers.map((l, i) => ({ ...descriptor(l), diffId: diffIds[i] as string })),
    platform: { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) },
    bytesOf: (digest) => {
      const blob = blobs.get(digest);
      if (!blob) throw new LapinError(`internal: ${what} has no blob ${digest}`);
      const file = image.blobFile?.(digest);
      return file !== undefined ? { file } : { open: () => image.blob(blob) };
    },
  };
}

/** An image model under a name, as inspect and run read it; closing it frees nothing (the image's owner does). */
export function namedImage(image: ImageModel, name: string, transport: SourceTransport = 'oci'): ImageSource {
  return {
    name,
    transport,
    manifest: () => image.manifest(),
    config: () => image.config(),
    blob: (descriptor) => image.blob(descriptor),
    ...(image.blobFile ? { blobFile: (digest: string) => image.blobFile?.(digest) } : {}),
    close: async () => undefined,
  };
}

/** A stream of bytes already read. */
export function bytesStream(data: Buffer): Readable {
  return Readable.from([data]);
}
