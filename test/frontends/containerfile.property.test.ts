import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';

const FILE = 'Containerfile';
const FIXTURE = readFileSync(new URL('../fixtures/containerfile/Containerfile', import.meta.url), 'utf8');
const BUILD_ARGS = { TARGETPLATFORM: 'linux/amd64', BUILDPLATFORM: 'linux/amd64' };

/** Instruction fragments, whole and broken, that mutations insert. */
const FRAGMENTS = [
  'FROM scratch',
  'FROM scratch AS build',
  'FROM --platform=linux/arm64 scratch',
  'FROM --platform=$TARGETPLATFORM alpine:3',
  'FROM build',
  'FROM',
  'ARG A=1',
  'ARG B',
  'ENV X=${A:-d} Y="q r"',
  'ENV legacy value here',
  'LABEL a=b "c"="d e"',
  'LABEL com.urunc.unikernel.initrd=/initrd',
  'LABEL com.urunc.unikernel.mountRootfs=true',
  'LABEL broken="',
  'LABEL x=${',
  'COPY --from=build /k /k',
  'COPY --from=0 /k /k',
  'COPY --chmod=0755 --chown=1:2 a b /d/',
  'COPY ["a", "b"]',
  'COPY <<EOF /f',
  'ADD https://example.com/x /x',
  'ADD a.tar /',
  'WORKDIR sub',
  'USER 1000',
  'EXPOSE 80 53/udp 1-3',
  'STOPSIGNAL SIGTERM',
  'VOLUME ["/v"]',
  'CMD ["a"]',
  'CMD echo $X',
  'ENTRYPOINT ["/k"]',
  'SHELL ["/bin/sh", "-c"]',
  'RUN make',
  'HEALTHCHECK NONE',
  'ONBUILD COPY a /a',
  'MAINTAINER me',
  'BOGUS x',
  '# escape=`',
  '# comment \\',
  '\\',
  '`',
  '',
  '   ',
  'LABEL a=b \\',
  '--flag',
  '\t\r',
];

/** A LapinError's position must name this file and a place inside the text. */
function checkOutcome(text: string): void {
  let plan;
  try {
    plan = parseContainerfile(text, FILE, BUILD_ARGS);
  } catch (error) {
    assert.ok(error instanceof LapinError, `not a LapinError: ${String(error)}\n--- text ---\n${text}`);
    if (error.at !== undefined) {
      const physical = text.split('\n');
      assert.equal(error.at.file, FILE);
      assert.ok(Number.isInteger(error.at.line) && error.at.line >= 1 && error.at.line <= physical.length, `line ${error.at.line} outside\n${text}`);
      const length = physical[error.at.line - 1]?.length ?? 0;
      assert.ok(
        Number.isInteger(error.at.column) && error.at.column >= 1 && error.at.column <= length + 1,
        `column ${error.at.column} outside line ${error.at.line} (${length} chars)\n${text}`,
      );
    }
    return;
  }
  assert.equal(plan.syntax, 'containerfile');
  assert.equal(plan.file, FILE);
}

type Mutation =
  | { kind: 'insert'; at: number; fragment: string }
  | { kind: 'delete'; at: number }
  | { kind: 'char'; at: number; char: string };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), fragment: fc.constantFrom(...FRAGMENTS) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('char' as const),
    at: fc.nat(),
    char: fc.oneof(fc.constantFrom('\\', '`', '"', "'", '$', '{', '}', '=', ' ', '\n', '#', '[', ']', '-', ':'), fc.string({ minLength: 1, maxLength: 1, unit: 'binary' })),
  }),
);

function mutate(text: string, mutations: Mutation[]): string {
  let result = text;
  for (const change of mutations) {
    if (change.kind === 'char') {
      const position = change.at % (result.length + 1);
      result = result.slice(0, position) + change.char + result.slice(position);
      continue;
    }
    const physical = result.split('\n');
    if (change.kind === 'insert') physical.splice(change.at % (physical.length + 1), 0, change.fragment);
    else physical.splice(change.at % physical.length, 1);
    result = physical.join('\n');
  }
  return result;
}

test('arbitrary text yields a plan or a LapinError positioned inside the text', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200, unit: 'binary' }), (text) => checkOutcome(text)),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.boolean(), fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 12 }), (startsWithFrom, fragments) =>
      checkOutcome((startsWithFrom ? ['FROM scratch', ...fragments] : fragments).join('\n')),
    ),
    { numRuns: 300 },
  );
});

test('mutations of the seed fixture yield a plan or a positioned LapinError', () => {
  fc.assert(
    fc.property(fc.array(mutation, { minLength: 1, maxLength: 6 }), (mutations) => checkOutcome(mutate(FIXTURE, mutations))),
    { numRuns: 400 },
  );
});

test('comment and blank lines do not change the seed plan beyond positions', () => {
  const withoutPositions = (text: string): unknown =>
    JSON.parse(JSON.stringify(parseContainerfile(text, FILE), (key, value: unknown) => (key === 'at' ? undefined : value)));
  const expected = withoutPositions(FIXTURE);
  fc.assert(
    fc.property(
      fc.array(fc.record({ at: fc.nat(), line: fc.constantFrom('', '   ', '# a comment', '\t# another') }), { maxLength: 5 }),
      (insertions) => {
        const physical = FIXTURE.split('\n');
        // Keep the directive on the first line; insert after it.
        for (const { at, line } of insertions) physical.splice(1 + (at % physical.length), 0, line);
        assert.deepEqual(withoutPositions(physical.join('\n')), expected);
      },
    ),
    { numRuns: 200 },
  );
});
