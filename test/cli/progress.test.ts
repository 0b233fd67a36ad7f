// The progress renderer's modes on a recorded stream with a test clock;
// test/cli/terminal.test.ts drives the tty mode on a real terminal.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { createReporter } from '../../src/cli/progress.js';

function recorder(): { stream: Writable & { isTTY?: boolean; columns?: number }; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  return { stream, text: () => text };
}

describe('createReporter', () => {
  test('plain: each step with the time since the line before; warnings always; no escape codes', () => {
    const out = recorder();
    let clock = 0;
    const reporter = createReporter({ mode: 'plain', stream: out.stream, now: () => clock });
    clock = 300;
    reporter.event({ kind: 'step', message: 'read bunnyfile as bunnyfile' });
    reporter.event({ kind: 'begin', id: 'b', message: 'writing block rootfs' });
    reporter.event({ kind: 'progress', id: 'l', message: 'layer kernel', done: 5, total: 10 });
    clock = 4500;
    reporter.event({ kind: 'end', id: 'b' });
    reporter.event({ kind: 'step', message: 'block rootfs /.boot/rootfs: ext4, 1 entry, 64 MiB' });
    reporter.event({ kind: 'warning', message: 'careful' });
    assert.equal(out.text(), '=> read bunnyfile as bunnyfile [0.3s]\n=> block rootfs /.boot/rootfs: ext4, 1 entry, 64 MiB [4.2s]\nlapin: warning: careful\n');
  });

  test('quiet: warnings only', () => {
    const out = recorder();
    const reporter = createReporter({ mode: 'quiet', stream: out.stream });
    reporter.event({ kind: 'step', message: 'read x' });
    reporter.event({ kind: 'warning', message: 'w' });
    assert.equal(out.text(), 'lapin: warning: w\n');
  });

  test('auto on a stream that is not a terminal is plain', () => {
    const out = recorder();
    createReporter({ mode: 'auto', stream: out.stream, now: () => 0 }).event({ kind: 'step', message: 's' });
    assert.equal(out.text(), '=> s [0.0s]\n');
  });

  test('rawjson: one object a line; progress at most every 250 ms per id, and always the last', () => {
    const out = recorder();
    let clock = 0;
    const reporter = createReporter({ mode: 'rawjson', stream: out.stream, now: () => clock });
    for (let done = 0; done <= 100; done += 10) {
      reporter.event({ kind: 'progress', id: 'layer-0', message: 'layer kernel', done, total: 100 });
      clock += 100;
    }
    reporter.event({ kind: 'begin', id: 'b', message: 'mke2fs' });
    clock += 1500;
    reporter.event({ kind: 'end', id: 'b' });
    const events = out
      .text()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const progress = events.filter((e) => e.kind === 'progress').map((e) => e.done);
    assert.deepEqual(progress, [0, 30, 60, 90, 100]);
    assert.deepEqual(events.at(-1), { time: events.at(-1)?.time, kind: 'end', id: 'b', seconds: 1.5 });
    assert.equal(reporter.fail('cannot write x', 1), true);
    assert.deepEqual(JSON.parse(out.text().trim().split('\n').at(-1) ?? '').exitCode, 1);
  });

  test('tty: a line longer than the terminal is cut, not wrapped', () => {
    const out = recorder();
    out.stream.columns = 40;
    let clock = 0;
    const reporter = createReporter({ mode: 'tty', stream: out.stream, now: () => clock });
    reporter.event({ kind: 'begin', id: 'b', message: 'writing block rootfs /.boot/rootfs (mke2fs, ext4, 2 entries)' });
    clock = 1000;
    reporter.event({ kind: 'step', message: 'x' });
    const region = out.text().split('\n').at(-2) ?? '';
    assert.equal(region.length, 39, region);
    assert.ok(region.endsWith('…'));
    reporter.interrupt(130);
  });

  test('tty: the live region is cleared before a step line, and interrupt leaves a clean line', () => {
    const out = recorder();
    out.stream.isTTY = true;
    out.stream.columns = 150;
    let clock = 0;
    const reporter = createReporter({ mode: 'tty', stream: out.stream, now: () => clock });
    reporter.event({ kind: 'progress', id: 'l', message: 'layer kernel', done: 0, total: 100 * 1024 * 1024 });
    clock = 2000;
    reporter.event({ kind: 'progress', id: 'l', message: 'layer kernel', done: 50 * 1024 * 1024, total: 100 * 1024 * 1024 });
    reporter.event({ kind: 'step', message: 'kernel /.boot/kernel: ELF' });
    assert.match(out.text(), /=> kernel \/\.boot\/kernel: ELF \[2\.0s\]\n {3}layer kernel \[=+ +\] 50 MiB \/ 100 MiB {2}25 MiB\/s {2}ETA 2\.0s {2}2\.0s\n$/);
    reporter.interrupt(130);
    assert.ok(out.text().endsWith('\x1b[1A\r\x1b[J\r\x1b[2K'), JSON.stringify(out.text().slice(-40)));
  });
});
