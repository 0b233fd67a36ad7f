// Bundles the CLI after tsc (npm run build, prepare):
// - dist/cli/main.js: one ESM file with each lazily imported module as a
//   chunk under dist/cli/bundle/, so `--version` loads little;
// - dist/cli/lapin.blob: a V8 start-up snapshot with the build path already
//   loaded and compiled (src/cli/snapshot.ts), and lapin.blob.id naming the
//   Node that made it; bin/lapin uses the blob only with that same Node.
// A Node that cannot make the snapshot leaves no blob: bin/lapin then runs main.js.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, realpathSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'cli');
// Minified: the snapshot keeps every source text in the heap it restores, and less text loads faster.
// Names are kept for --debug's stack traces.
const common = { bundle: true, platform: 'node', target: 'node20', logLevel: 'warning', minify: true, keepNames: true };

rmSync(path.join(out, 'bundle'), { recursive: true, force: true });
await build({
  ...common,
  entryPoints: [path.join(root, 'src/cli/main.ts')],
  outdir: out,
  format: 'esm',
  splitting: true,
  chunkNames: 'bundle/[name]-[hash]',
  // Bundled CommonJS dependencies call require(); ESM has none of its own.
  banner: { js: "import { createRequire as lapinCreateRequire } from 'node:module'; const require = lapinCreateRequire(import.meta.url);" },
});

const snapshotEntry = path.join(out, 'snapshot.cjs');
const blob = path.join(out, 'lapin.blob');
rmSync(blob, { force: true });
rmSync(`${blob}.id`, { force: true });
rmSync(`${blob}.node`, { force: true });
await build({ ...common, entryPoints: [path.join(root, 'src/cli/snapshot.ts')], outfile: snapshotEntry, format: 'cjs' });
const made = spawnSync(process.execPath, ['--snapshot-blob', blob, '--build-snapshot', snapshotEntry], { cwd: root, encoding: 'utf8' });
rmSync(snapshotEntry, { force: true });
if (made.status !== 0) {
  rmSync(blob, { force: true });
  // Node warns that some built-in modules are "not yet fully verified" in snapshots; only a failure matters.
  process.stderr.write(`lapin: no start-up snapshot (lapin still works, starting a little slower):\n${made.stderr.trim()}\n`);
} else {
  // What bin/lapin compares when the modification times differ: `node --version` and `uname -sm`.
  const version = execFileSync(process.execPath, ['--version'], { encoding: 'utf8' }).trim();
  const system = execFileSync('uname', ['-sm'], { encoding: 'utf8' }).trim();
  writeFileSync(`${blob}.id`, `${version} ${system}\n`);
  // An empty file with this Node's modification time: bin/lapin compares times without running node.
  const node = statSync(realpathSync(process.execPath));
  closeSync(openSync(`${blob}.node`, 'w'));
  utimesSync(`${blob}.node`, node.atime, node.mtime);
}
