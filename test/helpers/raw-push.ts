// Puts blobs and manifest bytes into a docker-registry exactly as given (no
// client that would tidy them), so readers meet indexes a hostile or careless
// pusher wrote: duplicate entries, odd platform strings, empty lists.
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';

const digestOf = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** A monolithic upload (POST then PUT ?digest=) to an anonymous plain-HTTP registry. */
export async function putBlob(host: string, repository: string, data: Buffer): Promise<string> {
  const digest = digestOf(data);
  const started = await fetch(`http://${host}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  assert.equal(started.status, 202, await started.text());
  const location = new URL(started.headers.get('location') as string, `http://${host}`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 201, await put.text());
  return digest;
}

export async function putManifest(host: string, repository: string, reference: string, data: Buffer, mediaType: string): Promise<string> {
  const put = await fetch(`http://${host}/v2/${repository}/manifests/${reference}`, { method: 'PUT', body: data, headers: { 'content-type': mediaType } });
  assert.equal(put.status, 201, await put.text());
  return digestOf(data);
}

export async function deleteManifest(host: string, repository: string, digest: string): Promise<void> {
  const gone = await fetch(`http://${host}/v2/${repository}/manifests/${digest}`, { method: 'DELETE' });
  assert.equal(gone.status, 202, await gone.text());
}

/** Every blob of a hand-made image (test/helpers/hand-image.ts handBlobs), then its manifest by digest. */
export async function putHandImage(host: string, repository: string, made: { blobs: Map<string, Buffer>; manifestDigest: string }): Promise<{ digest: string; size: number }> {
  const manifest = made.blobs.get(made.manifestDigest.slice(7)) as Buffer;
  for (const [hex, data] of made.blobs) if (`sha256:${hex}` !== made.manifestDigest) await putBlob(host, repository, data);
  await putManifest(host, repository, made.manifestDigest, manifest, 'application/vnd.oci.image.manifest.v1+json');
  return { digest: made.manifestDigest, size: manifest.length };
}
