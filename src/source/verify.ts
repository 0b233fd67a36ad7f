/**
 * Every blob a local source gives is checked against the digest (and size)
 * that names it, as a registry pull checks it: a layer altered after the
 * build must not be judged runnable. Streams are hashed as they are read,
 * so the check costs no extra pass.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { SourceError } from './errors.js';

const ALGORITHMS: Record<string, { hash: string; hexLength: number }> = {
  sha256: { hash: 'sha256', hexLength: 64 },
  sha512: { hash: 'sha512', hexLength: 128 },
};

function hasherFor(digest: string, what: string): { hash: Hash; expected: string } {
  const match = /^([a-z0-9]+):([a-f0-9]+)$/.exec(digest);
  const algorithm = match ? ALGORITHMS[match[1] as string] : undefined;
  if (!match || !algorithm || (match[2] as string).length !== algorithm.hexLength) {
    throw new SourceError(`${what}: ${JSON.stringify(digest.slice(0, 80))} is not a sha256 or sha512 digest`);
  }
  return { hash: createHash(algorithm.hash), expected: match[2] as string };
}

function mismatch(what: string, actual: string): SourceError {
  return new SourceError(`${what}: the content does not match its digest (it hashes to ${actual}); the source was altered or damaged`, 'refusing it, as an engine would');
}

function wrongSize(what: string, size: number, expected: number): SourceError {
  return new SourceError(`${what}: the blob is ${size} bytes, not the ${expected} its descriptor says; the source was altered or damaged`);
}

/** Throws unless `data` hashes to `digest` (and has `size` bytes when a size is given). */
export function checkDigest(data: Buffer, digest: string, size: number | undefined, what: string): void {
  const { hash, expected } = hasherFor(digest, what);
  if (size !== undefined && data.length !== size) throw wrongSize(what, data.length, size);
  const actual = hash.update(data).digest('hex');
  if (actual !== expected) throw mismatch(what, `${digest.slice(0, digest.indexOf(':'))}:${actual}`);
}

/**
 * The stream's bytes, passed on as they come and hashed; the stream fails
 * at its end when the digest differs, or as soon as more bytes than `size`
 * arrive.
 */
export function verifyingStream(source: Readable, digest: string, size: number | undefined, what: string): Readable {
  const { hash, expected } = hasherFor(digest, what);
  const algorithm = digest.slice(0, digest.indexOf(':'));
  let seen = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      if (size !== undefined && seen > size) {
        callback(new SourceError(`${what}: the blob is longer than the ${size} bytes its descriptor says; the source was altered or damaged`));
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      if (size !== undefined && seen !== size) {
        callback(wrongSize(what, seen, size));
        return;
      }
      const actual = hash.digest('hex');
      callback(actual === expected ? null : mismatch(what, `${algorithm}:${actual}`));
    },
  });
  source.on('error', (error) => check.destroy(error));
  check.on('close', () => {
    if (!source.destroyed) source.destroy();
  });
  return source.pipe(check);
}
