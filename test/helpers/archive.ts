import { readFile } from 'node:fs/promises';

export interface TarEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname: string;
  data: Buffer;
}

function field(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? length : end).toString('utf8');
}

function octal(block: Buffer, offset: number, length: number): number {
  const text = field(block, offset, length).trim();
  return text === '' ? 0 : parseInt(text, 8);
}

/** A small, strict ustar/pax reader for tests, independent of the writer's library. */
export function layerEntries(tar: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let paxPath: string | undefined;
  while (offset + 512 <= tar.length) {
    const block = tar.subarray(offset, offset + 512);
    if (block.every((b) => b === 0)) break;
    const size = octal(block, 124, 12);
    const typeflag = String.fromCharCode(block[156] ?? 48);
    const data = tar.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (typeflag === 'x') {
      const match = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      paxPath = match?.[1];
      continue;
    }
    const prefix = field(block, 345, 155);
    const base = field(block, 0, 100);
    const name = paxPath ?? (prefix ? `${prefix}/${base}` : base);
    paxPath = undefined;
    const types: Record<string, string> = { '0': 'file', '\0': 'file', '1': 'link', '2': 'symlink', '5': 'directory' };
    entries.push({
      name,
      type: types[typeflag] ?? typeflag,
      mode: octal(block, 100, 8),
      uid: octal(block, 108, 8),
      gid: octal(block, 116, 8),
      mtime: octal(block, 136, 12),
      linkname: field(block, 157, 100),
      data: Buffer.from(data),
    });
  }
  return entries;
}

export interface ArchiveReader {
  names: string[];
  text(name: string): string;
  blob(digest: string): Buffer;
}

export async function readArchive(file: string): Promise<ArchiveReader> {
  const entries = layerEntries(await readFile(file));
  const byName = new Map(entries.map((e) => [e.name, e.data]));
  const get = (name: string): Buffer => {
    const data = byName.get(name);
    if (!data) throw new Error(`${name} is not in ${file}`);
    return data;
  };
  return {
    names: entries.map((e) => e.name),
    text: (name) => get(name).toString('utf8'),
    blob: (digest) => get(`blobs/sha256/${digest.replace(/^sha256:/, '')}`),
  };
}
