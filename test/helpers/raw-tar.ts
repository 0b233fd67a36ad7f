// Tar headers written byte by byte (no library), so tests can make archives
// a tar writer would refuse to: negative pax sizes, bad checksums, cut bodies.
import { gzipSync } from 'node:zlib';

export interface RawEntry {
  name: string;
  /** tar typeflag: '0' file, '5' directory, 'x' pax, 'L' GNU long name, ... */
  type?: string;
  body?: Buffer | string;
  /** The size field as written (octal digits, or raw bytes); defaults to the body's length. */
  sizeField?: string | Buffer;
  /** Leave the checksum wrong. */
  badChecksum?: boolean;
}

function octal(value: number, length: number): string {
  return `${value.toString(8).padStart(length - 1, '0')}\0`;
}

export function rawHeader(entry: RawEntry, bodyLength: number): Buffer {
  const header = Buffer.alloc(512);
  header.write(entry.name.slice(0, 100), 0, 'utf8');
  header.write(octal(0o644, 8), 100);
  header.write(octal(0, 8), 108);
  header.write(octal(0, 8), 116);
  if (Buffer.isBuffer(entry.sizeField)) entry.sizeField.copy(header, 124, 0, 12);
  else header.write(entry.sizeField ?? octal(bodyLength, 12), 124, 'latin1');
  header.write(octal(0, 12), 136);
  header.write(entry.type ?? '0', 156);
  header.write('ustar\x0000', 257, 'latin1');
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  if (entry.badChecksum) header[148] = 0x37;
  return header;
}

export function paxBody(records: Record<string, string>): Buffer {
  let text = '';
  for (const [key, value] of Object.entries(records)) {
    const rest = ` ${key}=${value}\n`;
    let length = rest.length + 1;
    while (`${length}${rest}`.length !== length) length = `${length}${rest}`.length;
    text += `${length}${rest}`;
  }
  return Buffer.from(text);
}

/** The entries as a tar, each body padded to 512 bytes, with the two zero blocks at the end. */
export function rawTar(entries: readonly RawEntry[], { end = true } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const body = typeof entry.body === 'string' ? Buffer.from(entry.body) : (entry.body ?? Buffer.alloc(0));
    parts.push(rawHeader(entry, body.length), body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  if (end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A gzip layer of `count` empty files in 100 directories, made in well under a second. */
export function manyEntriesLayer(count: number): Buffer {
  const block = Buffer.alloc(512 * (count + 2));
  const template = rawHeader({ name: '' }, 0);
  template.fill(0x20, 148, 156);
  let base = 0;
  for (const byte of template) base += byte;
  for (let i = 0; i < count; i++) {
    const header = block.subarray(i * 512, (i + 1) * 512);
    template.copy(header);
    const name = Buffer.from(`d${i % 100}/f${i}`);
    name.copy(header, 0);
    let sum = base;
    for (const byte of name) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  }
  return gzipSync(block, { level: 1 });
}

/** An OCI layout directory around ready-made layer blobs (the config lists no diff_ids to check). */
export async function layoutOfBlobs(dir: string, layers: readonly Buffer[], extra: { manifestBytes?: Buffer; indexBytes?: Buffer; configBytes?: Buffer } = {}): Promise<{ manifestDigest: string; layerDigests: string[] }> {
  const { createHash } = await import('node:crypto');
  const { mkdir, writeFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (data: Buffer): Promise<string> => {
    await writeFile(join(dir, 'blobs', 'sha256', sha(data)), data);
    return `sha256:${sha(data)}`;
  };
  const config = extra.configBytes ?? Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } }));
  const layerDigests = await Promise.all(layers.map(put));
  const manifest =
    extra.manifestBytes ??
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await put(config), size: config.length },
        layers: layers.map((l, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigests[i], size: l.length })),
      }),
    );
  const manifestDigest = await put(manifest);
  const index =
    extra.indexBytes ??
    Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length }] }));
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(dir, 'index.json'), index);
  return { manifestDigest, layerDigests };
}
