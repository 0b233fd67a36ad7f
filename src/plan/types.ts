import type { SourcePosition } from '../errors.js';

/** The input syntaxes lapin reads; each frontend compiles one into a BuildPlan. */
export type Syntax = 'bunnyfile' | 'containerfile' | 'nix';

export type Architecture = 'amd64' | 'arm64';

/** A value as the user wrote it, with where they wrote it when known. */
export interface Located<T> {
  value: T;
  at?: SourcePosition;
}

/**
 * What a file goes into the image as. The image writer puts each role in its
 * own layer so a registry can share an unchanged kernel between versions.
 */
export type LayerRole = 'kernel' | 'rootfs' | 'files';

/**
 * Copy from the build context (or from an earlier stage) into the image,
 * with Dockerfile COPY semantics: sources may be globs; a directory source
 * copies its contents; a destination ending in "/" (or several sources) means
 * "into this directory".
 */
export interface CopyOp {
  kind: 'copy';
  /** Context-relative paths or globs, "/"-separated. */
  sources: string[];
  /** Absolute path in the image. */
  destination: string;
  /** Stage name whose filesystem the sources are read from; context when absent. */
  fromStage?: string;
  /** Where the `--from` value (or bunnyfile include `from`) is written. */
  fromAt?: SourcePosition;
  /** ADD: a local archive would be unpacked; the resolver refuses archives rather than guess. */
  isAdd?: boolean;
  /** Replace permission bits (COPY --chmod). */
  mode?: number;
  /** Owner (COPY --chown); 0:0 when absent. */
  uid?: number;
  gid?: number;
  /**
   * Here-documents (`COPY <<EOF /etc/motd`): files whose content is inline,
   * written after the sources, each named `name` inside a directory
   * destination. Mode 0644 unless `mode` is set, as BuildKit's Mkfile.
   */
  inline?: InlineFile[];
  at?: SourcePosition;
}

/** A here-document's file: its name (the delimiter) and its content, variables already expanded. */
export interface InlineFile {
  name: string;
  data: string;
}

/**
 * Build a newc cpio initrd from files and write it into the image at
 * `destination`. Entries follow CopyOp semantics, rooted in the initrd.
 */
export interface InitrdOp {
  kind: 'initrd';
  destination: string;
  /** A registry image whose layers, flattened, are the initrd's files before `entries` (bunnyfile `rootfs.from: <image>`). */
  baseImage?: Located<string>;
  entries: CopyOp[];
  at?: SourcePosition;
}

/**
 * Build an ext file system image (a block rootfs) from files and write it
 * into the image at `destination`. Entries follow CopyOp semantics, rooted in
 * the block image.
 */
export interface BlockOp {
  kind: 'block';
  destination: string;
  /** A registry image whose layers, flattened, are the block image's files before `entries`. */
  baseImage?: Located<string>;
  entries: CopyOp[];
  /** ext2 for guests with old drivers (rumprun), ext4 for Linux. */
  filesystem: 'ext2' | 'ext4';
  /** Image size in bytes; automatic (files plus headroom) when absent. */
  size?: Located<number>;
  at?: SourcePosition;
}

export type FsOp = CopyOp | InitrdOp | BlockOp;

/**
 * A rootfs file taken as is (bunnyfile `rootfs.from: local`), whose kind is
 * checked against its content at build time. When `declared` is absent the
 * build detects it (cpio → initrd, ext → block) and sets the urunc values
 * (`initrd`, or `block` + `blkMntPoint`) itself.
 */
export interface RootfsFileCheck {
  /** Absolute image path of the file, e.g. /.boot/rootfs. */
  path: string;
  declared?: Located<'initrd' | 'block'>;
  /** Kinds the guest can use. */
  allowed: ReadonlyArray<'initrd' | 'block'>;
  /** blkMntPoint for a block image. */
  blockMountPoint: string;
  /** The guest framework, for messages. */
  framework: string;
  at?: SourcePosition;
}

/** A filesystem built by a list of operations on top of a base. */
export interface StagePlan {
  /** Name for `COPY --from`; stages are also addressable by index. */
  name?: string;
  base: BasePlan;
  ops: FsOp[];
  at?: SourcePosition;
}

/** The image the build starts from. Only scratch is built today. */
export type BasePlan =
  | { kind: 'scratch' }
  | { kind: 'image'; reference: string; at?: SourcePosition };

/** The OCI image config values a file sets. */
export interface ConfigPlan {
  env: string[];
  cmd?: Located<string[]>;
  entrypoint?: Located<string[]>;
  workingDir?: string;
  user?: string;
  exposedPorts: string[];
  stopSignal?: string;
  volumes: string[];
  /** Labels other than urunc values. */
  labels: Record<string, string>;
}

/**
 * Short urunc keys (`unikernelType`, `binary`, ...) as the input gave them.
 * The empty string means "given empty", which drops the key.
 */
export type UruncInput = Partial<Record<string, Located<string>>>;

/** The one intermediate form every frontend compiles to. */
export interface BuildPlan {
  syntax: Syntax;
  /** The definition file, for messages. */
  file: string;
  /** Default image name and tag, when the file names the image (args.nix). */
  name?: Located<string>;
  tag?: Located<string>;
  /** Architecture the file declares. */
  architecture?: Located<Architecture>;
  base: BasePlan;
  /** Earlier stages (multi-stage Containerfiles), in order. */
  stages: StagePlan[];
  /** The final image's filesystem operations on top of the base. */
  ops: FsOp[];
  config: ConfigPlan;
  urunc: UruncInput;
  /** Extra manifest annotations. */
  annotations: Record<string, string>;
  /** A rootfs file whose kind is checked (or detected) by reading it. */
  rootfsFile?: RootfsFileCheck;
  /** What the frontend read but doubts the user meant (the build prints them as warnings). */
  warnings?: PlanWarning[];
  /**
   * An image whose config (Cmd, Entrypoint, Env, labels...) is inherited
   * when `base` is not that image: a bunnyfile rootfs made from an image.
   */
  configFrom?: Located<string>;
}

export interface PlanWarning {
  message: string;
  at?: SourcePosition;
}

export function emptyConfig(): ConfigPlan {
  return { env: [], exposedPorts: [], volumes: [], labels: {} };
}

/** Architecture names the input files use, by the OCI name they mean. */
export const ARCHITECTURE_ALIASES: Readonly<Record<string, Architecture>> = {
  x86: 'amd64',
  x86_64: 'amd64',
  amd64: 'amd64',
  arm: 'arm64',
  aarch64: 'arm64',
  arm64: 'arm64',
};
