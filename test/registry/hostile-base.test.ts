// A base image from a registry lapin does not control: a hand-written HTTP
// server on 127.0.0.1 serves one image whose config, annotations and token
// service are whatever the test says. A FROM build copies the base's Env,
// Cmd, Labels, WorkingDir, ports and volumes into its own image, so each is
// checked when pulled: a config of any shape is pulled as one the build can
// read, or refused in one sentence, before it is used or kept.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { MANIFEST_SIZE_LIMIT } from '../../src/registry/client.js';
import { pullImage } from '../../src/registry/pull.js';
import { fakeElfKernel, tarOf } from '../helpers/hand-image.js';

const ROOT = path.resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
const sha = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** What the registry serves now; the tests change it between pulls. */
interface Served {
  config: unknown;
  annotations?: unknown;
  /** The config's size as the manifest lists it, when it lies. */
  configSize?: number;
  /** A realm to send in a 401 challenge, if any. */
  realm?: string;
}

let work: string;
let server: Server;
let host: string;
let served: Served = { config: {} };
let layer: Buffer;
let layerTar: Buffer;
/** Bytes of blob bodies the server wrote. */
let blobBytes = 0;
let counter = 0;

function image(): { manifest: Buffer; blobs: Map<string, Buffer> } {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: served.config, rootfs: { type: 'layers', diff_ids: [sha(layerTar)] } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: served.configSize ?? config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length }],
      ...(served.annotations !== undefined ? { annotations: served.annotations } : {}),
    }),
  );
  return { manifest, blobs: new Map([[sha(config), config], [sha(layer), layer]]) };
}

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-hostile-base-'));
  layerTar = await tarOf([{ name: 'etc/hello', body: 'hi' }]);
  layer = gzipSync(layerTar);
  server = createServer((req, res) => {
    const url = req.url ?? '';
    if (served.realm !== undefined && req.headers.authorization === undefined) {
      return void res.writeHead(401, { 'www-authenticate': `Bearer realm="${served.realm}",service="hostile"` }).end();
    }
    if (url === '/v2/') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    const { manifest, blobs } = image();
    if (url.includes('/manifests/')) return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest);
    const digest = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url)?.[1];
    if (digest !== undefined && served.configSize !== undefined && !blobs.has(digest)) {
      // A config the manifest says is huge: sent without end, as long as lapin reads.
      res.writeHead(200);
      const piece = Buffer.alloc(1 << 20, 0x20);
      const more = (): void => {
        while (blobBytes < 256 * piece.length) {
          blobBytes += piece.length;
          if (!res.write(piece)) return void res.once('drain', more);
        }
        res.end();
      };
      return more();
    }
    const blob = digest === undefined ? undefined : blobs.get(digest);
    if (blob) {
      blobBytes += blob.length;
      return void res.writeHead(200).end(blob);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(work, { recursive: true, force: true });
});

const retry = { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 };
const pull = () => pullImage(`${host}/hostile/base:1`, { architecture: 'amd64', cacheDir: path.join(work, `cache-${counter++}`), retry, policy: 'always' });

async function refused(pattern: RegExp): Promise<void> {
  await assert.rejects(pull(), (error: unknown) => {
    assert.ok(error instanceof LapinError, String(error));
    assert.match(error.message, pattern);
    return true;
  });
}

const isStringList = (v: unknown): boolean => Array.isArray(v) && v.every((s) => typeof s === 'string');
const isStringMap = (v: unknown): boolean => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((s) => typeof s === 'string');
const isObject = (v: unknown): boolean => typeof v === 'object' && v !== null && !Array.isArray(v);

describe('a base image config of any shape', () => {
  test('an Env, Cmd, label, WorkingDir, ports or annotation of the wrong type is refused in a sentence naming it', async () => {
    const cases: Array<[Served, RegExp]> = [
      [{ config: { Env: 5 } }, /config\.Env is not a list of strings/],
      [{ config: { Cmd: 'abc' } }, /config\.Cmd is not a list of strings/],
      [{ config: { Labels: { a: 5 } } }, /config\.Labels is not a map of strings/],
      [{ config: { WorkingDir: 7 } }, /config\.WorkingDir is not a string/],
      [{ config: { User: [] } }, /config\.User is not a string/],
      [{ config: { ExposedPorts: '80' } }, /config\.ExposedPorts is not an object/],
      [{ config: {}, annotations: { 'com.urunc.unikernel.hypervisor': 5 } }, /annotations is not a map of strings/],
    ];
    for (const [what, pattern] of cases) {
      served = what;
      await refused(pattern);
    }
    served = { config: { Env: ['A=1'], Cmd: ['/init'], Labels: { a: 'b' }, WorkingDir: '/', ExposedPorts: { '80/tcp': {} }, Volumes: null } };
    const base = await pull();
    assert.deepEqual(base.config.config?.Env, ['A=1']);
  });

  test('property: the pulled config holds what the build reads in the types it reads, or the pull is a LapinError', { timeout: 120_000 }, async () => {
    const anything = fc.jsonValue({ maxDepth: 2 });
    const config = fc.oneof(
      anything,
      fc.record(
        {
          Env: fc.oneof(fc.array(fc.string()), anything),
          Cmd: fc.oneof(fc.array(fc.string()), anything),
          Entrypoint: fc.oneof(fc.array(fc.string()), anything),
          Labels: fc.oneof(fc.dictionary(fc.string(), fc.string()), anything),
          WorkingDir: fc.oneof(fc.string(), anything),
          User: fc.oneof(fc.string(), anything),
          StopSignal: fc.oneof(fc.string(), anything),
          ExposedPorts: fc.oneof(fc.dictionary(fc.string(), fc.constant({})), anything),
          Volumes: fc.oneof(fc.dictionary(fc.string(), fc.constant({})), anything),
        },
        { requiredKeys: [] },
      ),
    );
    await fc.assert(
      fc.asyncProperty(config, fc.option(fc.oneof(fc.dictionary(fc.string(), fc.string()), anything), { nil: undefined }), async (c, annotations) => {
        served = { config: c, ...(annotations !== undefined ? { annotations } : {}) };
        let base;
        try {
          base = await pull();
        } catch (error) {
          if (!(error instanceof LapinError)) throw new Error(`not a LapinError: ${String((error as Error).stack ?? error)}`);
          return;
        }
        const from = (base.config.config ?? {}) as Record<string, unknown>;
        for (const key of ['Env', 'Cmd', 'Entrypoint']) assert.ok(from[key] === undefined || from[key] === null || isStringList(from[key]), key);
        assert.ok(from.Labels === undefined || from.Labels === null || isStringMap(from.Labels), 'Labels');
        for (const key of ['WorkingDir', 'User', 'StopSignal']) assert.ok(from[key] === undefined || typeof from[key] === 'string', key);
        for (const key of ['ExposedPorts', 'Volumes']) assert.ok(from[key] === undefined || from[key] === null || isObject(from[key]), key);
        assert.ok(isStringMap(base.manifestAnnotations), 'annotations');
      }),
      { numRuns: 150 },
    );
  });

  test('a config the manifest lists as 10 GiB is refused before any of it is downloaded', async () => {
    served = { config: {}, configSize: 10 * 1024 ** 3 };
    blobBytes = 0;
    await refused(new RegExp(`lists a config of ${10 * 1024 ** 3} bytes, more than the ${MANIFEST_SIZE_LIMIT} lapin reads for one`));
    assert.equal(blobBytes, 0, 'the config was downloaded');
  });

  test('a FROM build on a base whose Env is 5: exit 1, one line at the FROM, no TypeError', async () => {
    served = { config: { Env: 5 } };
    const context = path.join(work, 'context');
    await mkdir(context, { recursive: true });
    await writeFile(path.join(context, 'app.hvt'), fakeElfKernel());
    await writeFile(
      path.join(context, 'Containerfile'),
      [`FROM ${host}/hostile/base:1`, 'COPY app.hvt /unikernel/app.hvt', 'LABEL com.urunc.unikernel.binary=/unikernel/app.hvt', 'LABEL com.urunc.unikernel.cmdline=""', 'LABEL com.urunc.unikernel.unikernelType=mirage', 'LABEL com.urunc.unikernel.hypervisor=hvt', ''].join('\n'),
    );
    // Not spawnSync: the registry answers from this very process.
    const result = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [...CLI, 'build', '-o', `type=oci,dest=${path.join(work, 'out.tar')}`, context], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, LAPIN_CACHE_DIR: path.join(work, 'cli-cache') } }, (error, _stdout, stderr) => {
        resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr });
      });
    });
    assert.equal(result.status, 1, result.stderr);
    const lines = result.stderr.trimEnd().split('\n').filter((line) => !line.startsWith('=> '));
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0] as string, /^lapin: error: .*Containerfile:1:\d+: cannot pull .*config\.Env is not a list of strings/);
    assert.doesNotMatch(result.stderr, /is not iterable|--debug for details/);
  });
});

describe('a token service that is not an HTTP(S) URL', () => {
  test('a realm that is no URL, or a file:, data: or ftp: one, is refused in a sentence naming it', async () => {
    for (const realm of ['not a url', 'file:///etc/passwd', 'data:,token', 'ftp://127.0.0.1/token']) {
      served = { config: {}, realm };
      await refused(new RegExp(`named ${JSON.stringify(realm).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} as its token service, which is not an HTTP\\(S\\) URL`));
    }
  });
});
