// Issue 10 §4: inputs that were silently misread are refused (or warned about) at their position,
// the same way in the three syntaxes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LapinError } from '../../src/errors.js';
import { parseBunnyfile } from '../../src/frontends/bunnyfile.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import { compile } from '../../src/frontends/index.js';
import { parseArgsNix } from '../../src/frontends/nix.js';

function failure(run: () => unknown): LapinError {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof LapinError, `expected a LapinError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a LapinError');
}

const HEAD = 'version: v0.1\nplatforms:\n  framework: mirage\n  monitor: hvt\nkernel:\n  from: local\n  path: k\n';

describe('a misspelt urunc key is an error naming the key meant, in all three syntaxes', () => {
  test('Containerfile LABEL', () => {
    const error = failure(() => parseContainerfile('FROM scratch\nLABEL com.urunc.unikernel.hypervisr=hvt\n', 'Containerfile'));
    assert.equal(error.describe(), 'Containerfile:2:7: unknown urunc key com.urunc.unikernel.hypervisr (did you mean com.urunc.unikernel.hypervisor?)');
  });
  test('args.nix annotations, short and full names, and labels', () => {
    const short = failure(() => parseArgsNix('{\n  annotations = { hypervisr = "hvt"; };\n}\n', 'args.nix'));
    assert.equal(short.describe(), 'args.nix:2:19: unknown urunc key hypervisr (did you mean hypervisor?)');
    const full = failure(() => parseArgsNix('{ annotations = { "com.urunc.unikernel.unikernelTyp" = "x"; }; }', 'args.nix'));
    assert.match(full.describe(), /^args\.nix:1:19: unknown urunc key com\.urunc\.unikernel\.unikernelTyp \(did you mean com\.urunc\.unikernel\.unikernelType\?\)$/);
    const label = failure(() => parseArgsNix('{ labels = { "com.urunc.unikernel.bianry" = "/k"; }; }', 'args.nix'));
    assert.equal(label.hint, 'did you mean com.urunc.unikernel.binary?');
    const top = failure(() => parseArgsNix('{ anotations = { }; }', 'args.nix'));
    assert.equal(top.hint, 'did you mean annotations?');
  });
  test('bunnyfile keys (the urunc values come from platforms, kernel and rootfs)', () => {
    const monitor = failure(() => parseBunnyfile(HEAD.replace('  monitor: hvt', '  monitr: hvt'), 'bunnyfile'));
    assert.match(monitor.describe(), /^bunnyfile:4:3: unknown key "monitr" in "platforms" \(did you mean monitor\? known keys: framework, monitor/);
    const far = failure(() => parseBunnyfile(`${HEAD}zzz: 1\n`, 'bunnyfile'));
    assert.match(far.hint ?? '', /^known keys: version/);
  });
});

describe('bunnyfile cmdline', () => {
  test('a cmdline that contradicts cmd is refused at the cmdline', () => {
    const error = failure(() => parseBunnyfile(`${HEAD}cmd: ["-l", "debug"]\ncmdline: "-l info"\n`, 'bunnyfile'));
    assert.equal(error.describe(), 'bunnyfile:9:10: cmdline "-l info" contradicts cmd ["-l","debug"] (give the command line once: as cmd, or as cmdline)');
  });
});

describe('CMD and ENTRYPOINT that look like JSON but are not', () => {
  test('a missing ] is read as the shell form, as docker does, with a warning at the [', async () => {
    const plan = await compile('FROM scratch\nCMD  ["--ipv4=1.2.3.4/24"\n', 'Containerfile', 'containerfile');
    assert.deepEqual(plan.config.cmd?.value, ['/bin/sh', '-c', '["--ipv4=1.2.3.4/24"']);
    assert.equal(plan.warnings?.length, 1);
    assert.deepEqual(plan.warnings?.[0]?.at, { file: 'Containerfile', line: 2, column: 6 });
    assert.match(plan.warnings?.[0]?.message ?? '', /^CMD starts with "\[" but is not a JSON array, so it is read as a shell command: \["\/bin\/sh","-c",/);
  });
  test('ENTRYPOINT with single quotes too; real JSON and plain shell form give no warning', () => {
    const plan = parseContainerfile("FROM scratch\nENTRYPOINT ['/k']\n", 'Containerfile');
    assert.match(plan.warnings?.[0]?.message ?? '', /^ENTRYPOINT starts with "\["/);
    for (const text of ['CMD ["a", "b"]', 'CMD a b', 'CMD []']) {
      assert.deepEqual(parseContainerfile(`FROM scratch\n${text}\n`, 'Containerfile').warnings, [], text);
    }
  });
});

describe('COPY and ADD that look like JSON but are not', () => {
  test('a missing ] is read as paths, as docker does, with a warning at the [ before the path error', async () => {
    const text = 'FROM scratch\nCOPY ["network.hvt", "/k"\nADD [\'a\', \'/b\']\n';
    const plan = parseContainerfile(text, 'Containerfile');
    assert.deepEqual(
      plan.warnings?.map((w) => [w.at?.line, w.at?.column, w.message]),
      [
        [2, 6, 'COPY starts with "[" but is not a JSON array, so its words are read as paths: ["network.hvt", "/k"; check the brackets and quotes'],
        [3, 5, 'ADD starts with "[" but is not a JSON array, so its words are read as paths: [\'a\', \'/b\']; check the brackets and quotes'],
      ],
    );
    for (const ok of ['COPY ["a", "/b"]', 'COPY a /b', 'COPY [a]b /c']) {
      assert.deepEqual(parseContainerfile(`FROM scratch\n${ok}\n`, 'Containerfile').warnings, [], ok);
    }
  });
});
