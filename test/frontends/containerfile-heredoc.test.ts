import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LapinError } from '../../src/errors.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import { ExecutionNeeded } from '../../src/plan/execution.js';
import type { BuildPlan, CopyOp } from '../../src/plan/types.js';

const FILE = 'Containerfile';
const AMD64 = { TARGETPLATFORM: 'linux/amd64', BUILDPLATFORM: 'linux/amd64' };

function parse(text: string, buildArgs: Record<string, string> = {}): BuildPlan {
  return parseContainerfile(text, FILE, { ...AMD64, ...buildArgs });
}

function copies(plan: BuildPlan): CopyOp[] {
  return plan.ops.filter((op): op is CopyOp => op.kind === 'copy');
}

/** The only copy of the plan. */
function copy(text: string, buildArgs: Record<string, string> = {}): CopyOp {
  const all = copies(parse(text, buildArgs));
  assert.equal(all.length, 1);
  const [only] = all;
  assert.ok(only !== undefined);
  return only;
}

function fails(text: string, message: RegExp, line: number, column: number): LapinError {
  let caught: unknown;
  try {
    parse(text);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof LapinError, `expected a LapinError, got ${String(caught)}`);
  assert.match(caught.message, message);
  assert.deepEqual(caught.at, { file: FILE, line, column });
  assert.doesNotMatch(caught.message, /\n/);
  return caught;
}

describe('COPY here-documents', () => {
  test('the example: the body is the file, the lines after the delimiter are instructions again', () => {
    const plan = parse(
      [
        'FROM scratch',
        'COPY network.hvt /unikernel/network.hvt',
        'COPY <<EOT /etc/motd',
        'hello',
        'EOT',
        'LABEL com.urunc.unikernel.binary=/unikernel/network.hvt',
        'LABEL com.urunc.unikernel.unikernelType=mirage',
        'LABEL com.urunc.unikernel.hypervisor=hvt',
        '',
      ].join('\n'),
    );
    const [binary, motd] = copies(plan);
    assert.deepEqual(binary?.sources, ['network.hvt']);
    assert.equal(binary?.inline, undefined);
    assert.deepEqual(motd?.sources, []);
    assert.equal(motd?.destination, '/etc/motd');
    assert.deepEqual(motd?.inline, [{ name: 'EOT', data: 'hello\n' }]);
    assert.deepEqual(motd?.at, { file: FILE, line: 3, column: 1 });
    assert.equal(plan.urunc.hypervisor?.value, 'hvt');
  });

  test('several here-documents take their bodies in order; mixed with paths, into a directory', () => {
    const op = copy('FROM scratch\nCOPY <<ONE file.txt <<TWO /dir/\nfirst\nONE\nsecond\n\nTWO\n');
    assert.deepEqual(op.sources, ['file.txt']);
    assert.equal(op.destination, '/dir/');
    assert.deepEqual(op.inline, [
      { name: 'ONE', data: 'first\n' },
      { name: 'TWO', data: 'second\n\n' },
    ]);
  });

  test('an empty body, an instruction-like body and a relative destination under WORKDIR', () => {
    assert.deepEqual(copy('FROM scratch\nCOPY <<EOF /e\nEOF\n').inline, [{ name: 'EOF', data: '' }]);
    assert.deepEqual(copy('FROM scratch\nCOPY <<EOF /e\nFROM alpine\nRUN make\nEOF\n').inline, [{ name: 'EOF', data: 'FROM alpine\nRUN make\n' }]);
    const op = copy('FROM scratch\nWORKDIR /srv\nCOPY <<EOF conf/\nx\nEOF\n');
    assert.equal(op.destination, '/srv/conf/');
  });

  test('the terminator is the delimiter alone: trailing CRs are dropped, blanks are not', () => {
    assert.deepEqual(copy('FROM scratch\nCOPY <<EOF /f\nEOF \n EOF\nEOF\n').inline, [{ name: 'EOF', data: 'EOF \n EOF\n' }]);
    // CR LF line ends stay in the content, as BuildKit writes the lines it read.
    assert.deepEqual(copy('FROM scratch\r\nCOPY <<EOF /f\r\nhello\r\nEOF\r\nLABEL a=b\r\n').inline, [{ name: 'EOF', data: 'hello\r\n' }]);
    // The terminator may be the last line without a line break.
    assert.deepEqual(copy('FROM scratch\nCOPY <<EOF /f\nhello\nEOF').inline, [{ name: 'EOF', data: 'hello\n' }]);
  });

  test('<<- strips leading tabs from the terminator and every line, not spaces', () => {
    const op = copy('FROM scratch\nCOPY <<-EOF /f\n\t\tone\n  two\n\tEOF\n');
    assert.deepEqual(op.inline, [{ name: 'EOF', data: 'one\n  two\n' }]);
    // Without -, a tab-indented delimiter is content.
    assert.deepEqual(copy('FROM scratch\nCOPY <<EOF /f\n\tfoo\n\tEOF\nEOF\n').inline, [{ name: 'EOF', data: '\tfoo\n\tEOF\n' }]);
  });

  test('the body starts after the continuation lines; comments in them are skipped', () => {
    const op = copy('FROM scratch\nCOPY <<EOF \\\n# comment\n  /f\nbody\nEOF\n');
    assert.equal(op.destination, '/f');
    assert.deepEqual(op.inline, [{ name: 'EOF', data: 'body\n' }]);
  });

  test('unquoted delimiters expand ARG and ENV; quotes are plain characters; backslash escapes', () => {
    const text = [
      'FROM scratch',
      'ARG name=world',
      'ENV greeting=Hello',
      'COPY <<EOF /f',
      "${greeting} ${name}! '${name}' \"${name}\" ${unset:-d}",
      '\\$ \\\\ \\',
      'EOF',
      '',
    ].join('\n');
    assert.deepEqual(copy(text).inline, [{ name: 'EOF', data: "Hello world! 'world' \"world\" d\n$ \\ \n" }]);
    assert.deepEqual(copy(text, { name: 'you' }).inline?.[0]?.data.slice(0, 12), 'Hello you! \'');
  });

  test('quoting any part of the delimiter keeps the content as written (BuildKit: <<\\EOF still expands)', () => {
    const body = '${name} \\$ \\\\ \\\n';
    for (const delimiter of ['"EOF"', "'EOF'", 'E"O"F', "E'OF'"]) {
      assert.deepEqual(copy(`FROM scratch\nARG name=world\nCOPY <<${delimiter} /f\n${body}EOF\n`).inline, [{ name: 'EOF', data: body }], delimiter);
    }
    assert.deepEqual(copy('FROM scratch\nARG name=world\nCOPY <<\\EOF /f\n${name}\nEOF\n').inline, [{ name: 'EOF', data: 'world\n' }]);
    // A file descriptor in front is allowed and ignored.
    assert.deepEqual(copy('FROM scratch\nCOPY 0<<EOF /f\nx\nEOF\n').inline, [{ name: 'EOF', data: 'x\n' }]);
  });

  test('the escape directive does not change the content escape', () => {
    const op = copy('# escape=`\nFROM scratch\nARG v=1\nCOPY <<EOF /f\n`$v \\$v\nEOF\n');
    assert.deepEqual(op.inline, [{ name: 'EOF', data: '`1 $v\n' }]);
  });

  test('--chmod, --chown, --from and ADD carry over', () => {
    const op = copy('FROM scratch AS a\nFROM scratch\nCOPY --from=a --chmod=0755 --chown=1:2 <<EOF /bin/run\n#!/bin/sh\nEOF\n');
    assert.deepEqual([op.fromStage, op.mode, op.uid, op.gid, op.sources], ['a', 0o755, 1, 2, []]);
    assert.deepEqual(op.inline, [{ name: 'EOF', data: '#!/bin/sh\n' }]);
    const add = copy('FROM scratch\nADD <<EOF /f\nx\nEOF\n');
    assert.deepEqual([add.isAdd, add.inline], [true, [{ name: 'EOF', data: 'x\n' }]]);
  });

  test('two here-documents of one name both take the last body, as BuildKit looks them up by name', () => {
    assert.deepEqual(copy('FROM scratch\nCOPY <<EOF <<EOF /d/\n1\nEOF\n2\nEOF\n').inline, [
      { name: 'EOF', data: '2\n' },
      { name: 'EOF', data: '2\n' },
    ]);
  });

  test('the JSON form reads no body: an empty file, with a warning', () => {
    const plan = parse('FROM scratch\nCOPY ["<<EOF", "/f"]\n');
    assert.deepEqual(copies(plan)[0]?.inline, [{ name: 'EOF', data: '' }]);
    assert.match(plan.warnings?.[0]?.message ?? '', /JSON form reads no here-document body/);
  });

  test('other instructions read no here-document: the lines after are instructions', () => {
    fails('FROM scratch\nLABEL a=<<EOF\nhello\nEOF\n', /unknown instruction: hello/, 3, 1);
  });
});

describe('COPY here-document errors', () => {
  test('an unterminated here-document names where it starts and the delimiter it waits for', () => {
    fails('FROM scratch\nCOPY a <<EOF /f/\nhello\n', /^unterminated here-document: <<EOF has no line EOF to end it$/, 2, 8);
    // The second of two.
    fails('FROM scratch\nCOPY <<A <<B /f/\n1\nA\n2\n', /<<B has no line B/, 2, 10);
    // A quoted delimiter is waited for without its quotes.
    fails('FROM scratch\nCOPY <<"END" /f\nEND"\n', /<<"END" has no line END to end it/, 2, 6);
  });

  test('expansion errors point into the body', () => {
    fails('FROM scratch\nCOPY <<EOF /f\nok\nsome ${x:?is needed}\nEOF\n', /x: is needed in the here-document EOF/, 4, 6);
    fails('FROM scratch\nCOPY <<-EOF /f\n\t\tab ${\nEOF\n', /in the here-document EOF/, 3, 6);
    // A newline in the message is written \n, so the error stays one line.
    fails('FROM scratch\nCOPY <<EOF /f\n${a\nEOF\n', /unsupported modifier \(\\n\)/, 3, 1);
  });

  test('a here-document destination, a blank after <<, and delimiters that are no file names', () => {
    fails('FROM scratch\nCOPY a <<EOF\nx\nEOF\n', /COPY cannot take a here-document as its destination/, 2, 8);
    fails('FROM scratch\nCOPY << EOF /f\nx\nEOF\n', /COPY << with a blank before the delimiter is no here-document: BuildKit reads the body but copies files named << and the delimiter/, 2, 6);
    // BuildKit's lexer joins only blanks right after << to the word; <<- then matches no here-document, and reads no body.
    fails('FROM scratch\nCOPY <<- EOF /f\nx\nEOF\n', /COPY <<- with a blank before the delimiter is no here-document: BuildKit reads no body/, 2, 6);
    fails('FROM scratch\nCOPY <<a/b /f\nx\na/b\n', /"a\/b" is not a file name/, 2, 6);
    fails('FROM scratch\nCOPY <<.. /d/\nx\n..\n', /"\.\." is not a file name/, 2, 6);
  });
});

describe('RUN here-documents still need execution', () => {
  test('RUN <<EOF is handed on at the RUN, its body not read as instructions', () => {
    for (const text of ['FROM scratch\nRUN <<EOF\nBOGUS\nEOF\n', 'FROM scratch\nCOPY <<EOF /f\nx\nEOF\nRUN <<EOF bash\nset -e\nEOF\nLABEL a=b\n']) {
      let caught: unknown;
      try {
        parse(text);
      } catch (error) {
        caught = error;
      }
      assert.ok(caught instanceof ExecutionNeeded, String(caught));
      assert.equal(caught.instruction, 'RUN');
      assert.equal(caught.at?.column, 1);
    }
    let onbuild: unknown;
    try {
      parse('FROM scratch\nONBUILD RUN <<EOF\nBOGUS\nEOF\n');
    } catch (error) {
      onbuild = error;
    }
    assert.ok(onbuild instanceof ExecutionNeeded);
    assert.equal(onbuild.instruction, 'ONBUILD');
  });
});

describe('hostile here-documents stay bounded', () => {
  test('a body near the file size limit and thousands of here-documents parse in linear time', () => {
    const big = `FROM scratch\nCOPY <<EOF /f\n${'x'.repeat(1000).concat('\n').repeat(1000)}EOF\n`;
    let started = process.hrtime.bigint();
    assert.equal(copy(big).inline?.[0]?.data.length, 1001 * 1000);
    const bigMs = Number(process.hrtime.bigint() - started) / 1e6;
    const many = `FROM scratch\n${'COPY <<A <<B /d/\na\nA\nb\nB\n'.repeat(20000)}`;
    started = process.hrtime.bigint();
    assert.equal(copies(parse(many)).length, 20000);
    const manyMs = Number(process.hrtime.bigint() - started) / 1e6;
    assert.ok(bigMs < 5000 && manyMs < 20000, `${bigMs} ms, ${manyMs} ms`);
  });

  test('a delimiter line dockerfile-ast reads on from (a trailing backslash) does not make the parse quadratic', () => {
    const text = `FROM scratch\n${'COPY <<E\\\\ /d/\nx\nE\\\n'.repeat(3000)}`;
    const started = process.hrtime.bigint();
    assert.equal(copies(parse(text)).length, 3000);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.ok(ms < 20000, `${ms} ms`);
  });

  test('where dockerfile-ast reads a body BuildKit does not (an unbalanced quote), each place costs a short reparse', () => {
    // 2000 of these took 41 s when every such place parsed the rest of the file again.
    const text = `FROM scratch\n${"COPY <<EOF ' /d/\nLABEL a=b\nEOF\n".repeat(8000)}`;
    const started = process.hrtime.bigint();
    fails(text, /unterminated single quote/, 2, 12);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    assert.ok(ms < 10000, `${ms} ms`);
  });

  test('a huge expansion in a body is refused at the body', () => {
    const text = `FROM scratch\nARG a=${'y'.repeat(4096)}\nCOPY <<EOF /f\n${'$a$a$a$a$a$a$a$a\n'.repeat(600)}EOF\n`;
    // At the variable that takes the content past the limit: line 35's last $a (34 lines of 8 x 4096 before it).
    fails(text, /longer than 1 MiB, lapin's limit/, 35, 17);
  });
});
