// The Solo5 manifest reader against binaries written here from Solo5's
// header definitions (test/helpers/solo5-elf.ts), cross-checked with
// binutils' readelf; hostile ELF files never make it throw or read
// unbounded; and the build and inspect act on what the manifest says.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { build, type BuildEvent } from '../../src/build.js';
import { adviseSolo5, bufferReader, readSolo5Notes, readSolo5NotesFromFile, readSolo5NotesFromHeader } from '../../src/image/solo5.js';
import { inspect } from '../../src/inspect/inspect.js';
import { formatReport } from '../../src/inspect/format.js';
import { solo5Elf, type Solo5ElfDevice } from '../helpers/solo5-elf.js';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-solo5-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const read = (data: Buffer) => readSolo5Notes(bufferReader(data));

describe('readSolo5Notes', () => {
  test('reads the devices and the ABI target of hvt and spt binaries', () => {
    const hvt = read(solo5Elf({ abi: 'hvt', devices: [{ name: 'service', type: 'net' }, { name: 'storage', type: 'block' }] }));
    assert.deepEqual(hvt, { problems: [], abi: 'hvt', devices: [{ name: 'service', type: 'NET_BASIC' }, { name: 'storage', type: 'BLOCK_BASIC' }] });
    const spt = read(solo5Elf({ abi: 'spt', devices: [{ name: 'net0', type: 'net' }] }));
    assert.deepEqual(spt, { problems: [], abi: 'spt', devices: [{ name: 'net0', type: 'NET_BASIC' }] });
    assert.deepEqual(read(solo5Elf({ abi: 'hvt', devices: [] })), { problems: [], abi: 'hvt', devices: [] });
  });

  test('binutils reads the same notes the writer wrote', { skip: existsSync('/usr/bin/readelf') ? false : 'readelf is not installed' }, async () => {
    const file = path.join(work, 'two-devices.hvt');
    await writeFile(file, solo5Elf({ abi: 'hvt', devices: [{ name: 'service', type: 'net' }, { name: 'storage', type: 'block' }] }));
    const out = execFileSync('readelf', ['-nW', file], { encoding: 'utf8' });
    // Two Solo5 notes: the ABI note (16 bytes) and the manifest (4 bytes of padding + 8 + 3 entries of 104).
    assert.match(out, /Solo5\s+0x00000010\s+Unknown note type: \(0x31494241\)/);
    assert.match(out, /Solo5\s+0x00000144\s+Unknown note type: \(0x3154464d\)/);
    assert.match(out, /OpenBSD\s+0x00000004/);
    assert.deepEqual(readSolo5NotesFromFile(file)?.devices?.map((d) => d.name), ['service', 'storage']);
  });

  test('no notes, not ELF64, and a kernel without program headers', () => {
    assert.deepEqual(read(solo5Elf({})), { problems: [] });
    assert.equal(read(Buffer.from('not an elf at all, just some bytes of text here, long enough for a header....')), undefined);
    const elf32 = solo5Elf({ devices: [] });
    elf32[4] = 1;
    assert.equal(read(elf32), undefined);
  });

  test('refuses what mft_validate refuses', () => {
    const base = solo5Elf({ abi: 'hvt', devices: [{ name: 'service', type: 'net' }] });
    // struct mft follows the note type ("MFT1"), the 8 name bytes and 4 bytes of padding.
    const manifestAt = base.indexOf(Buffer.from('MFT1', 'latin1')) + 4 + 8 + 4;
    const mutate = (at: number, value: number): string[] => {
      const copy = Buffer.from(base);
      copy.writeUInt32LE(value, manifestAt + at);
      return read(copy)?.problems ?? [];
    };
    assert.match(mutate(0, 2).join(), /version 2/);
    assert.match(mutate(4, 65).join(), /65 entries/);
    assert.match(mutate(4, 1).join(), /bytes for 1 entries/);
    assert.match(mutate(8 + 68, 2).join(), /first entry is not the reserved one/);
    assert.match(mutate(8 + 104 + 96, 1).join(), /marked attached/);
    assert.match(mutate(8 + 104 + 64, 0x41414141).join(), /unterminated name/);
    assert.match(mutate(8 + 104, 0x2e2e2e2e).join(), /not 1 to 67 letters or digits/);
  });

  test('a manifest past the bytes inspect captured is unknown, not invalid', () => {
    const data = solo5Elf({ abi: 'hvt', devices: [{ name: 'service', type: 'net' }] });
    assert.equal(readSolo5NotesFromHeader(data.subarray(0, 300), data.length), undefined);
    assert.deepEqual(readSolo5NotesFromHeader(data, data.length)?.devices, [{ name: 'service', type: 'NET_BASIC' }]);
  });

  const deviceArb = fc.record({
    name: fc.stringMatching(/^[A-Za-z0-9]{1,67}$/),
    type: fc.constantFrom<Solo5ElfDevice['type']>('net', 'block', 3, 77),
  });

  test('gives back every manifest it is given (property)', () => {
    fc.assert(
      fc.property(fc.array(deviceArb, { maxLength: 63 }), fc.constantFrom<'hvt' | 'spt'>('hvt', 'spt'), (devices, abi) => {
        const notes = read(solo5Elf({ abi, devices }));
        assert.deepEqual(notes?.problems, []);
        assert.equal(notes?.abi, abi);
        assert.deepEqual(
          notes?.devices,
          devices.map((d) => ({ name: d.name, type: d.type === 'net' ? 'NET_BASIC' : d.type === 'block' ? 'BLOCK_BASIC' : d.type === 3 ? 'PCI_BASIC' : `type ${d.type}` })),
        );
      }),
      { numRuns: 200 },
    );
  });

  test('never throws and reads only bounded pieces of hostile ELF files (property)', () => {
    const valid = solo5Elf({ abi: 'hvt', devices: [{ name: 'service', type: 'net' }, { name: 'storage', type: 'block' }] });
    const hostile = fc.oneof(
      // Random bytes behind a valid ELF64 identification.
      fc.uint8Array({ minLength: 0, maxLength: 2048 }).map((bytes) => Buffer.concat([valid.subarray(0, 16), Buffer.from(bytes)])),
      // A valid binary with bytes overwritten anywhere, headers and notes included.
      fc.array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 40 }).map((edits) => {
        const copy = Buffer.from(valid);
        for (const [at, value] of edits) copy[at] = value;
        return copy;
      }),
      // 32-bit fields set to extremes: counts, sizes and offsets.
      fc.array(fc.tuple(fc.nat({ max: valid.length - 4 }), fc.constantFrom(0, 1, 0x7fffffff, 0xffffffff, 6, 20, 24, 0x3154464d)), { minLength: 1, maxLength: 8 }).map((edits) => {
        const copy = Buffer.from(valid);
        for (const [at, value] of edits) copy.writeUInt32LE(value, at);
        return copy;
      }),
    );
    fc.assert(
      fc.property(hostile, (data) => {
        let calls = 0;
        let largest = 0;
        const notes = readSolo5Notes((offset, length) => {
          calls++;
          largest = Math.max(largest, length);
          return bufferReader(data)(offset, length);
        });
        assert.ok(calls <= 2 + 2 * 512, `${calls} reads`);
        assert.ok(largest <= 512 * 1024, `a read of ${largest} bytes`);
        if (notes) for (const d of notes.devices ?? []) assert.match(d.name, /^[A-Za-z0-9]{1,67}$/);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('adviseSolo5', () => {
  const notes = (devices: Solo5ElfDevice[], abi: 'hvt' | 'spt' = 'hvt') => read(solo5Elf({ abi, devices })) ?? { problems: [] };
  const mirage = { unikernelType: 'mirage', hypervisor: 'hvt', binary: '/unikernel/k' };
  test('sets a device name urunc would otherwise get wrong; leaves the defaults alone', () => {
    assert.deepEqual(adviseSolo5(notes([{ name: 'service', type: 'net' }]), mirage), { set: {}, warnings: [] });
    assert.deepEqual(adviseSolo5(notes([{ name: 'net0', type: 'net' }]), mirage), { set: { solo5NetDev: 'net0' }, warnings: [] });
    assert.deepEqual(adviseSolo5(notes([{ name: 'service', type: 'net' }, { name: 'disk', type: 'block' }]), { ...mirage, block: '/b' }), { set: { solo5BlkDev: 'disk' }, warnings: [] });
  });
  test('warns where solo5 would refuse the devices urunc attaches', () => {
    const one = (devices: Solo5ElfDevice[], values: Record<string, string>, abi: 'hvt' | 'spt' = 'hvt'): string => adviseSolo5(notes(devices, abi), values).warnings.join('\n');
    assert.match(one([{ name: 'net0', type: 'net' }], { ...mirage, solo5NetDev: 'other' }), /solo5NetDev is "other" but the kernel's Solo5 manifest names its network device "net0"/);
    assert.match(one([{ name: 'a', type: 'net' }, { name: 'b', type: 'net' }], mirage), /declares 2 network devices \(a, b\); urunc attaches one/);
    assert.match(one([{ name: 'storage', type: 'block' }], mirage), /declares the block device storage, but the image has no block rootfs/);
    assert.match(one([{ name: 'service', type: 'net' }], { ...mirage, block: '/b' }), /declares no block device/);
    assert.match(one([], mirage, 'spt'), /built for solo5-spt .* but the image says hypervisor hvt/);
    // urunc attaches a tap device whenever the container has eth0 (pkg/unikontainers/unikontainers.go).
    assert.match(one([{ name: 'storage', type: 'block' }], { ...mirage, block: '/b' }), /declares no network device, but urunc attaches one whenever the container has a network interface/);
    // rumprun's devices have fixed names in urunc; other monitors have no Solo5 tender.
    assert.equal(one([{ name: 'x', type: 'net' }], { ...mirage, unikernelType: 'rumprun' }), '');
    assert.equal(one([{ name: 'x', type: 'net' }], { ...mirage, hypervisor: 'qemu' }), '');
  });
  test('a release before 0.8 attaches service/storage whatever solo5NetDev/solo5BlkDev say, so other names warn there', () => {
    for (const release of ['0.7', 'pre-0.7'] as const) {
      const net0 = adviseSolo5(notes([{ name: 'net0', type: 'net' }]), mirage, release);
      assert.deepEqual(net0.set, { solo5NetDev: 'net0' }, release);
      assert.match(net0.warnings.join('\n'), /names its network device "net0", but urunc (0\.7|< 0\.7) always attaches it as "service" \(it does not read solo5NetDev; urunc 0\.8 does\); solo5-hvt refuses it/);
      const given = adviseSolo5(notes([{ name: 'net0', type: 'net' }]), { ...mirage, solo5NetDev: 'net0' }, release);
      assert.deepEqual(given.set, {});
      assert.equal(given.warnings.length, 1);
      const disk = adviseSolo5(notes([{ name: 'service', type: 'net' }, { name: 'disk', type: 'block' }]), { ...mirage, block: '/b' }, release);
      assert.match(disk.warnings.join('\n'), /block device "disk", but .* always attaches it as "storage"/);
      assert.deepEqual(adviseSolo5(notes([{ name: 'service', type: 'net' }, { name: 'storage', type: 'block' }]), { ...mirage, block: '/b' }, release), { set: {}, warnings: [] });
    }
  });
});

describe('build and inspect read the manifest', () => {
  async function context(name: string, kernel: Buffer, bunnyExtra = ''): Promise<string> {
    const dir = path.join(work, name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'unikernel.hvt'), kernel);
    await writeFile(path.join(dir, 'bunnyfile'), `version: v0.1
platforms:
  framework: mirage
  monitor: hvt
  architecture: x86
kernel:
  from: local
  path: unikernel.hvt
${bunnyExtra}cmd: ["--ipv4=10.0.0.2/24"]
`);
    return dir;
  }
  async function run(dir: string, extra: Partial<Parameters<typeof build>[0]> = {}) {
    const events: BuildEvent[] = [];
    const out = path.join(dir, 'out.tar');
    const result = await build({ context: dir, outputs: [{ type: 'oci', dest: out }], cache: false, sourceDateEpoch: 0, onEvent: (e) => events.push(e), ...extra });
    return { result, out, steps: events.filter((e) => e.kind === 'step').map((e) => e.message), warnings: events.filter((e) => e.kind === 'warning').map((e) => e.message) };
  }

  test('a manifest naming the network device "net0" sets solo5NetDev=net0, and inspect shows it', async () => {
    const dir = await context('net0', solo5Elf({ abi: 'hvt', devices: [{ name: 'net0', type: 'net' }] }));
    const { result, out, steps, warnings } = await run(dir);
    assert.equal(result.urunc.solo5NetDev, 'net0');
    assert.ok(steps.some((s) => /kernel Solo5 notes: net net0; ABI hvt/.test(s)), steps.join('\n'));
    assert.deepEqual(warnings, []);
    const report = await inspect(out);
    assert.equal(report.values.annotations.values.solo5NetDev, 'net0');
    assert.equal(report.values.labels.values.solo5NetDev, 'net0');
    assert.equal(report.values.uruncJson.values.solo5NetDev, 'net0');
    assert.deepEqual(report.files.find((f) => f.key === 'binary')?.solo5?.devices, [{ name: 'net0', type: 'NET_BASIC' }]);
    assert.match(formatReport(report), /\n {4}Solo5 manifest: net net0; ABI hvt\n/);
    assert.deepEqual(report.warnings, []);
  });

  test('--urunc-version 0.7: a manifest naming "net0" warns at build and in inspect for 0.7, and still sets solo5NetDev for 0.8', async () => {
    const dir = await context('net0-07', solo5Elf({ abi: 'hvt', devices: [{ name: 'net0', type: 'net' }] }));
    const { result, out, warnings } = await run(dir, { uruncVersion: '0.7' });
    assert.equal(result.urunc.solo5NetDev, 'net0');
    assert.match(warnings.join('\n'), /urunc 0\.7 always attaches it as "service"/);
    assert.match((await inspect(out, { release: '0.7' })).warnings.map((w) => w.message).join('\n'), /urunc 0\.7 always attaches it as "service"/);
    assert.deepEqual((await inspect(out)).warnings, []);
  });

  test('the default names need no value; a contradicting value warns at build and in inspect', async () => {
    const plain = await run(await context('service', solo5Elf({ abi: 'hvt', devices: [{ name: 'service', type: 'net' }] })));
    assert.equal(plain.result.urunc.solo5NetDev, undefined);
    assert.deepEqual(plain.warnings, []);
    const dir = await context('contradict', solo5Elf({ abi: 'hvt', devices: [{ name: 'net0', type: 'net' }] }));
    const given = await run(dir, { annotations: { 'com.urunc.unikernel.solo5NetDev': 'wrong' } });
    assert.equal(given.result.urunc.solo5NetDev, 'wrong');
    assert.match(given.warnings.join('\n'), /solo5NetDev is "wrong" but the kernel's Solo5 manifest names its network device "net0"/);
    const report = await inspect(given.out);
    assert.match(report.warnings.map((w) => w.message).join('\n'), /solo5NetDev is "wrong"/);
  });

  test('a block rootfs the manifest does not declare warns; a declared block device gets its name', async () => {
    const rootfs = 'rootfs:\n  type: block\n  include:\n    - bunnyfile:/etc/bunnyfile\n';
    const e2fs = ['/usr/sbin/mke2fs', '/sbin/mke2fs'].some((p) => existsSync(p));
    if (!e2fs) return;
    const undeclared = await run(await context('undeclared', solo5Elf({ abi: 'hvt', devices: [{ name: 'service', type: 'net' }] }), rootfs));
    assert.match(undeclared.warnings.join('\n'), /declares no block device; solo5-hvt refuses the one urunc attaches/);
    const declared = await run(await context('declared', solo5Elf({ abi: 'hvt', devices: [{ name: 'service', type: 'net' }, { name: 'disk0', type: 'block' }] }), rootfs));
    assert.equal(declared.result.urunc.solo5BlkDev, 'disk0');
    assert.deepEqual(declared.warnings, []);
  });

  test('a kernel without Solo5 notes changes nothing', async () => {
    const { result, steps, warnings } = await run(await context('none', solo5Elf({})));
    assert.equal(result.urunc.solo5NetDev, undefined);
    assert.ok(!steps.some((s) => /Solo5/.test(s)));
    assert.deepEqual(warnings, []);
  });
});
