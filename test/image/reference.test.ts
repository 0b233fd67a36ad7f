import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { familiarName, formatReference, parseReference } from '../../src/image/reference.js';
import { LapinError } from '../../src/errors.js';

describe('image references', () => {
  const cases: Array<[string, string, string]> = [
    ['urunc/prebuilt/network-mirage-hvt:test', 'docker.io/urunc/prebuilt/network-mirage-hvt:test', 'urunc/prebuilt/network-mirage-hvt:test'],
    ['alpine', 'docker.io/library/alpine:latest', 'alpine:latest'],
    ['localhost:5000/a/b:1.0', 'localhost:5000/a/b:1.0', 'localhost:5000/a/b:1.0'],
    ['localhost/x', 'localhost/x:latest', 'localhost/x:latest'],
    ['harbor.nbfc.io/nubificus/bunny:latest', 'harbor.nbfc.io/nubificus/bunny:latest', 'harbor.nbfc.io/nubificus/bunny:latest'],
    ['index.docker.io/library/busybox:1', 'docker.io/library/busybox:1', 'busybox:1'],
  ];
  for (const [input, full, familiar] of cases) {
    test(input, () => {
      const ref = parseReference(input);
      assert.equal(formatReference(ref), full);
      assert.equal(familiarName(ref), familiar);
    });
  }
  for (const bad of ['a/Upper', 'UPPER', 'a:b:c', 'x@sha256:00', '', ':tag', 'a//b', 'a/-b']) {
    test(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseReference(bad), (e: unknown) => e instanceof LapinError && e.exitCode === 2);
    });
  }
});
