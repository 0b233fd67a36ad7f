// A definition file saved on Windows (CRLF line ends, a UTF-8 byte order mark)
// means what the same file saved on Linux means, in all three syntaxes: the
// plans are equal but for positions, and a refusal is the same refusal.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { parseBunnyfile } from '../../src/frontends/bunnyfile.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import { decodeDefinition } from '../../src/frontends/decode.js';
import { parseArgsNix } from '../../src/frontends/nix.js';

type Parse = (text: string, file: string) => unknown;

/** The plan without source positions (a BOM shifts line 1's columns), or the refusal's message. */
function meaning(parse: Parse, text: string): unknown {
  try {
    return JSON.parse(JSON.stringify(parse(text, 'f'), (key, value: unknown) => (key === 'at' ? undefined : value)));
  } catch (error) {
    if (error instanceof LapinError) return { refused: error.message };
    throw error;
  }
}

/** Windows' ways to save `text`: CRLF, a BOM, or both; read back as lapin reads a file. */
const windows = fc.constantFrom<Array<(text: string) => string>>(
  (text) => text.replace(/\n/g, '\r\n'),
  (text) => `\uFEFF${text}`,
  (text) => `\uFEFF${text.replace(/\n/g, '\r\n')}`,
);

const word = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,8}$/);
const path = fc.array(word, { minLength: 1, maxLength: 3 }).map((parts) => `/${parts.join('/')}`);
const args = fc.array(word, { maxLength: 4 });
const framework = fc.constantFrom('unikraft', 'rumprun', 'mirage', 'linux', 'Unikraft');
const monitor = fc.constantFrom('qemu', 'hvt', 'firecracker', 'spt');
const comment = fc.constantFrom('', '# a comment\n', '\n\n');

const bunnyfile = fc
  .record({ framework, monitor, kernel: word, cmd: args, include: fc.array(fc.tuple(word, path), { maxLength: 3 }), comment, block: fc.boolean() })
  .map(({ framework, monitor, kernel, cmd, include, comment, block }) =>
    [
      '#syntax=harbor.nbfc.io/nubificus/bunny:latest',
      'version: v0.1',
      comment,
      'platforms:',
      `  framework: ${framework}`,
      `  monitor: ${monitor}`,
      'kernel:',
      '  from: local',
      `  path: ${kernel}`,
      ...(include.length > 0 ? ['rootfs:', '  include:', ...include.map(([src, dst]) => `    - ${src}:${dst}`)] : []),
      block ? `cmdline: >\n  ${cmd.join('\n  ')}` : `cmd: [${cmd.map((a) => JSON.stringify(a)).join(', ')}]`,
      '',
    ].join('\n'),
  );

const containerfile = fc
  .record({ framework, monitor, kernel: word, binary: path, cmd: args, comment, continued: fc.boolean() })
  .map(({ framework, monitor, kernel, binary, cmd, comment, continued }) =>
    [
      '#syntax=harbor.nbfc.io/nubificus/bunny:latest',
      'FROM scratch',
      comment,
      `COPY ${kernel} ${binary}`,
      continued ? `LABEL com.urunc.unikernel.binary=${binary} \\\n  com.urunc.unikernel.unikernelType=${framework}` : `LABEL com.urunc.unikernel.binary=${binary}\nLABEL "com.urunc.unikernel.unikernelType"="${framework}"`,
      `LABEL com.urunc.unikernel.hypervisor=${monitor}`,
      `CMD [${cmd.map((a) => JSON.stringify(a)).join(', ')}]`,
      '',
    ].join('\n'),
  );

const argsNix = fc
  .record({ framework, monitor, kernel: word, binary: path, cmdline: args, comment })
  .map(({ framework, monitor, kernel, binary, cmdline, comment }) =>
    [
      '# args.nix',
      '{',
      `  name = "${kernel}";`,
      comment,
      `  files = { "./${kernel}" = "${binary}"; };`,
      '  annotations = {',
      `    unikernelType = "${framework}";`,
      `    hypervisor = "${monitor}";`,
      `    binary = "${binary}";`,
      `    cmdline = "${cmdline.join(' ')}";`,
      '    /* a block',
      '       comment */',
      '  };',
      '}',
      '',
    ].join('\n'),
  );

for (const [name, parse, text] of [
  ['bunnyfile', parseBunnyfile, bunnyfile],
  ['Containerfile', parseContainerfile as Parse, containerfile],
  ['args.nix', parseArgsNix, argsNix],
] as const) {
  test(`property: a ${name} saved with CRLF line ends or a byte order mark means the same`, () => {
    fc.assert(
      fc.property(text, windows, (unix, save) => {
        const saved = decodeDefinition(Buffer.from(save(unix)), 'f');
        assert.deepEqual(meaning(parse, saved), meaning(parse, unix));
      }),
      { numRuns: 300 },
    );
  });
}
