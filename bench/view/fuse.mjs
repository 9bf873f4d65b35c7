#!/usr/bin/env node
/**
 * bench/view/fuse: FUSE read throughput of a file through `gammaray view --mount` against the peer, the same file
 * read from a read-only loop mount of the same image by the kernel's ext4, in the same run.
 *
 *   node bench/view/fuse.mjs [--size-mib 100] [--runs 3] [--block-kib 1024] [--dir DIR]
 *
 * Set-up (untimed): an ext4 image holding one file of --size-mib random MiB (mkfs.ext4 -d), a fresh nats-server,
 * `gammaray capture` serving the image, `gammaray inferencer` (its checkpoint is what the view restores), `gammaray
 * view --mount`; the file is read once through the mount and once from the loop mount and both hashes must equal
 * the source's. Then --runs rounds, the order alternating: each side reads the whole file sequentially in
 * --block-kib reads, after `sync` + drop_caches (so the loop side reads the image from disk and the capture answers
 * the view's block reads from disk too: neither is served from the page cache left by the other). The view mounts
 * with direct_io, so its reads never come from the page cache anyway.
 *
 * Needs root (loop mount, drop_caches), /dev/fuse, libfuse2, and `pnpm build` (the CLI runs from its bundle).
 * Standalone it prints a table and writes bench/view/results/fuse-last.json; bench/view/run.mjs imports
 * {@link benchFuseRead} and gets the same figures as an object.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readBenchArgs } from '../lib/args.mjs';
import { startNatsAndCapture } from './stack.mjs';
import { exitAfterChildren, freePort, installExitHandlers, removeOnExit, run, sleep, start, stop as stopChild, median, logHas, waitFor } from '../lib/procs.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const CLI = join(REPO, 'packages', 'cli', 'bin', 'gammaray.js');
const RESULTS_DIR = join(HERE, 'results');
const DISK = 'fusebench';
const FILE = 'big.bin';
const MiB = 1024 * 1024;

const USAGE = `usage: node bench/view/fuse.mjs [--size-mib N] [--runs N] [--block-kib N] [--dir DIR]
  --size-mib   size of the file read (default 100)
  --runs       timed reads of each side (default 3)
  --block-kib  size of each read(2) (default 1024)
  --dir        where the image and the mounts go (default $GAMMARAY_BENCH_DIR or /var/tmp/gammaray-bench)
`;

/** A failure of the bench itself (set-up, a tool, a mismatch): one line, exit 1. */
export class BenchFailure extends Error {}

/**
 * Sets everything up, measures, tears everything down. Returns the figures: MiB/s per run of each side, their
 * medians and the ratio view / loop.
 */
export async function benchFuseRead({ sizeMiB = 100, runs = 3, blockKiB = 1024, dir = process.env.GAMMARAY_BENCH_DIR ?? '/var/tmp/gammaray-bench', note = () => {} } = {}) {
  if (process.getuid?.() !== 0) throw new BenchFailure('bench/view/fuse needs root (a loop mount and drop_caches)');
  if (!existsSync(join(REPO, 'services', 'view', 'dist', 'index.js'))) throw new BenchFailure('services/view is not built: run pnpm build first');
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, 'fuse-'));
  removeOnExit.add(work);
  const cleanups = [];
  try {
    note(`image with a ${sizeMiB} MiB file`);
    const src = join(work, 'src');
    mkdirSync(src);
    const want = writeRandomFile(join(src, FILE), sizeMiB * MiB);
    const image = join(work, 'disk.img');
    await run('mkfs.ext4', ['-q', '-F', '-d', src, image, `${sizeMiB + 64}M`], BenchFailure);
    rmSync(src, { recursive: true, force: true });

    note('nats-server, capture, inferencer, view');
    const natsUrl = await startNatsAndCapture({ cli: CLI, work, image, disk: DISK, cleanups, Failure: BenchFailure });
    const infLog = join(work, 'inferencer.log');
    const inferencer = start('node', [CLI, 'inferencer', '--nats', natsUrl], { logFile: infLog });
    cleanups.push(() => stopChild(inferencer, 10_000));
    await waitFor('gammaray inferencer', inferencer, logHas(infLog, 'inferencer started'), 30_000, infLog, BenchFailure);
    const mnt = join(work, 'view');
    const viewLog = join(work, 'view.log');
    const view = start('node', [CLI, 'view', '--nats', natsUrl, '--grpc', `127.0.0.1:${await freePort()}`, '--mount', mnt], { logFile: viewLog });
    cleanups.push(async () => {
      await stopChild(view, 15_000);
      await run('umount', ['-l', mnt]).catch(() => undefined); // only if the view could not unmount
    });
    const viaView = join(mnt, DISK, FILE);
    await waitFor('gammaray view', view, async () => (await stat(viaView).catch(() => undefined))?.size === sizeMiB * MiB, 90_000, viewLog, BenchFailure);

    const loop = join(work, 'loop');
    mkdirSync(loop);
    await run('mount', ['-t', 'ext4', '-o', 'ro,loop,noload', image, loop], BenchFailure);
    cleanups.push(() => run('umount', ['-d', loop]).catch(() => undefined));
    const viaLoop = join(loop, FILE);

    note('checking content both ways');
    for (const [side, path] of [['view', viaView], ['loop', viaLoop]]) {
      const got = await readAll(path, blockKiB * 1024, true);
      if (got.sha256 !== want) throw new BenchFailure(`${side}: ${FILE} reads with sha256 ${got.sha256}, the source had ${want}`);
    }

    const view_ = [];
    const loop_ = [];
    for (let i = 0; i < runs; i++) {
      const order = i % 2 === 0 ? ['view', 'loop'] : ['loop', 'view'];
      for (const side of order) {
        await dropCaches();
        const r = await readAll(side === 'view' ? viaView : viaLoop, blockKiB * 1024, false);
        const mibps = r.bytes / MiB / r.seconds;
        (side === 'view' ? view_ : loop_).push(mibps);
        note(`run ${i + 1}/${runs} ${side}: ${mibps.toFixed(1)} MiB/s`);
      }
    }
    const viewMiBps = median(view_);
    const loopMiBps = median(loop_);
    return {
      sizeMiB,
      blockKiB,
      runs,
      viewMiBps,
      loopMiBps,
      ratio: viewMiBps / loopMiBps,
      viewRunsMiBps: view_,
      loopRunsMiBps: loop_,
      method: `sequential read(2) of ${blockKiB} KiB into one buffer, whole file, after sync + drop_caches; view: gammaray view --mount (fuse-native, direct_io, reads via NATS block requests to gammaray capture); loop: mount -t ext4 -o ro,loop,noload of the same image`,
    };
  } finally {
    for (const c of cleanups.reverse()) await c();
    rmSync(work, { recursive: true, force: true });
    removeOnExit.delete(work);
  }
}

/** Writes `bytes` random bytes to `path`; returns their sha256. */
function writeRandomFile(path, bytes) {
  const h = createHash('sha256');
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(4 * MiB);
  try {
    for (let left = bytes; left > 0; left -= buf.length) {
      const chunk = buf.subarray(0, Math.min(left, buf.length));
      randomFillSync(chunk);
      h.update(chunk);
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** Reads `path` start to end in `block`-byte reads; times it (and hashes it when asked). */
async function readAll(path, block, hash) {
  const h = hash ? createHash('sha256') : undefined;
  const buf = Buffer.alloc(block);
  const fh = await open(path, 'r');
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, block, bytes);
      if (bytesRead === 0) break;
      h?.update(buf.subarray(0, bytesRead));
      bytes += bytesRead;
    }
  } finally {
    await fh.close();
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { bytes, seconds, sha256: h?.digest('hex') };
}

async function dropCaches() {
  await run('sync', [], BenchFailure);
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}




async function main() {
  const note = (m) => process.stderr.write(`bench/view/fuse: ${m}\n`);
  installExitHandlers(note);
  const { values, int } = readBenchArgs('bench/view/fuse', USAGE, {
    'size-mib': { type: 'string' },
    runs: { type: 'string' },
    'block-kib': { type: 'string' },
    dir: { type: 'string' },
  });
  try {
    const r = await benchFuseRead({ sizeMiB: int('size-mib', 100, 1), runs: int('runs', 3, 1), blockKiB: int('block-kib', 1024, 4), dir: values.dir, note });
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, 'fuse-last.json'), `${JSON.stringify({ at: new Date().toISOString(), ...r }, null, 2)}\n`);
    process.stdout.write(
      [
        `FUSE read of a ${r.sizeMiB} MiB file, ${r.blockKiB} KiB reads, median of ${r.runs} (caches dropped before each)`,
        `  gammaray view --mount   ${r.viewMiBps.toFixed(1).padStart(8)} MiB/s   runs ${r.viewRunsMiBps.map((x) => x.toFixed(1)).join(' ')}`,
        `  loop mount (peer)       ${r.loopMiBps.toFixed(1).padStart(8)} MiB/s   runs ${r.loopRunsMiBps.map((x) => x.toFixed(1)).join(' ')}`,
        `  ratio view/loop         ${r.ratio.toFixed(3).padStart(8)}`,
        '',
      ].join('\n'),
    );
    await exitAfterChildren(0);
  } catch (err) {
    note(err instanceof BenchFailure ? err.message : (err?.stack ?? String(err)));
    await exitAfterChildren(1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
