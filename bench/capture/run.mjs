#!/usr/bin/env node
/**
 * bench/capture: how fast `gammaray capture` takes writes over NBD, against two peers measured in the same run
 * on the same machine:
 *
 *   (a) `qemu-nbd` serving a raw file - the same NBD clients, no JetStream: what an NBD server costs;
 *   (b) a bare JetStream publish from Node of the same bytes (1 MiB and 4 KiB messages, pipelined) to a
 *       file-backed stream - the stream's own ceiling on this machine;
 *   (c) `gammaray capture` on the same nats-server, every write published before it is acknowledged.
 *
 *   node bench/capture/run.mjs [--size-mib N] [--runs N] [--runtime S] [--depth N] [--window N] [--quick]
 *                              [--only PEERS] [--profile DIR]
 *
 * NBD clients, the same for (a) and (c): `qemu-img bench` (sequential 1 MiB writes) and fio's nbd engine
 * (4 KiB random writes at queue depth 16). Every measurement gets a fresh sparse image of the same size; every
 * run gets a fresh nats-server with a new store dir. Peers are rotated between runs (a b c, b c a, c a b) so that
 * machine noise spreads over all of them. Results: a table on stdout (progress on stderr), everything as JSON in
 * bench/capture/results/last.json. docs/benchmarks.md explains the figures.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, closeSync, ftruncateSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBenchArgs } from '../lib/args.mjs';
import { BenchError, noter, runMain } from '../lib/report.mjs';
import { freePort, installExitHandlers, probe, removeOnExit, run as runChild, sleep, start, stop as stopChild, median } from '../lib/procs.mjs';
import { connect } from '@nats-io/transport-node';
import { DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const CLI = join(REPO, 'packages', 'cli', 'bin', 'gammaray.js');
const RESULTS_DIR = join(HERE, 'results');
const NATS_SERVER = process.env.NATS_SERVER ?? 'nats-server';

const MIB = 1024 * 1024;
const DEFAULT_SIZE_MIB = 1024;
const DEFAULT_RUNS = 3;
/** fio's time-based random-write phase, seconds. */
const DEFAULT_RUNTIME_S = 10;
/** qemu-img bench requests in flight (its own default is 64); 16 matches fio's queue depth. */
const DEFAULT_DEPTH = 16;
/** Outstanding JetStream publishes in the bare-publish peer. */
const DEFAULT_WINDOW = 128;
/** fio's random writes cover the first RAND_REGION_MIB of the image (`--size`). */
const RAND_REGION_MIB = 256;
const RAND_BS = 4096;
const RAND_DEPTH = 16;
const SEQ_BS = MIB;
/** Bytes published in 4 KiB messages by the bare-publish peer (as fio's region). */
const SMALL_PUBLISH_MIB = 256;
/** qemu-img bench --pattern: a non-zero byte, so nothing on the way can treat the data as zeros. */
const PATTERN = 0xa5;
/** Stream of the bare-publish peer: like capture's GAMMARAY_WRITES (file storage, limits, no cap), another name. */
const BARE_STREAM = 'BENCH_PUBLISH';
const BARE_SUBJECT = 'bench.publish';
/** Capture's stream (the constant lives in @gammaray/wire; a bench must not need the build to parse). */
const CAPTURE_STREAM = 'GAMMARAY_WRITES';
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 30_000;
/** Targets from the issue. */
const TARGET_SEQ = 0.8;
const TARGET_RAND = 0.7;

const USAGE = `usage: node bench/capture/run.mjs [--size-mib N] [--runs N] [--runtime S] [--depth N] [--window N] [--quick]
                                [--only PEERS] [--profile DIR]

  --size-mib N  image size and bytes written sequentially, MiB (default ${DEFAULT_SIZE_MIB}, at least ${RAND_REGION_MIB})
  --runs N      runs of every peer, interleaved; medians are reported (default ${DEFAULT_RUNS})
  --runtime S   seconds of fio random writes per measurement (default ${DEFAULT_RUNTIME_S})
  --depth N     qemu-img bench requests in flight (default ${DEFAULT_DEPTH})
  --window N    outstanding publishes of the bare-publish peer (default ${DEFAULT_WINDOW})
  --quick       --size-mib ${RAND_REGION_MIB} --runs 1 --runtime 3, 64 MiB of 4 KiB publishes: a smoke test (~15 s)
  --only PEERS  comma-separated subset of qemu-nbd,bare,capture,capture-gomaxprocs1 (profiling; the ratios need the first three)
  --profile DIR run every capture process with node --cpu-prof, profiles written to DIR
`;

const note = noter('bench/capture');


function readOptions() {
  const { values: v, int } = readBenchArgs('bench/capture', USAGE, {
    'size-mib': { type: 'string' },
    runs: { type: 'string' },
    runtime: { type: 'string' },
    depth: { type: 'string' },
    window: { type: 'string' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    profile: { type: 'string' },
  });
  const q = v.quick;
  return {
    quick: q,
    sizeMiB: int('size-mib', q ? RAND_REGION_MIB : DEFAULT_SIZE_MIB, RAND_REGION_MIB),
    runs: int('runs', q ? 1 : DEFAULT_RUNS, 1),
    runtimeS: int('runtime', q ? 3 : DEFAULT_RUNTIME_S, 1),
    depth: int('depth', DEFAULT_DEPTH, 1),
    window: int('window', DEFAULT_WINDOW, 1),
    smallPublishMiB: q ? 64 : SMALL_PUBLISH_MIB,
    only: readPeers(v.only),
    profileDir: v.profile,
  };
}

const PEERS = ['qemu-nbd', 'bare', 'capture', 'capture-gomaxprocs1'];

function readPeers(text) {
  if (text === undefined) return PEERS;
  const list = text.split(',').filter((p) => p !== '');
  const bad = list.filter((p) => !PEERS.includes(p));
  if (list.length === 0 || bad.length > 0) {
    process.stderr.write(`bench/capture: --only takes a comma-separated subset of ${PEERS.join(',')}, got ${JSON.stringify(text)}\n${USAGE}`);
    process.exit(2);
  }
  return list;
}

// ---- processes and clean-up (bench/lib/procs.mjs) ---------------------------------------------------------

let tmpRoot;
installExitHandlers(note);
const run = (cmd, args) => runChild(cmd, args, BenchError);
const stop = (child, timeoutMs = STOP_TIMEOUT_MS) => stopChild(child, timeoutMs);

async function waitUntil(what, child, logFile, ready) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (await ready()) return;
    await sleep(50);
  }
  const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n') : '';
  throw new BenchError(`${what} did not become ready (exit ${child.exitCode ?? child.signalCode ?? 'none'}); log tail:\n${log}`);
}

/** user + system CPU seconds of a live process so far (/proc/PID/stat, clock ticks of 10 ms). */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime are fields 14 and 15
  } catch {
    return NaN;
  }
}

/** A fresh sparse raw image of `bytes` (each measurement gets a new one, so no peer writes over old blocks). */
function freshImage(path, bytes) {
  rmSync(path, { force: true });
  const fd = openSync(path, 'w');
  ftruncateSync(fd, bytes);
  closeSync(fd);
}

// ---- servers ---------------------------------------------------------------------------------------------

async function startNats(dir, env) {
  const port = await freePort();
  const storeDir = join(dir, 'jetstream');
  const logFile = join(dir, 'nats-server.log');
  const child = start(NATS_SERVER, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], { logFile, env });
  await waitUntil('nats-server', child, logFile, () => probe(port, 'INFO'));
  const url = `nats://127.0.0.1:${port}`;
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  return { child, url, nc, jsm, storeDir };
}

async function startQemuNbd(dir, image, exportName) {
  const port = await freePort();
  const logFile = join(dir, 'qemu-nbd.log');
  // -t: stay up across client disconnects; cache: qemu-nbd's default (writeback, through the host page cache);
  // aio: its default (threads).
  const child = start('qemu-nbd', ['-f', 'raw', '-t', '-p', String(port), '-b', '127.0.0.1', '-x', exportName, '--cache=writeback', image], { logFile });
  await waitUntil('qemu-nbd', child, logFile, () => probe(port));
  return { child, uri: `nbd://127.0.0.1:${port}/${exportName}`, logFile };
}

async function startCapture(dir, natsUrl, image, disk, o) {
  const port = await freePort();
  const logFile = join(dir, `capture-${disk}.log`);
  const prof = o.profileDir ? ['--cpu-prof', '--cpu-prof-dir', o.profileDir, '--cpu-prof-name', `capture-${disk}.cpuprofile`] : [];
  const metricsPort = await freePort();
  const child = start(process.execPath, [...prof, CLI, 'capture', '--nats', natsUrl, '--listen', `127.0.0.1:${port}`, '--disk', `${disk}=${image}`, '--metrics', `127.0.0.1:${metricsPort}`], { logFile });
  await waitUntil('gammaray capture', child, logFile, async () => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('serving NBD'));
  return { child, uri: `nbd://127.0.0.1:${port}/${disk}`, logFile, metricsPort };
}

/**
 * The capture's record publish times (publish -> JetStream ack), from its `gammaray_capture_publish_seconds`
 * histogram: count, mean and the bucket bound under which half of them fall (an upper bound of the median).
 */
async function publishTimes(metricsPort) {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const buckets = [...text.matchAll(/^gammaray_capture_publish_seconds_bucket\{le="([^"]+)"[^}]*\} (\S+)$/gm)].map((m) => ({ le: Number(m[1]), n: Number(m[2]) }));
  const sum = Number(/^gammaray_capture_publish_seconds_sum\{[^}]*\} (\S+)$/m.exec(text)?.[1]);
  const count = Number(/^gammaray_capture_publish_seconds_count\{[^}]*\} (\S+)$/m.exec(text)?.[1]);
  if (!(count > 0)) return undefined;
  const half = buckets.find((b) => b.n >= count / 2);
  return { count, meanMs: (1000 * sum) / count, p50UpToMs: half && Number.isFinite(half.le) ? 1000 * half.le : undefined };
}

// ---- clients ---------------------------------------------------------------------------------------------

/** Sequential 1 MiB writes over the whole image; qemu-img reports only the elapsed time. */
async function seqClient(uri, o) {
  const count = o.sizeMiB;
  const args = ['bench', '-w', '-t', 'none', '-f', 'raw', '-s', String(SEQ_BS), '-c', String(count), '-d', String(o.depth), `--pattern=${PATTERN}`, uri];
  const r = await run('qemu-img', args);
  const m = /Run completed in ([\d.]+) seconds/.exec(r.stdout);
  if (!m) throw new BenchError(`qemu-img bench: no "Run completed" line in:\n${r.stdout}`);
  const seconds = Number(m[1]);
  const bytes = count * SEQ_BS;
  return { seconds, bytes, mibPerS: bytes / MIB / seconds, ops: count, opsPerS: count / seconds };
}

/** 4 KiB random writes at queue depth 16 over the first 256 MiB, time-based. */
async function randClient(uri, dir, o) {
  const out = join(dir, 'fio.json');
  const args = [
    '--name=rand', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', `--bs=${RAND_BS}`, `--iodepth=${RAND_DEPTH}`,
    `--size=${RAND_REGION_MIB}M`, '--time_based', `--runtime=${o.runtimeS}`, '--output-format=json', `--output=${out}`,
  ];
  await run('fio', args);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  const job = j.jobs[0];
  if (job.error !== 0) throw new BenchError(`fio job error ${job.error}`);
  const w = job.write;
  const pct = w.clat_ns.percentile ?? {};
  return {
    seconds: w.runtime / 1000,
    bytes: w.io_bytes,
    ops: w.total_ios,
    iops: w.iops,
    mibPerS: w.bw_bytes / MIB,
    clatP50Us: (pct['50.000000'] ?? NaN) / 1000,
    clatP99Us: (pct['99.000000'] ?? NaN) / 1000,
    clatMeanUs: w.clat_ns.mean / 1000,
  };
}

// ---- the three peers -------------------------------------------------------------------------------------

/** One server + client measurement: fresh image, start, client, stop; CPU of the server over the client's run. */
/**
 * Writes back every dirty page before a measurement starts: the gigabytes the previous phase left in the page
 * cache (its image, JetStream's store) would otherwise be written back during this one and slow it down, so a
 * peer's figure would depend on which peer ran before it.
 */
function settleDisk() {
  spawnSync('sync', [], { stdio: 'ignore' });
}

async function nbdMeasure(kind, workload, ctx, o, label = kind) {
  const dir = ctx.runDir;
  const image = join(dir, `${kind}-${workload}.raw`);
  freshImage(image, o.sizeMiB * MIB);
  const disk = `${workload}-r${ctx.run}`;
  const server = kind === 'qemu-nbd' ? await startQemuNbd(dir, image, disk) : await startCapture(dir, ctx.nats.url, image, disk, o);
  settleDisk();
  const natsCpu0 = cpuSeconds(ctx.nats.child.pid);
  const srvCpu0 = cpuSeconds(server.child.pid);
  const stream0 = kind === 'capture' ? await streamState(ctx.nats.jsm, CAPTURE_STREAM) : undefined;
  const wall0 = process.hrtime.bigint();
  let result;
  try {
    result = workload === 'seq' ? await seqClient(server.uri, o) : await randClient(server.uri, dir, o);
  } finally {
    result ??= {};
    const wall = Number(process.hrtime.bigint() - wall0) / 1e9;
    if (server.metricsPort) result.publish = await publishTimes(server.metricsPort).catch(() => undefined);
    result.serverCpuPct = (100 * (cpuSeconds(server.child.pid) - srvCpu0)) / wall;
    result.natsCpuPct = (100 * (cpuSeconds(ctx.nats.child.pid) - natsCpu0)) / wall;
    addCosts(result);
    const end = await stop(server.child);
    if (end.code !== 0) throw new BenchError(`${kind} exited ${end.code ?? end.signal}; log: ${server.logFile}\n${readFileSync(server.logFile, 'utf8').slice(-2000)}`);
  }
  if (kind === 'capture') {
    // Every acknowledged write must be in the stream: its bytes grew by at least the data the client wrote.
    const state = await streamState(ctx.nats.jsm, CAPTURE_STREAM);
    const stored = state.bytes - stream0.bytes;
    if (stored < result.bytes) throw new BenchError(`capture ${workload}: stream grew ${stored} bytes, less than the ${result.bytes} written`);
    result.streamBytes = stored;
    result.records = state.messages - stream0.messages;
  }
  rmSync(image, { force: true });
  const cost = workload === 'seq' ? `CPU ${result.serverMsPerMiB?.toFixed(2)} ms/MiB (nats-server ${result.natsMsPerMiB?.toFixed(2)})` : `CPU ${result.serverUsPerOp?.toFixed(1)} us/write (nats-server ${result.natsUsPerOp?.toFixed(1)})`;
  const pub = result.publish ? `; record publish -> ack mean ${result.publish.meanMs.toFixed(2)} ms${result.publish.p50UpToMs !== undefined ? `, p50 <= ${result.publish.p50UpToMs} ms` : ''}` : '';
  note(`run ${ctx.run} ${label} ${workload}: ${fmtNbd(workload, result)}, ${cost}${result.records ? `; ${result.records} records, ${(result.ops / result.records).toFixed(2)} writes/record` : ''}${pub}`);
  return result;
}

async function streamState(jsm, name) {
  try {
    const { bytes, messages } = (await jsm.streams.info(name)).state;
    return { bytes, messages };
  } catch {
    return { bytes: 0, messages: 0 }; // not created yet (capture creates it on start)
  }
}

/**
 * Pipelined publishes of `count` messages of `size` random bytes: at most `window` unacknowledged. Acks of one
 * stream come back in order, so waiting on the oldest is as good as waiting on any.
 */
async function publishBurst(js, subject, size, count, window) {
  const payload = new Uint8Array(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 2654435761) >>> 24; // ok: any non-constant bytes
  const pending = new Array(window);
  const sentAt = new Float64Array(count);
  const lat = new Float64Array(count);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const slot = i % window;
    if (i >= window) await pending[slot];
    sentAt[i] = performance.now();
    pending[slot] = js.publish(subject, payload).then(() => {
      lat[i] = performance.now() - sentAt[i];
    });
  }
  await Promise.all(pending.filter(Boolean));
  const seconds = (performance.now() - t0) / 1000;
  lat.sort();
  return {
    seconds,
    bytes: size * count,
    ops: count,
    msgsPerS: count / seconds,
    mibPerS: (size * count) / MIB / seconds,
    ackP50Us: lat[Math.floor(count * 0.5)] * 1000,
    ackP99Us: lat[Math.min(count - 1, Math.floor(count * 0.99))] * 1000,
  };
}

async function bareMeasure(ctx, o) {
  const { jsm, nc } = ctx.nats;
  await jsm.streams.add({
    name: BARE_STREAM,
    subjects: [`${BARE_SUBJECT}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_bytes: -1,
    num_replicas: 1,
  });
  const js = jetstream(nc, { timeout: 30_000 });
  settleDisk();
  const natsCpu0 = cpuSeconds(ctx.nats.child.pid);
  const selfCpu0 = process.cpuUsage();
  const w0 = performance.now();
  const big = await publishBurst(js, `${BARE_SUBJECT}.big`, SEQ_BS, o.sizeMiB, o.window);
  const w1 = performance.now();
  const natsCpu1 = cpuSeconds(ctx.nats.child.pid);
  const selfCpu1 = process.cpuUsage();
  const small = await publishBurst(js, `${BARE_SUBJECT}.small`, RAND_BS, (o.smallPublishMiB * MIB) / RAND_BS, o.window);
  const w2 = performance.now();
  const cpuPct = (a, b, ms) => (100 * (b.user + b.system - a.user - a.system)) / 1000 / ms;
  big.natsCpuPct = (100 * (natsCpu1 - natsCpu0) * 1000) / (w1 - w0);
  big.nodeCpuPct = cpuPct(selfCpu0, selfCpu1, w1 - w0);
  small.natsCpuPct = (100 * (cpuSeconds(ctx.nats.child.pid) - natsCpu1) * 1000) / (w2 - w1);
  small.nodeCpuPct = cpuPct(selfCpu1, process.cpuUsage(), w2 - w1);
  big.serverCpuPct = big.nodeCpuPct; // the publishing Node process stands where the server does
  small.serverCpuPct = small.nodeCpuPct;
  small.iops = small.msgsPerS;
  addCosts(big);
  addCosts(small);
  const info = await jsm.streams.info(BARE_STREAM);
  if (info.state.messages !== big.ops + small.ops) throw new BenchError(`bare publish: stream holds ${info.state.messages} messages, sent ${big.ops + small.ops}`);
  await jsm.streams.delete(BARE_STREAM); // frees the disk before the next peer
  note(`run ${ctx.run} bare publish: 1 MiB ${big.mibPerS.toFixed(0)} MiB/s ${big.msgsPerS.toFixed(0)} msg/s; 4 KiB ${small.mibPerS.toFixed(1)} MiB/s ${small.msgsPerS.toFixed(0)} msg/s`);
  return { big, small };
}

// ---- reporting -------------------------------------------------------------------------------------------

/**
 * CPU cost per unit of work, the figure that moves least with the machine's load: ms of CPU per MiB and us of CPU
 * per write (or message), of the server (the publishing Node process for the bare peer) and of nats-server.
 */
function addCosts(r) {
  if (r.mibPerS > 0) {
    r.serverMsPerMiB = (10 * r.serverCpuPct) / r.mibPerS;
    r.natsMsPerMiB = (10 * r.natsCpuPct) / r.mibPerS;
  }
  const perS = r.iops ?? r.opsPerS ?? r.msgsPerS;
  if (perS > 0) {
    r.serverUsPerOp = (1e4 * r.serverCpuPct) / perS;
    r.natsUsPerOp = (1e4 * r.natsCpuPct) / perS;
  }
}

function fmtNbd(workload, r) {
  return workload === 'seq'
    ? `${r.mibPerS?.toFixed(0)} MiB/s`
    : `${r.iops?.toFixed(0)} IOPS, ${r.mibPerS?.toFixed(1)} MiB/s, p50 ${r.clatP50Us?.toFixed(0)} us, p99 ${r.clatP99Us?.toFixed(0)} us`;
}


/** Median, min and max of one field over runs. */
function stats(samples, field) {
  const xs = samples.map((s) => s[field]);
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

function probeText(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return undefined;
  return `${r.stdout}${r.stderr}`.trim().split('\n')[0];
}

function machineFacts() {
  const cpus = os.cpus();
  return {
    nproc: os.availableParallelism(),
    cpuModel: cpus[0]?.model,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    kernel: os.release(),
    node: process.version,
    natsServer: probeText(NATS_SERVER, ['--version']),
    qemuNbd: probeText('qemu-nbd', ['--version']),
    qemuImg: probeText('qemu-img', ['--version']),
    fio: probeText('fio', ['--version']),
    natsJs: JSON.parse(readFileSync(join(REPO, 'node_modules', '@nats-io', 'jetstream', 'package.json'), 'utf8')).version,
    tmpFs: probeText('stat', ['-f', '-c', '%T', '/var/tmp']),
    git: gitRevision(),
  };
}

function gitRevision() {
  const head = probeText('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']);
  if (head === undefined || head.includes('fatal')) return 'unknown';
  const dirty = spawnSync('git', ['-C', REPO, 'status', '--porcelain', '--', 'packages', 'services'], { encoding: 'utf8' }).stdout.trim();
  return dirty ? `${head}+dirty` : head;
}

const loadavg = () => os.loadavg().map((x) => +x.toFixed(2));
const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '-');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-');
const f2n = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const range = (s, f) => `${f(s.median)} (${f(s.min)}-${f(s.max)})`;

function report(o, facts, samples, load0, load1, started, seconds) {
  const q = { seq: stats(samples.qemu.seq, 'mibPerS'), rand: stats(samples.qemu.rand, 'iops') };
  const c = { seq: stats(samples.capture.seq, 'mibPerS'), rand: stats(samples.capture.rand, 'iops') };
  const b = { big: stats(samples.bare.map((s) => s.big), 'mibPerS'), bigMsgs: stats(samples.bare.map((s) => s.big), 'msgsPerS'), small: stats(samples.bare.map((s) => s.small), 'msgsPerS'), smallMiB: stats(samples.bare.map((s) => s.small), 'mibPerS') };
  const med = (list, field) => median(list.map((s) => s[field]));
  const seqFloor = Math.min(q.seq.median, b.big.median);
  const ratios = {
    seqVsQemuNbd: c.seq.median / q.seq.median,
    seqVsBarePublish: c.seq.median / b.big.median,
    seqVsLowerPeer: c.seq.median / seqFloor,
    randVsQemuNbd: c.rand.median / q.rand.median,
    randVsBarePublish: c.rand.median / b.small.median,
  };
  const targets = {
    seq: { target: TARGET_SEQ, of: q.seq.median <= b.big.median ? 'qemu-nbd' : 'bare publish 1 MiB', ratio: ratios.seqVsLowerPeer, met: ratios.seqVsLowerPeer >= TARGET_SEQ },
    rand: { target: TARGET_RAND, of: 'qemu-nbd', ratio: ratios.randVsQemuNbd, met: ratios.randVsQemuNbd >= TARGET_RAND },
  };

  const out = [];
  out.push(`bench/capture: ${started.toISOString()}, ${o.runs} run(s), ${seconds.toFixed(0)} s; medians (min-max over runs)`);
  out.push(`machine: ${facts.nproc} CPUs (${facts.cpuModel}), ${facts.memGiB} GiB, Linux ${facts.kernel}, /var/tmp on ${facts.tmpFs}; load ${load0.join(' / ')} at start, ${load1.join(' / ')} at end`);
  out.push(`versions: node ${facts.node}, ${facts.natsServer}, @nats-io/jetstream ${facts.natsJs}, ${facts.qemuNbd}, ${facts.fio}; gammaray ${facts.git}`);
  out.push('');
  out.push(`Sequential: qemu-img bench -w -t none -s 1M -c ${o.sizeMiB} -d ${o.depth} (${o.sizeMiB} MiB); bare publish: ${o.sizeMiB} x 1 MiB messages, window ${o.window}`);
  const bigs = samples.bare.map((s) => s.big);
  const smalls = samples.bare.map((s) => s.small);
  out.push('| peer | MiB/s | msgs/s | server CPU % | nats-server CPU % | server CPU ms/MiB | nats-server CPU ms/MiB |');
  out.push('|---|---:|---:|---:|---:|---:|---:|');
  out.push(`| qemu-nbd | ${range(q.seq, f0)} | ${f0(med(samples.qemu.seq, 'opsPerS'))} | ${f0(med(samples.qemu.seq, 'serverCpuPct'))} | - | ${range(stats(samples.qemu.seq, 'serverMsPerMiB'), f2n)} | - |`);
  out.push(`| bare JetStream publish, 1 MiB | ${range(b.big, f0)} | ${f0(b.bigMsgs.median)} | ${f0(med(bigs, 'nodeCpuPct'))} (node) | ${f0(med(bigs, 'natsCpuPct'))} | ${range(stats(bigs, 'serverMsPerMiB'), f2n)} (node) | ${range(stats(bigs, 'natsMsPerMiB'), f2n)} |`);
  out.push(`| gammaray capture | ${range(c.seq, f0)} | ${f0(med(samples.capture.seq, 'opsPerS'))} | ${f0(med(samples.capture.seq, 'serverCpuPct'))} | ${f0(med(samples.capture.seq, 'natsCpuPct'))} | ${range(stats(samples.capture.seq, 'serverMsPerMiB'), f2n)} | ${range(stats(samples.capture.seq, 'natsMsPerMiB'), f2n)} |`);
  const up = samples.captureUp;
  if (up.seq.length > 0) out.push(`| gammaray capture, nats-server GOMAXPROCS=1 | ${range(stats(up.seq, 'mibPerS'), f0)} | ${f0(med(up.seq, 'opsPerS'))} | ${f0(med(up.seq, 'serverCpuPct'))} | ${f0(med(up.seq, 'natsCpuPct'))} | ${range(stats(up.seq, 'serverMsPerMiB'), f2n)} | ${range(stats(up.seq, 'natsMsPerMiB'), f2n)} |`);
  out.push('');
  out.push(`Random: fio nbd engine, randwrite 4 KiB, iodepth ${RAND_DEPTH}, first ${RAND_REGION_MIB} MiB, ${o.runtimeS} s; bare publish: ${(o.smallPublishMiB * MIB) / RAND_BS} x 4 KiB messages, window ${o.window}`);
  out.push('| peer | IOPS / msgs/s | MiB/s | p50 us | p99 us | server CPU % | nats-server CPU % | server CPU us/write | nats-server CPU us/write |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  out.push(`| qemu-nbd | ${range(q.rand, f0)} | ${f1(med(samples.qemu.rand, 'mibPerS'))} | ${f0(med(samples.qemu.rand, 'clatP50Us'))} | ${f0(med(samples.qemu.rand, 'clatP99Us'))} | ${f0(med(samples.qemu.rand, 'serverCpuPct'))} | - | ${range(stats(samples.qemu.rand, 'serverUsPerOp'), f1)} | - |`);
  out.push(`| bare JetStream publish, 4 KiB | ${range(b.small, f0)} | ${f1(b.smallMiB.median)} | ${f0(med(smalls, 'ackP50Us'))} (ack) | ${f0(med(smalls, 'ackP99Us'))} (ack) | ${f0(med(smalls, 'nodeCpuPct'))} (node) | ${f0(med(smalls, 'natsCpuPct'))} | ${range(stats(smalls, 'serverUsPerOp'), f1)} (node, per message) | ${range(stats(smalls, 'natsUsPerOp'), f1)} |`);
  out.push(`| gammaray capture | ${range(c.rand, f0)} | ${f1(med(samples.capture.rand, 'mibPerS'))} | ${f0(med(samples.capture.rand, 'clatP50Us'))} | ${f0(med(samples.capture.rand, 'clatP99Us'))} | ${f0(med(samples.capture.rand, 'serverCpuPct'))} | ${f0(med(samples.capture.rand, 'natsCpuPct'))} | ${range(stats(samples.capture.rand, 'serverUsPerOp'), f1)} | ${range(stats(samples.capture.rand, 'natsUsPerOp'), f1)} |`);
  if (up.rand.length > 0) out.push(`| gammaray capture, nats-server GOMAXPROCS=1 | ${range(stats(up.rand, 'iops'), f0)} | ${f1(med(up.rand, 'mibPerS'))} | ${f0(med(up.rand, 'clatP50Us'))} | ${f0(med(up.rand, 'clatP99Us'))} | ${f0(med(up.rand, 'serverCpuPct'))} | ${f0(med(up.rand, 'natsCpuPct'))} | ${range(stats(up.rand, 'serverUsPerOp'), f1)} | ${range(stats(up.rand, 'natsUsPerOp'), f1)} |`);
  out.push('');
  out.push('Ratios (medians):');
  out.push(`  sequential  capture / qemu-nbd       ${f2(ratios.seqVsQemuNbd)}`);
  out.push(`  sequential  capture / bare publish   ${f2(ratios.seqVsBarePublish)}`);
  out.push(`  sequential  capture / lower of both  ${f2(ratios.seqVsLowerPeer)}  target >= ${TARGET_SEQ}x of ${targets.seq.of}: ${targets.seq.met ? 'MET' : 'MISSED'}`);
  out.push(`  random 4K   capture / qemu-nbd IOPS  ${f2(ratios.randVsQemuNbd)}  target >= ${TARGET_RAND}x: ${targets.rand.met ? 'MET' : 'MISSED'}`);
  out.push(`  random 4K   capture / bare msgs/s    ${f2(ratios.randVsBarePublish)}`);
  if (up.seq.length > 0 && up.rand.length > 0) {
    ratios.upSeqVsLowerPeer = stats(up.seq, 'mibPerS').median / seqFloor;
    ratios.upRandVsQemuNbd = stats(up.rand, 'iops').median / q.rand.median;
    out.push(`  with nats-server GOMAXPROCS=1 on this ${os.availableParallelism()}-CPU host (README \"Small hosts\"; not what the targets are judged on):`);
    out.push(`    sequential  capture / lower peer   ${f2(ratios.upSeqVsLowerPeer)}`);
    out.push(`    random 4K   capture / qemu-nbd     ${f2(ratios.upRandVsQemuNbd)}`);
  }
  out.push(`  stream bytes / client bytes: seq ${f2(median(samples.capture.seq.map((s) => s.streamBytes / s.bytes)))}, rand ${f2(median(samples.capture.rand.map((s) => s.streamBytes / s.bytes)))}`);
  out.push(`  client writes per record:    seq ${f1(median(samples.capture.seq.map((s) => s.ops / s.records)))}, rand ${f1(median(samples.capture.rand.map((s) => s.ops / s.records)))}`);
  const pubMean = (list) => {
    const m = list.flatMap((s) => (s.publish ? [s.publish.meanMs] : []));
    return m.length ? `${median(m).toFixed(2)} ms` : '-';
  };
  out.push(`  record publish -> ack, mean: seq ${pubMean(samples.capture.seq)}, rand ${pubMean(samples.capture.rand)} (the capture's gammaray_capture_publish_seconds)`);
  process.stdout.write(`${out.join('\n')}\n`);
  return { ratios, targets, summary: { qemuNbd: q, capture: c, barePublish: b } };
}

// ---- main ------------------------------------------------------------------------------------------------

function preflight() {
  for (const [cmd, args, pkg] of [[NATS_SERVER, ['--version'], 'nats-server'], ['qemu-nbd', ['--version'], 'qemu-utils'], ['qemu-img', ['--version'], 'qemu-utils'], ['fio', ['--version'], 'fio']]) {
    if (spawnSync(cmd, args, { stdio: 'ignore' }).error) throw new BenchError(`${cmd} not found; install ${pkg}`);
  }
  if (!/^\s*nbd\b/m.test(spawnSync('fio', ['--enghelp'], { encoding: 'utf8' }).stdout ?? '')) throw new BenchError('this fio has no nbd engine (fio --enghelp); install a fio built with libnbd');
  if (!existsSync(join(REPO, 'packages', 'cli', 'dist', 'gammaray.cjs')) || !existsSync(join(REPO, 'services', 'capture', 'dist', 'index.js'))) {
    note('the CLI or the capture service is not built; running pnpm -s build');
    const r = spawnSync('pnpm', ['-s', 'build'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new BenchError(`pnpm -s build failed (${r.error?.message ?? `exit ${r.status}`})`);
  }
}

async function main() {
  const o = readOptions();
  preflight();
  const started = new Date();
  const load0 = loadavg();
  const facts = machineFacts();
  tmpRoot = mkdtempSync('/var/tmp/gammaray-bench-capture-');
  removeOnExit.add(tmpRoot);
  note(`${o.runs} run(s), ${o.sizeMiB} MiB images, fio ${o.runtimeS} s, in ${tmpRoot}; load ${load0.join(' ')}`);
  const samples = { qemu: { seq: [], rand: [] }, capture: { seq: [], rand: [] }, captureUp: { seq: [], rand: [] }, bare: [] };
  const peers = [
    ['qemu-nbd', async (ctx) => {
      samples.qemu.seq.push(await nbdMeasure('qemu-nbd', 'seq', ctx, o));
      samples.qemu.rand.push(await nbdMeasure('qemu-nbd', 'rand', ctx, o));
    }],
    ['bare', async (ctx) => samples.bare.push(await bareMeasure(ctx, o))],
    ['capture', async (ctx) => {
      samples.capture.seq.push(await nbdMeasure('capture', 'seq', ctx, o));
      samples.capture.rand.push(await nbdMeasure('capture', 'rand', ctx, o));
    }],
    // The capture with nats-server on one CPU (GOMAXPROCS=1, README "Small hosts"): a nats-server of its own, so
    // the other peers keep the defaults. Reported beside the targets, not for them.
    ['capture-gomaxprocs1', async (ctx) => {
      const dir = join(ctx.runDir, 'up');
      mkdirSync(dir);
      const nats = await startNats(dir, { ...process.env, GOMAXPROCS: '1' });
      try {
        const upCtx = { ...ctx, nats, runDir: dir };
        samples.captureUp.seq.push(await nbdMeasure('capture', 'seq', upCtx, o, 'capture (nats-server GOMAXPROCS=1)'));
        samples.captureUp.rand.push(await nbdMeasure('capture', 'rand', upCtx, o, 'capture (nats-server GOMAXPROCS=1)'));
      } finally {
        await nats.nc.close();
        await stop(nats.child);
        rmSync(dir, { recursive: true, force: true }); // its store's pages go, not written back during later phases
      }
    }],
  ].filter(([name]) => o.only.includes(name)).map(([, measure]) => measure);
  const t0 = performance.now();
  for (let run = 1; run <= o.runs; run++) {
    // A fresh nats-server and store dir per run: JetStream data of the last run is deleted, the disk never fills.
    const runDir = join(tmpRoot, `run-${run}`);
    mkdirSync(runDir);
    const nats = await startNats(runDir);
    try {
      const ctx = { run, runDir, nats };
      for (let i = 0; i < peers.length; i++) await peers[(i + run - 1) % peers.length](ctx);
    } finally {
      await nats.nc.close();
      await stop(nats.child);
      rmSync(runDir, { recursive: true, force: true });
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const load1 = loadavg();
  const r = report(o, facts, samples, load0, load1, started, seconds);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, 'last.json');
  const setup = {
    qemuNbd: 'qemu-nbd -f raw -t -p PORT -b 127.0.0.1 -x EXPORT --cache=writeback IMAGE (aio threads)',
    capture: 'node packages/cli/bin/gammaray.js capture --nats URL --listen 127.0.0.1:PORT --disk EXPORT=IMAGE',
    natsServer: 'nats-server -js -a 127.0.0.1 -p PORT -sd DIR (fresh per run)',
    seqClient: `qemu-img bench -w -t none -f raw -s 1048576 -c ${o.sizeMiB} -d ${o.depth} --pattern=${PATTERN} URI`,
    randClient: `fio --name=rand --ioengine=nbd --uri=URI --rw=randwrite --bs=4k --iodepth=${RAND_DEPTH} --size=${RAND_REGION_MIB}M --time_based --runtime=${o.runtimeS} --output-format=json`,
    barePublish: `stream ${BARE_STREAM} (file, limits, R1); ${o.sizeMiB} x 1 MiB then ${(o.smallPublishMiB * MIB) / RAND_BS} x 4 KiB, window ${o.window}`,
    images: `fresh sparse ${o.sizeMiB} MiB raw file per measurement, in /var/tmp`,
  };
  writeFileSync(file, `${JSON.stringify({ started: started.toISOString(), seconds, options: o, setup, machine: { ...facts, loadStart: load0, loadEnd: load1 }, ...r, samples }, null, 2)}\n`);
  note(`wrote ${file}`);
}

runMain('bench/capture', main);
