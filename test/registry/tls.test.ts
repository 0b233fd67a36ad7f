// TLS settings lapin applies itself: the CAs bin/lapin moves from
// NODE_EXTRA_CA_CERTS to LAPIN_NODE_EXTRA_CA_CERTS (Node has not loaded
// them), and --insecure-registry hosts reached over HTTPS without certificate
// checks. Against docker-registry with a generated CA; undici, which both
// need, must stay unloaded when neither is in play.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { build } from '../../src/build.js';
import { MOVED_EXTRA_CA_ENV, restoreNodeExtraCaCerts } from '../../src/registry/ca-env.js';
import { readExtraCaFile, registryFetch, tlsHostKey } from '../../src/registry/tls.js';
import { registrySkipReason, skopeoInspect, startProxy, startRegistry, type TestRegistry } from './harness.js';
import { runProgram } from '../helpers/fixtures.js';
import { EXAMPLE, assertNoStack, isolatedEnv, lapin, layoutFiles } from './helpers.js';

const skip = registrySkipReason();
const SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
let work: string;
let secure: TestRegistry;
let plain: TestRegistry;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-tls-'));
  if (!skip) [secure, plain] = await Promise.all([startRegistry('tls'), startRegistry('anonymous')]);
});

after(async () => {
  await secure?.stop();
  await plain?.stop();
  await rm(work, { recursive: true, force: true });
});

/**
 * No credentials but the test's, and neither CA variable unless a test sets
 * it: the environment bin/lapin leaves is LAPIN_NODE_EXTRA_CA_CERTS set and
 * NODE_EXTRA_CA_CERTS unset.
 */
async function cleanEnv(extra: NodeJS.ProcessEnv = {}): Promise<NodeJS.ProcessEnv> {
  return {
    ...isolatedEnv(await mkdtemp(path.join(work, 'env-'))),
    NODE_EXTRA_CA_CERTS: undefined,
    [MOVED_EXTRA_CA_ENV]: undefined,
    ...extra,
  };
}

const pushArgs = (name: string, ...extra: string[]): string[] => ['build', '-f', path.join(EXAMPLE, 'bunnyfile'), '-t', name, '--push', ...extra, EXAMPLE];

const CERT_ERROR = /^lapin: error: TLS certificate of 127\.0\.0\.1:\d+ is not trusted \(/m;

describe('registry TLS settings', { skip }, () => {
  test('LAPIN_NODE_EXTRA_CA_CERTS as bin/lapin leaves it: the push is trusted; with neither variable it fails in one line', async () => {
    const name = `${secure.host}/moved/app:1`;
    const refused = await lapin(pushArgs(name), { env: await cleanEnv() });
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, CERT_ERROR);
    assertNoStack(refused.stderr);

    const trusted = await lapin(pushArgs(name, '--debug'), { env: await cleanEnv({ [MOVED_EXTRA_CA_ENV]: secure.caFile }) });
    assert.equal(trusted.status, 0, trusted.stderr);
    assert.match(trusted.stderr, /TLS: trusting 1 extra CA certificate\(s\) from /);
    assert.match(trusted.stderr, /PUT https:\/\/127\.0\.0\.1:\d+\/v2\/moved\/app\/manifests\/1 -> 201/);
    const manifest = (await skopeoInspect(name, '--raw')) as { layers: unknown[] };
    assert.ok(manifest.layers.length > 0);
  });

  test('bin/lapin itself with NODE_EXTRA_CA_CERTS: Node starts without it, lapin trusts the CA when it pushes', async () => {
    const launcher = path.join(import.meta.dirname, '../../bin/lapin');
    assert.ok(existsSync(path.join(import.meta.dirname, '../../dist/cli/main.js')), 'dist/cli/main.js is missing: run npm run build first');
    const name = `${secure.host}/launcher/app:1`;
    const env = await cleanEnv({ NODE_EXTRA_CA_CERTS: secure.caFile });
    const result = await runProgram(launcher, pushArgs(name, '--debug'), { env });
    assert.equal(result.status, 0, result.stderr);
    // Printed only when lapin adds the CA file itself, i.e. when Node did not load it at start-up.
    assert.match(result.stderr, /TLS: trusting 1 extra CA certificate\(s\) from /);
    assert.match(result.stderr, /PUT https:\/\/127\.0\.0\.1:\d+\/v2\/launcher\/app\/manifests\/1 -> 201/);
  });

  test('a PEM bundle of many certificates, the test CA last and one bad block among them: trusted, with one warning about the bad block', async () => {
    const system = existsSync(SYSTEM_BUNDLE) ? await readFile(SYSTEM_BUNDLE, 'utf8') : tls.rootCertificates.join('\n');
    const bad = '-----BEGIN CERTIFICATE-----\nAAAAbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n';
    const bundle = path.join(work, 'bundle.pem');
    await writeFile(bundle, `${system}\n${bad}${await readFile(secure.caFile as string, 'utf8')}`);
    const count = (system.match(/BEGIN CERTIFICATE/g) ?? []).length + 2;
    assert.equal(readExtraCaFile(bundle, () => undefined).length, count - 1, 'every good certificate is read');

    const result = await lapin(pushArgs(`${secure.host}/bundle/app:1`), { env: await cleanEnv({ [MOVED_EXTRA_CA_ENV]: bundle }) });
    assert.equal(result.status, 0, result.stderr);
    const warnings = result.stderr.split('\n').filter((line) => line.startsWith('lapin: warning:'));
    assert.deepEqual(warnings, [`lapin: warning: 1 of the ${count} certificates in ${bundle} (NODE_EXTRA_CA_CERTS) could not be read and are ignored`]);
  });

  test('extra CAs replace Node\'s store, so a NODE_EXTRA_CA_CERTS Node loaded at start-up is kept beside LAPIN_NODE_EXTRA_CA_CERTS', async () => {
    // Without the launcher both can be set: Node loaded the test CA, lapin adds another file.
    const other = path.join(work, 'other.pem');
    await writeFile(other, tls.rootCertificates.join('\n'));
    const result = await lapin(pushArgs(`${secure.host}/both/app:1`), { env: await cleanEnv({ NODE_EXTRA_CA_CERTS: secure.caFile, [MOVED_EXTRA_CA_ENV]: other }) });
    assert.equal(result.status, 0, result.stderr);
  });

  test('an unreadable LAPIN_NODE_EXTRA_CA_CERTS: one warning, as Node gives, then the certificate error', async () => {
    const missing = path.join(work, 'no-such-ca.pem');
    const result = await lapin(pushArgs(`${secure.host}/missing/app:1`), { env: await cleanEnv({ [MOVED_EXTRA_CA_ENV]: missing }) });
    assert.equal(result.status, 1, result.stderr);
    const warnings = result.stderr.split('\n').filter((line) => line.startsWith('lapin: warning:'));
    assert.deepEqual(warnings, [`lapin: warning: ignoring extra certs from ${missing} (NODE_EXTRA_CA_CERTS): cannot read it (ENOENT)`]);
    assert.match(result.stderr, CERT_ERROR);
    assertNoStack(result.stderr);
  });

  test('--insecure-registry HOST: HTTPS without certificate checks for that host only', async () => {
    const name = `${secure.host}/insecure/app:1`;
    // The TLS registry has no plain-HTTP listener: success means the requests went over TLS.
    const result = await lapin(pushArgs(name, '--debug', '--insecure-registry', secure.host), { env: await cleanEnv() });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /TLS: certificates of 127\.0\.0\.1:\d+ are not checked \(--insecure-registry\)/);
    assert.match(result.stderr, /GET https:\/\/127\.0\.0\.1:\d+\/v2\/ -> 200/);
    assert.match(result.stderr, /PUT https:\/\/127\.0\.0\.1:\d+\/v2\/insecure\/app\/manifests\/1 -> 201/);
    assert.doesNotMatch(result.stderr, /http:\/\/127/);
    await skopeoInspect(name, '--raw');

    // Another listed host leaves this one verified.
    const other = await lapin(pushArgs(name, '--insecure-registry', '127.0.0.1:1', '--insecure-registry', `localhost:${secure.host.split(':')[1]}`), { env: await cleanEnv() });
    assert.equal(other.status, 1, other.stderr);
    assert.match(other.stderr, CERT_ERROR);
  });

  test('--insecure-registry HOST for a registry without TLS: HTTPS fails, plain HTTP works', async () => {
    const proxy = await startProxy(plain.host);
    try {
      const result = await lapin(pushArgs(`${proxy.host}/plain/app:1`, '--debug', '--insecure-registry', proxy.host), { env: await cleanEnv() });
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stderr, /GET https:\/\/127\.0\.0\.1:\d+\/v2\/ failed/);
      assert.match(result.stderr, /PUT http:\/\/127\.0\.0\.1:\d+\/v2\/plain\/app\/manifests\/1 -> 201/);
      assert.ok(proxy.requests.some((q) => q.method === 'PUT' && q.path.endsWith('/manifests/1')), 'the manifest went through plain HTTP');
    } finally {
      await proxy.stop();
    }
  });

  test('through undici over TLS: chunked uploads, and a pull whose blobs stream back, give the same bytes', async () => {
    const saved = process.env[MOVED_EXTRA_CA_ENV];
    process.env[MOVED_EXTRA_CA_ENV] = secure.caFile;
    try {
      const context = await mkdtemp(path.join(work, 'chunked-'));
      const kernel = randomBytes(300 * 1024);
      await writeFile(path.join(context, 'big.hvt'), kernel);
      await cp(path.join(EXAMPLE, 'bunnyfile'), path.join(context, 'bunnyfile'));
      await writeFile(path.join(context, 'bunnyfile'), (await readFile(path.join(context, 'bunnyfile'), 'utf8')).replace('network.hvt', 'big.hvt'));
      const name = `${secure.host}/chunked/app:1`;
      const requests: string[] = [];
      const registry = { monolithicLimit: 100 * 1024, chunkSize: 64 * 1024, credentials: async () => undefined, debug: (line: string) => requests.push(line) };
      const pushed = await build({ context, tags: [name], outputs: [{ type: 'registry' }], compression: 'none', registry, cache: false });
      // This process may have NODE_EXTRA_CA_CERTS of its own, which lapin lists again: hence "\d+".
      assert.ok(requests.some((line) => /^TLS: trusting \d+ extra CA certificate\(s\) from /.test(line)), requests.join('\n'));
      assert.ok(requests.filter((line) => /^PATCH https:\/\/.* -> 202$/.test(line)).length >= 4, requests.join('\n'));

      const pullContext = await mkdtemp(path.join(work, 'pull-'));
      await writeFile(path.join(pullContext, 'bunnyfile'), `version: v0.1\nplatforms:\n  framework: mirage\n  monitor: hvt\n  architecture: x86\nkernel:\n  from: ${name}\n  path: /.boot/kernel\ncmdline: ""\n`);
      const layout = path.join(pullContext, 'layout');
      requests.length = 0;
      await build({ context: pullContext, tags: ['tls/pulled:1'], outputs: [{ type: 'oci', dest: layout, tar: false }], registry, cacheDir: path.join(pullContext, 'cache') });
      assert.ok(requests.some((line) => /^GET https:\/\/.*\/blobs\/sha256:[0-9a-f]{64} -> 200$/.test(line)), requests.join('\n'));
      assert.deepEqual((await layoutFiles(layout)).get('.boot/kernel')?.data, kernel);
      assert.match(pushed.digest, /^sha256:/);
    } finally {
      if (saved === undefined) delete process.env[MOVED_EXTRA_CA_ENV];
      else process.env[MOVED_EXTRA_CA_ENV] = saved;
    }
  });

  test('undici is loaded only for extra CAs or --insecure-registry, not for local builds, plain loopback registries or a NODE_EXTRA_CA_CERTS Node loaded', async () => {
    // Records, at exit, every undici file the CLI process required.
    const hook = path.join(work, 'record-undici.mjs');
    await writeFile(
      hook,
      `import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
const require = createRequire(import.meta.url);
process.on('exit', () => writeFileSync(process.env.LAPIN_TEST_LOADED, JSON.stringify(Object.keys(require.cache).filter((f) => f.includes('/node_modules/undici/')))));
`,
    );
    let run = 0;
    const undiciFiles = async (args: string[], extra: NodeJS.ProcessEnv): Promise<string[]> => {
      const record = path.join(work, `loaded-${run++}.json`);
      const result = await lapin(args, { env: await cleanEnv({ ...extra, NODE_OPTIONS: `--import=${hook}`, LAPIN_TEST_LOADED: record }) });
      assert.equal(result.status, 0, result.stderr);
      return JSON.parse(await readFile(record, 'utf8')) as string[];
    };
    const local = ['build', '-f', path.join(EXAMPLE, 'bunnyfile'), '-t', 'tls/local:1', '--output', `type=oci,dest=${path.join(work, 'local.tar')}`, EXAMPLE];
    assert.deepEqual(await undiciFiles(local, {}), [], 'a local build');
    assert.deepEqual(await undiciFiles(local, { [MOVED_EXTRA_CA_ENV]: secure.caFile }), [], 'a local build with the moved CA file');
    assert.deepEqual(await undiciFiles(pushArgs(`${plain.host}/lazy/app:1`), {}), [], 'a push to a plain-HTTP loopback registry');
    assert.deepEqual(await undiciFiles(pushArgs(`${secure.host}/lazy/app:1`), { NODE_EXTRA_CA_CERTS: secure.caFile }), [], 'a TLS push trusted through a NODE_EXTRA_CA_CERTS Node loaded');
    // The same probe sees undici when it is needed, so the empty lists above mean something.
    assert.ok((await undiciFiles(pushArgs(`${secure.host}/lazy/app:2`), { [MOVED_EXTRA_CA_ENV]: secure.caFile })).some((f) => f.endsWith('/node_modules/undici/index.js')));
    assert.ok((await undiciFiles(pushArgs(`${secure.host}/lazy/app:3`, '--insecure-registry', secure.host), {})).some((f) => f.endsWith('/node_modules/undici/index.js')));
  });
});

type CaEnv = { moved: string | undefined; node: string | undefined };

const saveCaEnv = (): CaEnv => ({ moved: process.env[MOVED_EXTRA_CA_ENV], node: process.env.NODE_EXTRA_CA_CERTS });

/** Puts both CA variables of this process back as saveCaEnv found them. */
function restoreCaEnv(saved: CaEnv): void {
  for (const [key, value] of [
    [MOVED_EXTRA_CA_ENV, saved.moved],
    ['NODE_EXTRA_CA_CERTS', saved.node],
  ] as const) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
}

describe('restoreNodeExtraCaCerts and host keys', () => {
  test('puts the moved value back for child processes, never over a value already set', () => {
    const saved = saveCaEnv();
    try {
      delete process.env.NODE_EXTRA_CA_CERTS;
      delete process.env[MOVED_EXTRA_CA_ENV];
      restoreNodeExtraCaCerts();
      assert.equal(process.env.NODE_EXTRA_CA_CERTS, undefined, 'nothing moved, nothing set');
      process.env[MOVED_EXTRA_CA_ENV] = '/etc/company-ca.pem';
      process.env.NODE_EXTRA_CA_CERTS = '/etc/own.pem';
      restoreNodeExtraCaCerts();
      assert.equal(process.env.NODE_EXTRA_CA_CERTS, '/etc/own.pem');
      delete process.env.NODE_EXTRA_CA_CERTS;
      restoreNodeExtraCaCerts();
      assert.equal(process.env.NODE_EXTRA_CA_CERTS, '/etc/company-ca.pem');
      assert.equal(process.env[MOVED_EXTRA_CA_ENV], '/etc/company-ca.pem', 'the client still sees the CAs were not loaded by Node');
    } finally {
      restoreCaEnv(saved);
    }
  });

  test('each registry client trusts the same CAs: the moved file and the one Node loaded, never piling up', async () => {
    const pems = (await readFile(SYSTEM_BUNDLE, 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    assert.ok(pems.length >= 4, `${SYSTEM_BUNDLE} has too few certificates`);
    const movedFile = path.join(work, 'moved-cas.pem');
    const startupFile = path.join(work, 'startup-cas.pem');
    await writeFile(movedFile, pems.slice(0, 3).join('\n'));
    await writeFile(startupFile, pems.slice(3, 4).join('\n'));
    const saved = saveCaEnv();
    try {
      process.env[MOVED_EXTRA_CA_ENV] = movedFile;
      process.env.NODE_EXTRA_CA_CERTS = startupFile;
      const counts: string[] = [];
      for (let i = 0; i < 3; i++) {
        await registryFetch({ host: 'registry.example:5000', insecureRegistries: [], debug: (line) => counts.push(line.replace(/ from .*/, '')), warn: () => undefined });
      }
      assert.deepEqual(counts, Array(3).fill('TLS: trusting 4 extra CA certificate(s)'));
      assert.equal(readExtraCaFile(movedFile).length, 3);
    } finally {
      restoreCaEnv(saved);
    }
  });

  test('host keys as a TLS connection sees them', () => {
    assert.equal(tlsHostKey('Registry.Example'), 'registry.example:443');
    assert.equal(tlsHostKey('registry.example:443'), 'registry.example:443');
    assert.equal(tlsHostKey('127.0.0.1:5000'), '127.0.0.1:5000');
    assert.equal(tlsHostKey('[::1]:5000'), '[::1]:5000');
    assert.equal(tlsHostKey('host/path'), undefined);
    assert.equal(tlsHostKey('user@host'), undefined);
  });
});
