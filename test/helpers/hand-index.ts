// Multi-platform OCI layouts and archives made by hand (hand-image.ts per
// platform, then an image index over them), so index readers are tried on
// indexes lapin did not write.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { full, handBlobs, sha256, tarOf, type HandFile, type HandImage } from './hand-image.js';

export interface HandIndex {
  /** Every blob of the layout by hex digest: layers, configs, manifests, the index. */
  blobs: Map<string, Buffer>;
  indexJson: Buffer;
  indexDigest: string;
  /** Each platform's manifest digest, in the order given. */
  manifests: string[];
}

/** An x86-64 (or AArch64) ELF header and filler, as hand-image's fakeElfKernel. */
export function fakeElf(machine: 'x86-64' | 'aarch64'): Buffer {
  const data = Buffer.alloc(4096, 0x90);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(data, 0);
  data.fill(0, 8, 16);
  data.writeUInt16LE(2, 16);
  data.writeUInt16LE(machine === 'x86-64' ? 0x3e : 0xb7, 18);
  return data;
}

/**
 * index.json → one nested index (tag `tag`) → one manifest per image, each
 * with its platform (from image.architecture; `platformInIndex: false`
 * leaves the platform to the config, as some writers do).
 */
export async function handIndex(images: readonly HandImage[], options: { tag?: string; platformInIndex?: boolean } = {}): Promise<HandIndex> {
  const blobs = new Map<string, Buffer>();
  const descriptors = [];
  const manifests: string[] = [];
  for (const image of images) {
    const made = await handBlobs({ ...image, tag: undefined });
    for (const [hex, data] of made.blobs) blobs.set(hex, data);
    const manifest = made.blobs.get(made.manifestDigest.slice(7)) as Buffer;
    manifests.push(made.manifestDigest);
    descriptors.push({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: made.manifestDigest,
      size: manifest.length,
      ...(options.platformInIndex === false ? {} : { platform: { os: 'linux', architecture: image.architecture ?? 'amd64' } }),
    });
  }
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: descriptors }));
  blobs.set(sha256(index), index);
  const indexJson = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${sha256(index)}`, size: index.length, annotations: { 'org.opencontainers.image.ref.name': options.tag ?? 'latest' } }],
    }),
  );
  return { blobs, indexJson, indexDigest: `sha256:${sha256(index)}`, manifests };
}

export async function writeIndexLayout(dir: string, made: HandIndex): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), made.indexJson);
  for (const [hex, data] of made.blobs) await writeFile(join(dir, 'blobs', 'sha256', hex), data);
}

export async function writeIndexArchive(path: string, made: HandIndex): Promise<void> {
  const files: HandFile[] = [
    { name: 'oci-layout', body: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
    { name: 'index.json', body: made.indexJson },
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
    ...[...made.blobs].map(([hex, data]) => ({ name: `blobs/sha256/${hex}`, body: data })),
  ];
  await writeFile(path, await tarOf(files));
}

/** A Containerfile whose kernel is app-${TARGETARCH}, beside one file both platforms share. */
export const PER_PLATFORM_CONTAINERFILE = `FROM scratch
ARG TARGETARCH
COPY app-\${TARGETARCH} /unikernel/app
COPY shared.txt /etc/shared.txt
LABEL com.urunc.unikernel.binary=/unikernel/app
LABEL com.urunc.unikernel.unikernelType=unikraft
LABEL com.urunc.unikernel.hypervisor=qemu
LABEL com.urunc.unikernel.cmdline=app
CMD ["app"]
`;

/** Makes `context` with PER_PLATFORM_CONTAINERFILE, an amd64 and an arm64 kernel, and shared.txt. */
export async function writePerPlatformContext(context: string, shared = 'one layer for both\n'): Promise<void> {
  await mkdir(context, { recursive: true });
  await writeFile(join(context, 'Containerfile'), PER_PLATFORM_CONTAINERFILE);
  await writeFile(join(context, 'app-amd64'), fakeElf('x86-64'));
  await writeFile(join(context, 'app-arm64'), fakeElf('aarch64'));
  await writeFile(join(context, 'shared.txt'), shared);
}

/** A Unikraft/qemu image for one architecture: /unikernel/app, that architecture's ELF. */
export function unikraftImage(architecture: 'amd64' | 'arm64'): HandImage {
  return {
    architecture,
    annotations: full({ unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikernel/app', cmdline: 'app' }),
    cmd: ['app'],
    layers: [[{ name: 'unikernel/', type: 'directory' }, { name: 'unikernel/app', body: fakeElf(architecture === 'amd64' ? 'x86-64' : 'aarch64'), mode: 0o755 }]],
  };
}
