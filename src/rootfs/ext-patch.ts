/**
 * A block image rebuilt by patching the one an earlier build made from a
 * tree of the same shape (extShapeKey in ext.ts), instead of running
 * mke2fs again. mke2fs lays out a tree of one shape the same way every
 * time; a file's bytes decide only which of its 4 KiB blocks it allocates
 * (an all-zero block is left a hole: copy_file_chunk in e2fsprogs'
 * misc/create_inode.c) and what those blocks hold. So when every file
 * leaves the same blocks zero as before, the new image is the old one with
 * the changed files' blocks rewritten, byte for byte what mke2fs writes
 * (test/rootfs/ext-patch.test.ts builds both and compares them). Anything
 * else is a mismatch, and the caller builds the image from scratch.
 */
import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { openSourceFileSync } from '../image/source-file.js';
import type { FileNode } from '../image/tree.js';
import { lastLines, runTool } from './e2fsprogs.js';
import type { ExtPlan } from './ext.js';

const BLOCK_BYTES = 4096;
/** Blocks compared per read: 1 MiB of a file and of its blocks in the image at a time. */
const CHUNK_BLOCKS = 256;
/** Past this much changed data, asking mke2fs about the changed files' xattrs costs about what building the image does. */
const PROBE_MAX_BYTES = 256 * 1024 * 1024;
/** Bytes compared between two turns of the event loop. */
const YIELD_BYTES = 16 * 1024 * 1024;
const ZERO_BLOCK = Buffer.alloc(BLOCK_BYTES);

export type PatchOutcome = { kind: 'patched'; files: number; bytes: number; sources: Map<string, string> } | { kind: 'mismatch'; reason: string };

/** A file's blocks in the image: run i maps logical blocks [logical, logical + count) to physical [physical, physical + count). */
interface FileBlocks {
  size: number;
  runs: Array<{ logical: number; physical: number; count: number }>;
  /** The inode has extended attributes (mke2fs copies a staged file's own). */
  xattrs: boolean;
}

/**
 * A source file's device, inode and ctime (ns) after the build that made
 * the kept image: mke2fs copied its extended attributes, which lapin cannot
 * read, and any change to them changes the ctime.
 */
export type SourceStamps = ReadonlyMap<string, string>;

export function sourceStamp(info: { dev: bigint; ino: bigint; ctimeNs: bigint }): string {
  return [info.dev, info.ino, info.ctimeNs].join(':');
}

class Mismatch extends Error {}

/**
 * Reads `debugfs stat` output for a list of inodes: each regular file's
 * size and block runs. An inode that is not a plain regular file with its
 * data in blocks (extended attributes, uninitialised extents, anything this
 * parser does not know) is left out, which the caller takes as a mismatch.
 */
export function parseStatOutput(text: string): Map<number, FileBlocks> {
  const files = new Map<number, FileBlocks>();
  let ino: number | undefined;
  let entry: (FileBlocks & { regular: boolean; sound: boolean; listed: boolean }) | undefined;
  let listNext = false;
  const finish = (): void => {
    if (ino !== undefined && entry && entry.regular && entry.sound && entry.size >= 0) files.set(ino, { size: entry.size, runs: entry.runs, xattrs: entry.xattrs });
  };
  for (const line of text.split('\n')) {
    const command = /^debugfs: stat <(\d+)>$/.exec(line);
    if (command) {
      finish();
      ino = Number(command[1]);
      entry = { size: -1, runs: [], xattrs: false, regular: false, sound: true, listed: false };
      listNext = false;
      continue;
    }
    if (!entry) continue;
    const wasList = listNext;
    listNext = false;
    let match: RegExpExecArray | null;
    if ((match = /^Inode: (\d+)\s+Type: (\S+)/.exec(line))) {
      entry.regular = match[2] === 'regular';
      if (Number(match[1]) !== ino) entry.sound = false;
    } else if ((match = /^User:.*\bSize: (\d+)$/.exec(line))) {
      entry.size = Number(match[1]);
    } else if ((match = /^File ACL: (\d+)/.exec(line))) {
      if (match[1] !== '0') entry.xattrs = true;
    } else if (/^Extended attributes:/.test(line)) {
      entry.xattrs = true;
    } else if (/^Size of inline data:/.test(line)) {
      entry.sound = false;
    } else if (/^(EXTENTS|BLOCKS):$/.test(line)) {
      if (entry.listed) entry.sound = false;
      entry.listed = true;
      listNext = true;
    } else if (wasList && line.startsWith('(')) {
      for (const item of line.split(', ')) {
        const data = /^\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?$/.exec(item);
        if (data) {
          const logical = Number(data[1]);
          const physical = Number(data[3]);
          const count = Number(data[2] ?? data[1]) - logical + 1;
          if (count !== Number(data[4] ?? data[3]) - physical + 1 || count < 1) entry.sound = false;
          entry.runs.push({ logical, physical, count });
        } else if (!/^\((ETB\d+|IND|DIND|TIND)\):\d+$/.test(item)) {
          entry.sound = false;
        }
      }
    }
  }
  finish();
  return files;
}

/** Inodes stat'ed per debugfs run: about 600 bytes of output each, kept well under a string's limit. */
const STAT_BATCH = 20_000;

/** `debugfs stat` of each inode, in batches; anything debugfs cannot read is a mismatch (mke2fs makes a new image). */
async function statInodes(image: string, numbers: readonly number[], env: NodeJS.ProcessEnv, workDir: string): Promise<Map<number, FileBlocks>> {
  const blocks = new Map<number, FileBlocks>();
  const commands = path.join(workDir, 'stat.cmd');
  for (let first = 0; first < numbers.length; first += STAT_BATCH) {
    await writeFile(commands, numbers.slice(first, first + STAT_BATCH).map((ino) => `stat <${ino}>\n`).join(''));
    const listed = await runTool('debugfs', ['-f', commands, image], env);
    if (listed.code !== 0 || lastLines(listed.stderr) !== '') throw new Mismatch(`debugfs could not read the kept image: ${lastLines(listed.stderr)}`);
    for (const [ino, found] of parseStatOutput(listed.stdout)) blocks.set(ino, found);
  }
  return blocks;
}

/** Each logical block's physical block, -1 for a hole; throws Mismatch when the runs do not fit the file or the image. */
function blockTable(blocks: FileBlocks, imageBlocks: number): Float64Array {
  const table = new Float64Array(Math.ceil(blocks.size / BLOCK_BYTES)).fill(-1);
  for (const run of blocks.runs) {
    if (run.logical + run.count > table.length || run.physical + run.count > imageBlocks) throw new Mismatch('a file has blocks past its end');
    for (let i = 0; i < run.count; i++) table[run.logical + i] = run.physical + i;
  }
  return table;
}

/** Fills `buffer` from `fd` at `position`; a file that ends early is a mismatch (it changed under the build). */
function readFully(fd: number, buffer: Buffer, position: number): void {
  let filled = 0;
  while (filled < buffer.length) {
    const bytesRead = readSync(fd, buffer, filled, buffer.length - filled, position + filled);
    if (bytesRead === 0) throw new Mismatch('a file is shorter than it was');
    filled += bytesRead;
  }
}

/** Where one file's bytes come from, read a chunk at a time. */
interface ContentReader {
  read(buffer: Buffer, position: number): void;
  close(): void;
  stamp?: string;
}

function contentOf(node: FileNode): ContentReader {
  const source = node.source;
  if (source.kind === 'bytes') {
    const data = source.data;
    return { read: (buffer, position) => buffer.set(data.subarray(position, position + buffer.length)), close: () => undefined };
  }
  if (source.kind !== 'path') throw new Mismatch('a file comes from a pulled layer');
  const { fd, info } = openSourceFileSync(source);
  try {
    // Holes need no care: mke2fs reads a source's data regions rounded out to 4 KiB and leaves a hole where a block is zero.
    if (info.size !== BigInt(node.size)) throw new Mismatch(`${node.path} changed size`);
    return { read: (buffer, position) => readFully(fd, buffer, position), close: () => closeSync(fd), stamp: sourceStamp(info) };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/** A chunk of a file and the image's blocks for it, allocated once (2 MiB per file was most of a rebuild's garbage collection). */
interface ChunkBuffers {
  source: Buffer;
  kept: Buffer;
}

/**
 * Compares one file with its blocks in the image and rewrites those that
 * differ; returns the bytes written. Synchronous: for thousands of small
 * files a thread-pool round trip per open, stat, read and close cost more
 * than the calls (3.1 s against under 1 s for the 7537 files of the bench).
 */
function patchFile(image: number, node: FileNode, table: Float64Array, xattrs: boolean, before: SourceStamps, after: Map<string, string>, buffers: ChunkBuffers): number {
  const content = contentOf(node);
  let written = 0;
  try {
    if (content.stamp !== undefined) after.set(node.path, content.stamp);
    // The attributes mke2fs copied are only known unchanged when nothing about the source changed.
    if (xattrs && (content.stamp === undefined || before.get(node.path) !== content.stamp)) throw new Mismatch(`${node.path} has extended attributes and changed`);
    const { source, kept } = buffers;
    for (let first = 0; first < table.length; first += CHUNK_BLOCKS) {
      const blocks = Math.min(CHUNK_BLOCKS, table.length - first);
      const length = Math.min(blocks * BLOCK_BYTES, node.size - first * BLOCK_BYTES);
      content.read(source.subarray(0, length), first * BLOCK_BYTES);
      // The image's blocks for this chunk, one read per run of consecutive physical blocks.
      for (let i = 0; i < blocks; ) {
        const physical = table[first + i] as number;
        let run = 1;
        if (physical >= 0) while (i + run < blocks && table[first + i + run] === physical + run) run++;
        if (physical >= 0) readFully(image, kept.subarray(i * BLOCK_BYTES, (i + run) * BLOCK_BYTES), physical * BLOCK_BYTES);
        else kept.fill(0, i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES);
        i += run;
      }
      // mke2fs zero-fills a last block past the end of the file.
      const chunkEnd = blocks * BLOCK_BYTES;
      if (!kept.subarray(length, chunkEnd).equals(ZERO_BLOCK.subarray(0, chunkEnd - length))) throw new Mismatch(`${node.path}'s last block holds bytes past its end`);
      // Unchanged (the commonest case): the old blocks were mapped where they were not zero, and so are these.
      if (source.compare(kept, 0, length, 0, length) === 0) continue;
      // Runs of changed blocks, consecutive in the file and in the image, each written at once.
      const writes: Array<{ physical: number; from: number; to: number }> = [];
      for (let i = 0; i < blocks; i++) {
        const start = i * BLOCK_BYTES;
        const end = Math.min(start + BLOCK_BYTES, length);
        const bytes = source.subarray(start, end);
        const physical = table[first + i] as number;
        const zero = bytes.equals(ZERO_BLOCK.subarray(0, bytes.length));
        if (zero !== physical < 0) throw new Mismatch(`${node.path} has other zero blocks than before`);
        if (physical < 0) continue;
        if (kept.subarray(start, end).equals(bytes)) continue;
        const last = writes[writes.length - 1];
        if (last && last.to === start && last.physical * BLOCK_BYTES + (last.to - last.from) === physical * BLOCK_BYTES) last.to = end;
        else writes.push({ physical, from: start, to: end });
      }
      for (const write of writes) {
        let done = 0;
        const total = write.to - write.from;
        while (done < total) done += writeSync(image, source, write.from + done, total - done, write.physical * BLOCK_BYTES + done);
        written += total;
      }
    }
  } finally {
    content.close();
  }
  return written;
}

/**
 * Patches `image` (an image of a tree with the same shape key, made by
 * mke2fs) in place so that it holds the plan's files. `inodes` maps each
 * regular file's path to its inode number in that image. On a mismatch
 * the image is left part-patched: the caller discards it.
 */
export async function patchExtImage(
  image: string,
  plan: ExtPlan,
  inodes: ReadonlyMap<string, number>,
  sources: SourceStamps,
  env: NodeJS.ProcessEnv,
  workDir: string,
  /** Whether mke2fs would copy extended attributes for any of these files (ext.ts stagedXattrs). */
  copiesXattrs: (files: readonly FileNode[]) => Promise<boolean>,
): Promise<PatchOutcome> {
  const files = plan.list.filter((node): node is FileNode => node.type === 'file');
  try {
    const numbers: number[] = [];
    for (const node of files) {
      const ino = inodes.get(node.path);
      if (ino === undefined) throw new Mismatch(`${node.path} is not in the earlier image`);
      if (node.source.kind === 'layer') throw new Mismatch('a file comes from a pulled layer');
      numbers.push(ino);
    }
    const blocks = await statInodes(image, numbers, env, workDir);
    const fd = openSync(image, constants.O_RDWR | constants.O_NOFOLLOW);
    try {
      const imageBlocks = Math.floor(fstatSync(fd).size / BLOCK_BYTES);
      const xattrs: boolean[] = [];
      const tables = files.map((node, i) => {
        const found = blocks.get(numbers[i] as number);
        if (found === undefined || found.size !== node.size) throw new Mismatch(`${node.path} is not where the earlier image had it`);
        xattrs.push(found.xattrs);
        return blockTable(found, imageBlocks);
      });
      let changed = 0;
      let bytes = 0;
      let sinceYield = 0;
      const stamps = new Map<string, string>();
      const buffers = { source: Buffer.allocUnsafe(CHUNK_BLOCKS * BLOCK_BYTES), kept: Buffer.allocUnsafe(CHUNK_BLOCKS * BLOCK_BYTES) };
      for (const [i, node] of files.entries()) {
        const written = patchFile(fd, node, tables[i] as Float64Array, xattrs[i] as boolean, sources, stamps, buffers);
        if (written > 0) changed++;
        bytes += written;
        // Let progress output and signals through now and then.
        sinceYield += node.size + BLOCK_BYTES;
        if (sinceYield >= YIELD_BYTES) {
          sinceYield = 0;
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      // A file changed since the kept image was made (any change to its xattrs changes its ctime), or in memory:
      // mke2fs would copy what xattrs it has now, which lapin cannot read, so mke2fs is asked on those files alone.
      const changedSince = files.filter((node) => node.source.kind !== 'path' || stamps.get(node.path) !== sources.get(node.path));
      const changedBytes = changedSince.reduce((sum, node) => sum + node.size, 0);
      if (changedBytes > PROBE_MAX_BYTES) throw new Mismatch('too many files changed since the kept image was made');
      if (changedSince.length > 0 && (await copiesXattrs(changedSince))) throw new Mismatch('a changed file has extended attributes');
      return { kind: 'patched', files: changed, bytes, sources: stamps };
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if (error instanceof Mismatch) return { kind: 'mismatch', reason: error.message };
    throw error;
  }
}
