// Definition files are UTF-8: one in another encoding (Latin-1 from an old
// editor, UTF-16 from PowerShell's `>`) is refused at the byte that is not
// UTF-8, with how to convert it, instead of U+FFFD landing in its paths.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { build, LapinError } from '../../src/index.js';
import { decodeDefinition } from '../../src/frontends/decode.js';
import { positionOf } from '../../src/frontends/limits.js';
import { fakeElfKernel } from '../helpers/hand-image.js';
import { assertNoStack, lapin } from '../registry/helpers.js';

const STRICT = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function refusal(bytes: Uint8Array, file = 'Containerfile'): LapinError {
  try {
    decodeDefinition(bytes, file);
  } catch (error) {
    assert.ok(error instanceof LapinError, String(error));
    return error;
  }
  assert.fail('expected a LapinError');
}

describe('decodeDefinition', () => {
  test('UTF-8 text comes back unchanged, a byte order mark included', () => {
    const text = '\uFEFFFROM scratch\r\nLABEL a="é ✓ 𝄞"\n';
    assert.equal(decodeDefinition(Buffer.from(text), 'Containerfile'), text);
  });

  test('a Latin-1 byte is refused at its line and column, with the conversion to run', () => {
    const bytes = Buffer.concat([Buffer.from('FROM scratch\nLABEL author="M'), Buffer.from([0xfc]), Buffer.from('ller"\n')]);
    const error = refusal(bytes);
    assert.deepEqual(error.at, { file: 'Containerfile', line: 2, column: 16 });
    assert.match(error.message, /the byte at offset 28 \(\\xfc\\x6c\\x6c\\x65\) is not UTF-8/);
    assert.match(error.hint ?? '', /save the file as UTF-8, e.g. with iconv -f LATIN1/);
  });

  test('the column counts characters, not bytes, before the bad byte', () => {
    const bytes = Buffer.concat([Buffer.from('cmd: ["é✓'), Buffer.from([0xc3, 0x28])]);
    assert.deepEqual(refusal(bytes, 'bunnyfile').at, { file: 'bunnyfile', line: 1, column: 10 });
  });

  for (const [name, bytes] of [
    ['UTF-16 (little-endian)', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('FROM scratch\n', 'utf16le')])],
    ['UTF-16 (big-endian)', Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from('FROM scratch\n', 'utf16le').swap16()])],
    ['UTF-16 (little-endian)', Buffer.from('FROM scratch\n', 'utf16le')],
    ['UTF-32 (little-endian)', Buffer.from([0xff, 0xfe, 0, 0, 0x46, 0, 0, 0])],
    // iconv -t UTF-32LE / UTF-32BE write no mark.
    ['UTF-32 (little-endian)', Buffer.from('FROM scratch\n', 'utf16le').reduce((out, _b, i, all) => (i % 2 === 0 ? Buffer.concat([out, Buffer.from([all[i] as number, 0, 0, 0])]) : out), Buffer.alloc(0))],
    ['UTF-32 (big-endian)', Buffer.from('FROM scratch\n', 'utf16le').reduce((out, _b, i, all) => (i % 2 === 0 ? Buffer.concat([out, Buffer.from([0, 0, 0, all[i] as number])]) : out), Buffer.alloc(0))],
  ] as const) {
    test(`${name} text${bytes[0] !== 0xff && bytes[0] !== 0xfe ? ' without a byte order mark' : ''} is named as such`, () => {
      const error = refusal(bytes);
      assert.equal(error.message, `the file is ${name} text; lapin reads definition files as UTF-8`);
      assert.deepEqual(error.at, { file: 'Containerfile', line: 1, column: 1 });
    });
  }

  test('property: any bytes decode exactly when they are UTF-8, else a positioned LapinError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        let strict: string | undefined;
        try {
          strict = STRICT.decode(bytes);
        } catch {
          strict = undefined;
        }
        try {
          const text = decodeDefinition(bytes, 'f');
          assert.equal(text, strict);
          assert.deepEqual(Buffer.from(text), Buffer.from(bytes));
        } catch (error) {
          assert.ok(error instanceof LapinError, String(error));
          assert.ok(error.at !== undefined && error.at.line >= 1 && error.at.column >= 1);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('property: a stray byte in UTF-8 text is reported where the text puts it', () => {
    const stray = fc.constantFrom(0x80, 0xbf, 0xc0, 0xc1, 0xf5, 0xff, 0xfe);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 2 }), fc.string({ unit: 'grapheme' }), stray, (head, tail, byte) => {
        fc.pre(!head.includes('\0'));
        const text = `${head}\n${tail}`;
        const index = head.length + 1;
        const bytes = Buffer.concat([Buffer.from(text.slice(0, index)), Buffer.from([byte]), Buffer.from(text.slice(index))]);
        const error = refusal(bytes, 'f');
        assert.deepEqual(error.at, positionOf(text, index, 'f'));
      }),
    );
  });
});

describe('lapin build with a definition file that is not UTF-8', () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'lapin decode '));
    await writeFile(path.join(work, 'network.hvt'), fakeElfKernel());
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('a Latin-1 byte in a COPY path is one positioned line, exit 1, and nothing is written', async () => {
    const text = Buffer.concat([
      Buffer.from('FROM scratch\nCOPY network.hvt /unikernel/r'),
      Buffer.from([0xe9]),
      Buffer.from('seau.hvt\nLABEL com.urunc.unikernel.binary=/unikernel/r\u00e9seau.hvt\nLABEL com.urunc.unikernel.unikernelType=mirage\nLABEL com.urunc.unikernel.hypervisor=hvt\n'),
    ]);
    await writeFile(path.join(work, 'Containerfile'), text);
    const result = await lapin(['build', '-t', 'x:1', '-o', 'out.tar', '.'], { cwd: work });
    assertNoStack(result.stderr);
    assert.equal(result.status, 1, result.stderr);
    assert.equal(result.stderr, "lapin: error: Containerfile:2:30: the byte at offset 42 (\\xe9\\x73\\x65\\x61) is not UTF-8; lapin reads definition files as UTF-8 (save the file as UTF-8, e.g. with iconv -f LATIN1 -t UTF-8 for a Latin-1 file)\n");
    await assert.rejects(readFile(path.join(work, 'out.tar')), { code: 'ENOENT' });
  });

  test('a UTF-16 bunnyfile (PowerShell\'s `>`) is named as UTF-16, not "cannot tell which syntax"', async () => {
    const dir = await mkdtemp(path.join(work, 'utf16-'));
    await writeFile(path.join(dir, 'network.hvt'), fakeElfKernel());
    const yaml = 'version: v0.1\nplatforms: {framework: mirage, monitor: hvt}\nkernel: {from: local, path: network.hvt}\n';
    await writeFile(path.join(dir, 'build.txt'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(yaml, 'utf16le')]));
    await assert.rejects(build({ context: dir, file: path.join(dir, 'build.txt'), outputs: [{ type: 'oci', dest: path.join(dir, 'out.tar') }] }), (error: unknown) => {
      assert.ok(error instanceof LapinError);
      assert.match(error.describe(), /build\.txt:1:1: the file is UTF-16 \(little-endian\) text; lapin reads definition files as UTF-8 \(save the file as UTF-8, e.g. with iconv -f UTF-16 -t UTF-8/);
      return true;
    });
  });
});
