// The entry of lapin's V8 start-up snapshot (docs/performance.md, "Start-up").
// `npm run build` runs this bundle once under `node --build-snapshot`: every
// module on the build path is loaded and initialised then, and the heap is
// saved to dist/cli/lapin.blob. bin/lapin starts Node from that blob, so a
// build skips parsing, compiling and initialising its modules each run.
// Nothing here may read the environment, the clock or the machine at load
// time: whatever module top levels compute is frozen into the blob.
import v8 from 'node:v8';
import { runCli } from './program.js';
// Loaded lazily by the CLI; loaded here so that they are in the blob.
import '../build.js';
import '../frontends/bunnyfile.js';
import '../frontends/containerfile.js';
import '../frontends/nix.js';
import './progress.js';
import 'cli-progress';

v8.startupSnapshot.setDeserializeMainFunction(() => {
  // Started as `node --snapshot-blob BLOB -- ARGS`: argv is [node, ...ARGS].
  runCli(process.argv.slice(1));
});
