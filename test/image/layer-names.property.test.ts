import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import fc from 'fast-check';
import { byteNameExtract, layerName } from '../../src/image/layer-names.js';
import { nameBytes } from '../../src/image/names.js';
import { rawHeader, rawTar } from '../helpers/raw-tar.js';

/** A pax record of raw bytes: "LEN key=value\n". */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let length = rest.length + 1;
  while (String(length).length + rest.length !== length) length = String(length).length + rest.length;
  return Buffer.concat([Buffer.from(String(length)), rest]);
}

function pad(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

/** Each name as a pax path record (and a symlink's pax linkpath) before a ustar entry named "placeholder". */
function layer(entries: ReadonlyArray<{ name: Buffer; link: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  for (const { name, link } of entries) {
    const pax = Buffer.concat([paxRecord('path', name), paxRecord('linkpath', link)]);
    parts.push(rawHeader({ name: 'PaxHeader', type: 'x' }, pax.length), pad(pax));
    parts.push(rawHeader({ name: 'placeholder', type: '2' }, 0));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

async function names(tar: Buffer): Promise<Array<{ name: string; link: string }>> {
  const extract = byteNameExtract();
  const seen: Array<{ name: string; link: string }> = [];
  extract.on('entry', (header, stream, next) => {
    seen.push({ name: layerName(header.name), link: layerName(header.linkname ?? '') });
    stream.on('end', next);
    stream.resume();
  });
  await pipeline(Readable.from([tar]), extract);
  return seen;
}

const byteName = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((a) => Buffer.from(a.map((b) => (b === 0 || b === 0x2f || b === 0x0a ? 0x41 : b))));

test('pax path and linkpath of any bytes come back as those bytes through layerName and nameBytes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.record({ name: byteName, link: byteName }), { minLength: 1, maxLength: 6 }), async (entries) => {
      const read = await names(layer(entries));
      assert.equal(read.length, entries.length);
      read.forEach((entry, i) => {
        assert.deepEqual(nameBytes(entry.name), entries[i]?.name);
        assert.deepEqual(nameBytes(entry.link), entries[i]?.link);
      });
    }),
    { numRuns: 200 },
  );
});

test('ustar names of any bytes come back as those bytes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 99 }).map((a) => Buffer.from(a.map((b) => (b === 0 || b === 0x2f ? 0x41 : b)))), async (name) => {
      const header = rawHeader({ name: 'n', type: '0' }, 0);
      header.fill(0, 0, 100);
      name.copy(header, 0);
      header.fill(0x20, 148, 156);
      let sum = 0;
      for (const byte of header) sum += byte;
      header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
      const read = await names(Buffer.concat([header, Buffer.alloc(1024)]));
      assert.deepEqual(nameBytes(read[0]?.name ?? ''), name);
    }),
    { numRuns: 200 },
  );
});

test('a pax header of any bytes ends the read, never a hang or a stray exception', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (body) => {
      const tar = rawTar([{ name: 'PaxHeader', type: 'x', body: Buffer.from(body) }, { name: 'f', body: 'x' }]);
      try {
        await names(tar);
      } catch (error) {
        assert.ok(error instanceof Error);
      }
    }),
    { numRuns: 300 },
  );
});
