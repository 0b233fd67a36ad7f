import { nameBytes } from './names.js';

/**
 * A filesystem tree as the layer, initrd and block writers consume it.
 * Paths are relative to the root, "/"-separated, with no leading "/" and
 * no "." or ".." segments (e.g. "unikernel/network.hvt"). A name that is
 * not UTF-8 holds its bytes escaped as lone surrogates (names.ts).
 */
export type FileSource =
  /** `identity`: the device and inode the build saw; writers refuse another file at the path (source-file.ts). */
  | { kind: 'path'; path: string; identity?: FileIdentity }
  | { kind: 'bytes'; data: Uint8Array }
  /** A file inside a pulled layer, read from the layer blob only when a writer needs its bytes (layer-member.ts). */
  | { kind: 'layer'; member: LayerMember };

/**
 * Where a base image's file lives: its data at `offset` in the layer's
 * uncompressed tar. One object per tar member, shared by the nodes of its
 * hard links, so an extraction done for one serves all.
 */
export interface LayerMember {
  /** The layer blob as pulled (gzip, zstd or plain tar). */
  blob: string;
  offset: number;
  size: number;
  /** For messages: the image and the file's path in it. */
  what: string;
  /** The file's path in the layer, which its tar header names (checked before the data is read). */
  entryPath?: string;
  /** A file already holding the data (kept while the layer was indexed, or extracted once), read instead of the blob. */
  file?: string;
  /** Where a reader that needs a file of its own (kernel reads, Solo5 notes) extracts it. */
  scratch?: string;
  /** The blob as it was when indexed (shared by a layer's members): a blob changed since is hashed again before it is read. */
  blobCheck?: BlobCheck;
}

/** A layer blob's digest and the file that held it when it was indexed. */
export interface BlobCheck {
  digest: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

export interface FileIdentity {
  dev: number;
  ino: number;
}

interface NodeBase {
  path: string;
  /** Permission bits only (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
}

export interface FileNode extends NodeBase {
  type: 'file';
  size: number;
  source: FileSource;
}

export interface DirNode extends NodeBase {
  type: 'dir';
}

export interface SymlinkNode extends NodeBase {
  type: 'symlink';
  /** The link text, stored as is. */
  target: string;
}

export interface HardlinkNode extends NodeBase {
  type: 'hardlink';
  /** Tree path of the file this entry shares its data with; it comes earlier in order. */
  target: string;
}

export type FsNode = FileNode | DirNode | SymlinkNode | HardlinkNode;

/** Byte-wise order of paths, the order every writer emits entries in. */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(nameBytes(a), nameBytes(b));
}

/** Why `p` is not a clean tree path (relative, no "." or ".." or empty segments), or undefined. */
export function treePathProblem(p: string): string | undefined {
  if (p === '') return 'empty path';
  if (p.includes('\0')) return 'path contains a NUL byte';
  if (p.startsWith('/')) return 'path starts with "/"';
  for (const segment of p.split('/')) {
    if (segment === '') return 'path has an empty segment ("//" or a trailing "/")';
    if (segment === '.' || segment === '..') return `path has a "${segment}" segment`;
  }
  return undefined;
}
