import type { Readable } from 'node:stream';

/** An OCI descriptor as read from someone else's image (fields beyond these are kept loosely). */
export interface SourceDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string; variant?: string };
}

export interface SourceManifest {
  schemaVersion?: number;
  mediaType?: string;
  config: SourceDescriptor;
  layers: SourceDescriptor[];
  annotations?: Record<string, string>;
}

/** The fields of an image config that inspect and run read. */
export interface SourceImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[] | null;
    Labels?: Record<string, string> | null;
    WorkingDir?: string;
  };
  rootfs?: { type?: string; diff_ids?: string[] };
}

/**
 * Where an image comes from. Every transport (archive, layout, docker
 * daemon, and a registry once src/registry/ offers a pull API) gives these
 * four things; inspect and run read nothing else.
 */
export interface ImageSource {
  /** What the user named, for messages: "oci-archive:net.tar:test". */
  readonly name: string;
  /** The transport, as skopeo spells it. */
  readonly transport: SourceTransport;
  /** The image manifest and its digest (when the transport knows one; docker-archive does not). */
  manifest(): Promise<{ manifest: SourceManifest; digest?: string }>;
  /** The parsed image config. */
  config(): Promise<{ config: SourceImageConfig; digest: string }>;
  /** The blob's bytes as they are stored (compressed layers stay compressed). */
  blob(descriptor: SourceDescriptor): Promise<Readable>;
  /** Frees temporary files (docker-daemon) and open handles. */
  close(): Promise<void>;
}

export type SourceTransport = 'oci-archive' | 'oci' | 'docker-archive' | 'docker-daemon' | 'docker';
