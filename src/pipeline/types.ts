/**
 * The build's public types: what build() takes, reports while it runs and
 * returns. build.ts re-exports them (the public API of src/index.ts).
 */
import type { Readable, Writable } from 'node:stream';
import type { SourcePosition } from '../errors.js';
import type { Compression } from '../image/layer.js';
import type { Descriptor, Platform } from '../image/image.js';
import type { UruncRelease } from '../plan/releases.js';
import type { Syntax } from '../plan/types.js';
import type { PushOptions } from '../registry/push.js';
import type { PullPolicy } from '../registry/pull.js';
import type { MergeStrategy } from '../imagetools/create.js';

/** Where a build's image goes (buildx's --output). */
export type OutputSpec =
  /** `names`: the image's names in this archive or layout (buildx's name=), else every -t name. */
  | { type: 'oci' | 'docker'; dest: string; tar?: boolean; names?: string[] }
  | { type: 'local'; dest: string; names?: undefined }
  /** Push to a registry under `names`, or every -t name when absent. */
  | { type: 'registry'; dest?: undefined; names?: string[] }
  /** Hand the image to a local engine (--load): docker's API socket, or containerd through ctr. */
  | { type: 'load'; dest?: undefined; engine: 'docker' | 'containerd'; namespace?: string; address?: string; snapshotter?: string; names?: string[] };

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
  /**
   * Build an image index: one image per platform ("linux/amd64",
   * "linux/arm64"), in this order, then the index over them to every output
   * (docs/multi-platform.md). build() then returns an IndexBuildResult.
   */
  platforms?: readonly string[];
  /**
   * With platforms and a push: what to do with the index already at each
   * name (kraft's --strategy): merge adds the platforms built to each name's
   * own index and keeps its others, abort stops when one of them is at any
   * name, overwrite replaces the index at every name.
   */
  strategy?: MergeStrategy;
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
  /** Where `file: "-"` is read from (docker build -f -). */
  stdin?: Readable;
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


/** What a build with `platforms` returns: the index, and each platform's image. */
export interface IndexBuildResult {
  /** The index's digest (with --strategy merge, the merged index pushed). */
  digest: string;
  /** Its descriptor, as buildx writes it in --metadata-file. */
  index: { mediaType: string; digest: string; size: number };
  platforms: string[];
  /** Each platform's image, in the order asked for (their `outputs` are empty: the index went out). */
  builds: BuildResult[];
  names: string[];
  /** With --strategy merge, each pushed name's own index digest where it is not `digest`. */
  outputs: Array<{ type: string; dest: string; digest?: string }>;
  warnings: string[];
  syntax: Syntax;
  file: string;
}
