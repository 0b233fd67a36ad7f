// Per-platform inputs, as a property of every syntax: compiling a file for a
// platform gives exactly the plan of the same file with each ${TARGETARCH}
// (and sibling) written out as that platform's value. A file without one
// therefore compiles to the same plan for every platform, and with no options.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { compile } from '../../src/frontends/index.js';
import type { BuildPlan, Syntax } from '../../src/plan/types.js';

const PLATFORMS = ['linux/amd64', 'linux/arm64', 'linux/arm64/v8', 'linux/amd64/v2'] as const;
const VALUES: Record<(typeof PLATFORMS)[number], Record<string, string>> = {
  'linux/amd64': { TARGETPLATFORM: 'linux/amd64', TARGETOS: 'linux', TARGETARCH: 'amd64', TARGETVARIANT: '' },
  'linux/arm64': { TARGETPLATFORM: 'linux/arm64', TARGETOS: 'linux', TARGETARCH: 'arm64', TARGETVARIANT: '' },
  'linux/arm64/v8': { TARGETPLATFORM: 'linux/arm64', TARGETOS: 'linux', TARGETARCH: 'arm64', TARGETVARIANT: '' },
  'linux/amd64/v2': { TARGETPLATFORM: 'linux/amd64/v2', TARGETOS: 'linux', TARGETARCH: 'amd64', TARGETVARIANT: 'v2' },
};
const NAMES = ['TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT'] as const;

/** A path: literal pieces (which may hold `$`, `{`, `}` where the syntax allows) and references. */
type Piece = { literal: string } | { reference: (typeof NAMES)[number] };

function pieces(literalChars: string): fc.Arbitrary<Piece[]> {
  const literal = fc.string({ unit: fc.constantFrom(...literalChars), minLength: 1, maxLength: 6 }).map((text) => ({ literal: text }));
  const reference = fc.constantFrom(...NAMES).map((name) => ({ reference: name }));
  return fc.array(fc.oneof({ arbitrary: literal, weight: 3 }, { arbitrary: reference, weight: 1 }), { minLength: 1, maxLength: 6 });
}

/** The path as written in the file, and as written out for a platform. */
function render(list: readonly Piece[], values?: Record<string, string>): string {
  let text = '';
  for (const piece of list) {
    if ('literal' in piece) text += piece.literal;
    // A "$" right before a reference would make it the $${...} escape.
    else text += `${text.endsWith('$') ? 'x' : ''}${values ? values[piece.reference] : `\${${piece.reference}}`}`;
  }
  return text;
}

async function outcome(text: string, syntax: Syntax, platform?: string): Promise<BuildPlan | string> {
  try {
    const plan = await compile(text, 'file', syntax, {}, { ...(platform ? { platform } : {}), buildPlatform: 'linux/amd64' });
    delete plan.warnings;
    return plan;
  } catch (error) {
    if (error instanceof LapinError) return error.describe();
    throw error;
  }
}

const files: Record<Syntax, { chars: string; file: (kernel: string, rootfs: string) => string }> = {
  bunnyfile: {
    chars: 'ab-_./${}',
    file: (kernel, rootfs) =>
      `version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: ${JSON.stringify(`k${kernel}`)}\nrootfs:\n  from: scratch\n  type: initrd\n  include:\n    - ${JSON.stringify(`r${rootfs}:/opt/${rootfs}`)}\n`,
  },
  containerfile: {
    chars: 'ab-_.',
    file: (kernel, rootfs) => `FROM scratch\nARG ${NAMES.join(' ')}\nCOPY k${kernel} /unikernel/kernel\nCOPY r${rootfs} /opt/r${rootfs}\nLABEL com.urunc.unikernel.binary=/unikernel/kernel\n`,
  },
  nix: {
    // No "." or "/": every generated args.nix is valid, so the property cannot hold by two equal errors.
    chars: 'ab-_{}',
    file: (kernel, rootfs) =>
      `{ ${NAMES.join(', ')}, ... }:\n{\n  files = {\n    "./k${kernel}" = "/unikernel/kernel";\n    "./r${rootfs}" = "/opt/r${rootfs}";\n  };\n  annotations = { unikernelType = "linux"; hypervisor = "qemu"; binary = "/unikernel/kernel"; };\n}\n`,
  },
};

for (const syntax of ['bunnyfile', 'containerfile', 'nix'] as const) {
  test(`${syntax}: a file for a platform is the file with its platform's values written in`, async () => {
    const { chars, file } = files[syntax];
    await fc.assert(
      fc.asyncProperty(pieces(chars), pieces(chars), fc.constantFrom(...PLATFORMS), async (kernel, rootfs, platform) => {
        const values = VALUES[platform];
        const written = file(render(kernel, values), render(rootfs, values));
        const expected = await outcome(written, syntax, platform);
        if (syntax === 'nix') assert.equal(typeof expected, 'object', String(expected));
        assert.deepEqual(await outcome(file(render(kernel), render(rootfs)), syntax, platform), expected);
        // Without a reference, the platform does not matter at all.
        const other = PLATFORMS[(PLATFORMS.indexOf(platform) + 1) % PLATFORMS.length];
        assert.deepEqual(await outcome(written, syntax, other), expected);
        assert.deepEqual(await outcome(written, syntax), expected);
      }),
      { numRuns: 100 },
    );
  });
}
