// Issue 11 "Definition files": sizes and expansions are capped (docs/syntaxes.md "Limits"), with a
// positioned error, in bounded time and memory; no input makes a frontend throw anything but a LapinError.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import { build, LapinError } from '../../src/index.js';
import { parseBunnyfile } from '../../src/frontends/bunnyfile.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import { MAX_DEFINITION_BYTES, MAX_EXPANDED_WORD } from '../../src/frontends/limits.js';
import { parseArgsNix } from '../../src/frontends/nix.js';

type Parse = (text: string, file: string) => unknown;
const PARSERS: Array<[string, Parse]> = [
  ['Containerfile', parseContainerfile],
  ['bunnyfile', parseBunnyfile],
  ['args.nix', parseArgsNix],
];

/** What parsing gives: the plan, or the LapinError; anything else thrown fails. */
function outcome(parse: Parse, text: string, file: string): unknown {
  try {
    return parse(text, file);
  } catch (error) {
    if (error instanceof LapinError) return error;
    assert.fail(`not a LapinError from ${file}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  }
}

function failure(parse: Parse, text: string, file: string): LapinError {
  const result = outcome(parse, text, file);
  assert.ok(result instanceof LapinError, `${file}: expected a LapinError`);
  return result;
}

/** Runs `work` and fails when it takes longer than `seconds`. */
function within<T>(seconds: number, work: () => T): T {
  const start = performance.now();
  const result = work();
  const took = (performance.now() - start) / 1000;
  assert.ok(took < seconds, `took ${took.toFixed(2)} s, more than ${seconds} s`);
  return result;
}

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin limits '));
});

describe('definition file size', () => {
  const bodies: Record<string, (filler: string) => string> = {
    Containerfile: (filler) => `FROM scratch\nLABEL a="\n${filler}"\n`,
    bunnyfile: (filler) => `version: v0.1\ncmd: ["\n${filler}"]\n`,
    'args.nix': (filler) => `{ name = "\n${filler}"; }\n`,
  };
  for (const [file, parse] of PARSERS) {
    test(`${file}: past ${MAX_DEFINITION_BYTES} bytes is refused at the first byte over, before it is parsed`, () => {
      const text = (bodies[file] as (filler: string) => string)('é'.repeat(MAX_DEFINITION_BYTES / 2));
      const error = within(1, () => failure(parse, text, file));
      assert.match(error.message, /larger than 1 MiB, lapin's limit for a definition file/);
      // Two bytes a character: the limit falls half way along the filler's line.
      const prefix = text.indexOf('é');
      const line = text.slice(0, prefix).split('\n').length;
      const column = Math.floor((MAX_DEFINITION_BYTES - Buffer.byteLength(text.slice(0, prefix))) / 2) + 1;
      assert.deepEqual(error.at, { file, line, column });
    });
  }
  test('build refuses a large file without reading it into a parser', async () => {
    const context = path.join(work, 'large');
    await mkdir(context, { recursive: true });
    await writeFile(path.join(context, 'Containerfile'), `FROM scratch\nLABEL a="${'x'.repeat(2 * MAX_DEFINITION_BYTES)}"\n`);
    await assert.rejects(
      build({ context, cwd: context, outputs: [{ type: 'oci', dest: path.join(work, 'large.tar') }] }),
      (error: unknown) => error instanceof LapinError && error.message === "Containerfile is larger than 1 MiB, lapin's limit for a definition file",
    );
  });
});

describe('stages', () => {
  const stages = (count: number): string => Array.from({ length: count }, (_, i) => `FROM scratch AS s${i}\n`).join('');
  test('20,000 FROM lines (600 KB) stop at the one past 1000, at once (each was checked against all before it: 22 s)', () => {
    const error = within(3, () => failure(parseContainerfile, stages(20_000), 'Containerfile'));
    assert.equal(error.at?.line, 1001);
    assert.match(error.message, /more than 1000 stages \(FROM lines\), lapin's limit for a Containerfile/);
  });
  test('1000 stages parse', () => {
    assert.ok(!(outcome(parseContainerfile, stages(1000), 'Containerfile') instanceof LapinError));
  });
});

describe('variable expansion', () => {
  const chain = (keyword: 'ARG' | 'ENV', levels: number): string =>
    `FROM scratch\n${keyword} V0=xxxxxxxxxxxxxxxx\n${Array.from({ length: levels }, (_, i) => `${keyword} V${i + 1}=$V${i}$V${i}\n`).join('')}LABEL v=$V${levels}\n`;
  for (const keyword of ['ARG', 'ENV'] as const) {
    test(`a 40-level doubling ${keyword} chain stops at the level past the limit, with its position`, () => {
      const error = within(3, () => failure(parseContainerfile, chain(keyword, 40), 'Containerfile'));
      // 16 characters doubled 16 times is exactly 1 MiB; the 17th doubling (line 19) is over.
      assert.equal(error.at?.line, 19);
      assert.match(error.message, /variable expansion makes a word longer than 1 MiB, lapin's limit in "\$V16\$V16"/);
    });
  }
  test('a chain that stays under the limit builds', () => {
    assert.ok(!(outcome(parseContainerfile, chain('ARG', 16), 'Containerfile') instanceof LapinError));
  });
  test('one word of many references is stopped as it grows', () => {
    const text = `FROM scratch\nARG B=${'b'.repeat(65536)}\nLABEL a=${'$B'.repeat(100)}\n`;
    const error = within(3, () => failure(parseContainerfile, text, 'Containerfile'));
    assert.equal(error.at?.line, 3);
    assert.match(error.message, /longer than 1 MiB/);
    assert.ok(error.message.length < 200, 'the word is abbreviated in the message');
  });
  test('a replacement that grows the value is stopped too', () => {
    const text = `FROM scratch\nARG B=${'b'.repeat(4096)}\nARG C=${'c'.repeat(4096)}\nLABEL a=\${B//b/$C}\n`;
    assert.match(within(3, () => failure(parseContainerfile, text, 'Containerfile')).message, /longer than 1 MiB/);
  });
  test('a * pattern on a long value is refused instead of backtracking for minutes', () => {
    const text = `FROM scratch\nARG V=${'b'.repeat(32768)}\nLABEL a=\${V//*a/x}\n`;
    const error = within(1, () => failure(parseContainerfile, text, 'Containerfile'));
    assert.deepEqual(error.at, { file: 'Containerfile', line: 3, column: 9 });
    assert.match(error.message, /a pattern with 1 '\*' on a value of 32768 characters is past lapin's limit/);
    const short = parseContainerfile('FROM scratch\nARG V=xxaxxa\nLABEL a=${V//*a/y} b=${V#*a*a} c=${V%%a*}\n', 'Containerfile');
    assert.deepEqual(short.config.labels, { a: 'y', b: '', c: 'xx' });
  });
  test('all expansions of a file together are capped', () => {
    const lines = ['FROM scratch', `ARG V0=${'x'.repeat(16)}`];
    for (let i = 1; i <= 16; i += 1) lines.push(`ARG V${i}=$V${i - 1}$V${i - 1}`);
    for (let i = 0; i < 20; i += 1) lines.push(`LABEL l${i}=$V16`);
    const error = within(5, () => failure(parseContainerfile, `${lines.join('\n')}\n`, 'Containerfile'));
    assert.match(error.message, /variable expansions add up to more than 16 MiB in this file/);
    assert.ok((error.at?.line ?? 0) > 19 && (error.at?.line ?? 0) < 40);
    assert.ok(MAX_EXPANDED_WORD <= 1024 * 1024);
  });
});

describe('nesting', () => {
  test('deep YAML is one clean positioned line, not "Maximum call stack size exceeded"', () => {
    for (const text of [`version: v0.1\ncmd: ${'['.repeat(20000)}${']'.repeat(20000)}\n`, `version: v0.1\ncmd:\n${'- '.repeat(50000)}x\n`]) {
      const error = within(10, () => failure(parseBunnyfile, text, 'bunnyfile'));
      assert.match(error.describe(), /^bunnyfile:\d+:\d+: the bunnyfile nests lists or mappings too deeply to read \(a bunnyfile needs a few levels; keep it under 200\)$/);
    }
  });
  test('deep YAML near the size limit is refused at level 200 before the yaml library builds it', () => {
    const flow = within(1, () => failure(parseBunnyfile, `version: v0.1\ncmd: ${'['.repeat(500000)}\n`, 'bunnyfile'));
    assert.deepEqual(flow.at, { file: 'bunnyfile', line: 2, column: 205 });
    const items = within(1, () => failure(parseBunnyfile, `version: v0.1\ncmd:\n${'- '.repeat(500000)}x\n`, 'bunnyfile'));
    assert.deepEqual(items.at, { file: 'bunnyfile', line: 3, column: 399 });
    const indented = Array.from({ length: 300 }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n');
    assert.equal(within(1, () => failure(parseBunnyfile, `${indented}\n`, 'bunnyfile')).at?.line, 201);
    // Brackets in quotes, comments and block scalars are not nesting.
    const quoted = `version: v0.1\ncmd: ["${'['.repeat(300)}", '${'{'.repeat(300)}']  # ${'['.repeat(300)}\nentrypoint: |\n  ${'['.repeat(300)}\n`;
    assert.doesNotMatch(failure(parseBunnyfile, quoted, 'bunnyfile').message, /too deeply/);
  });
  test('deep Nix is refused at the level past the limit', () => {
    const error = failure(parseArgsNix, `{ name = ${'['.repeat(50000)}${']'.repeat(50000)}; }`, 'args.nix');
    assert.match(error.describe(), /^args\.nix:1:\d+: values nested more than 200 deep/);
  });
});

describe('properties: no input makes a frontend throw anything but a LapinError', () => {
  const nesting = fc.tuple(fc.integer({ min: 1, max: 1500 }), fc.constantFrom('[', '{', '{a: ', '- ', '{ a = ', '[ '), fc.boolean());
  test('nesting of any depth and kind, closed or not', () => {
    fc.assert(
      fc.property(nesting, fc.constantFrom(...PARSERS), ([depth, open, close], [file, parse]) => {
        const closer = open.startsWith('[') ? ']' : open.startsWith('{') ? '}' : '';
        const body = open.repeat(depth) + (close ? closer.repeat(depth) : '');
        for (const text of [body, `version: v0.1\ncmd: ${body}\n`, `{ name = ${body}; }`, `FROM scratch\nCMD ${body}\n`]) {
          within(10, () => outcome(parse, text, file));
        }
      }),
      { numRuns: 40 },
    );
  });
  const operation = fc.constantFrom('$P$P', '${P}${P}x', '${P:-$P}$P', '${P//x/$P}', '"$P"$P', '${P%x}', '${P#*}$P$P$P');
  test('variable chains of any length and operations', () => {
    fc.assert(
      fc.property(fc.array(operation, { minLength: 1, maxLength: 40 }), fc.constantFrom('ARG', 'ENV'), fc.constantFrom('LABEL l=', 'WORKDIR /', 'COPY ', 'USER ', 'ENV Z='), (ops, keyword, use) => {
        const lines = ['FROM scratch', `${keyword} V0=xxxxxxxxxxxxxxxx`];
        ops.forEach((op, i) => lines.push(`${keyword} V${i + 1}=${op.replaceAll('P', `V${i}`)}`));
        lines.push(`${use}$V${ops.length}${use === 'COPY ' ? ' /x' : ''}`);
        within(10, () => outcome(parseContainerfile, `${lines.join('\n')}\n`, 'Containerfile'));
      }),
      { numRuns: 60 },
    );
  });
});
