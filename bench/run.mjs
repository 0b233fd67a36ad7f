#!/usr/bin/env node
// npm run bench: lapin against buildah and the machine's limits, on the seed
// example with an 8 MiB kernel and on a 1.2 GB ext4 rootfs. Prints medians
// and the ratios the performance issue sets as targets. Not a test: nothing
// here passes or fails a build. Fixtures are made once under bench/.work.
import { Buffer } from 'node:buffer';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync, writeSync, openSync, readSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const work = path.resolve(process.env.LAPIN_BENCH_DIR ?? path.join(root, 'bench', '.work'));
const reps = Number(process.env.LAPIN_BENCH_REPS ?? 11);
const bigReps = Number(process.env.LAPIN_BENCH_BIG_REPS ?? 3);
// LAPIN_BENCH_ONLY=seed skips the 1.2 GB rootfs half (a minute instead of five);
// LAPIN_BENCH_ONLY=registry runs only the registry rows (push, pull);
// LAPIN_BENCH_ONLY=rebuild only the one-file rebuild of a block rootfs built from `include`.
const only = process.env.LAPIN_BENCH_ONLY;
const seedOnly = only === 'seed';
const registryOnly = only === 'registry';
const rebuildOnly = only === 'rebuild';
// The installed command, as `npx lapin` runs it: bin/lapin, with its start-up snapshot.
const lapin = path.join(root, 'bin', 'lapin');
const cacheDir = path.join(work, 'cache');
const log = (line) => process.stderr.write(`bench: ${line}\n`);

function have(program) {
  return spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;
}

/** Installs what the bench drives, from Debian, when missing. */
function ensureTools() {
  const need = [];
  if (!have('buildah')) need.push('buildah');
  if (!have('pigz')) need.push('pigz');
  if (!have('zstd')) need.push('zstd');
  if (!have('mke2fs')) need.push('e2fsprogs');
  if (!seedOnly && !have('skopeo')) need.push('skopeo');
  if (!seedOnly && !existsSync('/usr/bin/docker-registry')) need.push('docker-registry');
  if (!existsSync('/usr/bin/time')) need.push('time');
  if (!have('eatmydata')) need.push('eatmydata');
  if (need.length === 0) return;
  if (process.getuid?.() !== 0) throw new Error(`missing ${need.join(' ')}: apt-get install -y ${need.join(' ')} as root`);
  log(`installing ${need.join(' ')}`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...need], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/**
 * Runs a shell command under /usr/bin/time; returns wall seconds (measured
 * here, to the microsecond: time's own %e has 10 ms steps) and max RSS in MiB.
 */
function timed(command, cwd = work) {
  const start = process.hrtime.bigint();
  const result = spawnSync('/usr/bin/time', ['-f', '%M', 'sh', '-c', command], { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  if (result.status !== 0) throw new Error(`failed: ${command}\n${result.stderr}`);
  const rssKb = Number(result.stderr.trim().split('\n').at(-1));
  return { wall, rss: rssKb / 1024 };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

function summarize(name, walls, rsss) {
  const m = { name, wall: median(walls), rss: Math.max(...rsss), runs: walls };
  log(`${name}: median ${m.wall.toFixed(3)} s over ${walls.length} (${walls.map((w) => w.toFixed(3)).join(' ')}), max RSS ${m.rss.toFixed(0)} MiB`);
  return m;
}

function measure(name, command, count, { before } = {}) {
  return measureInterleaved([{ name, command, before }], count)[0];
}

/** Runs the commands in turn, count rounds: a slow spell of the machine falls on all of them alike. */
function measureInterleaved(cases, count) {
  const walls = cases.map(() => []);
  const rsss = cases.map(() => []);
  for (let i = 0; i < count; i++) {
    cases.forEach(({ command, before }, j) => {
      before?.();
      const { wall, rss } = timed(typeof command === 'function' ? command() : command);
      walls[j].push(wall);
      rsss[j].push(rss);
    });
  }
  return cases.map(({ name }, j) => summarize(name, walls[j], rsss[j]));
}

/** A deterministic, kernel-like 8 MiB file: system binaries end to end. */
function makeKernel(file) {
  if (existsSync(file)) return;
  const size = 8 * 1024 * 1024;
  const out = Buffer.alloc(size);
  let filled = 0;
  for (const name of readdirSync('/usr/bin').sort()) {
    const p = path.join('/usr/bin', name);
    let st;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    const fd = openSync(p, 'r');
    filled += readSync(fd, out, filled, Math.min(st.size, size - filled), 0);
    closeSync(fd);
    if (filled >= size) break;
  }
  writeFileSync(file, out, { mode: 0o755 });
}

const LABELS = ['LABEL com.urunc.unikernel.cmdline=""', 'LABEL com.urunc.unikernel.unikernelType=mirage', 'LABEL com.urunc.unikernel.hypervisor=hvt'];

function makeSeed(dir) {
  mkdirSync(dir, { recursive: true });
  makeKernel(path.join(dir, 'network.hvt'));
  writeFileSync(
    path.join(dir, 'Containerfile'),
    ['FROM scratch', 'COPY network.hvt /unikernel/network.hvt', 'LABEL com.urunc.unikernel.binary=/unikernel/network.hvt', ...LABELS, 'LABEL com.urunc.unikernel.useDMBlock=false', ''].join('\n'),
  );
}

/** A 1.2 GB ext4 image made with mke2fs -d from system directories, once. */
function makeRootfs(dir) {
  mkdirSync(dir, { recursive: true });
  makeKernel(path.join(dir, 'network.hvt'));
  const image = path.join(dir, 'rootfs.ext4');
  if (!existsSync(image)) {
    const source = path.join(work, 'rootfs-src');
    rmSync(source, { recursive: true, force: true });
    mkdirSync(source);
    let bytes = 0;
    for (const candidate of ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/share', '/usr/lib', '/usr/bin']) {
      if (bytes > 850e6 || !existsSync(candidate)) continue;
      const size = Number(execFileSync('du', ['-sb', candidate], { encoding: 'utf8' }).split('\t')[0]);
      if (bytes + size > 1000e6) continue;
      execFileSync('cp', ['-a', candidate, path.join(source, candidate.replaceAll('/', '_'))]);
      bytes += size;
    }
    log(`mke2fs -d ${source} (${(bytes / 1e6).toFixed(0)} MB of files) into a 1200 MiB ext4 image`);
    execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-E', 'root_owner=0:0', '-d', source, image, '1200M']);
    rmSync(source, { recursive: true, force: true });
  }
  writeFileSync(
    path.join(dir, 'Containerfile'),
    [
      'FROM scratch',
      'COPY network.hvt /unikernel/network.hvt',
      'COPY rootfs.ext4 /rootfs.ext4',
      'LABEL com.urunc.unikernel.binary=/unikernel/network.hvt',
      ...LABELS,
      'LABEL com.urunc.unikernel.block=/rootfs.ext4',
      'LABEL com.urunc.unikernel.blkMntPoint=/',
      '',
    ].join('\n'),
  );
  return image;
}

const buildahStorage = `--root ${work}/buildah/root --runroot ${work}/buildah/run --storage-driver vfs`;

/** buildah bud + push oci-archive, what is timed; the image is removed before each run, untimed. */
function buildahCommand(context, tag) {
  const out = path.join(work, `buildah-${tag}.tar`);
  return [
    `buildah ${buildahStorage} bud --isolation chroot -q -t bench-${tag} -f ${context}/Containerfile ${context} >/dev/null`,
    `buildah ${buildahStorage} push -q bench-${tag} oci-archive:${out}:bench >/dev/null`,
  ].join(' && ');
}

function buildahReset(tag) {
  return () => {
    rmSync(path.join(work, `buildah-${tag}.tar`), { force: true });
    spawnSync('sh', ['-c', `buildah ${buildahStorage} rmi -f bench-${tag} >/dev/null 2>&1`]);
  };
}

function lapinCommand(context, flags) {
  return `${lapin} build -q --urunc-checks warn -t bench:1 -o ${work}/lapin.tar ${flags} ${context} >/dev/null`;
}

function nodeSha256(file) {
  return `node -e "const h=require('crypto').createHash('sha256');const s=require('fs').createReadStream('${file}',{highWaterMark:1<<20});s.on('data',d=>h.update(d));s.on('end',()=>console.log(h.digest('hex')))" >/dev/null`;
}

/** The 1.2 GB rootfs half: the limits, lapin with each compression, a rebuild, buildah. */
function measureRootfs(big, image, env, noOutput, clearCache) {
  const pigz = measure('limit: pigz -1 -p2 | sha256sum', `pigz -1 -p2 -c ${image} | sha256sum >/dev/null`, bigReps);
  const zstd = measure('limit: zstd -T0 -3 | sha256sum', `zstd -q -T0 -3 -c ${image} | sha256sum >/dev/null`, bigReps);
  const sha = measure("limit: node's sha256 of the file", nodeSha256(image), bigReps);
  const bigGzip = measure('rootfs: lapin gzip', `${env} ${lapinCommand(big, '--no-cache')}`, bigReps, noOutput);
  const bigZstd = measure('rootfs: lapin zstd', `${env} ${lapinCommand(big, '--no-cache --compression zstd')}`, bigReps, noOutput);
  const bigNone = measure('rootfs: lapin none', `${env} ${lapinCommand(big, '--no-cache --compression none')}`, bigReps, noOutput);
  clearCache();
  timed(`${env} ${lapinCommand(big, '')}`);
  const bigRebuild = measure('rootfs: lapin rebuild, nothing changed (cache)', `${env} ${lapinCommand(big, '')}`, bigReps);
  const bigBuildah = measure('rootfs: buildah bud + push oci-archive', buildahCommand(big, 'rootfs'), Math.min(bigReps, 3), { before: buildahReset('rootfs') });

  return { pigz, zstd, sha, bigGzip, bigZstd, bigNone, bigRebuild, bigBuildah };
}

/** A free loopback port, asked of the kernel. */
function freePort() {
  return Number(execFileSync('node', ['-e', "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"], { encoding: 'utf8' }).trim());
}

/**
 * A fresh docker-registry (distribution 2.8) on loopback with its own empty
 * storage: nothing there to mount from or deduplicate against, for lapin
 * as for skopeo. Returns host:port and a stop function.
 */
function startRegistry(name) {
  const dir = path.join(work, 'registries', name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = freePort();
  const config = path.join(dir, 'config.yml');
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: 'ignore', detached: false });
  const wait = spawnSync('bash', ['-c', `for i in $(seq 200); do (echo > /dev/tcp/127.0.0.1/${port}) 2>/dev/null && exit 0; sleep 0.05; done; exit 1`]);
  if (wait.status !== 0) throw new Error(`docker-registry did not listen on 127.0.0.1:${port}`);
  return {
    host: `127.0.0.1:${port}`,
    stop() {
      child.kill();
      spawnSync('sleep', ['0.2']);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The registry half: the 1.2 GB rootfs image pushed (lapin with a warm cache
 * against skopeo copying the archive lapin wrote), then pulled (lapin: a FROM
 * build into an archive with an empty cache; skopeo: copy into an OCI
 * directory), each pair interleaved, each run against a fresh registry.
 */
function measureRegistry(big, env) {
  const archive = path.join(work, 'rootfs-image.tar');
  const pushCache = path.join(work, 'push-cache');
  // The image once, with the cache that lapin's pushes start from (untimed).
  timed(`LAPIN_CACHE_DIR=${pushCache} ${lapin} build -q --urunc-checks warn -t bench:1 -o ${archive} ${big} >/dev/null`);
  let registry;
  const fresh = () => {
    registry?.stop();
    registry = startRegistry('push');
  };
  const [push, pushSkopeo] = measureInterleaved(
    [
      { name: 'push: lapin build (warm cache) --push', command: () => `LAPIN_CACHE_DIR=${pushCache} ${lapin} build -q --urunc-checks warn -t ${registry.host}/bench/rootfs:1 --push ${big} >/dev/null`, before: fresh },
      { name: 'push: skopeo copy oci-archive: docker://', command: () => `skopeo copy -q --dest-tls-verify=false oci-archive:${archive} docker://${registry.host}/bench/rootfs:1 >/dev/null`, before: fresh },
    ],
    bigReps,
  );
  // A re-push of the unchanged image: counted, not timed (only HEADs, checked by test/registry/push.test.ts).
  registry.stop();
  registry = undefined;

  // Pull: a base image pushed once per run by skopeo, then pulled.
  const from = path.join(work, 'from');
  mkdirSync(from, { recursive: true });
  const pullCache = path.join(work, 'pull-cache');
  const pulledDir = path.join(work, 'skopeo-pulled');
  const pulledTar = path.join(work, 'lapin-from.tar');
  const seeded = () => {
    registry?.stop();
    registry = startRegistry('pull');
    execFileSync('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci-archive:${archive}`, `docker://${registry.host}/bench/base:1`]);
    writeFileSync(path.join(from, 'Containerfile'), `FROM ${registry.host}/bench/base:1\nLABEL org.example.bench=from\n`);
    rmSync(pullCache, { recursive: true, force: true });
    rmSync(pulledDir, { recursive: true, force: true });
    rmSync(pulledTar, { force: true });
  };
  const [pull, pullSkopeo] = measureInterleaved(
    [
      { name: 'pull: lapin FROM build (empty cache) into an archive', command: () => `LAPIN_CACHE_DIR=${pullCache} ${lapin} build -q --urunc-checks warn -t bench:from -o ${pulledTar} ${from} >/dev/null`, before: seeded },
      { name: 'pull: skopeo copy docker:// oci:DIR', command: () => `skopeo copy -q --src-tls-verify=false docker://${registry.host}/bench/base:1 oci:${pulledDir}:base >/dev/null`, before: seeded },
    ],
    bigReps,
  );
  registry.stop();
  void env;
  return { push, pushSkopeo, pull, pullSkopeo };
}

/** The seed half: Node's start, --version, the seed build against buildah, its rebuild. */
function measureSeed(seed, env) {
  const nodeStart = measure("limit: Node's own start (node -e 0)", 'node -e 0', reps);
  const version = measure('lapin --version', `${lapin} --version >/dev/null`, reps);
  // Each fresh build starts with no output file, as buildah's does (removing it is not timed).
  const noOutput = { before: () => rmSync(path.join(work, 'lapin.tar'), { force: true }) };
  const [seedLapin, seedNoSync, seedBuildah] = measureInterleaved(
    [
      { name: 'seed: lapin (gzip, no cache)', command: `${env} ${lapinCommand(seed, '--no-cache')}`, ...noOutput },
      // The cost of flushing outputs to the disk: the same build with fsync made a no-op.
      { name: 'seed: lapin (gzip, no cache), fsync a no-op (eatmydata)', command: `${env} eatmydata ${lapinCommand(seed, '--no-cache')}`, ...noOutput },
      { name: 'seed: buildah bud + push oci-archive', command: buildahCommand(seed, 'seed'), before: buildahReset('seed') },
    ],
    reps,
  );
  timed(`${env} ${lapinCommand(seed, '')}`);
  const seedRebuild = measure('seed: lapin rebuild, nothing changed (cache)', `${env} ${lapinCommand(seed, '')}`, reps);
  return { nodeStart, version, seedLapin, seedNoSync, seedBuildah, seedRebuild, noOutput };
}

/**
 * A block rootfs built from `include`: about 1 GB of system files copied
 * once under bench/.work/include, made into a ~1.2 GB ext4 image by lapin.
 */
function makeIncludeContext(dir) {
  const files = path.join(dir, 'files');
  if (!existsSync(path.join(dir, 'bunnyfile'))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(files, { recursive: true });
    let bytes = 0;
    for (const candidate of ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/share/locale', '/usr/share/doc', '/usr/bin']) {
      if (bytes > 850e6 || !existsSync(candidate)) continue;
      const size = Number(execFileSync('du', ['-sb', candidate], { encoding: 'utf8' }).split('\t')[0]);
      if (bytes + size > 1000e6) continue;
      execFileSync('cp', ['-a', candidate, path.join(files, candidate.replaceAll('/', '_'))]);
      bytes += size;
    }
    makeKernel(path.join(dir, 'vmlinuz'));
    writeFileSync(
      path.join(dir, 'bunnyfile'),
      ['version: v0.1', 'platforms:', '  framework: linux', '  monitor: qemu', '  architecture: x86_64', 'kernel:', '  from: local', '  path: vmlinuz', 'rootfs:', '  type: block', '  include:', '    - files:/data', 'cmd: ["/bin/sh"]', ''].join('\n'),
    );
  }
  // The file the rebuilds change: a mid-sized one, the same each time (the first in sorted order of 300-400 KB).
  const found = execFileSync('sh', ['-c', `cd ${files} && find . -type f -size +300k -size -400k | LC_ALL=C sort | head -1`], { encoding: 'utf8' }).trim();
  return { changed: path.join(files, found), files };
}

/**
 * The one-file rebuild: in each round, a cold build (empty cache), then the
 * same build after 100 bytes of one file are overwritten (same size), then
 * after 10 000 bytes are appended to it (size change), both with the cache
 * the round filled. The file is put back before each round.
 */
function measureRebuild() {
  const dir = path.join(work, 'include');
  const { changed } = makeIncludeContext(dir);
  const original = path.join(work, 'include-original.bin');
  if (!existsSync(original)) execFileSync('cp', [changed, original]);
  const rebuildCache = path.join(work, 'rebuild-cache');
  // Each case also appends its CPU time (user + system, children included) to a file of its own: on a shared machine CPU time varies less than wall time.
  const cpuLog = (name) => path.join(work, `rebuild-cpu-${name}.txt`);
  for (const name of ['cold', 'same', 'grown']) rmSync(cpuLog(name), { force: true });
  const command = (name) => `LAPIN_CACHE_DIR=${rebuildCache} /usr/bin/time -a -o ${cpuLog(name)} -f '%U %S' ${lapin} build -q --urunc-checks warn -t bench:include -o ${work}/lapin-include.tar -f ${dir}/bunnyfile ${dir} >/dev/null`;
  let round = 0;
  const [cold, same, grown] = measureInterleaved(
    [
      {
        name: 'rebuild: lapin block rootfs from include, cold (empty cache)',
        command: command('cold'),
        before: () => {
          execFileSync('cp', [original, changed]);
          rmSync(rebuildCache, { recursive: true, force: true });
          rmSync(path.join(work, 'lapin-include.tar'), { force: true });
          round++;
        },
      },
      {
        name: 'rebuild: after one file changed, same size (warm cache)',
        command: command('same'),
        before: () => {
          const fd = openSync(changed, 'r+');
          writeSync(fd, Buffer.alloc(100, `round ${round} `), 0, 100, 1000);
          closeSync(fd);
        },
      },
      { name: 'rebuild: after one file grew by 10 000 bytes (warm cache)', command: command('grown'), before: () => appendFileSync(changed, Buffer.alloc(10000, `grown ${round} `)) },
    ],
    bigReps,
  );
  execFileSync('cp', [original, changed]);
  const bytes = Number(execFileSync('du', ['-sb', path.join(dir, 'files')], { encoding: 'utf8' }).split('\t')[0]);
  const cpu = (name) => median(execFileSync('cat', [cpuLog(name)], { encoding: 'utf8' }).trim().split('\n').map((line) => line.split(' ').reduce((a, b) => a + Number(b), 0)));
  const cpus = { cold: cpu('cold'), same: cpu('same'), grown: cpu('grown') };
  const cpuText = `CPU (user + system) medians: cold ${cpus.cold.toFixed(2)} s, same size ${cpus.same.toFixed(2)} s (${(cpus.same / cpus.cold).toFixed(2)} ×), grown ${cpus.grown.toFixed(2)} s (${(cpus.grown / cpus.cold).toFixed(2)} ×)`;
  log(`rebuild ${cpuText}`);
  return { cold, same, grown, describe: `${(bytes / 1e6).toFixed(0)} MB of files included, ${path.relative(dir, changed)} changed; ${cpuText}` };
}

function main() {
  ensureTools();
  mkdirSync(work, { recursive: true });
  if (!existsSync(path.join(root, 'dist', 'cli', 'main.js'))) execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  const seed = path.join(work, 'seed');
  const bigDir = path.join(work, 'rootfs');
  makeSeed(seed);
  const image = seedOnly || rebuildOnly ? undefined : makeRootfs(bigDir);

  const env = `LAPIN_CACHE_DIR=${cacheDir}`;
  const clearCache = () => rmSync(cacheDir, { recursive: true, force: true });
  const startLoad = os.loadavg().map((l) => l.toFixed(1)).join(' ');

  // Warm the page cache and the programs once.
  timed(`cat ${image ?? ''} ${seed}/network.hvt > /dev/null`);
  timed(`${env} ${lapinCommand(seed, '--no-cache')}`);

  const seedPart = registryOnly || rebuildOnly ? undefined : measureSeed(seed, env);
  const big = seedOnly || registryOnly || rebuildOnly ? undefined : measureRootfs(bigDir, image, env, seedPart.noOutput, clearCache);
  const reg = seedOnly || rebuildOnly ? undefined : measureRegistry(bigDir, env);
  const rebuild = seedOnly || registryOnly ? undefined : measureRebuild();

  const ratio = (a, b) => a.wall / b.wall;
  const lines = [];
  const fmt = (s) => `${s.toFixed(3)} s`;
  lines.push(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ${os.release()}`);
  if (rebuild) lines.push(`rebuild fixture: ${rebuild.describe}`);
  lines.push(`date: ${new Date().toISOString()}; medians of ${reps} (seed, lapin and buildah interleaved)${image ? ` and ${bigReps} (rootfs, registry) runs; rootfs ${(statSync(image).size / 1e9).toFixed(2)} GB` : ` runs; rootfs skipped (LAPIN_BENCH_ONLY=${only})`}${registryOnly ? '; registry rows only (LAPIN_BENCH_ONLY=registry)' : ''}${rebuildOnly ? '; one-file rebuild rows only (LAPIN_BENCH_ONLY=rebuild)' : ''}`);
  lines.push(`load: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} (1, 5, 15 min) at the end; started at ${startLoad}`);
  lines.push('');
  lines.push('| measurement | median | max RSS |');
  lines.push('|---|---|---|');
  const rows = seedPart ? [seedPart.nodeStart, seedPart.version, seedPart.seedLapin, seedPart.seedNoSync, seedPart.seedBuildah, seedPart.seedRebuild] : [];
  if (big) rows.push(big.pigz, big.zstd, big.sha, big.bigGzip, big.bigZstd, big.bigNone, big.bigRebuild, big.bigBuildah);
  if (reg) rows.push(reg.push, reg.pushSkopeo, reg.pull, reg.pullSkopeo);
  if (rebuild) rows.push(rebuild.cold, rebuild.same, rebuild.grown);
  for (const m of rows) {
    lines.push(`| ${m.name.replaceAll('|', '\\|')} | ${fmt(m.wall)} | ${m.rss.toFixed(0)} MiB |`);
  }
  const lapinRuns = [...(seedPart ? [seedPart.seedLapin, seedPart.seedRebuild] : []), ...(big ? [big.bigGzip, big.bigZstd, big.bigNone, big.bigRebuild] : []), ...(reg ? [reg.push, reg.pull] : []), ...(rebuild ? [rebuild.cold, rebuild.same, rebuild.grown] : [])];
  const peak = Math.max(...lapinRuns.map((m) => m.rss));
  const targets = seedPart ? [['seed → archive vs buildah', ratio(seedPart.seedLapin, seedPart.seedBuildah), 0.33, '×']] : [];
  if (big) {
    targets.push(
      ['rootfs gzip vs buildah', ratio(big.bigGzip, big.bigBuildah), 0.3, '×'],
      ['rootfs gzip vs pigz -1 -p2 | sha256sum', ratio(big.bigGzip, big.pigz), 1.3, '×'],
      ['rootfs zstd vs zstd -T0 -3 | sha256sum', ratio(big.bigZstd, big.zstd), 1.3, '×'],
      ["rootfs none vs node's sha256", ratio(big.bigNone, big.sha), 2, '×'],
    );
  }
  if (seedPart) targets.push(['seed rebuild, nothing changed', seedPart.seedRebuild.wall * 1000, 150, 'ms']);
  if (big) targets.push(['rootfs rebuild, nothing changed', big.bigRebuild.wall * 1000, 150, 'ms']);
  if (reg) {
    targets.push(['push vs skopeo copy oci-archive: docker://', ratio(reg.push, reg.pushSkopeo), 1, '×'], ['pull + FROM build vs skopeo copy docker:// oci:', ratio(reg.pull, reg.pullSkopeo), 1.3, '×']);
  }
  if (rebuild) {
    targets.push(['one-file rebuild (same size) vs cold build, block rootfs from include', ratio(rebuild.same, rebuild.cold), 0.4, '×']);
    targets.push(['one-file rebuild (file grown) vs cold build, block rootfs from include', ratio(rebuild.grown, rebuild.cold), 0.4, '×']);
  }
  targets.push(['peak memory of lapin', peak, 300, 'MiB']);
  lines.push('');
  lines.push('| target | measured | target | met |');
  lines.push('|---|---|---|---|');
  for (const [name, value, target, unit] of targets) {
    const shown = unit === '×' ? `${value.toFixed(2)} ×` : `${value.toFixed(0)} ${unit}`;
    lines.push(`| ${name.replaceAll('|', '\\|')} | ${shown} | ${unit === '×' ? '≤' : unit === 'MiB' ? '<' : '≤'} ${target}${unit === '×' ? ' ×' : ` ${unit}`} | ${value <= target ? 'yes' : 'no'} |`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  writeFileSync(path.join(work, 'results.md'), `${lines.join('\n')}\n`);
}

main();
