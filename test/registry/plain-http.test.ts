// A plain-HTTP loopback registry costs no TLS transport: the HTTPS probe is
// made with Node's own fetch and, once it is known the registry does not
// speak TLS, no extra CA is parsed and undici is not loaded (up to a second
// of every push to such a registry on a 2-core machine). A redirect from it,
// which may lead to HTTPS, still goes through the TLS transport with the
// extra CAs.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MOVED_EXTRA_CA_ENV } from '../../src/registry/ca-env.js';
import { RegistryClient } from '../../src/registry/client.js';
import { registrySkipReason, startRegistry, type TestRegistry } from './harness.js';
import { EXAMPLE, isolatedEnv, lapin } from './helpers.js';

const skip = registrySkipReason();
let work: string;
let plain: TestRegistry;
let secure: TestRegistry;

before(async () => {
  if (skip) return;
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin plain http '));
  plain = await startRegistry('anonymous');
  secure = await startRegistry('tls');
});

after(async () => {
  await plain?.stop();
  await secure?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('a plain-HTTP registry', { skip }, () => {
  test('a push with extra CAs configured probes HTTPS once and never builds the TLS transport', async () => {
    const name = `${plain.host}/plain/app:1`;
    const env = { ...isolatedEnv(await mkdtemp(path.join(work, 'env-'))), NODE_EXTRA_CA_CERTS: undefined, [MOVED_EXTRA_CA_ENV]: secure.caFile };
    const result = await lapin(['build', '-f', path.join(EXAMPLE, 'bunnyfile'), '-t', name, '--push', '--debug', EXAMPLE], { env });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /GET https:\/\/127\.0\.0\.1:\d+\/v2\/ failed: ERR_SSL_WRONG_VERSION_NUMBER/);
    assert.match(result.stderr, /PUT http:\/\/127\.0\.0\.1:\d+\/v2\/plain\/app\/manifests\/1 -> 201/);
    // Printed when the TLS transport is made, i.e. when the CA file is parsed and undici loaded.
    assert.doesNotMatch(result.stderr, /TLS: trusting/);
  });

  test('a redirect from the plain-HTTP registry to HTTPS is followed with the extra CAs trusted', async () => {
    const server = http.createServer((request, response) => {
      if (request.url === '/v2/') response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else response.writeHead(307, { location: `https://${secure.host}/v2/` }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const saved = process.env[MOVED_EXTRA_CA_ENV];
    process.env[MOVED_EXTRA_CA_ENV] = secure.caFile;
    const lines: string[] = [];
    try {
      const client = new RegistryClient(`127.0.0.1:${(server.address() as AddressInfo).port}`, { credentials: async () => undefined, debug: (line) => lines.push(line) });
      const response = await client.request({ method: 'GET', target: '/v2/elsewhere/blobs/sha256:00', scopes: [], accept: [200], what: 'following a redirect' });
      assert.equal(response.status, 200);
      assert.equal(await response.text(), '{}');
      assert.ok(lines.some((line) => /^TLS: trusting \d+ extra CA certificate\(s\)/.test(line)), lines.join('\n'));
    } finally {
      if (saved === undefined) delete process.env[MOVED_EXTRA_CA_ENV];
      else process.env[MOVED_EXTRA_CA_ENV] = saved;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
