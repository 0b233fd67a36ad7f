import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LapinError } from '../../src/errors.js';
import { parseArgsNix } from '../../src/frontends/nix.js';
import { emptyConfig, type BuildPlan } from '../../src/plan/types.js';

const fixture = fileURLToPath(new URL('../fixtures/nix/args.nix', import.meta.url));

function at(line: number, column: number, file = 'args.nix') {
  return { file, line, column };
}

function plan(text: string): BuildPlan {
  return parseArgsNix(text, 'args.nix');
}

function errorOf(text: string): LapinError {
  try {
    parseArgsNix(text, 'args.nix');
  } catch (error) {
    assert.ok(error instanceof LapinError, `expected a LapinError, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be refused`);
}

function errorAt(text: string, line: number, column: number, message: RegExp): LapinError {
  const error = errorOf(text);
  assert.deepEqual(error.at, at(line, column), `position of: ${error.message}`);
  assert.match(error.message, message);
  return error;
}

describe('args.nix: the seed example', () => {
  test('compiles to the expected plan', () => {
    const text = readFileSync(fixture, 'utf8');
    assert.deepEqual(parseArgsNix(text, 'args.nix'), {
      syntax: 'nix',
      file: 'args.nix',
      name: { value: 'urunc/prebuilt/network-mirage-hvt', at: at(2, 10) },
      tag: { value: 'test', at: at(3, 9) },
      base: { kind: 'scratch' },
      stages: [],
      ops: [{ kind: 'copy', sources: ['network.hvt'], destination: '/unikernel/network.hvt', at: at(5, 5) }],
      config: emptyConfig(),
      urunc: {
        unikernelType: { value: 'mirage', at: at(8, 21) },
        hypervisor: { value: 'hvt', at: at(9, 18) },
        binary: { value: '/unikernel/network.hvt', at: at(10, 14) },
        cmdline: { value: '', at: at(11, 15) },
        unikernelVersion: { value: '', at: at(12, 24) },
        initrd: { value: '', at: at(13, 14) },
        block: { value: '', at: at(14, 13) },
        blkMntPoint: { value: '', at: at(15, 19) },
        useDMBlock: { value: 'false', at: at(16, 18) },
      },
      annotations: {},
    } satisfies BuildPlan);
  });

  test('the file name is used in positions', () => {
    const result = parseArgsNix(readFileSync(fixture, 'utf8'), 'some/dir/args.nix');
    assert.equal(result.file, 'some/dir/args.nix');
    assert.deepEqual(result.name?.at, at(2, 10, 'some/dir/args.nix'));
  });
});

describe('args.nix: files', () => {
  test('each entry becomes one copy, in the order written', () => {
    const result = plan('{ files = { "./b" = "/x/b"; "a/c.img" = "/y/"; "./" = "/ctx"; "d" = /abs/d; }; }');
    assert.deepEqual(result.ops, [
      { kind: 'copy', sources: ['b'], destination: '/x/b', at: at(1, 13) },
      { kind: 'copy', sources: ['a/c.img'], destination: '/y/', at: at(1, 29) },
      { kind: 'copy', sources: ['.'], destination: '/ctx', at: at(1, 48) },
      { kind: 'copy', sources: ['d'], destination: '/abs/d', at: at(1, 63) },
    ]);
  });

  test('dotted top-level keys work', () => {
    const result = plan('{ files."./k" = "/k"; }');
    assert.deepEqual(result.ops, [{ kind: 'copy', sources: ['k'], destination: '/k', at: at(1, 9) }]);
  });

  test('keys outside the build context are refused', () => {
    errorAt('{ files = { "/etc/passwd" = "/p"; }; }', 1, 13, /not relative to the build context/);
    errorAt('{ files = { "~/x" = "/p"; }; }', 1, 13, /not relative to the build context/);
    errorAt('{ files = { "../x" = "/p"; }; }', 1, 13, /outside the build context with '\.\.'/);
    errorAt('{ files = { "./a/../../x" = "/p"; }; }', 1, 13, /outside the build context/);
    errorAt('{ files = { "" = "/p"; }; }', 1, 13, /empty file name/);
  });

  test('destinations must be absolute strings', () => {
    errorAt('{ files = { "./a" = "a"; }; }', 1, 21, /must be absolute, got 'a'/);
    errorAt('{ files = { "./a" = ""; }; }', 1, 21, /must be absolute/);
    errorAt('{ files = { "./a" = 1; }; }', 1, 21, /must be a string, found an integer/);
    errorAt('{ files = { "./a" = ./b; }; }', 1, 21, /must be absolute, got '\.\/b'/);
  });

  test('an unquoted dotted file name gets a hint to quote it', () => {
    const error = errorAt('{ files = { network.hvt = "/u/n"; }; }', 1, 13, /must be a string, found an attribute set/);
    assert.match(error.hint ?? '', /"\.\/network\.hvt"/);
  });

  test('files must be a set', () => {
    errorAt('{ files = [ "a" ]; }', 1, 11, /'files' must be an attribute set, found a list/);
  });
});

describe('args.nix: annotations', () => {
  test('short and full names map to the short key; values keep their positions', () => {
    const result = plan('{\n  annotations = {\n    "com.urunc.unikernel.binary" = "/k";\n    hypervisor = "qemu";\n  };\n}');
    assert.deepEqual(result.urunc, {
      binary: { value: '/k', at: at(3, 36) },
      hypervisor: { value: 'qemu', at: at(4, 18) },
    });
  });

  test('an unquoted full name (nested sets) means the same', () => {
    const result = plan('{ annotations.com.urunc.unikernel.unikernelType = "unikraft"; }');
    assert.deepEqual(result.urunc, { unikernelType: { value: 'unikraft', at: at(1, 51) } });
  });

  test('every urunc key is accepted', () => {
    const keys = ['unikernelType', 'hypervisor', 'binary', 'cmdline', 'unikernelVersion', 'initrd', 'block', 'blkMntPoint', 'useDMBlock', 'mountRootfs', 'solo5NetDev', 'solo5BlkDev'];
    const text = `{ annotations = { ${keys.map((key) => `${key} = "v-${key}";`).join(' ')} }; }`;
    const result = plan(text);
    assert.deepEqual(
      Object.fromEntries(Object.entries(result.urunc).map(([key, value]) => [key, value?.value])),
      Object.fromEntries(keys.map((key) => [key, `v-${key}`])),
    );
  });

  test('booleans are accepted for the boolean keys only', () => {
    const result = plan('{ annotations = { useDMBlock = false; mountRootfs = true; }; }');
    assert.equal(result.urunc.useDMBlock?.value, 'false');
    assert.equal(result.urunc.mountRootfs?.value, 'true');
    errorAt('{ annotations = { binary = true; }; }', 1, 28, /annotation 'binary' must be a string, found a boolean/);
    errorAt('{ annotations = { useDMBlock = 0; }; }', 1, 32, /must be a string, found an integer/);
  });

  test('empty values are recorded as given', () => {
    assert.deepEqual(plan('{ annotations = { initrd = ""; }; }').urunc, { initrd: { value: '', at: at(1, 28) } });
  });

  test('unknown keys are refused with the known ones in the hint', () => {
    const error = errorAt('{ annotations = {\n  hypervisor = "hvt";\n  monitor = "hvt";\n}; }', 3, 3, /unknown urunc key monitor$/);
    assert.match(error.hint ?? '', /unikernelType, hypervisor, binary/);
    errorAt('{ annotations = { "com.urunc.unikernel.nope" = "x"; }; }', 1, 19, /unknown urunc key com\.urunc\.unikernel\.nope$/);
  });

  test('urunc keys at the top level (early bunix layout) are read too', () => {
    const text = '# args.nix\n{\n  unikernelType = "rumprun";\n  hypervisor = "hvt";\n  block = "";\n}\n';
    assert.deepEqual(plan(text).urunc, {
      unikernelType: { value: 'rumprun', at: at(3, 19) },
      hypervisor: { value: 'hvt', at: at(4, 16) },
      block: { value: '', at: at(5, 11) },
    });
    errorAt('{ binary = "/a"; annotations.binary = "/b"; }', 1, 30, /'binary' given twice \(first at args\.nix:1:3\)/);
  });

  test('the same key given by short and full name is refused', () => {
    errorAt('{ annotations = { binary = "/a"; "com.urunc.unikernel.binary" = "/b"; }; }', 1, 34, /'binary' given twice \(first at args\.nix:1:19\)/);
  });
});

describe('args.nix: optional extras', () => {
  test('cmd, entrypoint, env, labels, architecture', () => {
    const result = plan(
      [
        '{',
        '  cmd = [ "a" "b c" ];',
        '  entrypoint = [ "/bin/x" ];',
        '  env = [ "A=1" "B=x=y" ];',
        '  envs = { C = "3"; };',
        '  labels = { "org.example" = "v"; a.b = "w"; };',
        '  architecture = "aarch64";',
        '}',
      ].join('\n'),
    );
    assert.deepEqual(result.config, {
      ...emptyConfig(),
      cmd: { value: ['a', 'b c'], at: at(2, 9) },
      entrypoint: { value: ['/bin/x'], at: at(3, 16) },
      env: ['A=1', 'B=x=y', 'C=3'],
      labels: { 'org.example': 'v', 'a.b': 'w' },
    });
    assert.deepEqual(result.architecture, { value: 'arm64', at: at(7, 18) });
  });

  test('architecture spellings', () => {
    for (const [given, expected] of [
      ['amd64', 'amd64'],
      ['x86_64', 'amd64'],
      ['x86', 'amd64'],
      ['arm64', 'arm64'],
      ['aarch64', 'arm64'],
    ]) {
      assert.equal(plan(`{ architecture = "${given}"; }`).architecture?.value, expected);
    }
    const error = errorAt('{ architecture = "riscv64"; }', 1, 18, /unknown architecture 'riscv64'/);
    assert.match(error.hint ?? '', /aarch64/);
  });

  test('urunc labels go to the urunc values', () => {
    const result = plan('{ labels = { "com.urunc.unikernel.hypervisor" = "hvt"; x = "y"; }; }');
    assert.deepEqual(result.urunc, { hypervisor: { value: 'hvt', at: at(1, 49) } });
    assert.deepEqual(result.config.labels, { x: 'y' });
  });

  test('wrong shapes are refused at the value', () => {
    errorAt('{ cmd = "a b"; }', 1, 9, /'cmd' must be a list of strings, found a string/);
    errorAt('{ cmd = [ "a" 1 ]; }', 1, 15, /each item of 'cmd' must be a string, found an integer/);
    errorAt('{ env = [ "NOEQUALS" ]; }', 1, 11, /has no '='/);
    errorAt('{ env = [ "=x" ]; }', 1, 11, /empty name/);
    errorAt('{ labels = { a = 1; }; }', 1, 18, /label 'a' must be a string/);
    errorAt('{ name = 1; }', 1, 10, /'name' must be a string, found an integer/);
    errorAt('{ tag = [ ]; }', 1, 9, /'tag' must be a string, found a list/);
  });
});

describe('args.nix: the top level', () => {
  test('must be an attribute set', () => {
    const error = errorAt('[ ]', 1, 1, /must be an attribute set, found a list/);
    assert.ok(error.hint);
  });

  test('an empty set gives an empty plan', () => {
    assert.deepEqual(plan('{ }'), {
      syntax: 'nix',
      file: 'args.nix',
      base: { kind: 'scratch' },
      stages: [],
      ops: [],
      config: emptyConfig(),
      urunc: {},
      annotations: {},
    });
  });

  test('unknown top-level attributes are refused with the known ones in the hint', () => {
    const error = errorAt('{\n  name = "x";\n  version = "1";\n}', 3, 3, /unknown args\.nix attribute 'version'/);
    assert.match(error.hint ?? '', /name, tag, files, annotations/);
  });

  test('parser errors come through as LapinErrors with positions', () => {
    errorAt('{ pkgs, ... }: { }', 1, 3, /^args\.nix is a function of 'pkgs', which lapin does not pass$/);
    errorAt('{ name = "a${b}"; }', 1, 12, /string interpolation/);
  });
});
