import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { LapinError } from '../../src/errors.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import { processWord, ShellWordError } from '../../src/frontends/shell-words.js';
import type { BuildPlan, CopyOp } from '../../src/plan/types.js';

const FILE = 'Containerfile';
const FIXTURE = new URL('../fixtures/containerfile/Containerfile', import.meta.url);
/** Fixed platform ARGs so results do not depend on the machine running the tests. */
const AMD64 = { TARGETPLATFORM: 'linux/amd64', BUILDPLATFORM: 'linux/amd64' };

function parse(text: string, buildArgs: Record<string, string> = {}): BuildPlan {
  return parseContainerfile(text, FILE, { ...AMD64, ...buildArgs });
}

/** Parses lines joined with "\n". */
function lines(...text: string[]): BuildPlan {
  return parse(text.join('\n') + '\n');
}

function at(line: number, column: number) {
  return { file: FILE, line, column };
}

/** Asserts that parsing fails with a LapinError matching `message`, at line:column when given. */
function fails(text: string, message: RegExp, line?: number, column?: number, buildArgs: Record<string, string> = {}): LapinError {
  let caught: unknown;
  try {
    parse(text, buildArgs);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof LapinError, `expected a LapinError, got ${String(caught)}`);
  assert.match(caught.message, message);
  if (line !== undefined && column !== undefined) assert.deepEqual(caught.at, at(line, column));
  return caught;
}

function copies(plan: BuildPlan): CopyOp[] {
  return plan.ops.filter((op): op is CopyOp => op.kind === 'copy');
}

describe('the seed example', () => {
  test('yields the copy of network.hvt and the urunc values', () => {
    const text = readFileSync(FIXTURE, 'utf8');
    assert.ok(text.startsWith('#syntax=harbor.nbfc.io/nubificus/bunny:latest\nFROM scratch\n'));
    const plan = parseContainerfile(text, FILE);
    assert.equal(plan.syntax, 'containerfile');
    assert.equal(plan.file, FILE);
    assert.deepEqual(plan.base, { kind: 'scratch' });
    assert.deepEqual(plan.stages, []);
    assert.deepEqual(plan.ops, [
      { kind: 'copy', sources: ['network.hvt'], destination: '/unikernel/network.hvt', at: at(3, 1) },
    ]);
    assert.deepEqual(plan.urunc, {
      binary: { value: '/unikernel/network.hvt', at: at(4, 7) },
      cmdline: { value: '', at: at(5, 7) },
      unikernelType: { value: 'mirage', at: at(6, 7) },
      hypervisor: { value: 'hvt', at: at(7, 7) },
      useDMBlock: { value: 'false', at: at(8, 7) },
    });
    assert.deepEqual(plan.config, { env: [], exposedPorts: [], volumes: [], labels: {} });
    assert.deepEqual(plan.annotations, {});
    assert.equal(plan.architecture, undefined);
  });
});

describe('parser directives and lines', () => {
  test('syntax directives with and without a space are comments', () => {
    assert.deepEqual(lines('# syntax=docker/dockerfile:1', 'FROM scratch').base, { kind: 'scratch' });
    assert.deepEqual(lines('#syntax=x', '# escape=\\', 'FROM scratch').base, { kind: 'scratch' });
  });

  test('the escape directive changes the continuation character', () => {
    const plan = lines('# escape=`', 'FROM scratch', 'LABEL a=b `', '  c=d', 'LABEL path=C:\\dir');
    assert.deepEqual(plan.config.labels, { a: 'b', c: 'd', path: 'C:\\dir' });
  });

  test('a directive after an instruction is a comment', () => {
    const plan = lines('FROM scratch', '# escape=`', 'LABEL a=b \\', '  c=d');
    assert.deepEqual(plan.config.labels, { a: 'b', c: 'd' });
  });

  test('a repeated or invalid escape directive is refused at its line', () => {
    fails('# escape=`\n# escape=\\\nFROM scratch\n', /only one escape/, 2, 1);
    fails('# escape=x\nFROM scratch\n', /invalid escape directive 'x'/, 1, 1);
  });

  test('comment and blank lines inside a continuation are skipped', () => {
    const plan = lines('FROM scratch', 'LABEL a=1 \\', '  # a comment', '', '  b=2 \\  ', '  c=3');
    assert.deepEqual(plan.config.labels, { a: '1', b: '2', c: '3' });
  });

  test('CRLF line endings and a byte order mark are accepted', () => {
    const plan = parse('\uFEFFFROM scratch\r\nLABEL a=b\r\nCOPY k /k\r\n');
    assert.deepEqual(plan.config.labels, { a: 'b' });
    assert.equal(copies(plan)[0]?.destination, '/k');
  });

  test('keywords are case-insensitive and may be indented', () => {
    const plan = lines('from scratch', '   copy k /k', '\tLabel a=b');
    assert.equal(copies(plan)[0]?.at?.column, 4);
    assert.deepEqual(plan.config.labels, { a: 'b' });
  });

  test('an empty file, a comment-only file and a file without FROM are refused', () => {
    fails('', /has no instructions/);
    fails('# just a comment\n\n', /has no instructions/);
    fails('ARG X=1\n', /has no FROM instruction/);
  });
});

describe('where dockerfile-ast reads the file differently from BuildKit', () => {
  const labels = (text: string) => parse(text).config.labels;

  test('directives: unknown names end them, the value runs to the end of the line, one a line', () => {
    // dockerfile-ast would take `# foo=bar` for a directive and go on to read the escape directive after it.
    assert.deepEqual(labels('# foo=bar\n# escape=`\nFROM scratch\nLABEL a=b\\\n  c=d\n'), { a: 'b', c: 'd' });
    // dockerfile-ast would read a second directive on the line and skip the FROM line.
    assert.deepEqual(labels('# syntax=x # escape=`\nFROM scratch\nLABEL a=b\\\n  c=d\n'), { a: 'b', c: 'd' });
    // dockerfile-ast would stop at `y` and miss the escape directive.
    assert.deepEqual(labels('# syntax=x y\n# escape=`\nFROM scratch\nLABEL a=b `\n  c=d\n'), { a: 'b', c: 'd' });
    assert.deepEqual(labels('# escape=`\f\nFROM scratch\nLABEL a=b `\n  c=d\n'), { a: 'b', c: 'd' });
  });

  test('flags with quotes or escapes, a lone -- and flags after a source', () => {
    const [quoted, escaped, ended, late, spaced] = copies(
      lines(
        'FROM scratch',
        'COPY --chown="1:2" --chmod=\'755\' a /a',
        'COPY --chown=1\\:2 a /a',
        'COPY --chown=1 -- --chmod=7 /x/',
        'COPY a--b --chown=1 /x/',
        // BuildKit splits flags at any Unicode space; dockerfile-ast reads one word here.
        'COPY \u00a0--chown=3 a /a',
      ),
    );
    assert.deepEqual([quoted?.mode, quoted?.uid, quoted?.gid], [0o755, 1, 2]);
    assert.deepEqual([escaped?.uid, escaped?.gid], [1, 2]);
    assert.deepEqual([ended?.sources, ended?.mode, ended?.uid], [['--chmod=7'], undefined, 1]);
    assert.deepEqual([late?.sources, late?.uid], [['a--b', '--chown=1'], undefined]);
    assert.deepEqual([spaced?.sources, spaced?.uid], [['a'], 3]);
  });

  test('keywords, lines and continuations', () => {
    assert.deepEqual(parse('FROM\vscratch\n').base, { kind: 'scratch' });
    assert.deepEqual(parse('\\\nFROM scratch\n').base, { kind: 'scratch' });
    assert.deepEqual(parse('FROM\\\n# c\n scratch\n').base, { kind: 'scratch' });
    assert.deepEqual(parse('\u00a0FROM scratch\n\u3000# c\n').base, { kind: 'scratch' });
    // A lone CR is not a line break.
    fails('FROM scratch\rLABEL a=b\n', /FROM takes an image/, 1, 14);
    // A continuation line starting with an escaped # is not a comment, and the next line is an instruction again.
    fails('FROM scratch\nLABEL a=1 \\\n\\#x\nLABEL b=2\n', /expected name=value, found \\#x/, 3, 1);
    fails('FROM scratch\nLABEL a=1 \\\n\\#x=1\nLABEL b=c d\n', /expected name=value, found d/, 4, 11);
    // A here-document body is no instructions (containerfile-heredoc.test.ts has the rules).
    fails('FROM scratch\nCOPY << EOF /f\nhello\nEOF\nBOGUS\n', /COPY << with a blank before the delimiter/, 2, 6);
  });
});

describe('FROM', () => {
  test('an image base records the reference and its position', () => {
    const plan = lines('FROM  docker.io/library/alpine:3.20');
    assert.deepEqual(plan.base, { kind: 'image', reference: 'docker.io/library/alpine:3.20', at: at(1, 7) });
  });

  test('wrong argument counts point at the problem', () => {
    fails('FROM\n', /FROM takes an image/, 1, 1);
    fails('FROM scratch build\n', /FROM takes an image/, 1, 14);
    fails('FROM scratch TO x\n', /FROM takes an image/, 1, 14);
  });

  test('stage names are checked and lower-cased', () => {
    assert.equal(lines('FROM scratch AS Kernel', 'FROM scratch').stages[0]?.name, 'kernel');
    fails('FROM scratch AS 1st\n', /invalid stage name 1st/, 1, 17);
    fails('FROM scratch AS a\nFROM scratch AS A\n', /duplicate stage name a/, 2, 17);
  });

  test('FROM an earlier stage is refused with a hint', () => {
    const error = fails('FROM scratch AS kernel\nFROM kernel\n', /FROM kernel is not supported yet/, 2, 6);
    assert.match(error.hint ?? '', /COPY --from=kernel/);
  });

  test('instructions other than ARG before FROM are refused', () => {
    fails('LABEL a=b\nFROM scratch\n', /LABEL before the first FROM/, 1, 1);
    fails('ARG A\n  COPY a /a\nFROM scratch\n', /COPY before the first FROM/, 2, 3);
  });

  test('a literal --platform on the final stage sets the architecture', () => {
    const plan = lines('FROM --platform=linux/arm64 scratch');
    assert.deepEqual(plan.architecture, { value: 'arm64', at: at(1, 6) });
    assert.equal(lines('FROM --platform=linux/x86_64 scratch').architecture?.value, 'amd64');
    assert.equal(lines('FROM --platform=aarch64 scratch').architecture?.value, 'arm64');
  });

  test("--platform is read as lapin build --platform reads it (pipeline/platform.ts, buildx's forms)", () => {
    for (const [written, arch] of [
      ['amd64', 'amd64'], ['x86_64', 'amd64'], ['x86-64', 'amd64'], ['LINUX/X86_64', 'amd64'], ['linux/amd64/v1', 'amd64'],
      ['arm64', 'arm64'], ['aarch64', 'arm64'], ['linux/aarch64', 'arm64'], ['linux/arm64/v8', 'arm64'], ['linux/arm64/8', 'arm64'], ['Linux/ARM64', 'arm64'],
    ] as const) {
      assert.equal(lines(`FROM --platform=${written} scratch`).architecture?.value, arch, written);
    }
    // An ARG gives the value as it gives any other.
    assert.equal(lines('ARG P=aarch64', 'FROM --platform=$P scratch').architecture?.value, 'arm64');
    assert.equal(parse('ARG P\nFROM --platform=${P} scratch\n', { P: 'x86_64' }).architecture?.value, 'amd64');
  });

  test('--platform on an earlier stage or from the target platform args sets no architecture; $BUILDPLATFORM does only without --platform', () => {
    assert.equal(lines('FROM --platform=linux/arm64 scratch AS a', 'FROM scratch').architecture, undefined);
    assert.equal(lines('FROM --platform=$TARGETPLATFORM scratch').architecture, undefined);
    assert.equal(lines('FROM --platform=${TARGETOS}/${TARGETARCH} scratch').architecture, undefined);
    assert.equal(parseContainerfile('FROM --platform=$TARGETPLATFORM scratch\n', FILE, {}, { platform: 'aarch64', buildPlatform: 'linux/amd64' }).architecture, undefined);
    // BuildKit's image for a final stage FROM --platform=$BUILDPLATFORM is the target's when --platform is given,
    // the stage's (the build machine's) when it is not (dockerfile2llb's implicitTarget).
    assert.equal(parseContainerfile('FROM --platform=${BUILDPLATFORM} scratch\n', FILE, {}, { platform: 'linux/amd64', buildPlatform: 'linux/aarch64' }).architecture, undefined);
    assert.deepEqual(parseContainerfile('FROM --platform=$BUILDPLATFORM scratch\n', FILE, {}, { buildPlatform: 'linux/aarch64' }).architecture, { value: 'arm64', at: at(1, 6) });
    assert.equal(parseContainerfile('FROM --platform=${BUILDOS}/${BUILDARCH} scratch\n', FILE, {}, { buildPlatform: 'linux/x86_64' }).architecture?.value, 'amd64');
  });

  test('a platform lapin cannot build is refused at the flag, with what it takes', () => {
    const error = fails('FROM --platform=linux/arm/v7 scratch\n', /^unsupported platform linux\/arm\/v7$/, 1, 6);
    assert.match(error.hint ?? '', /lapin builds linux\/amd64 and linux\/arm64, in any form buildx takes: amd64, x86_64, arm64, aarch64/);
    fails('FROM --platform=windows/amd64 scratch\n', /unsupported platform windows\/amd64/, 1, 6);
    // --platform linux/amd64/v3 is refused by lapin build; so is it here (the Containerfile frontend once took v2-v4 as amd64).
    fails('FROM --platform=linux/amd64/v3 scratch\n', /^unsupported platform linux\/amd64\/v3$/, 1, 6);
    fails('FROM --platform=riscv64 scratch\n', /^unsupported platform riscv64$/, 1, 6);
    fails('ARG P=linux/s390x\nFROM --platform=$P scratch\n', /^unsupported platform linux\/s390x \(\$P\)$/, 2, 6);
    fails('FROM --platform=$TARGETPLATFORM scratch\n', /^unsupported platform linux\/riscv64 \(\$TARGETPLATFORM\)$/, 1, 6, { TARGETPLATFORM: 'linux/riscv64' });
    fails('FROM --pltform=linux/amd64 scratch\n', /unknown flag --pltform for FROM/, 1, 6);
  });
});

describe('multi-stage builds', () => {
  const text = [
    'FROM scratch AS kernel',
    'COPY build/kernel /kernel',
    'FROM scratch',
    'COPY build/initrd /initrd',
    'FROM scratch',
    'COPY --from=Kernel /kernel /boot/kernel',
    'COPY --from=1 /initrd /boot/',
  ].join('\n');

  test('earlier stages go to stages, the last one is the image', () => {
    const plan = parse(text);
    assert.deepEqual(plan.stages, [
      {
        name: 'kernel',
        base: { kind: 'scratch' },
        ops: [{ kind: 'copy', sources: ['build/kernel'], destination: '/kernel', at: at(2, 1) }],
        at: at(1, 1),
      },
      {
        base: { kind: 'scratch' },
        ops: [{ kind: 'copy', sources: ['build/initrd'], destination: '/initrd', at: at(4, 1) }],
        at: at(3, 1),
      },
    ]);
    assert.deepEqual(plan.ops, [
      { kind: 'copy', sources: ['/kernel'], destination: '/boot/kernel', fromStage: 'kernel', fromAt: at(6, 6), at: at(6, 1) },
      { kind: 'copy', sources: ['/initrd'], destination: '/boot/', fromStage: '1', fromAt: at(7, 6), at: at(7, 1) },
    ]);
  });

  test('config and urunc labels of earlier stages do not reach the image', () => {
    const plan = lines(
      'FROM scratch AS a',
      'LABEL x=1 com.urunc.unikernel.hypervisor=hvt',
      'ENV E=1',
      'CMD ["a"]',
      'FROM scratch',
    );
    assert.deepEqual(plan.config, { env: [], exposedPorts: [], volumes: [], labels: {} });
    assert.equal(plan.urunc.hypervisor?.value, 'qemu');
  });

  test('--from may use variables', () => {
    const plan = lines('ARG SRC=k', 'FROM scratch AS k', 'FROM scratch', 'ARG SRC', 'COPY --from=$SRC /a /a');
    assert.equal(copies(plan)[0]?.fromStage, 'k');
  });

  test('--from naming no stage is an image the build pulls', () => {
    assert.equal(copies(lines('FROM scratch', 'COPY --from=alpine:3 /a /a'))[0]?.fromStage, 'alpine:3');
  });

  test('--from naming this stage, a later stage or a missing index is refused', () => {
    fails('FROM scratch AS a\nCOPY --from=a /a /a\n', /refers to this stage itself/, 2, 6);
    fails('FROM scratch\nCOPY --from=0 /a /a\n', /refers to this stage itself/, 2, 6);
    fails('FROM scratch\nCOPY --from=3 /a /a\n', /there is no stage 3/, 2, 6);
    fails('FROM scratch\nCOPY --from=later /a /a\nFROM scratch AS later\n', /stage defined later/, 2, 6);
  });
});

describe('COPY and ADD', () => {
  test('flags set mode and owner', () => {
    const plan = lines(
      'FROM scratch',
      'COPY --chmod=0755 --chown=1000:100 a /a',
      'COPY --chmod=644 --chown=33 b /b',
      'COPY --chown=root:root --link c /c',
      'COPY --chown=root:5 --link=false d /d',
    );
    const [a, b, c, d] = copies(plan);
    assert.deepEqual([a?.mode, a?.uid, a?.gid], [0o755, 1000, 100]);
    assert.deepEqual([b?.mode, b?.uid, b?.gid], [0o644, 33, 33]);
    assert.deepEqual([c?.mode, c?.uid, c?.gid], [undefined, 0, 0]);
    assert.deepEqual([d?.uid, d?.gid], [0, 5]);
  });

  test('flag values are expanded', () => {
    const plan = lines('FROM scratch', 'ARG MODE=0700', 'ARG OWNER=7:8', 'COPY --chmod=$MODE --chown=${OWNER} a /a');
    const [op] = copies(plan);
    assert.deepEqual([op?.mode, op?.uid, op?.gid], [0o700, 7, 8]);
  });

  test('bad flags are refused at the flag', () => {
    fails('FROM scratch\nCOPY --chmod=u+x a /a\n', /--chmod=u\+x is not an octal mode/, 2, 6);
    fails('FROM scratch\nCOPY --chmod=17777 a /a\n', /not an octal mode/, 2, 6);
    // Flags only count before the first argument; later they are sources, as in Docker.
    fails('FROM scratch\nCOPY a --chown=x /a\n', /with more than one source/, 2, 18);
    const user = fails('FROM scratch\nCOPY  --chown=nobody a /a\n', /user names need the image's \/etc\/passwd/, 2, 7);
    assert.match(user.hint ?? '', /numeric ids/);
    fails('FROM scratch\nCOPY --chown=1:2:3 a /a\n', /not uid\[:gid\]/, 2, 6);
    fails('FROM scratch\nCOPY --chown=1:staff a /a\n', /group names/, 2, 6);
    fails('FROM scratch\nCOPY --chmod a /a\n', /--chmod needs a value/, 2, 6);
    fails('FROM scratch\nCOPY --link=maybe a /a\n', /--link takes true or false/, 2, 6);
    fails('FROM scratch\nCOPY --link --link a /a\n', /--link given twice/, 2, 13);
    fails('FROM scratch\nCOPY --parents a/b /x/\n', /not supported: COPY --parents/, 2, 6);
    fails('FROM scratch\nCOPY --exclude=*.o . /x/\n', /not supported: COPY --exclude/, 2, 6);
    fails('FROM scratch\nCOPY --checksum=sha256:00 a /a\n', /unknown flag --checksum for COPY/, 2, 6);
    fails('FROM scratch\nADD --from=x a /a\n', /unknown flag --from for ADD/, 2, 5);
    fails('FROM scratch\nADD --checksum=sha256:00 a /a\n', /not supported: ADD --checksum/, 2, 5);
    fails('FROM scratch\nADD --keep-git-dir a /a\n', /not supported: ADD --keep-git-dir/, 2, 5);
  });

  test('the JSON form takes sources with spaces', () => {
    const plan = lines('FROM scratch', 'COPY ["a b", "c", "/dst dir/"]');
    assert.deepEqual(copies(plan)[0]?.sources, ['a b', 'c']);
    assert.equal(copies(plan)[0]?.destination, '/dst dir/');
  });

  test('relative destinations join the WORKDIR and a written trailing / is kept', () => {
    const plan = lines(
      'FROM scratch',
      'COPY a b',
      'COPY a b/',
      'WORKDIR /opt/app',
      'COPY a .',
      'COPY a ./sub/../x',
      'COPY a /abs//path/',
      'COPY a ../up/',
    );
    assert.deepEqual(
      copies(plan).map((op) => op.destination),
      ['/b', '/b/', '/opt/app/', '/opt/app/x', '/abs/path/', '/opt/up/'],
    );
  });

  test('ADD of local files is a copy marked isAdd', () => {
    const [op] = copies(lines('FROM scratch', 'ADD --chmod=600 rootfs.tar /'));
    assert.deepEqual(op, { kind: 'copy', sources: ['rootfs.tar'], destination: '/', isAdd: true, mode: 0o600, at: at(2, 1) });
  });

  test('URL sources are refused at the source', () => {
    fails('FROM scratch\nADD https://example.com/k /k\n', /not supported: ADD of a URL; lapin packages local pre-built artifacts/, 2, 5);
    fails('FROM scratch\nADD a git@github.com:x/y.git /src\n', /ADD of a URL/, 2, 7);
    fails('FROM scratch\nARG U=http://x/y\nADD $U /k\n', /ADD of a URL/, 3, 5);
    fails('FROM scratch\nCOPY http://x/y /k\n', /COPY of a URL/, 2, 6);
  });

  test('missing arguments and several sources into a file are refused', () => {
    fails('FROM scratch\nCOPY only\n', /COPY needs a source and a destination/, 2, 1);
    fails('FROM scratch\nCOPY a b /dir\n', /more than one source needs a directory destination/, 2, 10);
    fails('FROM scratch\nCOPY <<EOF a /dir\nhello\nEOF\n', /more than one source needs a directory destination/, 2, 14);
    fails('FROM scratch\nCOPY a $NOTHING\n', /destination is empty/, 2, 8);
    fails('FROM scratch\nCOPY $NOTHING /a\n', /source is empty/, 2, 6);
  });

  test('sources and destination are expanded', () => {
    const plan = parseContainerfile('FROM scratch\nARG TARGETARCH\nARG NAME=net\nCOPY build/${TARGETARCH}/${NAME}.hvt /unikernel/$NAME.hvt\n', FILE, {}, { platform: 'linux/arm64' });
    assert.deepEqual(copies(plan)[0]?.sources, ['build/arm64/net.hvt']);
    assert.equal(copies(plan)[0]?.destination, '/unikernel/net.hvt');
  });
});

describe('LABEL', () => {
  test('every form', () => {
    const plan = lines(
      'FROM scratch',
      'LABEL a=b',
      'LABEL "quoted"="value" c=d',
      'LABEL spaced="b c" \'single\'=\'x $y\'',
      'LABEL multi=1 \\',
      '      line=2',
      'LABEL legacy value with  spaces',
      'LABEL escaped=a\\ b empty=',
      'LABEL a=override',
    );
    assert.deepEqual(plan.config.labels, {
      a: 'override',
      quoted: 'value',
      c: 'd',
      spaced: 'b c',
      single: 'x $y',
      multi: '1',
      line: '2',
      legacy: 'value with  spaces',
      escaped: 'a b',
      empty: '',
    });
  });

  test('urunc labels go to urunc only, with the position of their key', () => {
    const plan = lines(
      'FROM scratch',
      'LABEL org.opencontainers.image.title=k com.urunc.unikernel.binary=/k',
      'LABEL "com.urunc.unikernel.binary"=/k2',
    );
    assert.deepEqual(plan.config.labels, { 'org.opencontainers.image.title': 'k' });
    assert.deepEqual(plan.urunc.binary, { value: '/k2', at: at(3, 7) });
  });

  test('an unknown urunc key is refused at the key, naming the one meant when one is close', () => {
    const misspelt = fails('FROM scratch\nLABEL com.urunc.unikernel.hypervisr=hvt\n', /unknown urunc key com\.urunc\.unikernel\.hypervisr$/, 2, 7);
    assert.equal(misspelt.hint, 'did you mean com.urunc.unikernel.hypervisor?');
    const other = fails('FROM scratch\nLABEL x=1 com.urunc.unikernel.somethingNew=x\n', /unknown urunc key com\.urunc\.unikernel\.somethingNew$/, 2, 11);
    assert.match(other.hint ?? '', /urunc reads com\.urunc\.unikernel\.unikernelType, .*--label/);
  });

  test('label keys and values are expanded', () => {
    const plan = lines('FROM scratch', 'ARG KIND=mirage', 'ENV P=com.urunc.unikernel', 'LABEL ${P}.unikernelType=$KIND v="${KIND}-x"');
    assert.equal(plan.urunc.unikernelType?.value, 'mirage');
    assert.equal(plan.config.labels.v, 'mirage-x');
  });

  test('malformed labels are refused at the word', () => {
    fails('FROM scratch\nLABEL a=b c\n', /expected name=value, found c/, 2, 11);
    fails('FROM scratch\nLABEL\n', /LABEL needs at least one name=value pair/, 2, 1);
    fails('FROM scratch\nLABEL justakey\n', /has no value/, 2, 7);
    fails('FROM scratch\nLABEL =x\n', /LABEL names cannot be blank/, 2, 7);
    fails('FROM scratch\nLABEL a="unterminated\n', /unterminated double quote/, 2, 9);
  });

  test('MAINTAINER becomes the maintainer label', () => {
    assert.deepEqual(lines('FROM scratch', 'MAINTAINER Jane Doe <jane@example.com>').config.labels, {
      maintainer: 'Jane Doe <jane@example.com>',
    });
  });
});

describe('ENV and ARG', () => {
  test('ENV forms set config.env, replacing earlier values in place', () => {
    const plan = lines('FROM scratch', 'ENV A=1 B="two words"', 'ENV C 3 and more', 'ENV A=again');
    assert.deepEqual(plan.config.env, ['A=again', 'B=two words', 'C=3 and more']);
  });

  test('the pairs of one ENV see the values from before it', () => {
    const plan = lines('FROM scratch', 'ENV abc=hello', 'ENV abc=bye def=$abc', 'ENV ghi=$abc');
    assert.deepEqual(plan.config.env, ['abc=bye', 'def=hello', 'ghi=bye']);
  });

  test('global ARGs are usable in FROM, and in a stage only once redeclared', () => {
    const plan = lines('ARG IMAGE=scratch', 'ARG V=1', 'FROM $IMAGE', 'LABEL before=${V:-unset}', 'ARG V', 'LABEL after=$V');
    assert.deepEqual(plan.base, { kind: 'scratch' });
    assert.deepEqual(plan.config.labels, { before: 'unset', after: '1' });
  });

  test('build args override defaults, and ENV overrides ARG', () => {
    const text = 'ARG G=default\nFROM scratch\nARG G\nARG L=local\nARG N\nLABEL g=$G l=$L n=${N-unset}\nENV L=env\nLABEL l2=$L\n';
    assert.deepEqual(parse(text).config.labels, { g: 'default', l: 'local', n: 'unset', l2: 'env' });
    assert.deepEqual(parse(text, { G: 'given', L: 'also', N: '' }).config.labels, { g: 'given', l: 'also', n: '', l2: 'env' });
  });

  test('build args for undeclared names are not visible', () => {
    assert.deepEqual(parse('FROM scratch\nLABEL x=${SECRET:-none}\n', { SECRET: 's' }).config.labels, { x: 'none' });
  });

  test('ARG defaults are expanded and several names may be declared at once', () => {
    const plan = lines('FROM scratch', 'ARG A=1 B=${A}2 C', 'LABEL v=$A$B${C:-c}');
    assert.equal(plan.config.labels.v, '112c');
  });

  test('predefined platform ARGs follow --platform, normalized as BuildKit does (arm64/v8 is arm64)', () => {
    const plan = parseContainerfile('FROM scratch\nARG TARGETPLATFORM\nARG TARGETOS\nARG TARGETARCH\nARG TARGETVARIANT\nLABEL p=$TARGETPLATFORM o=$TARGETOS a=$TARGETARCH v=$TARGETVARIANT\n', FILE, {}, { platform: 'linux/arm64/v8' });
    assert.deepEqual(plan.config.labels, { p: 'linux/arm64', o: 'linux', a: 'arm64', v: '' });
  });

  test('ENV and ARG errors', () => {
    fails('FROM scratch\nENV =x\n', /ENV names cannot be blank/, 2, 5);
    fails('FROM scratch\nENV\n', /ENV needs at least one name=value pair/, 2, 1);
    fails('FROM scratch\nARG\n', /ARG needs a name/, 2, 1);
    fails('FROM scratch\nARG =1\n', /ARG names cannot be blank/, 2, 5);
  });
});

describe('variable expansion in instructions', () => {
  const cases: [string, string][] = [
    ['$SET', 'value'],
    ['${SET}', 'value'],
    ['${UNSET:-default}', 'default'],
    ['${EMPTY:-default}', 'default'],
    ['${EMPTY-default}', ''],
    ['${UNSET-default}', 'default'],
    ['${SET:+alt}', 'alt'],
    ['${EMPTY:+alt}', ''],
    ['${EMPTY+alt}', 'alt'],
    ['${UNSET+alt}', ''],
    ['\\$SET', '$SET'],
    ['"$SET"', 'value'],
    ["'$SET'", '$SET'],
    ['pre${SET}post', 'prevaluepost'],
    ['${UNSET:-${SET}}', 'value'],
    ['$', '$'],
    ['a$-b', 'ab'],
  ];
  for (const [word, expected] of cases) {
    test(`${word} -> ${JSON.stringify(expected)}`, () => {
      const plan = lines('FROM scratch', 'ARG SET=value', 'ARG EMPTY=', `LABEL v=${word}`);
      assert.equal(plan.config.labels.v, expected);
    });
  }

  test('expansion errors point into the word', () => {
    fails('FROM scratch\nLABEL v=x${}\n', /bad substitution/, 2, 10);
    fails('FROM scratch\nLABEL v=${UNSET:?needed}\n', /UNSET: needed/, 2, 9);
    fails('FROM scratch\nLABEL v="${UNSET:?must be set}"\n', /UNSET: must be set/, 2, 10);
    fails('FROM scratch\nLABEL v=${A\n', /missing '}'/, 2, 9);
    fails('FROM scratch\nLABEL v=${A!x}\n', /unsupported modifier \(!\)/, 2, 9);
  });

  test('WORKDIR, USER, EXPOSE, STOPSIGNAL and VOLUME expand variables', () => {
    const plan = lines(
      'FROM scratch',
      'ENV D=/srv U=1000 P=8080 S=SIGINT V=/data',
      'WORKDIR $D',
      'USER ${U}:${U}',
      'EXPOSE $P/udp',
      'STOPSIGNAL $S',
      'VOLUME ["$V", "/other"]',
    );
    assert.equal(plan.config.workingDir, '/srv');
    assert.equal(plan.config.user, '1000:1000');
    assert.deepEqual(plan.config.exposedPorts, ['8080/udp']);
    assert.equal(plan.config.stopSignal, 'SIGINT');
    assert.deepEqual(plan.config.volumes, ['/data', '/other']);
  });
});

describe('processWord', () => {
  const lookup = (name: string): string | undefined => ({ file: 'archive.tar.gz', path: '/a/b/c', e: '' })[name];

  test('pattern modifiers trim and replace', () => {
    assert.equal(processWord('${file#*.}', lookup), 'tar.gz');
    assert.equal(processWord('${file##*.}', lookup), 'gz');
    assert.equal(processWord('${file%.*}', lookup), 'archive.tar');
    assert.equal(processWord('${file%%.*}', lookup), 'archive');
    assert.equal(processWord('${path/\\//:}', lookup), ':a/b/c');
    assert.equal(processWord('${path//\\//:}', lookup), ':a:b:c');
    assert.equal(processWord('${path//b/$file}', lookup), '/a/archive.tar.gz/c');
  });

  test('double quotes keep backslashes except before " $ and \\', () => {
    assert.equal(processWord('"a\\b\\"c\\$d\\\\"', lookup), 'a\\b"c$d\\');
    assert.equal(processWord('a\\ b', lookup), 'a b');
    assert.equal(processWord('a`b', lookup, '`'), 'ab');
  });

  test('errors carry the offset of the substitution', () => {
    assert.throws(
      () => processWord('ab${e:?}', lookup),
      (error: unknown) => error instanceof ShellWordError && error.offset === 2 && /e: is not allowed to be empty/.test(error.message),
    );
    assert.throws(() => processWord("x'open", lookup), (error: unknown) => error instanceof ShellWordError && error.offset === 1);
  });

  test('deep nesting is refused, not a stack overflow', () => {
    const deep = '${a:-'.repeat(5000) + '}'.repeat(5000);
    assert.throws(() => processWord(deep, lookup), ShellWordError);
  });
});

describe('CMD, ENTRYPOINT and SHELL', () => {
  test('exec and shell forms; the last CMD wins', () => {
    const plan = lines('FROM scratch', 'CMD ["first"]', 'ENTRYPOINT ["/unikernel/k", "-v"]', 'CMD  echo "$HOME"  now');
    assert.deepEqual(plan.config.entrypoint, { value: ['/unikernel/k', '-v'], at: at(3, 1) });
    assert.deepEqual(plan.config.cmd, { value: ['/bin/sh', '-c', 'echo "$HOME"  now'], at: at(4, 1) });
  });

  test('an ENTRYPOINT after a CMD in the same stage keeps the CMD', () => {
    const plan = lines('FROM scratch', 'CMD ["arg"]', 'ENTRYPOINT ["/k"]');
    assert.deepEqual(plan.config.cmd, { value: ['arg'], at: at(2, 1) });
    assert.deepEqual(plan.config.entrypoint?.value, ['/k']);
  });

  test('SHELL changes the prefix of later shell forms', () => {
    const plan = lines('FROM scratch', 'ENTRYPOINT run a', 'SHELL ["/bin/ash", "-eo", "pipefail", "-c"]', 'CMD run b');
    assert.deepEqual(plan.config.entrypoint?.value, ['/bin/sh', '-c', 'run a']);
    assert.deepEqual(plan.config.cmd?.value, ['/bin/ash', '-eo', 'pipefail', '-c', 'run b']);
  });

  test('an empty JSON array is kept; a non-array is the shell form', () => {
    assert.deepEqual(lines('FROM scratch', 'CMD []').config.cmd?.value, []);
    assert.deepEqual(lines('FROM scratch', 'CMD [oops').config.cmd?.value, ['/bin/sh', '-c', '[oops']);
  });

  test('errors', () => {
    fails('FROM scratch\nCMD ["a", 1]\n', /JSON form takes an array of strings only/, 2, 5);
    fails('FROM scratch\nENTRYPOINT\n', /ENTRYPOINT needs a command/, 2, 1);
    fails('FROM scratch\nSHELL /bin/sh -c\n', /SHELL takes a non-empty JSON array/, 2, 1);
    fails('FROM scratch\nCMD --verbose x\n', /unknown flag --verbose for CMD/, 2, 5);
  });
});

describe('other config instructions', () => {
  test('WORKDIR is relative to the previous one', () => {
    assert.equal(lines('FROM scratch', 'WORKDIR a', 'WORKDIR b/../c', 'WORKDIR ./d/').config.workingDir, '/a/c/d');
    assert.equal(lines('FROM scratch', 'WORKDIR /x', 'WORKDIR /y').config.workingDir, '/y');
  });

  test('EXPOSE forms', () => {
    assert.deepEqual(lines('FROM scratch', 'EXPOSE 80 80/tcp 53/UDP 8000-8002 9/sctp').config.exposedPorts, [
      '80/tcp',
      '53/udp',
      '8000/tcp',
      '8001/tcp',
      '8002/tcp',
      '9/sctp',
    ]);
    fails('FROM scratch\nEXPOSE 80 http\n', /invalid port http/, 2, 11);
    fails('FROM scratch\nEXPOSE 70000\n', /invalid port/, 2, 8);
    fails('FROM scratch\nEXPOSE 90-80\n', /invalid port/, 2, 8);
    fails('FROM scratch\nEXPOSE 80/icmp\n', /invalid port/, 2, 8);
  });

  test('USER, STOPSIGNAL and VOLUME', () => {
    const plan = lines('FROM scratch', 'USER 0', 'STOPSIGNAL 9', 'VOLUME /a /b /a');
    assert.equal(plan.config.user, '0');
    assert.equal(plan.config.stopSignal, '9');
    assert.deepEqual(plan.config.volumes, ['/a', '/b']);
    assert.equal(lines('FROM scratch', 'STOPSIGNAL SIGRTMIN+3').config.stopSignal, 'SIGRTMIN+3');
    fails('FROM scratch\nSTOPSIGNAL SIGNOPE\n', /unknown signal SIGNOPE/, 2, 12);
    fails('FROM scratch\nUSER\n', /USER needs a user/, 2, 1);
    fails('FROM scratch\nWORKDIR $NOTHING\n', /WORKDIR is empty after variable expansion/, 2, 9);
    fails('FROM scratch\nVOLUME\n', /VOLUME needs at least one path/, 2, 1);
  });
});

describe('refused instructions', () => {
  test('RUN is refused with its position and a hint', () => {
    const error = fails('FROM scratch\nCOPY a /a\n  RUN make \\\n   kernel\n', /not supported: RUN executes commands; lapin packages pre-built artifacts/, 3, 3);
    assert.match(error.hint ?? '', /build the artifact beforehand and COPY it/);
    fails('RUN x\n', /not supported: RUN/, 1, 1);
  });

  test('ONBUILD and HEALTHCHECK are refused; HEALTHCHECK NONE is accepted', () => {
    fails('FROM scratch\nONBUILD COPY a /a\n', /not supported: ONBUILD/, 2, 1);
    fails('FROM scratch\nHEALTHCHECK CMD true\n', /not supported: HEALTHCHECK/, 2, 1);
    assert.deepEqual(lines('FROM scratch', 'HEALTHCHECK none').config, { env: [], exposedPorts: [], volumes: [], labels: {} });
  });

  test('unknown instructions are named', () => {
    fails('FROM scratch\n  COPYY a /a\n', /unknown instruction: COPYY/, 2, 3);
    // BuildKit's "(did you mean label?)": the instruction a typo is closest to.
    for (const [typo, meant] of [['LABLE', 'LABEL'], ['cmd2', 'CMD'], ['ENTRYPIONT', 'ENTRYPOINT'], ['Form', 'FROM']] as const) {
      assert.equal(fails(`FROM scratch\n${typo} x\n`, /unknown instruction/, 2, 1).hint, `did you mean ${meant}?`, typo);
    }
    assert.equal(fails('FROM scratch\nhello x\n', /unknown instruction: hello/).hint, undefined);
  });

  test('errors on continuation lines point at the right line', () => {
    fails('FROM scratch\nLABEL a=b \\\n  # note\n  c=d \\\n    e\n', /expected name=value, found e/, 5, 5);
  });
});

describe('urunc defaults', () => {
  const urunc = (...labels: string[]) => lines('FROM scratch', ...labels.map((label) => `LABEL com.urunc.unikernel.${label}`)).urunc;

  test('missing values get bunny defaults, without a position', () => {
    assert.deepEqual(urunc('binary=/k'), {
      binary: { value: '/k', at: at(2, 7) },
      unikernelType: { value: 'linux' },
      hypervisor: { value: 'qemu' },
      mountRootfs: { value: 'true' },
    });
  });

  test('mountRootfs defaults to false with an initrd or a block mounted at /', () => {
    assert.equal(urunc('initrd=/initrd').mountRootfs?.value, 'false');
    assert.equal(urunc('initrd=').mountRootfs?.value, 'true');
    assert.equal(urunc('block=/b', 'blkMntPoint=/').mountRootfs?.value, 'false');
    assert.equal(urunc('blkMntPoint=/data').mountRootfs?.value, 'true');
  });

  test('given values, even empty ones, are kept; useDMBlock suppresses the mountRootfs default', () => {
    const given = urunc('hypervisor=', 'mountRootfs=false', 'unikernelType=unikraft');
    assert.deepEqual(given.hypervisor, { value: '', at: at(2, 7) });
    assert.equal(given.mountRootfs?.value, 'false');
    assert.equal(given.unikernelType?.value, 'unikraft');
    assert.equal(urunc('useDMBlock=true').mountRootfs, undefined);
    assert.equal(urunc('binary=/k').binary?.value, '/k');
    assert.equal('binary' in urunc('hypervisor=hvt'), false);
  });
});
