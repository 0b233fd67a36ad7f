import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { blobReader } from '../../src/registry/push.js';

const bytes = Buffer.alloc(4 * 64 * 1024, 7);
const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** A source that hands out its bytes in 64 KiB pieces, each after `delayMs`, as a slow archive or registry would. */
function slowSource(delayMs: number): () => Promise<Readable> {
  return async () =>
    Readable.from(
      (async function* () {
        for (let offset = 0; offset < bytes.length; offset += 64 * 1024) {
          await new Promise((resolve) => setTimeout(resolve, delayMs));
          yield bytes.subarray(offset, offset + 64 * 1024);
        }
      })(),
    );
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

test('a range fetch cancels while a source read is in flight (a cut connection) is not a source failure, and the next range reads the whole blob', async () => {
  const reader = blobReader({ digest, size: bytes.length, mediaType: 'application/octet-stream', bytes: { open: slowSource(20) } }, 'blob test');
  const first = reader.range(0, bytes.length, () => undefined).getReader();
  await first.read();
  // Let the stream start its read-ahead pull.
  await new Promise((resolve) => setTimeout(resolve, 5));
  // Cancel while the stream's read-ahead is still waiting on the source, as fetch does when the socket is cut.
  await first.cancel(new Error('socket cut'));
  await new Promise((resolve) => setTimeout(resolve, 120));
  assert.equal(reader.failure, undefined);
  const again = await readAll(reader.range(0, bytes.length, () => undefined));
  assert.equal(reader.failure, undefined);
  assert.ok(again.equals(bytes));
  await reader.close();
});

test('a source that does not match its digest is still a failure', async () => {
  const reader = blobReader({ digest: `sha256:${'0'.repeat(64)}`, size: bytes.length, mediaType: 'application/octet-stream', bytes: { open: slowSource(0) } }, 'blob test');
  await assert.rejects(readAll(reader.range(0, bytes.length, () => undefined)));
  assert.match(reader.failure?.message ?? '', /does not match sha256:0{64}: its digest is sha256:/);
  await reader.close();
});
