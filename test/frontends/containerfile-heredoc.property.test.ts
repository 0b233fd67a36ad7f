import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import type { CopyOp } from '../../src/plan/types.js';

const FILE = 'Containerfile';
const BUILD_ARGS = { TARGETPLATFORM: 'linux/amd64', BUILDPLATFORM: 'linux/amd64' };

const delimiter = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,11}$/).filter((name) => name !== '.' && name !== '..');
/** Body lines: no line break, but the characters that matter to delimiters, expansion and terminators. */
const line = fc.string({ unit: fc.constantFrom('a', 'Z', ' ', '\t', '$', '{', '}', '\\', '"', "'", '<', '#', 'E', 'O', 'F', '\r', 'é'), maxLength: 12 });

function copiesOf(text: string): CopyOp[] {
  return parseContainerfile(text, FILE, BUILD_ARGS).ops.filter((op): op is CopyOp => op.kind === 'copy');
}

/** Whether `text` would end a here-document of `name` (BuildKit: trailing CRs dropped; leading tabs too with <<-). */
function ends(text: string, name: string, chomp: boolean): boolean {
  let candidate = text.replace(/\r+$/, '');
  if (chomp) candidate = candidate.replace(/^\t+/, '');
  return candidate === name;
}

test('quoted here-documents round-trip: random bodies and delimiters come back as written, in order', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ name: delimiter, lines: fc.array(line, { maxLength: 6 }), quote: fc.constantFrom('"', "'") }), { minLength: 1, maxLength: 4 }),
      fc.constantFrom('LABEL after=1', 'COPY x /x', ''),
      (docs, after) => {
        const names = new Set(docs.map((doc) => doc.name));
        fc.pre(names.size === docs.length);
        const bodies = docs.map((doc) => doc.lines.filter((text) => !ends(text, doc.name, false)));
        const words = docs.map((doc) => `<<${doc.quote}${doc.name}${doc.quote}`).join(' ');
        const text = `FROM scratch\nCOPY ${words} /d/\n${docs.map((doc, index) => (bodies[index] ?? []).map((text) => `${text}\n`).join('') + `${doc.name}\n`).join('')}${after}\n`;
        const ops = copiesOf(text);
        assert.deepEqual(
          ops[0]?.inline,
          docs.map((doc, index) => ({ name: doc.name, data: (bodies[index] ?? []).map((text) => `${text}\n`).join('') })),
        );
        assert.equal(ops.length, after.startsWith('COPY') ? 2 : 1);
      },
    ),
    { numRuns: 300 },
  );
});

test('<<- strips leading tabs of every line and of the terminator', () => {
  fc.assert(
    fc.property(delimiter, fc.array(fc.tuple(fc.nat(3), line), { maxLength: 6 }), fc.nat(3), (name, lines, terminatorTabs) => {
      const body = lines.filter(([, text]) => !ends(text, name, true));
      const text = `FROM scratch\nCOPY <<-"${name}" /f\n${body.map(([tabs, content]) => `${'\t'.repeat(tabs)}${content}\n`).join('')}${'\t'.repeat(terminatorTabs)}${name}\n`;
      const data = body.map(([, content]) => `${content.replace(/^\t+/, '')}\n`).join('');
      assert.deepEqual(copiesOf(text)[0]?.inline, [{ name, data }]);
    }),
    { numRuns: 300 },
  );
});

test('unquoted bodies either expand or fail with a position inside the body; unterminated ones name the << line', () => {
  fc.assert(
    fc.property(delimiter, fc.array(line, { maxLength: 6 }), fc.boolean(), (name, lines, terminated) => {
      const body = lines.filter((text) => !ends(text, name, false));
      const text = `FROM scratch\nARG v=1\nCOPY <<${name} /f\n${body.map((content) => `${content}\n`).join('')}${terminated ? `${name}\n` : ''}`;
      try {
        const [op] = copiesOf(text);
        assert.ok(terminated);
        assert.equal(op?.inline?.length, 1);
      } catch (error) {
        assert.ok(error instanceof LapinError, String(error));
        assert.doesNotMatch(error.message, /\n/);
        if (!terminated) {
          assert.match(error.message, /^unterminated here-document/);
          assert.deepEqual(error.at, { file: FILE, line: 3, column: 6 });
        } else {
          assert.ok(error.at !== undefined && error.at.line >= 4 && error.at.line < 4 + body.length, JSON.stringify(error.at));
        }
      }
    }),
    { numRuns: 300 },
  );
});
