#!/usr/bin/env node
/**
 * bench/view: how fast `gammaray view` answers Stat and ListDir over gRPC under concurrent load, against the peer
 * measured in the same run: the same requests answered by the kernel's ext4 (lstat(2); readdir(3) + lstat(2) of
 * every entry, as `ls -l` does) on a read-only loop mount of the same image. Then, when bench/view/fuse.mjs is
 * there, FUSE read throughput of a 100 MiB file against the loop mount (its own set-up; see that file).
 *
 *   node bench/view/run.mjs [--dirs N] [--files-per-dir N] [--seconds N] [--concurrency 1,16] [--skip-fuse]
 *                           [--fuse-size-mib N] [--dir DIR]
 *
 * Set-up (untimed): an ext4 image with --dirs directories of --files-per-dir small files each (mkfs.ext4 -d), a
 * fresh nats-server, `gammaray capture` serving the image, `gammaray inferencer` (crawls it and stores the
 * checkpoint the view restores), `gammaray view`; the image is also loop-mounted read-only (`ro,loop,noload`).
 * Each measurement is a separate child process (bench/view/load.mjs) keeping `concurrency` requests in flight for
 * --seconds after a 1 s warm-up; paths cycle through 2,000 random files (Stat) or every directory (ListDir).
 * Order per concurrency: view stat, loop stat, view listdir, loop listdir. The machine's 2 cores are shared by
 * the load process and the server under test (the view, or the kernel) in both cases.
 *
 * Results: a table on stdout (progress on stderr), JSON in bench/view/results/last.json. Needs root (loop mount)
 * and `pnpm build`.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBenchArgs } from '../lib/args.mjs';
import { startNatsAndCapture } from './stack.mjs';
import { exitAfterChildren, freePort, installExitHandlers, removeOnExit, run, sleep, start, stop as stopChild, logHas, waitFor } from '../lib/procs.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const CLI = join(REPO, 'packages', 'cli', 'bin', 'gammaray.js');
const LOAD = join(HERE, 'load.mjs');
const RESULTS_DIR = join(HERE, 'results');
const DISK = 'viewbench';
const STAT_SAMPLE = 2000;

const USAGE = `usage: node bench/view/run.mjs [--dirs N] [--files-per-dir N] [--seconds N] [--concurrency LIST] [--skip-fuse] [--fuse-size-mib N] [--dir DIR]
  --dirs           directories in the image (default 200)
  --files-per-dir  files in each (default 100)
  --seconds        measured seconds per measurement (default 5)
  --concurrency    requests in flight, comma-separated list (default 1,16)
  --skip-fuse      do not run bench/view/fuse.mjs
  --fuse-size-mib  size of the FUSE read file (default 100)
  --dir            where images and mounts go (default $GAMMARAY_BENCH_DIR or /var/tmp/gammaray-bench)
`;

class BenchFailure extends Error {}
const note = (m) => process.stderr.write(`bench/view: ${m}\n`);

/** Deterministic PRNG (mulberry32), so every run stats the same sample. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}



async function load(args) {
  const r = await run('node', [LOAD, ...args], BenchFailure);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  if (out.errors > 0 || out.requests === 0) throw new BenchFailure(`load ${args.join(' ')}: ${out.errors} errors, ${out.requests} requests (${out.firstError ?? 'no error text'})`);
  return out;
}

async function benchGrpc({ dirs, filesPerDir, seconds, concurrencies, dir }) {
  if (process.getuid?.() !== 0) throw new BenchFailure('bench/view needs root (a loop mount)');
  if (!existsSync(join(REPO, 'services', 'view', 'dist', 'index.js'))) throw new BenchFailure('services/view is not built: run pnpm build first');
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, 'grpc-'));
  removeOnExit.add(work);
  const cleanups = [];
  try {
    note(`image with ${dirs} directories of ${filesPerDir} files`);
    const src = join(work, 'src');
    const files = [];
    const dirPaths = [];
    for (let d = 0; d < dirs; d++) {
      const dp = `/d${String(d).padStart(4, '0')}`;
      mkdirSync(join(src, dp), { recursive: true });
      dirPaths.push(dp);
      for (let f = 0; f < filesPerDir; f++) {
        const fp = `${dp}/file-${String(f).padStart(5, '0')}.txt`;
        writeFileSync(join(src, fp), `${fp}\n`);
        files.push(fp);
      }
    }
    const image = join(work, 'disk.img');
    const inodes = dirs * filesPerDir + dirs + 1024;
    const sizeMiB = Math.max(64, Math.ceil((dirs * filesPerDir * 4096 + inodes * 256) / (1 << 20) * 1.5) + 32);
    await run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-N', String(inodes), '-d', src, image, `${sizeMiB}M`], BenchFailure);
    rmSync(src, { recursive: true, force: true });
    const rand = prng(42);
    const sample = Array.from({ length: Math.min(STAT_SAMPLE, files.length) }, () => files[Math.floor(rand() * files.length)]);
    const statPaths = join(work, 'stat-paths.txt');
    writeFileSync(statPaths, `${sample.join('\n')}\n`);
    const dirList = join(work, 'dir-paths.txt');
    writeFileSync(dirList, `${dirPaths.join('\n')}\n`);

    note('nats-server, capture, inferencer, view');
    const natsUrl = await startNatsAndCapture({ cli: CLI, work, image, disk: DISK, cleanups, Failure: BenchFailure });
    const infLog = join(work, 'inferencer.log');
    const inferencer = start('node', [CLI, 'inferencer', '--nats', natsUrl, '--disk', DISK], { logFile: infLog });
    cleanups.push(() => stopChild(inferencer, 10_000));
    await waitFor('gammaray inferencer', inferencer, logHas(infLog, 'disk crawled'), 300_000, infLog, BenchFailure);
    const grpcPort = await freePort();
    const address = `127.0.0.1:${grpcPort}`;
    const viewLog = join(work, 'view.log');
    const view = start('node', [CLI, 'view', '--nats', natsUrl, '--grpc', address], { logFile: viewLog });
    cleanups.push(() => stopChild(view, 10_000));
    await waitFor('gammaray view', view, logHas(viewLog, 'replica restored from checkpoint'), 120_000, viewLog, BenchFailure);
    // The inferencer is idle from here on: no writes arrive. Stop it so it takes no CPU from the measurements.
    await stopChild(inferencer, 10_000);

    const loop = join(work, 'loop');
    mkdirSync(loop);
    await run('mount', ['-t', 'ext4', '-o', 'ro,loop,noload', image, loop], BenchFailure);
    cleanups.push(() => run('umount', ['-d', loop]).catch(() => undefined));

    const results = [];
    for (const concurrency of concurrencies) {
      for (const op of ['stat', 'listdir']) {
        const paths = op === 'stat' ? statPaths : dirList;
        const common = ['--op', op, '--paths', paths, '--concurrency', String(concurrency), '--seconds', String(seconds)];
        const viewR = await load(['--target', 'grpc', '--address', address, '--disk', DISK, ...common]);
        note(`${op} c=${concurrency} view: ${viewR.rps} req/s, p50 ${viewR.p50Ms} ms, p99 ${viewR.p99Ms} ms`);
        const loopR = await load(['--target', 'fs', '--root', loop, ...common]);
        note(`${op} c=${concurrency} loop: ${loopR.rps} req/s, p50 ${loopR.p50Ms} ms, p99 ${loopR.p99Ms} ms`);
        results.push({ op, concurrency, view: viewR, loop: loopR, rpsRatio: viewR.rps / loopR.rps });
      }
    }
    return { dirs, filesPerDir, files: files.length, seconds, results };
  } finally {
    for (const c of cleanups.reverse()) await c();
    rmSync(work, { recursive: true, force: true });
    removeOnExit.delete(work);
  }
}

function table(g) {
  const lines = [`gRPC under load: ${g.files} files in ${g.dirs} directories; ${g.seconds} s per measurement, load from a separate process`];
  lines.push('  op       conc  side    req/s    p50 ms   p90 ms   p99 ms   view/loop req/s');
  for (const r of g.results) {
    for (const side of ['view', 'loop']) {
      const x = r[side];
      const ratio = side === 'view' ? r.rpsRatio.toFixed(3) : '';
      lines.push(`  ${r.op.padEnd(8)} ${String(r.concurrency).padStart(4)}  ${side.padEnd(5)} ${String(x.rps).padStart(8)} ${x.p50Ms.toFixed(3).padStart(9)} ${x.p90Ms.toFixed(3).padStart(8)} ${x.p99Ms.toFixed(3).padStart(8)}   ${ratio}`);
    }
  }
  return lines.join('\n');
}

async function main() {
  installExitHandlers(note);
  const { values, int } = readBenchArgs('bench/view', USAGE, {
    dirs: { type: 'string' },
    'files-per-dir': { type: 'string' },
    seconds: { type: 'string' },
    concurrency: { type: 'string' },
    'skip-fuse': { type: 'boolean', default: false },
    'fuse-size-mib': { type: 'string' },
    dir: { type: 'string' },
  });
  const concurrencies = (values.concurrency ?? '1,16').split(',').map(Number);
  if (concurrencies.some((c) => !Number.isSafeInteger(c) || c < 1)) {
    process.stderr.write(`bench/view: --concurrency must be a comma-separated list of integers >= 1\n${USAGE}`);
    process.exit(2);
  }
  const dir = values.dir ?? process.env.GAMMARAY_BENCH_DIR ?? '/var/tmp/gammaray-bench';
  try {
    const grpc = await benchGrpc({ dirs: int('dirs', 200, 1), filesPerDir: int('files-per-dir', 100, 1), seconds: int('seconds', 5, 1), concurrencies, dir });
    process.stdout.write(`${table(grpc)}\n`);
    let fuse;
    if (!values['skip-fuse'] && existsSync(join(HERE, 'fuse.mjs'))) {
      note('FUSE read throughput (bench/view/fuse.mjs)');
      const { benchFuseRead } = await import('./fuse.mjs');
      fuse = await benchFuseRead({ sizeMiB: int('fuse-size-mib', 100, 1), dir, note: (m) => note(`fuse: ${m}`) });
      process.stdout.write(
        [
          `FUSE read of a ${fuse.sizeMiB} MiB file, ${fuse.blockKiB} KiB reads, median of ${fuse.runs} (caches dropped before each)`,
          `  gammaray view --mount   ${fuse.viewMiBps.toFixed(1).padStart(8)} MiB/s`,
          `  loop mount (peer)       ${fuse.loopMiBps.toFixed(1).padStart(8)} MiB/s`,
          `  ratio view/loop         ${fuse.ratio.toFixed(3).padStart(8)}`,
          '',
        ].join('\n'),
      );
    }
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, 'last.json'), `${JSON.stringify({ at: new Date().toISOString(), command: `node bench/view/run.mjs ${process.argv.slice(2).join(' ')}`.trim(), grpc, fuse }, null, 2)}\n`);
    await exitAfterChildren(0);
  } catch (err) {
    note(err instanceof BenchFailure ? err.message : (err?.stack ?? String(err)));
    await exitAfterChildren(1);
  }
}

await main();
