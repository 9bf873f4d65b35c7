#!/usr/bin/env node
/**
 * bench/infer: how fast the inference engine (`@gammaray/inferencer`) follows a recorded write stream of a
 * metadata-heavy workload, how much memory it keeps per tracked inode, and how long an append in a real guest
 * takes to come out as a `write` event. The peer, measured in the same run on the same writes: `gammaray
 * capture` ingesting them (from the legacy trace format) into JetStream.
 *
 *   node bench/infer/run.mjs [--files N] [--dirs N] [--runs N] [--appends N] [--skip-latency] [--cpu-prof]
 *                            [--cache-dir DIR]
 *
 * 1. Recording (cached in --cache-dir, keyed by the parameters): a fresh ext4 image, a fresh nats-server and
 *    `gammaray capture`, a real guest (test/guest/run-guest, QEMU TCG) creating --files small files in --dirs
 *    directories. The starting image, every record of the stream and the same writes as a legacy trace are kept.
 * 2. Per run, in interleaved order: (a) the records are published into a fresh nats-server (untimed), then a
 *    fresh child process (bench/infer/replay.mjs, so its peak RSS is its own) bootstraps a DiskInferencer from
 *    the starting image and consumes, decodes, applies and encodes everything (timed); the same again with
 *    --publish, where every event is also published to GAMMARAY_EVENTS by the service's EventPublisher and the state
 *    is checkpointed into the service's object store on its schedule, as the service does, and the time runs until
 *    the last event is stored (the speed target is judged on this one); (b) `gammaray capture
 *    --trace` applies the same writes to a copy of the starting image and publishes them to a fresh nats-server
 *    (timed until it exits).
 * 3. Once: guest write -> event publish. nats-server + capture + `gammaray inferencer`, a guest appending a line
 *    every 0.5 s and printing a console marker after each; the latency of each line's `write` event.
 *
 * Results: a table on stdout (progress on stderr), everything as JSON in bench/infer/results/last.json.
 * docs/benchmarks.md explains the figures.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, renameSync,
  rmSync, statSync, writeFileSync, writeSync,
} from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBenchArgs } from '../lib/args.mjs';
import { BenchError, noter, removeAbandoned, runMain } from '../lib/report.mjs';
import { freePort, installExitHandlers, probe, removeOnExit, sleep, start, stop as stopChild, median } from '../lib/procs.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const CLI = join(REPO, 'packages', 'cli', 'bin', 'gammaray.js');
const REPLAY = join(HERE, 'replay.mjs');
const FLOOR = join(HERE, 'event-floor.mjs');
const RUN_GUEST = join(REPO, 'test', 'guest', 'run-guest');
const RESULTS_DIR = join(HERE, 'results');
const NATS_SERVER = process.env.NATS_SERVER ?? 'nats-server';
/** Packages whose dist the measured code runs from, checked for sources newer than the build. */
const BUILT = ['packages/disk', 'packages/ext4', 'packages/wire', 'packages/inferencer', 'packages/nbd', 'packages/capture', 'packages/cli', 'services/capture', 'services/inferencer'];

/**
 * The node flags the inferencer's image runs with (its Dockerfile's exec-form ENTRYPOINT, between `node` and the
 * script): the replay and the latency run's inferencer run with them too, so the bench measures what is deployed.
 */
function deployedNodeFlags() {
  const text = readFileSync(join(REPO, 'services', 'inferencer', 'Dockerfile'), 'utf8');
  const line = text.split('\n').filter((l) => l.startsWith('ENTRYPOINT ')).pop();
  const args = line ? JSON.parse(line.slice('ENTRYPOINT '.length)) : [];
  if (args[0] !== 'node') throw new BenchError(`services/inferencer/Dockerfile: expected an exec-form ENTRYPOINT running node, got ${line}`);
  return args.slice(1).filter((a) => a.startsWith('--'));
}
const INFERENCER_NODE_FLAGS = deployedNodeFlags();

/** The service's default checkpoint interval (services/inferencer config), which the publishing replay follows. */
const DEFAULT_CHECKPOINT_S = 2;
const DEFAULT_FILES = 50_000;
const DEFAULT_DIRS = 50;
const DEFAULT_RUNS = 3;
const DEFAULT_APPENDS = 30;
const DEFAULT_CACHE_DIR = process.env.GAMMARAY_BENCH_DIR ?? '/var/tmp/gammaray-bench';
/** Bump when the workload, the mkfs options or the cached files change, so recordings are made again. */
const RECORDING_FORMAT = 1;
const DISK = 'bench';
const LATENCY_DISK = 'lat';
/** Inodes beyond files + dirs (the issue's example: -N 80000 for 50,000 files). */
const SPARE_INODES = 30_000;
/** Image bytes per file (one 4 KiB block, its inode, slack), rounded up to a power of two MiB; at least 512 MiB. */
const BYTES_PER_FILE = 8 * 1024;
const MIN_IMAGE_MIB = 512;
const LATENCY_IMAGE_MIB = 64;
const APPEND_INTERVAL_S = 0.5;
/** Guest runs: boot ~10 s; 50,000 creations under TCG take a minute or two. */
const RECORD_TIMEOUT_S = 1800;
const LATENCY_TIMEOUT_S = 300;
/** Outstanding publishes when loading the records into a fresh stream (untimed). */
const PUBLISH_WINDOW = 128;
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 30_000;
/** After the guest powers off: how long to wait for the events of the last lines. */
const EVENT_GRACE_MS = 15_000;
/** The legacy trace: int64 LE sector, int32 LE sector count, count * 512 bytes. */
const SECTOR = 512;
const MAX_TRACE_SECTORS = (32 * 1024 * 1024) / SECTOR;
const MIB = 1024 * 1024;
/** Targets from the issue. */
const TARGET_SPEED_RATIO = 1;
const TARGET_RSS_PER_INODE = 300;

const USAGE = `usage: node bench/infer/run.mjs [--files N] [--dirs N] [--runs N] [--appends N] [--skip-latency] [--cpu-prof] [--cache-dir DIR]

  --files N        small files the recorded guest creates (default ${DEFAULT_FILES})
  --dirs N         directories they are spread over (default ${DEFAULT_DIRS})
  --runs N         replay and capture runs, interleaved; medians are reported (default ${DEFAULT_RUNS})
  --appends N      appends of the latency guest, one every ${APPEND_INTERVAL_S} s (default ${DEFAULT_APPENDS})
  --skip-latency   do not run the guest write -> event latency phase
  --cpu-prof       write a V8 CPU profile of each replay child to bench/infer/results/
  --cache-dir DIR  where recordings are kept and reused (default ${DEFAULT_CACHE_DIR}, env GAMMARAY_BENCH_DIR)
`;

const note = noter('bench/infer');


function readOptions() {
  const { values: v, int } = readBenchArgs('bench/infer', USAGE, {
    files: { type: 'string' },
    dirs: { type: 'string' },
    runs: { type: 'string' },
    appends: { type: 'string' },
    'skip-latency': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    'cache-dir': { type: 'string' },
  });
  const files = int('files', DEFAULT_FILES, 1);
  const dirs = int('dirs', DEFAULT_DIRS, 1);
  if (dirs > files) {
    process.stderr.write(`bench/infer: --dirs (${dirs}) must not exceed --files (${files})\n`);
    process.exit(2);
  }
  return {
    files,
    dirs,
    runs: int('runs', DEFAULT_RUNS, 1),
    appends: int('appends', DEFAULT_APPENDS, 1),
    skipLatency: v['skip-latency'],
    cpuProf: v['cpu-prof'],
    cacheDir: v['cache-dir'] ?? DEFAULT_CACHE_DIR,
  };
}

// ---- processes and clean-up (bench/lib/procs.mjs) ---------------------------------------------------------

installExitHandlers(note);
const stop = (child, timeoutMs = STOP_TIMEOUT_MS) => stopChild(child, timeoutMs);

function tail(file, lines = 20) {
  return existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : '';
}

async function waitUntil(what, child, logFile, ready, timeoutMs = READY_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (await ready()) return;
    await sleep(50);
  }
  throw new BenchError(`${what} did not become ready (exit ${child.exitCode ?? child.signalCode ?? 'none'}); log tail:\n${tail(logFile)}`);
}

const logHas = (file, text) => async () => existsSync(file) && readFileSync(file, 'utf8').includes(text);

/** CPU seconds (user + system) of this process's waited-for children so far (/proc/self/stat cutime + cstime). */
function childCpuSeconds() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / CLK_TCK;
}

function probeText(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return undefined;
  return `${r.stdout}${r.stderr}`.trim().split('\n')[0];
}

const CLK_TCK = Number(probeText('getconf', ['CLK_TCK'])) || 100;

function runSync(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new BenchError(`${cmd} could not run: ${r.error.message}`);
  if (r.status !== 0) throw new BenchError(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${r.stderr}${r.stdout}`.trim());
  return r;
}

/** A copy of a (sparse) image that stays sparse. */
function copyImage(from, to) {
  runSync('cp', ['--sparse=always', from, to]);
}

// ---- servers ---------------------------------------------------------------------------------------------

let nats; // @nats-io modules, loaded after the build check
let wire; // @gammaray/wire
let inferencer; // @gammaray/inferencer

async function loadModules() {
  const [transport, js, core] = await Promise.all([import('@nats-io/transport-node'), import('@nats-io/jetstream'), import('@nats-io/nats-core')]);
  nats = { ...transport, ...js, nanos: core.nanos };
  wire = await import('@gammaray/wire');
  inferencer = await import('@gammaray/inferencer');
}

async function startNats(dir) {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const logFile = join(dir, 'nats-server.log');
  const child = start(NATS_SERVER, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', join(dir, 'jetstream')], { logFile });
  await waitUntil('nats-server', child, logFile, () => probe(port, 'INFO'));
  const url = `nats://127.0.0.1:${port}`;
  const nc = await nats.connect({ servers: url, noAsyncTraces: true });
  const jsm = await nats.jetstreamManager(nc);
  return {
    child,
    url,
    nc,
    jsm,
    async close() {
      await nc.close().catch(() => undefined);
      await stop(child);
    },
  };
}

async function startCapture(dir, natsUrl, disk, image) {
  const port = await freePort();
  const logFile = join(dir, `capture-${disk}.log`);
  const child = start(process.execPath, [CLI, 'capture', '--nats', natsUrl, '--listen', `127.0.0.1:${port}`, '--disk', `${disk}=${image}`], { logFile });
  await waitUntil('gammaray capture', child, logFile, logHas(logFile, 'serving NBD'));
  return { child, url: `nbd://127.0.0.1:${port}/${disk}`, logFile };
}

/** Stream GAMMARAY_WRITES as capture creates it (packages/capture ensureWritesStream). */
async function createWritesStream(jsm) {
  await jsm.streams.add({
    name: wire.STREAM_WRITES,
    subjects: [wire.WRITES_WILDCARD],
    storage: nats.StorageType.File,
    retention: nats.RetentionPolicy.Limits,
    discard: nats.DiscardPolicy.Old,
    num_replicas: 1,
    duplicate_window: nats.nanos(2 * 60 * 1000),
    max_age: 0,
    max_bytes: -1,
    max_msg_size: MIB,
  });
}

// ---- the guest -------------------------------------------------------------------------------------------

/**
 * Boots the guest harness on `nbdUrl` with `workload`; `onLine(line, hostMs)` sees each console line as it
 * arrives. Its own process group (QEMU included), its temp files under `dir`. Resolves with the exit status.
 */
async function runGuest(dir, nbdUrl, workload, timeoutS, onLine) {
  const workloadFile = join(dir, 'workload.sh');
  writeFileSync(workloadFile, workload);
  const consoleFile = join(dir, 'guest-console.log');
  const consoleFd = openSync(consoleFile, 'w');
  const guestTmp = join(dir, 'guest-tmp');
  mkdirSync(guestTmp, { recursive: true });
  let partial = '';
  const child = start(RUN_GUEST, ['--nbd', nbdUrl, '--workload', workloadFile, '--timeout', String(timeoutS)], {
    group: true,
    forwardStderr: 'bench/infer: guest: ',
    env: { ...process.env, TMPDIR: guestTmp },
    onStdout: (text) => {
      const now = Date.now();
      writeSync(consoleFd, text);
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const l of lines) onLine?.(l.replace(/\r$/, ''), now);
    },
  });
  const t0 = performance.now();
  const r = await child.done;
  closeSync(consoleFd);
  const seconds = (performance.now() - t0) / 1000;
  if (r.error) throw new BenchError(`run-guest could not run: ${r.error.message}`);
  if (r.code !== 0) throw new BenchError(`the guest workload failed (status ${r.code ?? r.signal}); console tail (${consoleFile}):\n${tail(consoleFile, 30)}\n${r.stderr}`);
  return { seconds };
}

// ---- recording -------------------------------------------------------------------------------------------

function imageMiB(files) {
  return Math.max(MIN_IMAGE_MIB, 2 ** Math.ceil(Math.log2((files * BYTES_PER_FILE) / MIB)));
}

function mkfsArgs(o, image, mib) {
  // lazy init off: the guest's ext4lazyinit would otherwise zero the inode tables in the background while the
  // workload runs (a VM's disk was initialised long before anyone watches it).
  return ['-q', '-F', '-b', '4096', '-I', '256', '-N', String(o.files + o.dirs + SPARE_INODES), '-E', 'lazy_itable_init=0,lazy_journal_init=0', image, `${mib}M`];
}

/** The guest workload: `files` small files (`echo` into each) spread evenly over `dirs` directories. */
function createWorkload(o) {
  const lines = [
    'set -e',
    'mk() {',
    '  mkdir "$1"',
    '  i=0',
    '  while [ $i -lt $2 ]; do echo "gammaray bench file $1/$i" > "$1/f$i"; i=$((i+1)); done',
    '  echo "BENCH-DIR $1 $2"',
    '}',
  ];
  for (let d = 0; d < o.dirs; d++) lines.push(`mk d${d} ${Math.floor(o.files / o.dirs) + (d < o.files % o.dirs ? 1 : 0)}`);
  lines.push('sync', 'exit 0', '');
  return lines.join('\n');
}

/**
 * The cached records file: per record, its stream sequence (uint64 LE), its length (uint32 LE) and the raw
 * BSON message exactly as it was in GAMMARAY_WRITES.
 */
function* readRecordsFile(path) {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(12);
    let at = 0;
    while (at < size) {
      if (readSync(fd, head, 0, 12, at) !== 12) throw new BenchError(`${path}: truncated at ${at}`);
      const seq = Number(head.readBigUInt64LE(0));
      const len = head.readUInt32LE(8);
      const data = Buffer.allocUnsafe(len);
      if (readSync(fd, data, 0, len, at + 12) !== len) throw new BenchError(`${path}: truncated record at ${at}`);
      at += 12 + len;
      yield { seq, data };
    }
  } finally {
    closeSync(fd);
  }
}

/** Appends one write to a legacy trace: header (sector, count) and the bytes. */
function traceWrite(fd, offset, data) {
  if (offset % SECTOR !== 0 || data.length % SECTOR !== 0) throw new BenchError(`write ${offset}+${data.length} is not sector-aligned; the legacy trace cannot hold it`);
  const head = Buffer.alloc(12);
  head.writeBigInt64LE(BigInt(offset / SECTOR), 0);
  head.writeInt32LE(data.length / SECTOR, 8);
  writeSync(fd, head);
  writeSync(fd, data);
}

/**
 * Reads every record of the disk from the stream into the records file, writes the same writes as a legacy trace
 * (zero ops become writes of zeros, which is what they read as; trims and flushes have no trace form), and counts.
 */
async function dumpStream(n, recordsFile, traceFile) {
  const info = await n.jsm.streams.info(wire.STREAM_WRITES);
  const want = info.state.messages;
  const c = await nats.jetstream(n.nc).consumers.get(wire.STREAM_WRITES, { filter_subjects: wire.writesSubject(DISK) });
  const rfd = openSync(recordsFile, 'w');
  const tfd = openSync(traceFile, 'w');
  const s = { records: 0, recordBytes: 0, firstSeq: 0, lastSeq: 0, ops: { write: 0, zero: 0, trim: 0, flush: 0 }, writeBytes: 0, zeroBytes: 0, trimBytes: 0, largestRecord: 0 };
  try {
    while (s.records < want) {
      const it = await c.fetch({ max_messages: Math.min(16, want - s.records), expires: 5000 });
      for await (const m of it) {
        const head = Buffer.alloc(12);
        head.writeBigUInt64LE(BigInt(m.seq), 0);
        head.writeUInt32LE(m.data.length, 8);
        writeSync(rfd, head);
        writeSync(rfd, m.data);
        s.records++;
        s.recordBytes += m.data.length;
        s.largestRecord = Math.max(s.largestRecord, m.data.length);
        if (s.firstSeq === 0) s.firstSeq = m.seq;
        s.lastSeq = m.seq;
        for (const op of wire.decodeWriteRecord(m.data).ops) {
          s.ops[op.op]++;
          if (op.op === 'write') {
            s.writeBytes += op.length;
            traceWrite(tfd, op.offset, op.data);
          } else if (op.op === 'zero') {
            s.zeroBytes += op.length;
            const chunk = MAX_TRACE_SECTORS * SECTOR;
            for (let at = 0; at < op.length; at += chunk) traceWrite(tfd, op.offset + at, new Uint8Array(Math.min(chunk, op.length - at)));
          } else if (op.op === 'trim') {
            s.trimBytes += op.length;
          }
        }
      }
    }
  } finally {
    closeSync(rfd);
    closeSync(tfd);
  }
  s.traceBytes = statSync(traceFile).size;
  return s;
}

/**
 * Returns the cached recording for these parameters, making it first if needed (~1-2 min of guest): the starting
 * image, the records file, the trace file, and what was recorded (meta.json).
 */
async function ensureRecording(o, tmpRoot) {
  const mib = imageMiB(o.files);
  const key = `infer-v${RECORDING_FORMAT}-f${o.files}-d${o.dirs}-${mib}M`;
  const dir = join(o.cacheDir, key);
  const files = { dir, key, start: join(dir, 'start.img'), records: join(dir, 'records.bin'), trace: join(dir, 'writes.trace'), meta: join(dir, 'meta.json') };
  if (existsSync(files.meta)) {
    note(`reusing the recording in ${dir}`);
    return { ...files, meta: JSON.parse(readFileSync(files.meta, 'utf8')), made: false };
  }
  mkdirSync(o.cacheDir, { recursive: true });
  removeAbandoned(o.cacheDir, note, 'recording');
  const tmp = `${dir}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  removeOnExit.add(tmp);
  note(`recording ${key}: a guest creating ${o.files} files in ${o.dirs} directories (once; later runs reuse it)`);
  const t0 = performance.now();
  const live = join(tmp, 'live.img');
  const args = mkfsArgs(o, live, mib);
  runSync('mkfs.ext4', args);
  copyImage(live, join(tmp, 'start.img'));
  const runDir = join(tmpRoot, 'record');
  mkdirSync(runDir, { recursive: true });
  const n = await startNats(join(runDir, 'nats'));
  let guest;
  let stream;
  try {
    const cap = await startCapture(runDir, n.url, DISK, live);
    let dirsDone = 0;
    guest = await runGuest(runDir, cap.url, createWorkload(o), RECORD_TIMEOUT_S, (line) => {
      if (line.startsWith('BENCH-DIR ') && ++dirsDone % Math.max(1, Math.round(o.dirs / 10)) === 0) note(`  guest: ${dirsDone}/${o.dirs} directories`);
    });
    note(`  guest done in ${guest.seconds.toFixed(0)} s; stopping capture`);
    const r = await stop(cap.child);
    if (r.code !== 0) throw new BenchError(`capture exited ${r.code ?? r.signal}; log tail:\n${tail(cap.logFile)}`);
    stream = await dumpStream(n, join(tmp, 'records.bin'), join(tmp, 'writes.trace'));
  } finally {
    await n.close();
  }
  // The guest's result, checked by the kernel's own tools: a clean file system holding every file.
  const fsck = spawnSync('e2fsck', ['-fn', live], { encoding: 'utf8' });
  if (fsck.status !== 0) throw new BenchError(`e2fsck -fn on the recorded image exited ${fsck.status}:\n${fsck.stdout}${fsck.stderr}`);
  const used = /(\d+)\/(\d+) files/.exec(fsck.stdout);
  const inodesUsed = used ? Number(used[1]) : NaN;
  if (!(inodesUsed >= o.files + o.dirs)) throw new BenchError(`the recorded image has ${inodesUsed} inodes in use, fewer than ${o.files} files + ${o.dirs} dirs`);
  rmSync(live);
  const meta = {
    format: RECORDING_FORMAT,
    recordedAt: new Date().toISOString(),
    files: o.files,
    dirs: o.dirs,
    imageMiB: mib,
    mkfs: `mkfs.ext4 ${mkfsArgs(o, 'IMG', mib).join(' ')}`,
    workload: `busybox sh: per directory "mkdir dN", then N x 'echo "gammaray bench file dN/i" > dN/fi'; sync`,
    guestSeconds: guest.seconds,
    recordSeconds: (performance.now() - t0) / 1000,
    e2fsckInodesUsed: inodesUsed,
    gammaray: gitRevision(),
    kernel: guestKernel(),
    ...stream,
  };
  writeFileSync(join(tmp, 'meta.json'), `${JSON.stringify(meta, null, 2)}\n`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  removeOnExit.delete(tmp);
  rmSync(runDir, { recursive: true, force: true });
  note(`  recorded ${meta.records} records (${(meta.recordBytes / 1e6).toFixed(1)} MB) in ${meta.recordSeconds.toFixed(0)} s -> ${dir}`);
  return { ...files, meta, made: true };
}

function guestKernel() {
  const r = spawnSync(RUN_GUEST, ['build-initramfs'], { encoding: 'utf8' });
  return /kernel=(\S+)/.exec(r.stdout ?? '')?.[1] ?? 'unknown';
}

// ---- (a) replay: the inferencer ----------------------------------------------------------------------------

/** Loads the records into a fresh stream, pipelined (untimed). */
async function publishRecords(n, rec) {
  await createWritesStream(n.jsm);
  const js = nats.jetstream(n.nc, { timeout: 30_000 });
  const subject = wire.writesSubject(DISK);
  const pending = [];
  let sent = 0;
  for (const r of readRecordsFile(rec.records)) {
    if (pending.length >= PUBLISH_WINDOW) await pending.shift();
    pending.push(js.publish(subject, r.data));
    sent++;
  }
  await Promise.all(pending);
  const info = await n.jsm.streams.info(wire.STREAM_WRITES);
  if (info.state.messages !== rec.meta.records || sent !== rec.meta.records) {
    throw new BenchError(`publishing the recording: stream holds ${info.state.messages} messages, sent ${sent}, recorded ${rec.meta.records}`);
  }
}

async function replayRun(ctx, rec, o, publish = false) {
  const what = publish ? 'infer+publish' : 'infer';
  const dir = join(ctx.runDir, publish ? 'infer-publish' : 'infer');
  const n = await startNats(join(dir, 'nats'));
  try {
    const p0 = performance.now();
    await publishRecords(n, rec);
    note(`run ${ctx.run} ${what}: ${rec.meta.records} records loaded into a fresh stream in ${((performance.now() - p0) / 1000).toFixed(1)} s (untimed)`);
    const nodeArgs = [...INFERENCER_NODE_FLAGS, '--expose-gc'];
    if (o.cpuProf) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', RESULTS_DIR, '--cpu-prof-name', `${publish ? 'infer-publish' : 'infer'}-run${ctx.run}.cpuprofile`);
    const args = [...nodeArgs, REPLAY, '--nats', n.url, '--image', rec.start, '--disk', DISK, '--records', String(rec.meta.records), '--files', String(o.files)];
    if (publish) args.push('--publish');
    const cpu0 = childCpuSeconds();
    const t0 = performance.now();
    const child = start(process.execPath, args, { capture: true, forwardStderr: `bench/infer: run ${ctx.run}: ` });
    const r = await child.done;
    const wall = (performance.now() - t0) / 1000;
    if (r.error || r.code !== 0) throw new BenchError(`the replay child failed (${r.error?.message ?? `exit ${r.code ?? r.signal}`}):\n${r.stderr.split('\n').slice(-20).join('\n')}`);
    const res = JSON.parse(r.stdout.trim().split('\n').pop());
    res.processSeconds = wall;
    res.processCpuSeconds = childCpuSeconds() - cpu0;
    res.writeBytes = rec.meta.writeBytes + rec.meta.zeroBytes;
    derive(res);
    checkEvents(res, o);
    if (publish) {
      // The same events published alone, on the same server: the least time any engine could take (see event-floor.mjs).
      const floor = start(process.execPath, [FLOOR, '--nats', n.url, '--events', String(res.events)], { capture: true, forwardStderr: `bench/infer: run ${ctx.run}: ` });
      const fr = await floor.done;
      if (fr.error || fr.code !== 0) throw new BenchError(`the event-floor child failed (${fr.error?.message ?? `exit ${fr.code ?? fr.signal}`}):\n${fr.stderr.split('\n').slice(-20).join('\n')}`);
      const f = JSON.parse(fr.stdout.trim().split('\n').pop());
      res.floorSeconds = f.seconds;
      res.floorEventsPerS = f.eventsPerS;
      res.floorCpuSeconds = f.cpuSeconds;
      note(`run ${ctx.run} event publishing alone: ${f.events} events in ${f2(f.seconds)} s (${f0(f.eventsPerS)}/s)`);
    }
    note(`run ${ctx.run} ${what}: ${fmtInfer(res)}`);
    return res;
  } finally {
    await n.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Rates and per-inode figures of one replay. */
function derive(r) {
  r.recordsPerS = r.records / r.totalSeconds;
  r.mbPerS = r.recordBytes / 1e6 / r.totalSeconds;
  r.eventsPerS = r.events / r.totalSeconds;
  r.streamRecordsPerS = r.records / r.streamSeconds;
  r.streamMbPerS = r.recordBytes / 1e6 / r.streamSeconds;
  r.rssPerInode = r.maxRss / r.trackedInodes;
  r.rssDeltaPerInode = (r.maxRss - r.rssBaseline) / r.trackedInodes;
  r.retainedPerInode = r.retainedBytes / r.trackedInodes;
}

/** Every file the guest created must have come out as a create event: anything else is an engine bug. */
function checkEvents(r, o) {
  const creates = r.kinds.create ?? 0;
  const problems = [];
  if (creates < o.files) problems.push(`${creates} create events for ${o.files} files the guest created`);
  if (r.trackedInodes < o.files + o.dirs) problems.push(`${r.trackedInodes} tracked inodes, fewer than ${o.files} files + ${o.dirs} dirs`);
  if ((r.kinds.corrupt ?? 0) > 0) problems.push(`${r.kinds.corrupt} corrupt events on a clean guest's stream`);
  if (problems.length === 0) return;
  const bar = '!'.repeat(78);
  process.stderr.write(`\n${bar}\n!!! bench/infer: WRONG EVENTS from the inferencer\n${problems.map((p) => `!!! ${p}`).join('\n')}\n!!! events by kind: ${JSON.stringify(r.kinds)}\n${bar}\n\n`);
  throw new BenchError('the replay did not report every created file (see above)');
}

// ---- (b) the peer: capture ingesting the same writes ---------------------------------------------------------

/** pino's `time` (ms since the epoch) of the first log line with message `msg`. */
function logTime(file, msg) {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line);
      if (j.msg === msg) return j;
    } catch {
      // not a log line
    }
  }
  return undefined;
}

async function captureRun(ctx, rec) {
  const dir = join(ctx.runDir, 'capture');
  mkdirSync(dir, { recursive: true });
  const n = await startNats(join(dir, 'nats'));
  try {
    const image = join(dir, 'image.img');
    copyImage(rec.start, image);
    const logFile = join(dir, 'capture.log');
    const cpu0 = childCpuSeconds();
    const t0 = performance.now();
    const child = start(process.execPath, [CLI, 'capture', '--nats', n.url, '--trace', rec.trace, '--disk', `${DISK}=${image}`], { logFile });
    const r = await child.done;
    const processSeconds = (performance.now() - t0) / 1000;
    const processCpuSeconds = childCpuSeconds() - cpu0;
    if (r.error || r.code !== 0) throw new BenchError(`gammaray capture --trace exited ${r.error?.message ?? r.code ?? r.signal}; log tail:\n${tail(logFile)}`);
    const attached = logTime(logFile, 'disk attached');
    const applied = logTime(logFile, 'trace applied');
    if (!attached || !applied) throw new BenchError(`capture log lacks "disk attached" or "trace applied":\n${tail(logFile)}`);
    const info = await n.jsm.streams.info(wire.STREAM_WRITES);
    const writeBytes = rec.meta.writeBytes + rec.meta.zeroBytes;
    // Every write must be in the stream: it holds at least the bytes of the trace's data.
    if (info.state.bytes < writeBytes) throw new BenchError(`capture --trace: the stream holds ${info.state.bytes} bytes, less than the ${writeBytes} bytes of writes`);
    const ingestSeconds = (applied.time - attached.time) / 1000;
    const res = {
      processSeconds,
      processCpuSeconds,
      ingestSeconds,
      traceRecords: applied.records,
      streamMessages: info.state.messages,
      streamBytes: info.state.bytes,
      writeBytes,
      mbPerS: writeBytes / 1e6 / ingestSeconds,
      processMbPerS: writeBytes / 1e6 / processSeconds,
    };
    note(`run ${ctx.run} capture: ${fmtCapture(res)}`);
    return res;
  } finally {
    await n.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- (c) latency: guest append -> write event --------------------------------------------------------------

function latencyWorkload(appends) {
  return [
    'i=1',
    `while [ $i -le ${appends} ]; do`,
    '  echo "gammaray latency line $i" >> /mnt/append.log',
    '  echo "APPEND $i"',
    `  sleep ${APPEND_INTERVAL_S}`,
    '  i=$((i+1))',
    'done',
    'exit 0',
    '',
  ].join('\n');
}

async function latencyPhase(o, tmpRoot) {
  const dir = join(tmpRoot, 'latency');
  mkdirSync(dir, { recursive: true });
  const image = join(dir, 'lat.img');
  runSync('mkfs.ext4', ['-q', '-F', '-b', '4096', image, `${LATENCY_IMAGE_MIB}M`]);
  const n = await startNats(join(dir, 'nats'));
  let cap;
  let inf;
  try {
    cap = await startCapture(dir, n.url, LATENCY_DISK, image);
    const infLog = join(dir, 'inferencer.log');
    inf = start(process.execPath, [...INFERENCER_NODE_FLAGS, CLI, 'inferencer', '--nats', n.url], { logFile: infLog });
    await waitUntil('gammaray inferencer (crawl of the latency disk)', inf, infLog, logHas(infLog, 'disk crawled'));
    const line = /gammaray latency line (\d+)\n/g;
    const events = new Map(); // line -> { arrival, ts, seq }
    const kinds = {};
    const sub = n.nc.subscribe(`gammaray.${LATENCY_DISK}.fs.>`, {
      callback: (err, m) => {
        const arrival = Date.now();
        if (err) return;
        const e = inferencer.decodeEvent(m.data);
        kinds[e.kind] = (kinds[e.kind] ?? 0) + 1;
        if (e.kind !== 'write' || e.path !== '/append.log' || !e.data) return;
        for (const hit of Buffer.from(e.data).toString('latin1').matchAll(line)) {
          const k = Number(hit[1]);
          if (!events.has(k)) events.set(k, { arrival, ts: e.ts.getTime(), seq: e.seq });
        }
      },
    });
    await n.nc.flush();
    const markers = new Map();
    note(`latency: guest appending ${o.appends} lines, one every ${APPEND_INTERVAL_S} s (default mount options)`);
    const guest = await runGuest(dir, cap.url, latencyWorkload(o.appends), LATENCY_TIMEOUT_S, (l, now) => {
      const m = /^APPEND (\d+)$/.exec(l);
      if (m && !markers.has(Number(m[1]))) markers.set(Number(m[1]), now);
    });
    const deadline = Date.now() + EVENT_GRACE_MS;
    while (events.size < o.appends && Date.now() < deadline) await sleep(100);
    sub.unsubscribe();
    const samples = [];
    for (let k = 1; k <= o.appends; k++) {
      const mk = markers.get(k);
      const ev = events.get(k);
      if (mk === undefined || ev === undefined) continue;
      samples.push({ line: k, guestToEventMs: ev.arrival - mk, captureToEventMs: ev.arrival - ev.ts, guestToCaptureMs: ev.ts - mk, seq: ev.seq });
    }
    const missing = [];
    for (let k = 1; k <= o.appends; k++) if (!markers.has(k) || !events.has(k)) missing.push(k);
    const res = {
      appends: o.appends,
      intervalS: APPEND_INTERVAL_S,
      markers: markers.size,
      linesWithEvent: events.size,
      missing,
      eventKinds: kinds,
      distinctSeqs: new Set(samples.map((s) => s.seq)).size,
      guestSeconds: guest.seconds,
      guestToEvent: pct(samples.map((s) => s.guestToEventMs)),
      captureToEvent: pct(samples.map((s) => s.captureToEventMs)),
      guestToCapture: pct(samples.map((s) => s.guestToCaptureMs)),
      samples,
    };
    if (missing.length > 0) note(`latency: WARNING: no write event (or no console marker) for line(s) ${missing.join(', ')}`);
    note(`latency: ${samples.length} lines; guest -> event p50 ${f0(res.guestToEvent.p50)} ms, p99 ${f0(res.guestToEvent.p99)} ms; capture -> event p50 ${f0(res.captureToEvent.p50)} ms, p99 ${f0(res.captureToEvent.p99)} ms`);
    return res;
  } finally {
    if (inf) await stop(inf);
    if (cap) await stop(cap.child);
    await n.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Nearest-rank percentiles. */
function pct(xs) {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return { n: 0, p50: NaN, p99: NaN, max: NaN, min: NaN };
  const at = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  return { n: s.length, min: s[0], p50: at(50), p99: at(99), max: s[s.length - 1] };
}

// ---- reporting -------------------------------------------------------------------------------------------

const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const fx = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-');
const mb = (x) => (Number.isFinite(x) ? (x / 1e6).toFixed(1) : '-');

function fmtInfer(r) {
  return `bootstrap ${f2(r.bootstrapSeconds)} s + stream ${f2(r.streamSeconds)} s: ${f0(r.recordsPerS)} records/s, ${f1(r.mbPerS)} MB/s, ${f0(r.eventsPerS)} events/s; ${f0(r.events)} events, ${f0(r.trackedInodes)} inodes, peak RSS ${mb(r.maxRss)} MB (baseline ${mb(r.rssBaseline)} MB): ${f0(r.rssPerInode)} B/inode raw, ${f0(r.rssDeltaPerInode)} B/inode above baseline`;
}

function fmtCapture(r) {
  return `ingest ${f2(r.ingestSeconds)} s (${f1(r.mbPerS)} MB/s of writes), process ${f2(r.processSeconds)} s; stream ${r.streamMessages} records, ${mb(r.streamBytes)} MB`;
}


function stats(list, field) {
  const xs = list.map((s) => s[field]);
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

const rng = (s, f) => `${f(s.median)} (${f(s.min)}-${f(s.max)})`;

function report(o, rec, facts, samples, latency, load0, load1, started, seconds) {
  const inf = samples.infer;
  const pub = samples.inferPublish;
  const cap = samples.capture;
  const S = (field) => stats(inf, field);
  const P = (field) => stats(pub, field);
  const C = (field) => stats(cap, field);
  const inferFields = ['totalSeconds', 'bootstrapSeconds', 'streamSeconds', 'processSeconds', 'cpuSeconds', 'recordsPerS', 'mbPerS', 'eventsPerS', 'streamRecordsPerS', 'streamMbPerS', 'events', 'trackedInodes', 'maxRss', 'rssBaseline', 'rssPerInode', 'rssDeltaPerInode', 'retainedPerInode'];
  const summary = {
    infer: Object.fromEntries(inferFields.map((f) => [f, S(f)])),
    inferPublish: Object.fromEntries([...inferFields, 'publishDrainSeconds', 'floorSeconds', 'floorEventsPerS', 'floorCpuSeconds', 'checkpointCount', 'checkpointSeconds', 'checkpointBytes'].map((f) => [f, P(f)])),
    capture: Object.fromEntries(['ingestSeconds', 'processSeconds', 'processCpuSeconds', 'mbPerS', 'processMbPerS'].map((f) => [f, C(f)])),
  };
  const ratios = {
    // Both in-process windows: capture from "disk attached" to "trace applied", inference bootstrap + stream
    // (+ until every event is stored, for the service-like replay).
    speed: summary.capture.ingestSeconds.median / summary.inferPublish.totalSeconds.median,
    speedEngine: summary.capture.ingestSeconds.median / summary.infer.totalSeconds.median,
    // The highest `speed` any engine could reach: its events alone take floorSeconds to store.
    speedFloor: summary.capture.ingestSeconds.median / summary.inferPublish.floorSeconds.median,
    speedStreamOnly: summary.capture.ingestSeconds.median / summary.infer.streamSeconds.median,
    speedWholeProcess: summary.capture.processSeconds.median / summary.infer.processSeconds.median,
  };
  // Judged on the replay that does what the service does (events published and stored), the worse of the two.
  const rss = summary.inferPublish.rssDeltaPerInode.median >= summary.infer.rssDeltaPerInode.median ? summary.inferPublish : summary.infer;
  const targets = {
    speed: { target: `> ${TARGET_SPEED_RATIO}x`, measured: ratios.speed, met: ratios.speed > TARGET_SPEED_RATIO },
    rssPerInode: { target: `<= ${TARGET_RSS_PER_INODE} B`, measured: rss.rssDeltaPerInode.median, raw: rss.rssPerInode.median, met: rss.rssDeltaPerInode.median <= TARGET_RSS_PER_INODE, metRaw: rss.rssPerInode.median <= TARGET_RSS_PER_INODE },
  };
  const m = rec.meta;
  const kinds = inf[0].kinds;
  const out = [];
  out.push(`bench/infer: ${started.toISOString()}, ${o.runs} run(s), ${seconds.toFixed(0)} s; medians (min-max over runs)`);
  out.push(`recording: ${m.files} files in ${m.dirs} dirs by a real guest (${m.kernel}), ${m.imageMiB} MiB ext4; ${f0(m.records)} records, ${mb(m.recordBytes)} MB (writes ${mb(m.writeBytes)} MB in ${f0(m.ops.write)} ops, zeros ${mb(m.zeroBytes)} MB, ${f0(m.ops.flush)} flushes); ${rec.made ? 'made in this run' : `cached, made ${m.recordedAt}`}`);
  out.push(`machine: ${facts.nproc} CPUs (${facts.cpuModel}), ${facts.memGiB} GiB, Linux ${facts.kernel}; load ${load0.join(' / ')} at start, ${load1.join(' / ')} at end`);
  out.push(`inferencer node flags (services/inferencer/Dockerfile ENTRYPOINT): ${facts.inferencerNodeFlags.join(" ") || "none"}`);
  out.push(`versions: node ${facts.node}, ${facts.natsServer}, @nats-io/jetstream ${facts.natsJs}; gammaray ${facts.git}${facts.staleBuild.length ? ` (WARNING: sources newer than dist in ${facts.staleBuild.join(', ')})` : ''}`);
  out.push('');
  out.push('Inference, events encoded only: bootstrap from the starting image + every record from JetStream, decoded, applied, events BSON-encoded (fresh process per run)');
  out.push('| measure | value |');
  out.push('|---|---:|');
  out.push(`| timed total (bootstrap + stream), s | ${rng(summary.infer.totalSeconds, f2)} |`);
  out.push(`| of which bootstrap, s | ${rng(summary.infer.bootstrapSeconds, f2)} |`);
  out.push(`| records/s | ${rng(summary.infer.recordsPerS, f0)} |`);
  out.push(`| MB/s (record bytes) | ${rng(summary.infer.mbPerS, f1)} |`);
  out.push(`| events/s | ${rng(summary.infer.eventsPerS, f0)} |`);
  out.push(`| records/s, MB/s without bootstrap | ${f0(summary.infer.streamRecordsPerS.median)}, ${f1(summary.infer.streamMbPerS.median)} |`);
  out.push(`| events (by kind) | ${f0(summary.infer.events.median)} (${Object.entries(kinds).map(([k, v]) => `${k} ${f0(v)}`).join(', ')}) |`);
  out.push(`| encoded event bytes, MB | ${mb(inf[0].eventBytes)} |`);
  out.push(`| tracked inodes | ${f0(summary.infer.trackedInodes.median)} |`);
  out.push(`| CPU s (user + sys, timed part) | ${rng(summary.infer.cpuSeconds, f2)} |`);
  out.push(`| peak RSS, MB (baseline after imports) | ${rng({ median: summary.infer.maxRss.median / 1e6, min: summary.infer.maxRss.min / 1e6, max: summary.infer.maxRss.max / 1e6 }, f1)} (${mb(summary.infer.rssBaseline.median)}) |`);
  out.push(`| peak RSS / tracked inode, B | ${rng(summary.infer.rssPerInode, f0)} |`);
  out.push(`| (peak RSS - baseline) / tracked inode, B | ${rng(summary.infer.rssDeltaPerInode, f0)} |`);
  out.push(`| live JS heap + ArrayBuffers after a full GC, above baseline, / tracked inode, B | ${rng(summary.infer.retainedPerInode, f0)} |`);
  out.push('');
  out.push('Inference as the service runs it: the same, and every event published to GAMMARAY_EVENTS (the service\'s EventPublisher: Nats-Msg-Id, path header, 256 in flight), timed until every event is stored');
  out.push('| measure | value |');
  out.push('|---|---:|');
  out.push(`| timed total (bootstrap + stream + last acks), s | ${rng(summary.inferPublish.totalSeconds, f2)} |`);
  out.push(`| of which waiting for the last acks after the last record, s | ${rng(summary.inferPublish.publishDrainSeconds, f2)} |`);
  out.push(`| checkpoints made (as the service: every ${DEFAULT_CHECKPOINT_S} s, spaced to 10x their cost); s in all; MB the last | ${rng(summary.inferPublish.checkpointCount, f0)}; ${rng(summary.inferPublish.checkpointSeconds, f2)}; ${rng({ median: summary.inferPublish.checkpointBytes.median / 1e6, min: summary.inferPublish.checkpointBytes.min / 1e6, max: summary.inferPublish.checkpointBytes.max / 1e6 }, f1)} |`);
  out.push(`| records/s; MB/s | ${rng(summary.inferPublish.recordsPerS, f0)}; ${rng(summary.inferPublish.mbPerS, f1)} |`);
  out.push(`| events/s (published and stored) | ${rng(summary.inferPublish.eventsPerS, f0)} |`);
  out.push(`| CPU s (user + sys, timed part) | ${rng(summary.inferPublish.cpuSeconds, f2)} |`);
  out.push(`| (peak RSS - baseline) / tracked inode, B | ${rng(summary.inferPublish.rssDeltaPerInode, f0)} |`);
  out.push(`| the same events published alone (no engine: bench/infer/event-floor.mjs), s; events/s; CPU s | ${rng(summary.inferPublish.floorSeconds, f2)}; ${rng(summary.inferPublish.floorEventsPerS, f0)}; ${rng(summary.inferPublish.floorCpuSeconds, f2)} |`);
  out.push('');
  out.push(`Peer: gammaray capture --trace (the same ${mb(inf[0].writeBytes)} MB of writes, as the legacy trace) into a fresh nats-server`);
  out.push('| measure | value |');
  out.push('|---|---:|');
  out.push(`| ingest, s ("disk attached" -> "trace applied") | ${rng(summary.capture.ingestSeconds, f2)} |`);
  out.push(`| MB/s of writes | ${rng(summary.capture.mbPerS, f1)} |`);
  out.push(`| whole process, s | ${rng(summary.capture.processSeconds, f2)} |`);
  out.push(`| CPU s (whole process) | ${rng(summary.capture.processCpuSeconds, f2)} |`);
  out.push('');
  out.push('Ratios (medians; above 1x inference is faster):');
  out.push(`  capture ingest / inference with events published  ${fx(ratios.speed)}  target ${targets.speed.target}: ${targets.speed.met ? 'MET' : 'MISSED'}`);
  out.push(`  capture ingest / inference, events encoded only   ${fx(ratios.speedEngine)}`);
  out.push(`  capture ingest / publishing the events alone      ${fx(ratios.speedFloor)}  (the highest the first ratio can be here, for any engine)`);
  out.push(`  capture ingest / inference stream only           ${fx(ratios.speedStreamOnly)}`);
  out.push(`  capture process / inference process (whole)      ${fx(ratios.speedWholeProcess)}`);
  out.push(`  RSS per tracked inode above baseline  ${f0(targets.rssPerInode.measured)} B  target ${targets.rssPerInode.target}: ${targets.rssPerInode.met ? 'MET' : 'MISSED'} (raw peak / inodes ${f0(targets.rssPerInode.raw)} B: ${targets.rssPerInode.metRaw ? 'MET' : 'MISSED'})`);
  if (latency) {
    out.push('');
    out.push(`Latency: guest appends a line every ${latency.intervalS} s (${latency.appends} lines, default ext4 mount options); ${latency.samples.length} lines seen in ${latency.distinctSeqs} distinct records${latency.missing.length ? `; MISSING ${latency.missing.join(', ')}` : ''}`);
    out.push('| interval | n | p50 ms | p99 ms | max ms |');
    out.push('|---|---:|---:|---:|---:|');
    for (const [name, p, n] of [
      ['guest append (console marker) -> write event received', latency.guestToEvent, latency.guestToEvent.n],
      ['  guest append -> capture receives the record (event.ts)', latency.guestToCapture, latency.guestToCapture.n],
      // Every line of one commit shares its record, so this interval has one independent value per record.
      ['  capture receives the record -> write event received', latency.captureToEvent, `${latency.captureToEvent.n} (${latency.distinctSeqs} records)`],
    ]) {
      out.push(`| ${name} | ${n} | ${f0(p.p50)} | ${f0(p.p99)} | ${f0(p.max)} |`);
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return { summary, ratios, targets };
}

// ---- main ------------------------------------------------------------------------------------------------

function newestMtime(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function preflight() {
  for (const [cmd, args, pkg] of [[NATS_SERVER, ['--version'], 'nats-server'], ['qemu-system-x86_64', ['--version'], 'qemu-system-x86'], ['mkfs.ext4', ['-V'], 'e2fsprogs'], ['e2fsck', ['-V'], 'e2fsprogs']]) {
    if (spawnSync(cmd, args, { stdio: 'ignore' }).error) throw new BenchError(`${cmd} not found; install ${pkg}`);
  }
  const need = [join(REPO, 'packages', 'cli', 'dist', 'gammaray.cjs'), join(REPO, 'packages', 'inferencer', 'dist', 'index.js'), join(REPO, 'services', 'capture', 'dist', 'index.js'), join(REPO, 'services', 'inferencer', 'dist', 'index.js')];
  if (need.some((p) => !existsSync(p))) {
    note('the build is missing; running pnpm -s build');
    const r = spawnSync('pnpm', ['-s', 'build'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new BenchError(`pnpm -s build failed (${r.error?.message ?? `exit ${r.status}`})`);
  }
  // Not rebuilt otherwise (others may be editing the sources), but a stale dist is said out loud.
  const stale = BUILT.filter((p) => {
    const info = join(REPO, p, 'tsconfig.tsbuildinfo');
    return !existsSync(info) || newestMtime(join(REPO, p, 'src')) > statSync(info).mtimeMs;
  });
  if (stale.length > 0) note(`WARNING: sources newer than the build in ${stale.join(', ')}; measuring the old dist (run pnpm -s build)`);
  return stale;
}

function gitRevision() {
  const head = probeText('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']);
  if (head === undefined || head.includes('fatal')) return 'unknown';
  const dirty = spawnSync('git', ['-C', REPO, 'status', '--porcelain', '--', 'packages', 'services'], { encoding: 'utf8' }).stdout.trim();
  return dirty ? `${head}+dirty` : head;
}

function machineFacts(staleBuild) {
  const cpus = os.cpus();
  return {
    nproc: os.availableParallelism(),
    cpuModel: cpus[0]?.model,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    kernel: os.release(),
    node: process.version,
    natsServer: probeText(NATS_SERVER, ['--version']),
    qemu: probeText('qemu-system-x86_64', ['--version']),
    natsJs: JSON.parse(readFileSync(join(REPO, 'node_modules', '@nats-io', 'jetstream', 'package.json'), 'utf8')).version,
    git: gitRevision(),
    distBuilt: new Date(statSync(join(REPO, 'packages', 'inferencer', 'tsconfig.tsbuildinfo')).mtimeMs).toISOString(),
    inferencerNodeFlags: INFERENCER_NODE_FLAGS,
    staleBuild,
  };
}

const loadavg = () => os.loadavg().map((x) => +x.toFixed(2));

async function main() {
  const o = readOptions();
  const staleBuild = preflight();
  await loadModules();
  const started = new Date();
  const load0 = loadavg();
  const facts = machineFacts(staleBuild);
  const tmpRoot = mkdtempSync('/var/tmp/gammaray-bench-infer-');
  removeOnExit.add(tmpRoot);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const t0 = performance.now();
  const rec = await ensureRecording(o, tmpRoot);
  note(`${o.runs} run(s) of inference and capture, interleaved; in ${tmpRoot}; load ${load0.join(' ')}`);
  const samples = { infer: [], inferPublish: [], capture: [] };
  for (let run = 1; run <= o.runs; run++) {
    const runDir = join(tmpRoot, `run-${run}`);
    mkdirSync(runDir);
    const ctx = { run, runDir };
    // Alternate which goes first, so that a burst of machine noise does not always hit the same one.
    if (run % 2 === 1) {
      samples.infer.push(await replayRun(ctx, rec, o));
      samples.inferPublish.push(await replayRun(ctx, rec, o, true));
      samples.capture.push(await captureRun(ctx, rec));
    } else {
      samples.capture.push(await captureRun(ctx, rec));
      samples.inferPublish.push(await replayRun(ctx, rec, o, true));
      samples.infer.push(await replayRun(ctx, rec, o));
    }
    rmSync(runDir, { recursive: true, force: true });
  }
  const latency = o.skipLatency ? undefined : await latencyPhase(o, tmpRoot);
  const seconds = (performance.now() - t0) / 1000;
  const load1 = loadavg();
  const r = report(o, rec, facts, samples, latency, load0, load1, started, seconds);
  const file = join(RESULTS_DIR, 'last.json');
  const setup = {
    recording: { dir: rec.dir, ...rec.meta },
    infer: `node --expose-gc bench/infer/replay.mjs (fresh process per run): DiskInferencer.bootstrap from the starting image (pread, seq 0), ordered consumer on ${wire.STREAM_WRITES} (consume, max_messages ${inf0(samples).consumeMaxMessages}), decodeWriteRecord + apply + encodeEvent; and with --publish, every event published to ${wire.STREAM_EVENTS} (EventPublisher of @gammaray/service-inferencer) until stored`,
    capture: `node packages/cli/bin/gammaray.js capture --nats URL --trace ${relative(REPO, rec.trace) || rec.trace} --disk ${DISK}=COPY-OF-START-IMAGE`,
    natsServer: 'nats-server -js -a 127.0.0.1 -p PORT -sd DIR (fresh for each measurement)',
    latency: latency ? `mkfs.ext4 ${LATENCY_IMAGE_MIB} MiB; capture --listen; gammaray inferencer --nats URL; test/guest/run-guest with ${o.appends} appends every ${APPEND_INTERVAL_S} s; core subscription gammaray.${LATENCY_DISK}.fs.>` : 'skipped',
  };
  writeFileSync(file, `${JSON.stringify({ started: started.toISOString(), seconds, options: o, setup, machine: { ...facts, loadStart: load0, loadEnd: load1 }, ...r, samples, latency }, null, 2)}\n`);
  note(`wrote ${relative(process.cwd(), file) || file}`);
}

const inf0 = (samples) => samples.infer[0] ?? {};

runMain('bench/infer', main);
