// The definition file from stdin (-f -, docker build's form): the same image
// as the file itself, positions named <stdin>, the syntax from the text, the
// context's .dockerignore still applied, and every refusal one line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { build } from '../../src/build.js';
import { refuseTerminalStdin } from '../../src/cli/usage.js';
import { MAX_DEFINITION_BYTES } from '../../src/frontends/limits.js';
import { readDefinition } from '../../src/pipeline/definition.js';
import { resolveSettings } from '../../src/pipeline/options.js';
import { CLI, EXAMPLE } from '../registry/helpers.js';

let work: string;
let context: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin stdin definition '));
  context = path.join(work, 'context');
  await cp(EXAMPLE, context, { recursive: true });
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function cli(args: string[], input?: string | Buffer) {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd: work, input, env: { ...process.env, LAPIN_CACHE_DIR: path.join(work, 'cache') } });
  return { status: result.status, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

describe('-f - (the definition file on stdin)', () => {
  test('each syntax read from stdin builds the image its file builds, its syntax from its text', async () => {
    for (const name of ['bunnyfile', 'Containerfile', 'args.nix']) {
      const text = await readFile(path.join(context, name));
      const fromFile = cli(['build', '-q', '-f', path.join(context, name), '-t', 'urunc/net:1', '-o', path.join(work, `${name}-file.tar`), context]);
      assert.equal(fromFile.status, 0, fromFile.stderr);
      const piped = cli(['build', '-f', '-', '-t', 'urunc/net:1', '-o', path.join(work, `${name}-stdin.tar`), context], text);
      assert.equal(piped.status, 0, piped.stderr);
      assert.match(piped.stderr, new RegExp(`^=> read <stdin> as ${name === 'args.nix' ? 'nix' : name.toLowerCase()} `));
      assert.deepEqual(await readFile(path.join(work, `${name}-stdin.tar`)), await readFile(path.join(work, `${name}-file.tar`)), name);
    }
  });

  test('errors are at <stdin>:LINE:COL; text that is no syntax says to pass --syntax; exit 1, nothing written', async () => {
    const out = path.join(work, 'bad.tar');
    const seed = await readFile(path.join(context, 'Containerfile'), 'utf8');
    const missing = cli(['build', '-f', '-', '-o', out, context], seed.replace('COPY network.hvt', 'COPY nothere'));
    assert.equal(missing.status, 1, missing.stderr);
    assert.match(missing.stderr, /^lapin: error: <stdin>:3:\d+: "nothere" not found in the build context /m);
    const unknown = cli(['build', '-f', '-', '-o', out, context], 'hello\n');
    assert.equal(unknown.status, 1, unknown.stderr);
    assert.match(unknown.stderr, /^lapin: error: <stdin>: cannot tell which syntax this file is in \(pass --syntax bunnyfile, --syntax containerfile or --syntax nix\)$/m);
    assert.equal(spawnSync('ls', [out]).status, 2);
  });

  test("the context's .dockerignore applies to a file from stdin (it has no FILE.dockerignore of its own)", async () => {
    const dir = await mkdtemp(path.join(work, 'ignored '));
    await cp(EXAMPLE, dir, { recursive: true });
    await writeFile(path.join(dir, '.dockerignore'), 'network.hvt\n');
    const r = cli(['build', '-f', '-', '-o', path.join(work, 'ignored.tar'), dir], await readFile(path.join(dir, 'Containerfile')));
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /excluding what .*\.dockerignore names from the build context/);
    assert.match(r.stderr, /^lapin: error: <stdin>:\d+:\d+: "network\.hvt" is excluded from the build context by .*\.dockerignore/m);
  });

  test('a terminal on stdin, no stdin stream, more than the limit, and a context of -: one line each, exit 2', async () => {
    assert.throws(() => refuseTerminalStdin('-', true), /-f - reads the definition file from stdin, which is a terminal here/);
    refuseTerminalStdin('-', false);
    refuseTerminalStdin('Containerfile', true);
    await assert.rejects(build({ context, file: '-', outputs: [{ type: 'oci', dest: path.join(work, 'none.tar') }], cwd: work }), /-f - reads the definition file from stdin, and this build has none/);
    const big = cli(['build', '-f', '-', '-o', path.join(work, 'big.tar'), context], Buffer.alloc(MAX_DEFINITION_BYTES + 1, 0x20));
    assert.equal(big.status, 1, big.stderr);
    assert.match(big.stderr, /^lapin: error: <stdin> is larger than 1 MiB, lapin's limit for a definition file/m);
    const dash = cli(['build', '-'], 'FROM scratch\n');
    assert.equal(dash.status, 2, dash.stderr);
    assert.equal(dash.stderr, 'lapin: error: lapin reads no build context from stdin (docker build -) (give the context as a directory; the definition file may come from stdin: lapin build -f - DIR)\n');
  });

  test('the library: stdin chunked any way reads as the bytes given, up to the limit (property)', async () => {
    const settingsFor = async (chunks: Buffer[]) => resolveSettings({ context, file: '-', stdin: Readable.from(chunks), cwd: work });
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), fc.array(fc.nat(200), { maxLength: 6 }), async (body, cuts) => {
        const bytes = Buffer.from(`version: v0.1\n# ${body.replace(/[\r\n]/g, ' ')}\n`);
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const chunks = [0, ...points].map((start, i) => bytes.subarray(start, [...points, bytes.length][i])).filter((c) => c.length > 0);
        const definition = await readDefinition(await settingsFor(chunks));
        assert.equal(definition.displayFile, '<stdin>');
        assert.equal(definition.syntax, 'bunnyfile');
        assert.equal(definition.text, bytes.toString('utf8').replace(/^\uFEFF/, ''));
      }),
      { numRuns: 50 },
    );
    const over = [Buffer.alloc(MAX_DEFINITION_BYTES, 0x20), Buffer.from('x')];
    await assert.rejects(readDefinition(await settingsFor(over)), /larger than 1 MiB/);
  });
});
