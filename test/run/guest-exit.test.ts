// The exit code lapin run derives from the guest console: Linux panics, init's
// wait status, and the monitor's status otherwise, whatever the chunking.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { GUEST_PANIC_EXIT, GuestConsoleWatch } from '../../src/run/guest-exit.js';

function watch(text: string, monitorCode = 0, chunks: number[] = []): ReturnType<GuestConsoleWatch['end']> {
  const w = new GuestConsoleWatch();
  let at = 0;
  for (const size of chunks) {
    w.feed(text.slice(at, at + size));
    at += size;
  }
  w.feed(text.slice(at));
  return w.end(monitorCode);
}

const NO_INIT = '[    2.1] Kernel panic - not syncing: No working init found.  Try passing init= option to kernel. See Linux Documentation/admin-guide/init.rst for guidance.\r\n';

describe('GuestConsoleWatch', () => {
  test("a clean power-off keeps the monitor's status", () => {
    assert.deepEqual(watch('LAPIN-RUN-MARKER\r\n[    3.0] reboot: Power down\r\n', 0), { code: 0 });
    assert.deepEqual(watch('solo5 guest output\n', 7), { code: 7 });
  });

  test('a panic without an init status exits 125 and says why', () => {
    const end = watch(`booting\r\n${NO_INIT}[    2.2] ---[ end Kernel panic - not syncing: No working init found. ]---\r\n`, 0);
    assert.equal(end.code, GUEST_PANIC_EXIT);
    assert.match(end.reason ?? '', /^the guest kernel panicked: No working init found\./);
  });

  test("init's wait status is passed through: exit status, or 128 + the signal", () => {
    assert.equal(watch('Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300\n').code, 3);
    assert.equal(watch('Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b\n').code, 128 + 11);
    // init ending with 0 still panicked the kernel: not a clean power-off.
    assert.equal(watch('Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000\n').code, GUEST_PANIC_EXIT);
  });

  test('a panic on the last line without a newline counts; control bytes never reach the reason', () => {
    const end = watch('Kernel panic - not syncing: VFS: Unable to mount root fs\x1b[2J', 0);
    assert.equal(end.code, GUEST_PANIC_EXIT);
    assert.equal(end.reason, 'the guest kernel panicked: VFS: Unable to mount root fs[2J');
  });

  test('property: the verdict does not depend on how the console is chunked', () => {
    const lines = fc.constantFrom('ok\r\n', 'reboot: Power down\n', NO_INIT, 'Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000200\n', 'x'.repeat(5000), '\n');
    fc.assert(
      fc.property(fc.array(lines, { maxLength: 8 }), fc.array(fc.nat({ max: 300 }), { maxLength: 20 }), fc.integer({ min: 0, max: 255 }), (parts, chunks, code) => {
        const text = parts.join('');
        assert.deepEqual(watch(text, code, chunks), watch(text, code));
      }),
    );
  });
});
