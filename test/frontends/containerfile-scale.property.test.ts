// Containerfile instructions that add to the image config's lists (ENV,
// EXPOSE, VOLUME): each added to them by searching or copying what was
// there, so 16,000 ENV lines took 29 s, and a 24 KB file of 'EXPOSE
// 1-65535/tcp 2-65535/udp' words more than 100 s (every range walked whole,
// with a fresh set of all ports, for every word). Now linear in the file,
// with the lists as before: first-seen order, an ENV name keeps its place.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseContainerfile } from '../../src/frontends/containerfile.js';

const HEAD = 'FROM scratch\nCOPY k /k\nLABEL com.urunc.unikernel.binary=/k com.urunc.unikernel.unikernelType=unikraft com.urunc.unikernel.hypervisor=qemu\n';

function timed(body: string): { ms: number; config: ReturnType<typeof parseContainerfile>['config'] } {
  const started = Date.now();
  const { config } = parseContainerfile(HEAD + body, 'Containerfile');
  return { ms: Date.now() - started, config };
}

const lines = (count: number, line: (i: number) => string): string => Array.from({ length: count }, (_, i) => `${line(i)}\n`).join('');

describe('Containerfile: config lists in linear time', () => {
  test('16,000 ENV lines, ENV pairs, EXPOSE ports and VOLUME paths, and 1000 full port ranges, each well under a few seconds', () => {
    const cases: Array<[string, string, (config: ReturnType<typeof timed>['config']) => void]> = [
      ['ENV lines', lines(16_000, (i) => `ENV k${i}=v`), (c) => assert.equal(c.env.length, 16_000)],
      ['ENV pairs', `ENV ${Array.from({ length: 16_000 }, (_, i) => `k${i}=v`).join(' ')}\n`, (c) => assert.equal(c.env.length, 16_000)],
      ['EXPOSE lines', lines(16_000, (i) => `EXPOSE ${i}`), (c) => assert.equal(c.exposedPorts.length, 16_000)],
      ['VOLUME lines', lines(16_000, (i) => `VOLUME /v${i}`), (c) => assert.equal(c.volumes.length, 16_000)],
      ['port ranges', `EXPOSE ${' 1-65535/tcp 2-65535/udp'.repeat(1000)}\n`, (c) => assert.equal(c.exposedPorts.length, 65_535 + 65_534)],
    ];
    for (const [what, body, check] of cases) {
      const { ms, config } = timed(body);
      assert.ok(ms < 5000, `${what}: ${ms} ms`);
      check(config);
    }
  });

  test('property: ENV, EXPOSE and VOLUME lists are what a plain model of them gives', () => {
    const name = fc.constantFrom('a', 'b', 'c', 'PATH');
    const port = fc.integer({ min: 0, max: 40 });
    const instruction = fc.oneof(
      fc.array(fc.tuple(name, fc.constantFrom('1', '2', 'x')), { minLength: 1, maxLength: 3 }).map((pairs) => ({ kind: 'env' as const, pairs })),
      fc.array(fc.tuple(port, fc.integer({ min: 0, max: 5 }), fc.constantFrom('tcp', 'udp', 'sctp')), { minLength: 1, maxLength: 3 }).map((ranges) => ({ kind: 'expose' as const, ranges })),
      fc.array(fc.constantFrom('/a', '/b', '/c'), { minLength: 1, maxLength: 3 }).map((paths) => ({ kind: 'volume' as const, paths })),
    );
    fc.assert(
      fc.property(fc.array(instruction, { maxLength: 12 }), (instructions) => {
        const env: string[] = [];
        const ports: string[] = [];
        const volumes: string[] = [];
        let body = '';
        for (const ins of instructions) {
          if (ins.kind === 'env') {
            body += `ENV ${ins.pairs.map(([n, v]) => `${n}=${v}`).join(' ')}\n`;
            for (const [n, v] of ins.pairs) {
              const at = env.findIndex((line) => line.startsWith(`${n}=`));
              if (at < 0) env.push(`${n}=${v}`);
              else env[at] = `${n}=${v}`;
            }
          } else if (ins.kind === 'expose') {
            body += `EXPOSE ${ins.ranges.map(([first, extra, protocol]) => `${first}-${first + extra}/${protocol}`).join(' ')}\n`;
            for (const [first, extra, protocol] of ins.ranges) {
              for (let p = first; p <= first + extra; p++) if (!ports.includes(`${p}/${protocol}`)) ports.push(`${p}/${protocol}`);
            }
          } else {
            body += `VOLUME ${ins.paths.join(' ')}\n`;
            for (const p of ins.paths) if (!volumes.includes(p)) volumes.push(p);
          }
        }
        const { config } = timed(body);
        assert.deepEqual(config.env, env);
        assert.deepEqual(config.exposedPorts, ports);
        assert.deepEqual(config.volumes, volumes);
      }),
      { numRuns: 300 },
    );
  });
});
