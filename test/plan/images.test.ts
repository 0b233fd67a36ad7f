// Issue 10 §4: a pull that fails names where the file names the image, the reference as written,
// and the likely slip: a bunnyfile keyword (local, scratch) or a Containerfile stage name.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { build, LapinError } from '../../src/index.js';
import { parseBunnyfile } from '../../src/frontends/bunnyfile.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import { imagesOf, lookAlikeHint, pullFailure } from '../../src/plan/images.js';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin images '));
});

const BUNNY = (from: string): string =>
  `version: v0.1\nplatforms:\n  framework: mirage\n  monitor: hvt\nkernel:\n  from: ${from}\n  path: k\n`;

async function failure(run: () => Promise<unknown>): Promise<LapinError> {
  try {
    await run();
  } catch (error) {
    assert.ok(error instanceof LapinError, `expected a LapinError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the build to fail');
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

describe('image references keep their positions', () => {
  test('FROM, COPY --from and kernel.from are located in the plan', () => {
    const plan = parseContainerfile('FROM scratch AS a\nFROM alpine\nCOPY --from=builder /k /k\n', 'Containerfile');
    assert.deepEqual(imagesOf(plan), [
      { reference: 'alpine', via: 'base', at: { file: 'Containerfile', line: 2, column: 6 } },
      { reference: 'builder', via: 'copy', at: { file: 'Containerfile', line: 3, column: 6 } },
    ]);
    assert.deepEqual(imagesOf(parseBunnyfile(BUNNY('locla'), 'bunnyfile')), [
      { reference: 'locla', via: 'base', at: { file: 'bunnyfile', line: 6, column: 9 } },
    ]);
  });
});

describe('look-alike hints', () => {
  const containerfile = (text: string) => parseContainerfile(text, 'Containerfile');
  test('a --from that names no stage says so, with the stage meant or the stages there are', () => {
    const plan = containerfile('FROM scratch AS build\nFROM scratch\nCOPY --from=biuld /k /k\nCOPY --from=other /k /k\n');
    const [biuld, other] = imagesOf(plan);
    assert.ok(biuld && other);
    assert.equal(lookAlikeHint(plan, biuld), 'no stage named biuld, so it was read as an image; did you mean build?');
    assert.equal(lookAlikeHint(plan, other), 'no stage named other, so it was read as an image; the stages are build');
    const alone = containerfile('FROM scratch\nCOPY --from=builder /k /k\n');
    assert.match(lookAlikeHint(alone, imagesOf(alone)[0] ?? assert.fail()) ?? '', /no stage named builder.*FROM <image> AS builder/);
  });
  test('a bare word close to local or scratch, but not a real image name', () => {
    for (const [word, meant] of [['locla', 'local'], ['loacl', 'local'], ['scrach', 'scratch']] as const) {
      const plan = parseBunnyfile(BUNNY(word), 'bunnyfile');
      assert.equal(lookAlikeHint(plan, imagesOf(plan)[0] ?? assert.fail()), `did you mean ${meant}?`);
    }
    for (const word of ['alpine', 'ghcr.io/x/local', 'localhost:5000/k']) {
      const plan = parseBunnyfile(BUNNY(word), 'bunnyfile');
      assert.equal(lookAlikeHint(plan, imagesOf(plan)[0] ?? assert.fail()), undefined, word);
    }
    const from = containerfile('FROM scrtch\n');
    assert.equal(lookAlikeHint(from, imagesOf(from)[0] ?? assert.fail()), 'did you mean scratch?');
  });
  test('pullFailure keeps the registry error and its hint, adds the position and the slip', () => {
    const plan = parseBunnyfile(BUNNY('locla'), 'bunnyfile');
    const use = imagesOf(plan)[0] ?? assert.fail();
    const wrapped = pullFailure(plan, use, new LapinError('cannot resolve the registry host registry-1.docker.io', { hint: 'check the network' }));
    assert.ok(wrapped instanceof LapinError);
    assert.equal(wrapped.describe(), 'bunnyfile:6:9: cannot pull locla: cannot resolve the registry host registry-1.docker.io (did you mean local?; check the network)');
    const other = new TypeError('x');
    assert.equal(pullFailure(plan, use, other), other);
  });
});

describe('a failed pull in a build', () => {
  test('kernel.from: locla with --pull=never: the position, the reference and "did you mean local?"', async () => {
    const context = path.join(work, 'bunny');
    await mkdir(context, { recursive: true });
    await writeFile(path.join(context, 'bunnyfile'), BUNNY('locla'));
    await writeFile(path.join(context, 'k'), 'kernel');
    const error = await failure(() =>
      build({ context, cwd: context, pull: 'never', cacheDir: path.join(work, 'cache'), outputs: [{ type: 'oci', dest: path.join(work, 'never.tar') }] }),
    );
    assert.deepEqual(error.at, { file: 'bunnyfile', line: 6, column: 9 });
    assert.match(error.message, /^cannot pull locla: /);
    assert.match(error.hint ?? '', /^did you mean local\?/);
  });

  test('a registry that cannot be reached: the error names the FROM line and the reference as written', async () => {
    const context = path.join(work, 'from');
    await mkdir(context, { recursive: true });
    const reference = `127.0.0.1:${await closedPort()}/alpine`;
    await writeFile(path.join(context, 'Containerfile'), `FROM scratch AS k\nFROM  ${reference}\nCOPY --from=k /x /x\n`);
    const error = await failure(() =>
      build({ context, cwd: context, cacheDir: path.join(work, 'cache'), outputs: [{ type: 'oci', dest: path.join(work, 'from.tar') }]}),
    );
    assert.deepEqual(error.at, { file: 'Containerfile', line: 2, column: 7 });
    assert.ok(error.message.startsWith(`cannot pull ${reference}: `), error.message);
  });
});
