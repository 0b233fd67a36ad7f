// Builds OCI images by hand (tar-stream + zlib, no lapin code), so inspect
// and run are tried on images lapin did not write.
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';

export interface HandFile {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  body?: Buffer | string;
  linkname?: string;
  mode?: number;
}

export interface HandImage {
  layers: HandFile[][];
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  architecture?: string;
  /** index.json ref.name. */
  tag?: string;
  /** false: plain tar layers. */
  gzip?: boolean;
  /** Layers as tar files made elsewhere (GNU tar, say), after `layers`. */
  layerTars?: Buffer[];
}

export const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
export const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

/** /urunc.json as urunc wants it: full keys, base64 values. */
export function uruncJsonFile(values: Record<string, string>, encode = true): HandFile {
  const body = Object.fromEntries(Object.entries(values).map(([k, v]) => [`com.urunc.unikernel.${k}`, encode ? b64(v) : v]));
  return { name: 'urunc.json', body: JSON.stringify(body) };
}

export function full(values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [`com.urunc.unikernel.${k}`, v]));
}

/** A 4 KiB x86-64 ELF header followed by filler: enough for the sniffers. */
export function fakeElfKernel(): Buffer {
  const data = Buffer.alloc(4096, 0x90);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(data, 0);
  data.fill(0, 8, 16);
  data.writeUInt16LE(2, 16); // ET_EXEC
  data.writeUInt16LE(0x3e, 18); // x86-64
  return data;
}

export async function tarOf(files: readonly HandFile[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const file of files) {
    const type = file.type ?? 'file';
    const header = { name: file.name, type, mode: file.mode ?? (type === 'directory' ? 0o755 : 0o644), mtime: new Date(0), uid: 0, gid: 0, ...(file.linkname !== undefined ? { linkname: file.linkname } : {}) };
    if (type === 'file') pack.entry(header, typeof file.body === 'string' ? Buffer.from(file.body) : (file.body ?? Buffer.alloc(0)));
    else pack.entry(header);
  }
  pack.finalize();
  return buffer(pack);
}

export interface HandBlobs {
  blobs: Map<string, Buffer>;
  index: Buffer;
  manifestDigest: string;
  config: Buffer;
  layers: Array<{ tar: Buffer; blob: Buffer }>;
}

export async function handBlobs(image: HandImage): Promise<HandBlobs> {
  const blobs = new Map<string, Buffer>();
  const layers: Array<{ tar: Buffer; blob: Buffer }> = [];
  for (const files of [...image.layers, ...(image.layerTars ?? [])]) {
    const plain = Buffer.isBuffer(files) ? files : await tarOf(files);
    const blob = image.gzip === false ? plain : gzipSync(plain);
    layers.push({ tar: plain, blob });
    blobs.set(sha256(blob), blob);
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: image.architecture ?? 'amd64',
      os: 'linux',
      config: {
        ...(image.labels ? { Labels: image.labels } : {}),
        ...(image.cmd ? { Cmd: image.cmd } : {}),
        ...(image.entrypoint ? { Entrypoint: image.entrypoint } : {}),
        ...(image.env ? { Env: image.env } : {}),
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => `sha256:${sha256(l.tar)}`) },
    }),
  );
  blobs.set(sha256(config), config);
  const layerType = image.gzip === false ? 'application/vnd.oci.image.layer.v1.tar' : 'application/vnd.oci.image.layer.v1.tar+gzip';
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha256(config)}`, size: config.length },
      layers: layers.map((l) => ({ mediaType: layerType, digest: `sha256:${sha256(l.blob)}`, size: l.blob.length })),
      ...(image.annotations ? { annotations: image.annotations } : {}),
    }),
  );
  blobs.set(sha256(manifest), manifest);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${sha256(manifest)}`,
          size: manifest.length,
          ...(image.tag ? { annotations: { 'org.opencontainers.image.ref.name': image.tag } } : {}),
        },
      ],
    }),
  );
  return { blobs, index, manifestDigest: `sha256:${sha256(manifest)}`, config, layers };
}

/** An OCI archive (a tar of the layout). */
export async function writeOciArchive(path: string, image: HandImage): Promise<HandBlobs> {
  const made = await handBlobs(image);
  const files: HandFile[] = [
    { name: 'oci-layout', body: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
    { name: 'index.json', body: made.index },
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
    ...[...made.blobs].map(([hex, data]) => ({ name: `blobs/sha256/${hex}`, body: data })),
  ];
  await writeFile(path, await tarOf(files));
  return made;
}

/** An OCI layout directory. */
export async function writeOciLayout(dir: string, image: HandImage): Promise<HandBlobs> {
  const made = await handBlobs(image);
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), made.index);
  for (const [hex, data] of made.blobs) await writeFile(join(dir, 'blobs', 'sha256', hex), data);
  return made;
}

/** docker save's older format: <id>/layer.tar, <id>.json, manifest.json. No manifest annotations survive. */
export async function writeDockerArchive(path: string, image: HandImage, repoTag = 'hand/made:1'): Promise<void> {
  const made = await handBlobs({ ...image, gzip: false });
  const configName = `${sha256(made.config)}.json`;
  const layerNames = made.layers.map((l) => `${sha256(l.tar)}/layer.tar`);
  const files: HandFile[] = [
    { name: configName, body: made.config },
    ...made.layers.flatMap((l, i) => [
      { name: `${sha256(l.tar)}/`, type: 'directory' as const },
      { name: layerNames[i] as string, body: l.tar },
    ]),
    { name: 'manifest.json', body: JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: layerNames }]) },
  ];
  await writeFile(path, await tarOf(files));
}
