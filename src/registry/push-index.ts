/**
 * Pushes an image index whose images already exist somewhere (imagetools
 * create): for each target repository, every blob the registry lacks
 * (mounted from the image's own repository when it is on the same registry,
 * else uploaded), then each manifest by digest, then the index under each
 * tag. push.ts pushes one built image under tags; this pushes manifests by
 * digest, which an index needs before it can name them.
 */
import type { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { LapinError } from '../errors.js';
import { parseReference } from '../image/reference.js';
import type { SourceDescriptor } from '../source/types.js';
import { repositoryScope } from './auth.js';
import type { RegistryClient } from './client.js';
import { mapLimit } from './pool.js';
import { clientFor, type PushEvent, type PushOptions, type PushedName } from './push.js';

/** One image of the index, read from wherever it is. */
export interface IndexPushImage {
  manifest: { mediaType: string; digest: string; bytes: Buffer };
  /** Config and layers. */
  blobs: readonly SourceDescriptor[];
  /** Where the blobs already are ("host", "path"), for a cross-repository mount. */
  repository?: { domain: string; path: string };
  blob(descriptor: SourceDescriptor): Promise<Readable>;
}

export interface IndexPushDocument {
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

export async function pushIndex(images: readonly IndexPushImage[], index: IndexPushDocument, names: readonly string[], options: PushOptions = {}): Promise<PushedName[]> {
  const shared: PushOptions = { ...options, clients: options.clients ?? new Map<string, RegistryClient>() };
  const emit = (event: PushEvent): void => options.onEvent?.(event);
  const byRepository = new Map<string, { domain: string; path: string; tags: string[]; names: string[] }>();
  for (const name of names) {
    const reference = parseReference(name);
    const key = `${reference.domain}/${reference.path}`;
    const entry = byRepository.get(key) ?? { domain: reference.domain, path: reference.path, tags: [], names: [] };
    entry.tags.push(reference.tag);
    entry.names.push(name);
    byRepository.set(key, entry);
  }
  const pushed: PushedName[] = [];
  for (const target of byRepository.values()) {
    const client = clientFor(target.domain, shared);
    const display = `${target.domain}/${target.path}`;
    const scopes = [repositoryScope(target.path, 'pull,push')];
    for (const image of images) {
      const from = image.repository && image.repository.domain === target.domain && image.repository.path !== target.path ? image.repository.path : undefined;
      await mapLimit(image.blobs, options.concurrency ?? 3, (blob) => copyBlob(client, target.path, display, blob, image, from, scopes, emit));
      await putManifest(client, target.path, display, image.manifest.digest, image.manifest, scopes);
      emit({ kind: 'step', message: `pushed ${display}@${image.manifest.digest}` });
    }
    for (const [i, tag] of target.tags.entries()) {
      await putManifest(client, target.path, display, tag, index, scopes);
      emit({ kind: 'step', message: `pushed ${display}:${tag} (index ${index.digest})` });
      pushed.push({ name: target.names[i] as string, digest: index.digest });
    }
  }
  return pushed;
}

async function copyBlob(client: RegistryClient, repository: string, display: string, blob: SourceDescriptor, image: IndexPushImage, from: string | undefined, scopes: string[], emit: (event: PushEvent) => void): Promise<void> {
  const label = `blob ${blob.digest.slice(7, 19)}`;
  const head = await client.request({ method: 'HEAD', target: `/v2/${repository}/blobs/${blob.digest}`, scopes, accept: [200, 404], what: `checking ${label} in ${display}` });
  await head.body?.cancel().catch(() => undefined);
  if (head.status === 200) {
    emit({ kind: 'step', message: `${label} already in ${display}` });
    return;
  }
  let location: string | undefined;
  if (from !== undefined) {
    const response = await client.request({
      method: 'POST',
      target: `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(from)}`,
      scopes: [...scopes, repositoryScope(from, 'pull')],
      accept: [201, 202],
      what: `mounting ${label} into ${display}`,
    });
    await response.body?.cancel().catch(() => undefined);
    if (response.status === 201) {
      emit({ kind: 'step', message: `${label} mounted into ${display} from ${from}` });
      return;
    }
    location = response.headers.get('location') ?? undefined;
  }
  // Not on this registry (or it would not mount): the bytes come from the source, checked on the way.
  const data = await buffer(await image.blob(blob));
  const { createHash } = await import('node:crypto');
  const actual = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  if (actual !== blob.digest || data.length !== blob.size) throw new LapinError(`${label} read from the source does not match its digest (got ${actual}, ${data.length} of ${blob.size} bytes); nothing was pushed for it`);
  if (location === undefined) {
    const start = await client.request({ method: 'POST', target: `/v2/${repository}/blobs/uploads/`, scopes, accept: [202], what: `starting the upload of ${label} to ${display}` });
    await start.body?.cancel().catch(() => undefined);
    location = start.headers.get('location') ?? undefined;
  }
  if (location === undefined) throw new LapinError(`${client.host} opened an upload without saying where (no Location header)`);
  const url = new URL(location, await client.baseUrl());
  url.searchParams.set('digest', blob.digest);
  const put = await client.request({ method: 'PUT', target: url.href, headers: { 'content-type': 'application/octet-stream' }, body: () => data, scopes, accept: [201, 204], what: `uploading ${label} to ${display}`, retry: false });
  await put.body?.cancel().catch(() => undefined);
  emit({ kind: 'step', message: `pushed ${label} (${blob.size} bytes) to ${display}` });
}

async function putManifest(client: RegistryClient, repository: string, display: string, reference: string, manifest: { mediaType: string; digest: string; bytes: Buffer }, scopes: string[]): Promise<void> {
  const response = await client.request({
    method: 'PUT',
    target: `/v2/${repository}/manifests/${reference}`,
    headers: { 'content-type': manifest.mediaType },
    body: () => manifest.bytes,
    scopes,
    accept: [200, 201],
    what: `pushing ${manifest.digest} to ${display}`,
  });
  await response.body?.cancel().catch(() => undefined);
  const echoed = response.headers.get('docker-content-digest');
  if (echoed && echoed !== manifest.digest) throw new LapinError(`${client.host} stored ${display}:${reference} as ${echoed}, not ${manifest.digest}`, { hint: 'the registry rewrote the manifest' });
}
