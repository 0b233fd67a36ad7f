// The entry of lapin's V8 start-up snapshot (docs/performance.md, "Start-up").
// `npm run build` runs this bundle once under `node --build-snapshot`: every
// module on the build path is loaded and initialised then, and one small
// build is run so that its functions are compiled; the heap, bytecode
// included, is saved to dist/cli/lapin.blob. bin/lapin starts Node from that
// blob, so a build skips loading, compiling and initialising its code.
// Nothing may read the environment, the clock or the machine at module load
// time, nor keep what the warm-up build saw: that would be frozen in the blob.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import { build } from '../build.js';
import { runCli } from './program.js';
// Loaded lazily by the CLI; loaded here so that they are in the blob.
import '../frontends/bunnyfile.js';
import '../frontends/nix.js';
import './progress.js';

/** The smallest x86-64 ELF header the kernel sniffing accepts. */
function elfStub(): Buffer {
  const elf = Buffer.alloc(256);
  elf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  elf.writeUInt16LE(2, 16); // ET_EXEC
  elf.writeUInt16LE(0x3e, 18); // EM_X86_64
  return elf;
}

/** One build of each syntax into a throwaway archive, with no cache, registry or progress. */
async function warmUp(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lapin-snapshot-'));
  try {
    await writeFile(path.join(dir, 'kernel'), elfStub());
    const labels = ['binary=/kernel', 'cmdline=""', 'unikernelType=mirage', 'hypervisor=hvt'].map((label) => `LABEL com.urunc.unikernel.${label}`);
    const definitions = {
      Containerfile: ['FROM scratch', 'COPY kernel /kernel', ...labels, ''].join('\n'),
      bunnyfile: ['version: v0.1', 'platforms:', '  framework: mirage', '  monitor: hvt', '  architecture: x86', 'kernel:', '  from: local', '  path: kernel', 'cmdline: ""', ''].join('\n'),
      'args.nix': ['{', '  name = "lapin/warm-up";', '  files = { "./kernel" = "/kernel"; };', '  annotations = { unikernelType = "mirage"; hypervisor = "hvt"; binary = "/kernel"; cmdline = ""; };', '}', ''].join('\n'),
    };
    for (const [name, text] of Object.entries(definitions)) {
      await writeFile(path.join(dir, name), text);
      await build({ context: dir, file: path.join(dir, name), tags: ['lapin/warm-up:1'], outputs: [{ type: 'oci', dest: path.join(dir, 'image.tar') }], cache: false, cwd: dir });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// tsc also emits this module into dist/; loaded any other way than under --build-snapshot, it does nothing.
if (v8.startupSnapshot.isBuildingSnapshot()) {
  // The blob is written once the event loop is empty, so after the warm-up.
  warmUp().catch((error: unknown) => {
    process.stderr.write(`lapin: snapshot warm-up failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });

  v8.startupSnapshot.setDeserializeMainFunction(() => {
    // Started as `node --snapshot-blob BLOB -- ARGS`: argv is [node, ...ARGS].
    runCli(process.argv.slice(1));
  });
}
