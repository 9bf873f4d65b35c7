#!/usr/bin/env node
/**
 * bench/crawl: how long `gammaray crawl --json` takes on an ext4 image with many small files, against
 * peers measured in the same run on the same image: The Sleuth Kit's `fls -r -p -l` (the same metadata,
 * printed), `fls -r -p` (names only) and `e2fsck -fn` (a full read-only check).
 *
 *   node bench/crawl/run.mjs [--files N] [--dirs N] [--runs N] [--keep] [--cache-dir DIR] [--drop-caches]
 *
 * Every tool runs as a whole process (start-up included), stdout to /dev/null, stderr captured. The
 * timed runs are interleaved (A B C D, A B C D, ...) so that machine noise spreads over all tools
 * instead of hitting one. Warm: after one untimed warm-up of each tool. Cold: the image is evicted
 * from the page cache before each run (posix_fadvise DONTNEED, which needs no root and leaves the rest
 * of the system's cache alone; `--drop-caches` drops the whole page cache instead, root only).
 *
 * Only Node, e2fsprogs, sleuthkit (and python3 or coreutils dd for the eviction) are needed; no
 * hyperfine. Results: a table on stdout, the same as JSON in bench/crawl/results/last.json.
 * docs/benchmarks.md explains the figures.
 */
import { spawnSync } from 'node:child_process';
import {
  accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync,
  renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBenchArgs } from '../lib/args.mjs';
import { noter, removeAbandoned } from '../lib/report.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const CLI = join(REPO, 'packages', 'cli', 'bin', 'gammaray.js');
const RESULTS_DIR = join(HERE, 'results');
/** Packages the CLI is built from (`pnpm build`), checked for a dist older than its sources. */
const BUILT_PACKAGES = ['disk', 'ext4', 'cli'];

const DEFAULT_FILES = 100_000;
const DEFAULT_DIRS = 1_000;
const DEFAULT_RUNS = 5;
const DEFAULT_CACHE_DIR = process.env.GAMMARAY_BENCH_DIR ?? '/var/tmp/gammaray-bench';
/** Regular files get 0..MAX_FILE_SIZE bytes: nearly all fit one block, so each is one inode plus one extent. */
const MAX_FILE_SIZE = 200;
/** Spare inodes beyond files + dirs: mkfs's default inode ratio would run out on a tree of tiny files. */
const SPARE_INODES = 10_000;
/** Image bytes budgeted per file or directory (one 4 KiB data block, inode, slack), rounded up to a power of two. */
const BYTES_PER_ENTRY = 8 * 1024;
const MIN_IMAGE_MIB = 64;
/** Bump when the generated tree or the mkfs options change, so cached images are rebuilt. */
const IMAGE_FORMAT = 1;
/** Output captured for the verification run; gammaray's JSON for 100k entries is ~50 MB. */
const CAPTURE_MAX_BYTES = 2 ** 30;
const NS_PER_S = 1e9;

const USAGE = `usage: node bench/crawl/run.mjs [--files N] [--dirs N] [--runs N] [--keep] [--cache-dir DIR] [--drop-caches]

  --files N        regular files in the image (default ${DEFAULT_FILES})
  --dirs N         directories they are spread over (default ${DEFAULT_DIRS})
  --runs N         timed runs per tool, warm and cold each (default ${DEFAULT_RUNS})
  --keep           keep the generated source tree and the verification run's outputs in the cache dir
  --cache-dir DIR  where images are built and reused (default ${DEFAULT_CACHE_DIR}, env GAMMARAY_BENCH_DIR)
  --drop-caches    cold runs drop the whole page cache (root) instead of evicting only the image
`;

/**
 * Half-built files of this process, removed when it exits through fail(). A signal (Ctrl-C) kills it with
 * the default action instead - a JS handler would never run inside the synchronous loops - and the next
 * build removes what a dead process left (see removeAbandoned).
 */
const removeOnExit = [];
process.on('exit', () => {
  for (const p of removeOnExit) rmSync(p, { recursive: true, force: true });
});

/** Writes a progress line to stderr (stdout carries only the results). */
const note = noter('bench/crawl');

/** Stops with a message on stderr. */
function fail(msg) {
  process.stderr.write(`bench/crawl: error: ${msg}\n`);
  process.exit(1);
}

function readOptions() {
  const { values: v, int } = readBenchArgs('bench/crawl', USAGE, {
    files: { type: 'string' },
    dirs: { type: 'string' },
    runs: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'cache-dir': { type: 'string' },
    'drop-caches': { type: 'boolean', default: false },
  });
  const files = int('files', DEFAULT_FILES, 1);
  const dirs = int('dirs', DEFAULT_DIRS, 1);
  if (dirs > files) {
    process.stderr.write(`bench/crawl: --dirs (${dirs}) must not exceed --files (${files})\n`);
    process.exit(2);
  }
  return {
    files,
    dirs,
    runs: int('runs', DEFAULT_RUNS, 1),
    keep: v.keep,
    cacheDir: v['cache-dir'] ?? DEFAULT_CACHE_DIR,
    dropCaches: v['drop-caches'],
  };
}

/** Runs a command to completion and returns its trimmed stdout + stderr, or undefined if it could not run. */
function probeText(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return undefined;
  return `${r.stdout}${r.stderr}`.trim();
}

function requireTool(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  if (r.error) fail(`${cmd} not found (${r.error.code}); install ${cmd === 'fls' ? 'sleuthkit' : 'e2fsprogs'}`);
}

/** Newest mtime (ms) of the files under `dir`, recursively. */
function newestMtime(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Builds the CLI if its dist is missing. Does not rebuild otherwise (others may be editing the sources),
 * but says so when a package's sources are newer than its last build: the figures would be stale.
 */
function ensureBuilt() {
  if (!existsSync(join(REPO, 'packages', 'cli', 'dist', 'main.js'))) {
    note('packages/cli/dist missing; running pnpm -s build');
    const r = spawnSync('pnpm', ['-s', 'build'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) fail(`pnpm -s build failed (${r.error?.message ?? `exit ${r.status}`})`);
  }
  const stale = [];
  for (const pkg of BUILT_PACKAGES) {
    const dir = join(REPO, 'packages', pkg);
    const info = join(dir, 'tsconfig.tsbuildinfo');
    const built = existsSync(info) ? statSync(info).mtimeMs : 0;
    if (newestMtime(join(dir, 'src')) > built) stale.push(pkg);
  }
  if (stale.length > 0) note(`WARNING: sources newer than the build in packages/{${stale.join(',')}}; measuring the old dist (run pnpm -s build)`);
  return stale;
}

/** Newest mtime of the built CLI: a change during the run means someone rebuilt it mid-measurement. */
function distStamp() {
  return Math.max(...BUILT_PACKAGES.map((pkg) => newestMtime(join(REPO, 'packages', pkg, 'dist'))));
}

/** The commit the measured CLI was built from, `+dirty` when packages/ has uncommitted changes. */
function gitRevision() {
  const head = probeText('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']);
  if (head === undefined || head.includes('fatal')) return 'unknown';
  const dirty = probeText('git', ['-C', REPO, 'status', '--porcelain', '--', 'packages']);
  return dirty ? `${head}+dirty` : head;
}

/** mulberry32: a tiny seeded PRNG, so the same parameters always give the same tree (and cache key). */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Power-of-two image size (MiB) with room for every entry's block and inode. */
function imageMiB(files, dirs) {
  const need = Math.max(MIN_IMAGE_MIB, Math.ceil(((files + dirs) * BYTES_PER_ENTRY) / 2 ** 20));
  return 2 ** Math.ceil(Math.log2(need));
}

/**
 * Writes the source tree: `dirs` directories under the root, `files` regular files spread evenly over them,
 * each with 0..MAX_FILE_SIZE bytes of text.
 */
function writeTree(src, files, dirs) {
  rmSync(src, { recursive: true, force: true });
  mkdirSync(src, { recursive: true });
  const rand = prng(0x6a6d);
  const filler = 'gammaray crawl benchmark - small file contents, one extent each.\n'.repeat(4);
  const started = Date.now();
  let done = 0;
  for (let d = 0; d < dirs; d++) {
    const dir = join(src, `dir-${String(d).padStart(5, '0')}`);
    mkdirSync(dir);
    // Even spread; the first (files % dirs) directories take one more.
    const count = Math.floor(files / dirs) + (d < files % dirs ? 1 : 0);
    for (let f = 0; f < count; f++) {
      const size = Math.floor(rand() * (MAX_FILE_SIZE + 1));
      writeFileSync(join(dir, `file-${String(done).padStart(7, '0')}.txt`), filler.slice(0, size));
      done++;
      if (done % 10_000 === 0) note(`  wrote ${done}/${files} files (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    }
  }
}

/**
 * Returns the image for these parameters, building it (source tree, then mkfs.ext4 -d) unless the cache
 * already holds it. Built under a temporary name and renamed, so an interrupted build is never reused.
 */
function ensureImage(opts) {
  const mib = imageMiB(opts.files, opts.dirs);
  const key = `crawl-v${IMAGE_FORMAT}-f${opts.files}-d${opts.dirs}-${mib}M`;
  const img = join(opts.cacheDir, `${key}.img`);
  const src = join(opts.cacheDir, `${key}.src`);
  if (existsSync(img)) {
    note(`reusing ${img}`);
    return { img, src, key, mib, built: false, buildSeconds: 0 };
  }
  mkdirSync(opts.cacheDir, { recursive: true });
  removeAbandoned(opts.cacheDir, note, 'build');
  const t0 = process.hrtime.bigint();
  note(`building ${img}: ${opts.files} files in ${opts.dirs} directories`);
  // Per-process temporary names: two runs building the same image at once must not share a tree.
  const tmpSrc = `${src}.${process.pid}.tmp`;
  const tmp = `${img}.${process.pid}.tmp`;
  removeOnExit.push(tmpSrc, tmp);
  writeTree(tmpSrc, opts.files, opts.dirs);
  // -b/-I pin the layout of the default profile: mke2fs would pick 1 KiB blocks ("small") below 512 MiB.
  const args = ['-q', '-F', '-b', '4096', '-I', '256', '-N', String(opts.files + opts.dirs + SPARE_INODES), '-d', tmpSrc, tmp, `${mib}M`];
  note(`  mkfs.ext4 ${args.join(' ')}`);
  const r = spawnSync('mkfs.ext4', args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    fail(`mkfs.ext4 failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}`);
  }
  renameSync(tmp, img);
  if (opts.keep) {
    rmSync(src, { recursive: true, force: true });
    renameSync(tmpSrc, src);
    note(`  source tree kept in ${src}`);
  } else {
    rmSync(tmpSrc, { recursive: true, force: true });
  }
  const buildSeconds = Number(process.hrtime.bigint() - t0) / NS_PER_S;
  note(`  built in ${buildSeconds.toFixed(1)} s`);
  return { img, src, key, mib, built: true, buildSeconds };
}

/** The measured commands, in the order they run in each round. */
function toolsFor(img) {
  return [
    { name: 'gammaray crawl --json', cmd: process.execPath, args: [CLI, 'crawl', '--json', img] },
    { name: 'fls -r -p -l', cmd: 'fls', args: ['-r', '-p', '-l', img] },
    { name: 'fls -r -p', cmd: 'fls', args: ['-r', '-p', img] },
    { name: 'e2fsck -fn', cmd: 'e2fsck', args: ['-fn', img] },
  ];
}

/** CPU seconds (user + system) of this process's waited-for children so far, from /proc/self/stat. */
function childCpuTicks() {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields after the ")" that ends comm start at field 3; cutime and cstime are fields 16 and 17.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[13]) + Number(f[14]);
  } catch {
    return undefined;
  }
}

const CLK_TCK = Number(probeText('getconf', ['CLK_TCK'])) || 100;

/** One timed run: wall seconds around the whole spawn, children's CPU seconds, and how it ended. */
function timeOnce(tool, devNull) {
  const cpu0 = childCpuTicks();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(tool.cmd, tool.args, { stdio: ['ignore', devNull, 'pipe'], maxBuffer: CAPTURE_MAX_BYTES });
  const t1 = process.hrtime.bigint();
  const cpu1 = childCpuTicks();
  if (r.error || r.status !== 0) {
    fail(`${tool.name} failed during timing (${r.error?.message ?? `exit ${r.status}${r.signal ? `, signal ${r.signal}` : ''}`}):\n${tailOf(r.stderr)}`);
  }
  return { wall: Number(t1 - t0) / NS_PER_S, cpu: cpu0 === undefined || cpu1 === undefined ? undefined : (cpu1 - cpu0) / CLK_TCK };
}

function tailOf(buf, lines = 20) {
  return String(buf ?? '').trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * How cold runs empty the cache: posix_fadvise(DONTNEED) on the image (python3, else `dd iflag=nocache
 * count=0`, which makes the same call), or with --drop-caches the whole page cache.
 */
function coldMethod(opts) {
  if (opts.dropCaches) {
    try {
      accessSync('/proc/sys/vm/drop_caches', constants.W_OK);
      return { name: 'drop_caches', detail: 'sync; echo 1 > /proc/sys/vm/drop_caches (whole page cache)' };
    } catch {
      note('WARNING: --drop-caches: /proc/sys/vm/drop_caches is not writable; evicting only the image instead');
    }
  }
  if (spawnSync('python3', ['-c', 'import os; os.posix_fadvise'], { stdio: 'ignore' }).status === 0) {
    return { name: 'fadvise', detail: 'fsync + posix_fadvise(POSIX_FADV_DONTNEED) on the image (python3)' };
  }
  if (spawnSync('dd', ['if=/dev/null', 'iflag=nocache', 'count=0', 'status=none'], { stdio: 'ignore' }).status === 0) {
    return { name: 'dd', detail: 'dd iflag=nocache count=0 on the image (posix_fadvise DONTNEED)' };
  }
  return undefined;
}

const FADVISE_PY = 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)';

/** Evicts the image (or everything) from the page cache; false if that failed. */
function evict(method, img) {
  let r;
  if (method.name === 'drop_caches') {
    spawnSync('sync');
    try {
      writeFileSync('/proc/sys/vm/drop_caches', '1');
      return true;
    } catch {
      return false;
    }
  }
  if (method.name === 'fadvise') r = spawnSync('python3', ['-c', FADVISE_PY, img], { stdio: ['ignore', 'ignore', 'pipe'] });
  else r = spawnSync('dd', [`if=${img}`, 'iflag=nocache', 'count=0', 'status=none'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return !r.error && r.status === 0;
}

/** Bytes of the image in the page cache (util-linux fincore), or undefined where fincore is missing. */
function residentBytes(img) {
  const out = probeText('fincore', ['--bytes', '--noheadings', '--output', 'RES', img]);
  const n = Number(out);
  return out === undefined || out === '' || !Number.isFinite(n) ? undefined : n;
}

/** Runs a tool once with stdout captured; fails loudly on a non-zero exit. */
function capture(tool) {
  const r = spawnSync(tool.cmd, tool.args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: CAPTURE_MAX_BYTES });
  if (r.error) fail(`${tool.name}: ${r.error.message}`);
  // e2fsck -n cannot fix anything, so any non-zero status (4: errors left uncorrected, 8: operational error) is a failure.
  if (r.status !== 0) fail(`${tool.name} exited ${r.status}${r.signal ? ` (signal ${r.signal})` : ''}:\n${tailOf(r.stderr)}\n${tailOf(r.stdout)}`);
  return r;
}

/**
 * Parses `fls -r -p` lines ("r/r 14:\tdir/file", deleted ones with " * ", TSK's virtual entries typed
 * "V/V" such as $OrphanFiles). Returns the live, real paths (with a leading "/") and what was left out.
 */
function parseFls(text) {
  const paths = [];
  const virtual = [];
  const deleted = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const tab = line.indexOf('\t');
    const head = line.slice(0, tab);
    const path = line.slice(tab + 1);
    if (head.startsWith('V/V') || path.startsWith('$OrphanFiles')) virtual.push(line);
    else if (head.includes(' * ')) deleted.push(line);
    else paths.push(`/${path}`);
  }
  return { paths, virtual, deleted };
}

/** Parses gammaray's JSON lines: entry paths, entries that carry errors, volume records. */
function parseGammaray(text) {
  const paths = [];
  const withErrors = [];
  let volumes = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const rec = JSON.parse(line);
    if (rec.record === 'entry') {
      paths.push(rec.path);
      if (rec.errors !== undefined) withErrors.push(rec.path);
    } else if (rec.record === 'volume') {
      volumes++;
    }
  }
  return { paths, withErrors, volumes };
}

function loudMismatch(lines) {
  const bar = '!'.repeat(78);
  process.stderr.write(`\n${bar}\n!!! bench/crawl: VERIFICATION FAILED: gammaray, fls and the generated tree disagree\n${lines.map((l) => `!!! ${l}`).join('\n')}\n${bar}\n\n`);
  process.exit(1);
}

/**
 * Runs every tool once with stdout captured (this is also the warm-up of the page cache) and checks that
 * they all succeeded and that gammaray saw exactly the entries fls saw. gammaray prints one entry per path
 * including the root "/" and lost+found; fls prints every path except the root, plus TSK's virtual
 * $OrphanFiles directory (V/V), which is not on disk. So: gammaray entries = fls real entries + 1.
 */
function verify(tools, opts, img) {
  const [gr, flsL, fls, fsck] = tools.map((t) => {
    note(`  verify: ${t.name}`);
    return capture(t);
  });
  const g = parseGammaray(gr.stdout.toString('utf8'));
  const f = parseFls(fls.stdout.toString('utf8'));
  const flsLines = fls.stdout.toString('utf8').split('\n').filter(Boolean).length;
  const flsLLines = flsL.stdout.toString('utf8').split('\n').filter(Boolean).length;
  const problems = [];
  if (g.volumes !== 1) problems.push(`gammaray printed ${g.volumes} volume records, expected 1`);
  if (g.withErrors.length > 0) problems.push(`gammaray: ${g.withErrors.length} entries carry errors, e.g. ${g.withErrors.slice(0, 5).join(', ')}`);
  if (g.paths.length !== f.paths.length + 1) {
    problems.push(`gammaray printed ${g.paths.length} entries; fls -r -p printed ${f.paths.length} real entries (+1 root = ${f.paths.length + 1})`);
  }
  const inGammaray = new Set(g.paths);
  const inFls = new Set(['/', ...f.paths]);
  const onlyG = g.paths.filter((p) => !inFls.has(p));
  const onlyF = [...inFls].filter((p) => !inGammaray.has(p));
  if (onlyG.length > 0) problems.push(`${onlyG.length} paths only in gammaray, e.g. ${onlyG.slice(0, 5).join(', ')}`);
  if (onlyF.length > 0) problems.push(`${onlyF.length} paths only in fls, e.g. ${onlyF.slice(0, 5).join(', ')}`);
  if (inGammaray.size !== g.paths.length) problems.push(`gammaray printed ${g.paths.length - inGammaray.size} duplicate paths`);
  if (flsLLines !== flsLines) problems.push(`fls -r -p -l printed ${flsLLines} lines but fls -r -p ${flsLines}`);
  const expected = opts.files + opts.dirs + 2; // + root + lost+found
  if (g.paths.length !== expected) problems.push(`the image should hold ${expected} entries (files + dirs + / + lost+found), gammaray printed ${g.paths.length}`);
  if (f.deleted.length > 0) problems.push(`fls reports ${f.deleted.length} deleted entries on a freshly built image, e.g. ${f.deleted[0]}`);
  if (problems.length > 0) loudMismatch(problems);
  const fsckFiles = /(\d+)\/(\d+) files/.exec(fsck.stdout.toString('utf8'));
  if (opts.keep) {
    const dir = join(opts.cacheDir, 'last-outputs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'gammaray.jsonl'), gr.stdout);
    writeFileSync(join(dir, 'fls-l.txt'), flsL.stdout);
    writeFileSync(join(dir, 'fls.txt'), fls.stdout);
    writeFileSync(join(dir, 'e2fsck.txt'), Buffer.concat([fsck.stdout, fsck.stderr]));
    note(`  outputs kept in ${dir}`);
  }
  return {
    ok: true,
    gammarayEntries: g.paths.length,
    flsLines,
    flsRealEntries: f.paths.length,
    flsVirtualEntries: f.virtual,
    e2fsckInodesUsed: fsckFiles ? Number(fsckFiles[1]) : undefined,
    explanation: 'gammaray entries = fls -r -p real entries + 1: fls omits the root "/" and adds the virtual $OrphanFiles (V/V); both list lost+found',
    stdoutBytes: Object.fromEntries([gr, flsL, fls, fsck].map((r, i) => [tools[i].name, r.stdout.length])),
  };
}

/** Timed samples of one tool: wall and children's CPU seconds, warm and cold. */
function emptySamples() {
  return { warm: [], warmCpu: [], cold: [], coldCpu: [] };
}

function record(samples, phase, r) {
  samples[phase].push(r.wall);
  if (r.cpu !== undefined) samples[`${phase}Cpu`].push(r.cpu);
}

/** One untimed warm-up of each tool, then `runs` interleaved rounds. */
function measureWarm(tools, runs, devNull) {
  const samples = tools.map(emptySamples);
  note('warm-up (untimed, stdout to /dev/null)');
  for (const t of tools) timeOnce(t, devNull);
  for (let run = 0; run < runs; run++) {
    note(`warm round ${run + 1}/${runs}`);
    tools.forEach((t, i) => record(samples[i], 'warm', timeOnce(t, devNull)));
  }
  return samples;
}

/**
 * Interleaved rounds with the image evicted before every run. First checks once (with fincore, where it
 * exists) that eviction really empties the cache; if it cannot, cold figures are skipped, with the reason.
 */
function measureCold(tools, opts, img, devNull, samples) {
  const method = coldMethod(opts);
  if (method === undefined) {
    const reason = 'no way to evict the image: /proc/sys/vm/drop_caches not writable (or no --drop-caches), python3 and dd iflag=nocache missing';
    note(`WARNING: cold cache not measured: ${reason}`);
    return { method: undefined, reason, residency: undefined };
  }
  const before = residentBytes(img);
  const evicted = evict(method, img);
  const after = residentBytes(img);
  const residency = { beforeBytes: before, afterBytes: after };
  if (!evicted || (after !== undefined && before !== undefined && after > before / 10)) {
    const reason = `eviction with ${method.name} did not work (image resident before ${before} B, after ${after} B)`;
    note(`WARNING: cold cache not measured: ${reason}`);
    return { method: undefined, reason, residency };
  }
  note(`cold: ${method.detail}; image resident before ${before ?? '?'} B, after ${after ?? '?'} B`);
  for (let run = 0; run < opts.runs; run++) {
    note(`cold round ${run + 1}/${opts.runs}`);
    tools.forEach((t, i) => {
      if (!evict(method, img)) fail(`cache eviction (${method.name}) failed before a cold run of ${t.name}`);
      record(samples[i], 'cold', timeOnce(t, devNull));
    });
  }
  return { method, reason: undefined, residency };
}

function stats(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { min: s[0], median, max: s[s.length - 1] };
}

function machineFacts() {
  const cpus = os.cpus();
  const e2 = probeText('e2fsck', ['-V']);
  return {
    nproc: os.availableParallelism?.() ?? cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memTotalGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    tsk: probeText('fls', ['-V']) ?? 'unknown',
    e2fsprogs: e2?.split('\n')[0] ?? 'unknown',
  };
}

const fmt = (x) => (x === undefined ? '-' : x.toFixed(3));

/** The results as a plain-text table. */
function table(res) {
  const rows = res.tools.map((t) => [
    t.name,
    (res.verify.stdoutBytes[t.name] / 1e6).toFixed(1),
    fmt(t.warm.min), fmt(t.warm.median), fmt(t.warm.max), fmt(t.warmCpu?.median),
    ...(t.cold ? [fmt(t.cold.min), fmt(t.cold.median), fmt(t.cold.max)] : ['-', '-', '-']),
  ]);
  const head = ['tool', 'out MB', 'warm min', 'median', 'max', 'cpu med', 'cold min', 'median', 'max'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  out.push('', 'seconds, whole process, stdout to /dev/null; out MB: stdout size; cpu med: user+sys of the child; ratio = gammaray median / peer median (< 1x: gammaray faster)');
  for (const r of res.ratios) out.push(`  gammaray/${r.peer}: warm ${r.warm.toFixed(2)}x${r.cold === undefined ? '' : `, cold ${r.cold.toFixed(2)}x`}`);
  const m = res.machine;
  out.push(
    '',
    `image: ${res.image.path} (${res.image.mib} MiB, ${res.params.files} files in ${res.params.dirs} dirs, ${res.verify.gammarayEntries} entries)`,
    `runs: ${res.params.runs} warm + ${res.params.runs} cold per tool, interleaved; cold: ${res.cold.method ?? `NOT MEASURED (${res.cold.reason})`}`,
    `gammaray: ${res.gammaray.revision}, dist built ${res.gammaray.distBuilt}${res.gammaray.staleBuild.length ? ` (WARNING: stale dist in ${res.gammaray.staleBuild.join(', ')})` : ''}${res.gammaray.rebuiltDuringRun ? ' (WARNING: rebuilt during the run)' : ''}`,
    `machine: nproc ${m.nproc}, ${m.cpuModel}, ${m.memTotalGiB} GiB, ${m.kernel}`,
    `loadavg: start ${res.loadavg.start.map((x) => x.toFixed(2)).join(' ')}, end ${res.loadavg.end.map((x) => x.toFixed(2)).join(' ')}`,
    `versions: node ${m.node}; ${m.tsk}; ${m.e2fsprogs}`,
  );
  return `${out.join('\n')}\n`;
}

function main() {
  const opts = readOptions();
  const loadStart = os.loadavg();
  const startedAt = new Date();
  const revision = gitRevision();
  requireTool('fls', ['-V']);
  requireTool('e2fsck', ['-V']);
  requireTool('mkfs.ext4', ['-V']);
  const staleBuild = ensureBuilt();
  const distBefore = distStamp();
  const image = ensureImage(opts);
  const { img } = image;
  const tools = toolsFor(img);

  note('verification run (stdout captured; also warms the cache)');
  const verification = verify(tools, opts, img);
  note(`  ok: gammaray ${verification.gammarayEntries} entries = fls ${verification.flsRealEntries} + root`);

  const devNull = openSync('/dev/null', 'w');
  let samples;
  let cold;
  try {
    samples = measureWarm(tools, opts.runs, devNull);
    cold = measureCold(tools, opts, img, devNull, samples);
  } finally {
    closeSync(devNull);
  }

  const rebuiltDuringRun = distStamp() !== distBefore;
  if (rebuiltDuringRun) note('WARNING: packages/*/dist changed during the run; the gammaray figures mix two builds, run again');

  const summary = tools.map((t, i) => ({
    name: t.name,
    command: [t.cmd === process.execPath ? 'node' : t.cmd, ...t.args.map((a) => (a === CLI ? relative(REPO, CLI) : a))].join(' '),
    warm: stats(samples[i].warm),
    warmCpu: samples[i].warmCpu.length ? stats(samples[i].warmCpu) : undefined,
    cold: samples[i].cold.length ? stats(samples[i].cold) : undefined,
    coldCpu: samples[i].coldCpu.length ? stats(samples[i].coldCpu) : undefined,
    samples: samples[i],
  }));
  const [g, ...peers] = summary;
  const res = {
    date: startedAt.toISOString(),
    params: { files: opts.files, dirs: opts.dirs, runs: opts.runs },
    image: { path: img, key: image.key, mib: image.mib, built: image.built, buildSeconds: image.buildSeconds },
    gammaray: { revision, staleBuild, rebuiltDuringRun, distBuilt: new Date(distBefore).toISOString() },
    verify: verification,
    cold: { method: cold.method?.detail, reason: cold.reason, residency: cold.residency },
    stdout: '/dev/null (same for every tool); stderr captured',
    tools: summary,
    ratios: peers.map((p) => ({
      peer: p.name,
      warm: g.warm.median / p.warm.median,
      cold: g.cold && p.cold ? g.cold.median / p.cold.median : undefined,
    })),
    machine: machineFacts(),
    loadavg: { start: loadStart, end: os.loadavg() },
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'last.json'), `${JSON.stringify(res, null, 2)}\n`);
  process.stdout.write(table(res));
  note(`results written to ${relative(process.cwd(), join(RESULTS_DIR, 'last.json')) || join(RESULTS_DIR, 'last.json')}`);
}

main();
