#!/usr/bin/env node
/**
 * bench/scale: scale-out of `gammaray inferencer` - aggregate inference throughput with 1, 2 and 3 worker
 * processes on the same disks and the same recorded write stream, in one run (W = 1 is the peer the others are
 * divided by), and the time a disk takes to move to another worker after its owner is killed with SIGKILL.
 *
 *   node bench/scale/run.mjs [--disks N] [--writes N] [--workers N] [--runs N] [--kills N] [--short-kills N] [--quick]
 *
 * 1. Recording, once: D small ext4 images (one 8 MiB file of random bytes each), a fresh nats-server and one
 *    `gammaray capture` serving them; one `gammaray inferencer` crawls every disk and checkpoints it (seq 0) and
 *    is stopped; then one qemu-io per disk overwrites random 4 KiB blocks of the file through the capture
 *    (--writes per disk, one write in flight: one record per write). The capture is stopped, the events stream,
 *    the lease and member buckets and the disk registry are deleted, nats-server is stopped and its store dir
 *    kept as the starting state of every measurement.
 * 2. Throughput, for W = 1..--workers, --runs times in rotated order (the last is W = max): a copy of that store dir under a fresh nats-server; W inferencers started
 *    and settled (each sees W live instances; the registry is empty, so they own nothing); then the capture is
 *    started, registers the D disks, the workers split them, restore the seq-0 checkpoints and work through the
 *    whole backlog, until every disk's applied sequence (each worker's /metrics, polled every 100 ms) reaches the
 *    disk's last record. Timed by the events stream (fresh each time): from the capture's spawn, and from the
 *    first event stored, to the last event stored. CPU of every process from /proc/PID/stat.
 * 3. Takeover, on the last measurement's processes: a steady write load (qemu-io, ~15 writes/s per disk), then
 *    --kills times: wait 1-3 s, SIGKILL a random worker, time until each disk it owned is leased by another
 *    instance (a KV watch on gammaray-leases) and until the first event of each such disk from another
 *    instance is stored (stream time of the events, read back afterwards, headers only); restart a worker and
 *    wait for the balanced spread. With the default lease TTL 5 s / heartbeat 1 s, then with --lease-ttl 2
 *    --heartbeat 0.5 (--short-kills).
 *
 * Results: a table on stdout (progress on stderr), everything as JSON in bench/scale/results/last.json.
 * docs/benchmarks.md explains the figures.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBenchArgs } from '../lib/args.mjs';
import { BenchError, noter, runMain } from '../lib/report.mjs';
import { freePort, installExitHandlers, probe, removeOnExit, run as runChild, sleep, start, stop as stopChild, median } from '../lib/procs.mjs';
import { connect } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');
const CLI = join(REPO, 'packages', 'cli', 'bin', 'gammaray.js');
const RESULTS_DIR = join(HERE, 'results');
const NATS_SERVER = process.env.NATS_SERVER ?? 'nats-server';
/** Packages whose dist the measured processes run from, checked for sources newer than the build. */
const BUILT = ['packages/disk', 'packages/ext4', 'packages/wire', 'packages/inferencer', 'packages/nbd', 'packages/capture', 'packages/cli', 'services/capture', 'services/inferencer'];

// Names of @gammaray/wire (subjects.ts); repeated here so the bench parses without the build.
const STREAM_WRITES = 'GAMMARAY_WRITES';
const STREAM_EVENTS = 'GAMMARAY_EVENTS';
const KV_DISKS = 'gammaray-disks';
const KV_WORKERS = 'gammaray-workers';
const KV_LEASES = 'gammaray-leases';
const WRITES_WILDCARD = 'gammaray.*.writes';
const HEADER_WORKER = 'Gammaray-Worker';
/** JetStream stream behind a KV bucket. */
const kvStream = (bucket) => `KV_${bucket}`;

const DEFAULT_DISKS = 12;
const DEFAULT_WRITES = 3000;
const DEFAULT_WORKERS = 3;
const DEFAULT_RUNS = 2;
const DEFAULT_KILLS = 8;
const DEFAULT_SHORT_KILLS = 8;
const IMAGE_MIB = 64;
const FILE_BYTES = 8 * 1024 * 1024;
const BLOCK = 4096;
/** qemu-io commands per process in the recording (all of a disk's writes, in a few processes). */
const COMMANDS_PER_QEMU_IO = 1000;
/** Steady load of the takeover phase: a write per disk every STEADY_SLEEP_MS (plus the write's own time). */
const STEADY_SLEEP_MS = 50;
const STEADY_WRITES_PER_PROCESS = 40;
const POLL_MS = 100;
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 30_000;
const CATCH_UP_TIMEOUT_MS = 600_000;
const DEFAULT_TTL = { name: 'default', args: [], ttlS: 5, heartbeatS: 1 };
const SHORT_TTL = { name: 'short', args: ['--lease-ttl', '2', '--heartbeat', '0.5'], ttlS: 2, heartbeatS: 0.5 };

const USAGE = `usage: node bench/scale/run.mjs [--disks N] [--writes N] [--workers N] [--runs N] [--kills N] [--short-kills N] [--quick]

  --disks N        disks served by the capture (default ${DEFAULT_DISKS})
  --writes N       4 KiB writes per disk in the recorded backlog (default ${DEFAULT_WRITES})
  --workers N      throughput measured with 1..N inferencer processes (default ${DEFAULT_WORKERS})
  --runs N         throughput measurements of every W, in rotated order; medians are reported (default ${DEFAULT_RUNS})
  --kills N        kill -9 rounds with the default lease TTL 5 s / heartbeat 1 s (default ${DEFAULT_KILLS}; 0 skips)
  --short-kills N  kill -9 rounds with --lease-ttl 2 --heartbeat 0.5 (default ${DEFAULT_SHORT_KILLS}; 0 skips)
  --quick          --disks 6 --writes 500 --runs 1 --kills 2 --short-kills 2: a smoke test (~1 min)
`;

const note = noter('bench/scale');


function readOptions() {
  const { values: v, int } = readBenchArgs('bench/scale', USAGE, {
    disks: { type: 'string' },
    writes: { type: 'string' },
    workers: { type: 'string' },
    runs: { type: 'string' },
    kills: { type: 'string' },
    'short-kills': { type: 'string' },
    quick: { type: 'boolean', default: false },
  });
  const q = v.quick;
  return {
    quick: q,
    disks: int('disks', q ? 6 : DEFAULT_DISKS, 1),
    writes: int('writes', q ? 500 : DEFAULT_WRITES, 1),
    workers: int('workers', DEFAULT_WORKERS, 1),
    runs: int('runs', q ? 1 : DEFAULT_RUNS, 1),
    kills: int('kills', q ? 2 : DEFAULT_KILLS, 0),
    shortKills: int('short-kills', q ? 2 : DEFAULT_SHORT_KILLS, 0),
  };
}

// ---- processes and clean-up (bench/lib/procs.mjs) ---------------------------------------------------------

let tmpRoot;
installExitHandlers(note);
const run = (cmd, args) => runChild(cmd, args, BenchError);
const stop = (child, timeoutMs = STOP_TIMEOUT_MS) => stopChild(child, timeoutMs);
const alive = (child) => child.exitCode === null && child.signalCode === null;

const tail = (file) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-20).join('\n') : '');

/** Polls `ready` every 50 ms until it returns a value other than undefined/false; fails on the child's exit. */
async function waitFor(what, ready, { child, logFile, timeoutMs = READY_TIMEOUT_MS } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    if (child !== undefined && !alive(child)) break;
    try {
      const v = await ready();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  const why = child !== undefined && !alive(child) ? `exited ${child.exitCode ?? child.signalCode}` : `not within ${timeoutMs} ms`;
  throw new BenchError(`${what}: ${why}${last ? ` (${last.message})` : ''}${logFile ? `; log tail:\n${tail(logFile)}` : ''}`);
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

/** Total and idle CPU seconds of the machine (/proc/stat), for the share the machine had left. */
function machineCpu() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0) / 100;
  return { total, idle: (f[3] + f[4]) / 100 };
}

// ---- servers ---------------------------------------------------------------------------------------------

async function startNats(dir, storeDir) {
  const port = await freePort();
  const logFile = join(dir, 'nats-server.log');
  const child = start(NATS_SERVER, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], { logFile });
  await waitFor('nats-server', () => probe(port, 'INFO'), { child, logFile });
  // JetStream comes up after the listener on some versions; its log line says when.
  await waitFor('nats-server JetStream', () => readFileSync(logFile, 'utf8').includes('Server is ready'), { child, logFile });
  const url = `nats://127.0.0.1:${port}`;
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  return { child, url, nc, jsm, storeDir };
}

async function startCapture(dir, natsUrl, disks) {
  const port = await freePort();
  const logFile = join(dir, 'capture.log');
  const spawnedAt = performance.now();
  const spawnedWall = Date.now();
  const child = start(process.execPath, [CLI, 'capture', '--nats', natsUrl, '--listen', `127.0.0.1:${port}`, ...disks.flatMap((d) => ['--disk', `${d.id}=${d.image}`])], { logFile });
  await waitFor('gammaray capture', () => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('serving NBD'), { child, logFile });
  return { child, logFile, spawnedAt, spawnedWall, url: (disk) => `nbd://127.0.0.1:${port}/${disk}` };
}

let workerSerial = 0;

/** Starts `gammaray inferencer` with --metrics; resolves once it logged "inferencer started" (with its id). */
async function startWorker(dir, natsUrl, extraArgs) {
  const metricsPort = await freePort();
  const logFile = join(dir, `inferencer-${++workerSerial}.log`);
  const child = start(process.execPath, [CLI, 'inferencer', '--nats', natsUrl, '--metrics', `127.0.0.1:${metricsPort}`, ...extraArgs], { logFile });
  const id = await waitFor(
    'gammaray inferencer',
    () => existsSync(logFile) && /"instanceId":"([^"]+)","msg":"inferencer started"/.exec(readFileSync(logFile, 'utf8'))?.[1],
    { child, logFile },
  );
  return { child, id, metricsPort, logFile };
}

/** A worker's metrics: applied seq per owned disk, live instances, takeovers and handovers. */
async function scrape(w) {
  const res = await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`, { signal: AbortSignal.timeout(2000) });
  const text = await res.text();
  const applied = new Map();
  for (const m of text.matchAll(/^gammaray_inferencer_disk_applied_seq\{disk="([^"]+)"\} (\d+)/gm)) applied.set(m[1], Number(m[2]));
  const num = (re) => Number(re.exec(text)?.[1] ?? NaN);
  let takeovers = 0;
  for (const m of text.matchAll(/^gammaray_inferencer_takeovers_total\{reason="[^"]+"\} (\d+)/gm)) takeovers += Number(m[1]);
  return {
    applied,
    live: num(/^gammaray_inferencer_live_instances (\d+)/m),
    handovers: num(/^gammaray_inferencer_handovers_total (\d+)/m),
    takeovers,
  };
}

// ---- the recording ---------------------------------------------------------------------------------------

/** Physical block runs of `path` in an image, from debugfs' extent tree dump (leaf entries). */
async function extentsOf(image, path) {
  const r = await run('debugfs', ['-R', `ex ${path}`, image]);
  const runs = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*(\d+)\/\s*(\d+)\s+\d+\/\s*\d+\s+(\d+)\s+-\s+(\d+)\s+(\d+)\s+-\s+(\d+)\s+(\d+)/.exec(line);
    if (m && m[1] === m[2]) runs.push({ physical: Number(m[5]), length: Number(m[7]) });
  }
  const blocks = runs.reduce((n, x) => n + x.length, 0);
  if (blocks !== FILE_BYTES / BLOCK) throw new BenchError(`debugfs ex ${path}: ${blocks} blocks mapped, expected ${FILE_BYTES / BLOCK}:\n${r.stdout}`);
  return runs;
}

async function buildDisks(dir, n) {
  const disks = [];
  for (let i = 0; i < n; i++) {
    const id = `d${i}`;
    const src = join(dir, `src-${id}`);
    mkdirSync(src);
    writeFileSync(join(src, 'data.bin'), randomBytes(FILE_BYTES));
    writeFileSync(join(src, 'readme.txt'), `disk ${id}\n`);
    const image = join(dir, `${id}.img`);
    await run('mkfs.ext4', ['-q', '-F', '-b', String(BLOCK), '-d', src, image, `${IMAGE_MIB}M`]);
    rmSync(src, { recursive: true });
    disks.push({ id, image, runs: await extentsOf(image, '/data.bin') });
  }
  return disks;
}

/** A random block of the disk's data file, as a byte offset in the image. */
function randomBlockOffset(disk) {
  let k = Math.floor(Math.random() * (FILE_BYTES / BLOCK));
  for (const r of disk.runs) {
    if (k < r.length) return (r.physical + k) * BLOCK;
    k -= r.length;
  }
  throw new BenchError('block index past the file'); // not reached: k < the file's block count
}

/** qemu-io `-c` arguments: `count` 4 KiB pattern writes over random blocks of the file, with optional sleeps. */
function writeCommands(disk, count, sleepMs) {
  const args = [];
  for (let i = 0; i < count; i++) {
    args.push('-c', `write -q -P 0x${(0x21 + Math.floor(Math.random() * 0x5e)).toString(16)} ${randomBlockOffset(disk)} ${BLOCK}`);
    if (sleepMs > 0) args.push('-c', `sleep ${sleepMs}`);
  }
  return args;
}

/** One qemu-io run against the capture's export (a real NBD client, one request in flight). */
function qemuIo(url, commands) {
  return run('qemu-io', ['-f', 'raw', ...commands, url]);
}

async function record(o, dir) {
  note(`recording: ${o.disks} disks of ${IMAGE_MIB} MiB, ${o.writes} writes of 4 KiB each`);
  const disks = await buildDisks(dir, o.disks);
  const storeDir = join(dir, 'recording-store');
  const nats = await startNats(dir, storeDir);
  const capture = await startCapture(dir, nats.url, disks);
  // One inferencer crawls every disk and checkpoints it at seq 0: every measurement restores those checkpoints
  // and has the whole backlog to work through.
  const seeder = await startWorker(dir, nats.url, ['--checkpoint-interval', '1']);
  await waitFor('the first crawl of every disk', () => (readFileSync(seeder.logFile, 'utf8').match(/"msg":"disk crawled"/g)?.length ?? 0) >= disks.length, {
    child: seeder.child,
    logFile: seeder.logFile,
    timeoutMs: 60_000,
  });
  const r = await stop(seeder.child);
  if (r.code !== 0) throw new BenchError(`the seeding inferencer exited ${r.code ?? r.signal}; log tail:\n${tail(seeder.logFile)}`);
  const t0 = performance.now();
  await Promise.all(
    disks.map(async (d) => {
      for (let done = 0; done < o.writes; done += COMMANDS_PER_QEMU_IO) await qemuIo(capture.url(d.id), writeCommands(d, Math.min(COMMANDS_PER_QEMU_IO, o.writes - done), 0));
    }),
  );
  const loadSeconds = (performance.now() - t0) / 1000;
  const cr = await stop(capture.child);
  if (cr.code !== 0) throw new BenchError(`capture exited ${cr.code ?? cr.signal}; log tail:\n${tail(capture.logFile)}`);
  const info = await nats.jsm.streams.info(STREAM_WRITES, { subjects_filter: WRITES_WILDCARD });
  const perDisk = [];
  for (const d of disks) {
    const subject = `gammaray.${d.id}.writes`;
    const records = info.state.subjects?.[subject] ?? 0;
    const last = (await nats.jsm.streams.getMessage(STREAM_WRITES, { last_by_subj: subject })).seq;
    if (records < o.writes) throw new BenchError(`disk ${d.id}: ${records} records in the stream for ${o.writes} writes`);
    perDisk.push({ disk: d.id, records, lastSeq: last });
  }
  // The starting state of every measurement: the write stream and the checkpoints; no events, leases, members
  // or registry (the capture registers the disks when a measurement starts it).
  for (const s of [STREAM_EVENTS, kvStream(KV_LEASES), kvStream(KV_WORKERS), kvStream(KV_DISKS)]) await nats.jsm.streams.delete(s);
  await nats.nc.close();
  await stop(nats.child);
  const records = perDisk.reduce((n, d) => n + d.records, 0);
  note(`recorded ${records} records in ${loadSeconds.toFixed(1)} s (${(records / loadSeconds).toFixed(0)} records/s through the capture); stream ${(info.state.bytes / 2 ** 20).toFixed(0)} MiB`);
  return { disks, storeDir, perDisk, records, streamBytes: info.state.bytes, loadSeconds };
}

// ---- throughput ------------------------------------------------------------------------------------------

/** Every disk's highest applied seq over the workers' metrics (a disk being handed over shows twice). */
async function appliedByDisk(workers) {
  const out = new Map();
  for (const w of workers) {
    if (!alive(w.child)) continue;
    const s = await scrape(w);
    for (const [d, seq] of s.applied) out.set(d, Math.max(out.get(d) ?? 0, seq));
  }
  return out;
}

async function measureThroughput(o, dir, rec, w, run, keep) {
  const runDir = join(dir, `run${run}-w${w}`);
  mkdirSync(runDir);
  const storeDir = join(runDir, 'store');
  const cp = spawnSync('cp', ['-a', rec.storeDir, storeDir]);
  if (cp.status !== 0) throw new BenchError(`cp -a ${rec.storeDir} ${storeDir}: ${cp.stderr}`);
  const nats = await startNats(runDir, storeDir);
  const workers = [];
  for (let i = 0; i < w; i++) workers.push(await startWorker(runDir, nats.url, []));
  await waitFor(`${w} workers seeing each other`, async () => (await Promise.all(workers.map(scrape))).every((s) => s.live === w), { timeoutMs: 30_000 });
  const machine0 = machineCpu();
  const self0 = process.cpuUsage();
  const cpu0 = new Map([nats.child, ...workers.map((x) => x.child)].map((c) => [c.pid, cpuSeconds(c.pid)]));
  const capture = await startCapture(runDir, nats.url, rec.disks);
  const t0 = capture.spawnedAt;
  const target = new Map(rec.perDisk.map((d) => [d.disk, d.lastSeq]));
  // The polls only tell when it is over (a busy worker answers /metrics late); the times come from the events
  // stream, which is fresh in every measurement: the capture's spawn to the last event stored.
  const samples = [];
  const deadline = Date.now() + CATCH_UP_TIMEOUT_MS;
  for (;;) {
    const applied = await appliedByDisk(workers);
    const behind = [...target].filter(([d, last]) => (applied.get(d) ?? 0) < last);
    samples.push({ ms: Math.round(performance.now() - t0), disks: applied.size, behind: behind.length });
    if (behind.length === 0) break;
    if (Date.now() > deadline) throw new BenchError(`W=${w}: not caught up after ${CATCH_UP_TIMEOUT_MS / 1000} s: ${behind.map(([d]) => d).join(',')}`);
    for (const x of workers) if (!alive(x.child)) throw new BenchError(`W=${w}: a worker exited; log tail:\n${tail(x.logFile)}`);
    await sleep(POLL_MS);
  }
  const tDone = performance.now();
  const machine1 = machineCpu();
  const cpuPct = (child) => (100 * (cpuSeconds(child.pid) - (cpu0.get(child.pid) ?? 0))) / ((tDone - t0) / 1000);
  const cpu = {
    workers: workers.map((x) => cpuPct(x.child)),
    natsServer: cpuPct(nats.child),
    capture: cpuPct(capture.child),
    bench: (100 * ((u) => (u.user + u.system) / 1e6)(process.cpuUsage(self0))) / ((tDone - t0) / 1000),
    machineBusy: (100 * (machine1.total - machine0.total - (machine1.idle - machine0.idle))) / ((tDone - t0) / 1000),
  };
  // What the rest of the machine (other tenants of a shared VM) took meanwhile.
  cpu.others = cpu.machineBusy - cpu.workers.reduce((a, b) => a + b, 0) - cpu.natsServer - cpu.capture - cpu.bench;
  // Every event stored once: the count settles, and is the same for every W (checked in main).
  let state;
  for (;;) {
    await sleep(500);
    const s = (await nats.jsm.streams.info(STREAM_EVENTS)).state;
    if (s.messages === state?.messages) break;
    state = s;
  }
  const firstEvent = Date.parse(state.first_ts);
  const lastEvent = Date.parse(state.last_ts);
  const scraped = await Promise.all(workers.map(scrape));
  const seconds = (lastEvent - capture.spawnedWall) / 1000;
  const activeSeconds = (lastEvent - firstEvent) / 1000;
  const result = {
    workers: w,
    run,
    seconds,
    activeSeconds,
    startupSeconds: (firstEvent - capture.spawnedWall) / 1000,
    records: rec.records,
    recordsPerS: rec.records / seconds,
    activeRecordsPerS: rec.records / activeSeconds,
    events: state.messages,
    disksPerWorker: scraped.map((s) => s.applied.size),
    handovers: scraped.reduce((n, s) => n + s.handovers, 0),
    takeovers: scraped.reduce((n, s) => n + s.takeovers, 0),
    cpuSeconds: (tDone - t0) / 1000,
    cpu,
    samples,
  };
  note(
    `run ${run} W=${w}: ${rec.records} records, last event ${seconds.toFixed(2)} s after the capture's spawn = ${result.recordsPerS.toFixed(0)} records/s; first to last event ${activeSeconds.toFixed(2)} s = ${result.activeRecordsPerS.toFixed(0)} records/s; ` +
      `${state.messages} events; disks per worker ${result.disksPerWorker.join('/')}; CPU % workers ${cpu.workers.map((x) => x.toFixed(0)).join('+')}, nats-server ${cpu.natsServer.toFixed(0)}, capture ${cpu.capture.toFixed(0)}, others ${cpu.others.toFixed(0)}, machine ${cpu.machineBusy.toFixed(0)} of ${os.availableParallelism() * 100}`,
  );
  const env = { runDir, nats, capture, workers };
  if (keep) return { result, env };
  await teardown(env);
  return { result };
}

async function teardown(env) {
  for (const w of env.workers) await stop(w.child);
  await stop(env.capture.child);
  await env.nats.nc.close();
  await stop(env.nats.child);
  rmSync(env.runDir, { recursive: true, force: true });
}

// ---- takeover --------------------------------------------------------------------------------------------

/** A steady write load: per disk, qemu-io processes of STEADY_WRITES_PER_PROCESS writes with sleeps, until stopped. */
function steadyLoad(capture, disks) {
  let stopped = false;
  let writes = 0;
  const loops = disks.map(async (d) => {
    while (!stopped) {
      await qemuIo(capture.url(d.id), writeCommands(d, STEADY_WRITES_PER_PROCESS, STEADY_SLEEP_MS));
      writes += STEADY_WRITES_PER_PROCESS;
    }
  });
  return {
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
      return writes;
    },
  };
}

/** Lease owner per disk as seen by a KV watch, with the bench's time of every change. */
async function watchLeases(nc) {
  const kv = await new Kvm(nc).open(KV_LEASES);
  const owners = new Map();
  const changes = [];
  const it = await kv.watch();
  const done = (async () => {
    for await (const e of it) {
      const owner = e.operation === 'PUT' ? JSON.parse(new TextDecoder().decode(e.value)).owner : '';
      owners.set(e.key, owner);
      changes.push({ at: Date.now(), disk: e.key, owner });
    }
  })();
  return {
    owners,
    changes,
    stop: async () => {
      it.stop();
      await done;
    },
  };
}

/** Every worker owns ⌊d/n⌋ or ⌈d/n⌉ disks by its metrics, and the leases say the same. */
async function balanced(workers, leases, disks) {
  const owned = await Promise.all(workers.map(async (w) => [w.id, (await scrape(w)).applied]));
  const all = owned.flatMap(([, a]) => [...a.keys()]).sort();
  if (all.join() !== disks.map((d) => d.id).sort().join()) return false;
  for (const [id, a] of owned) for (const d of a.keys()) if (leases.owners.get(d) !== id) return false;
  const counts = owned.map(([, a]) => a.size);
  return Math.max(...counts) - Math.min(...counts) <= 1;
}

function percentile(xs, p) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

async function measureTakeover(env, rec, config, kills) {
  const { nats, capture, runDir } = env;
  note(`takeover (${config.name}: lease TTL ${config.ttlS} s, heartbeat ${config.heartbeatS} s): ${kills} x kill -9 under a steady write load`);
  const leases = await watchLeases(nats.nc);
  await waitFor('a balanced spread', () => balanced(env.workers, leases, rec.disks), { timeoutMs: 30_000 });
  const fromSeq = (await nats.jsm.streams.info(STREAM_EVENTS)).state.last_seq + 1;
  const load = steadyLoad(capture, rec.disks);
  const rounds = [];
  try {
    for (let k = 0; k < kills; k++) {
      await sleep(1000 + Math.random() * 2000);
      const i = Math.floor(Math.random() * env.workers.length);
      const victim = env.workers[i];
      const lost = [...leases.owners].filter(([, owner]) => owner === victim.id).map(([d]) => d);
      const killedAt = Date.now();
      victim.child.kill('SIGKILL');
      await victim.child.done;
      await waitFor(`takeover of ${lost.join(',')}`, () => lost.every((d) => ![victim.id, ''].includes(leases.owners.get(d) ?? '')), { timeoutMs: config.ttlS * 1000 + 20_000 });
      const leasedMs = lost.map((d) => leases.changes.find((c) => c.at >= killedAt && c.disk === d && c.owner !== victim.id && c.owner !== '').at - killedAt);
      rounds.push({ killedAt, victim: victim.id, lost, leasedMs });
      note(`kill ${k + 1}/${kills}: ${lost.length} disks leased again after ${leasedMs.join(', ')} ms`);
      env.workers[i] = await startWorker(runDir, nats.url, config.args);
      await waitFor('a balanced spread after the restart', () => balanced(env.workers, leases, rec.disks), { timeoutMs: 30_000 });
    }
  } finally {
    await load.stop();
    await leases.stop();
  }
  // Caught up with what the load wrote, then the stream's record of who stored which event when.
  const targets = new Map();
  for (const d of rec.disks) targets.set(d.id, (await nats.jsm.streams.getMessage(STREAM_WRITES, { last_by_subj: `gammaray.${d.id}.writes` })).seq);
  await waitFor('the workers to catch up with the load', async () => {
    const a = await appliedByDisk(env.workers);
    return [...targets].every(([d, last]) => (a.get(d) ?? 0) >= last);
  }, { timeoutMs: 60_000 });
  await sleep(1000);
  const stored = await readEventHeaders(nats.nc, fromSeq);
  const firstEventMs = [];
  for (const r of rounds) {
    r.firstEventMs = r.lost.map((d) => {
      const first = stored.find((e) => e.time >= r.killedAt && e.disk === d && e.worker !== r.victim);
      return first === undefined ? NaN : first.time - r.killedAt;
    });
    firstEventMs.push(...r.firstEventMs);
  }
  const ids = stored.map((e) => e.msgId);
  const duplicates = ids.length - new Set(ids).size;
  if (duplicates !== 0) throw new BenchError(`${duplicates} events stored twice during the takeover phase`);
  const leasedMs = rounds.flatMap((r) => r.leasedMs);
  return {
    config: { name: config.name, leaseTtlS: config.ttlS, heartbeatS: config.heartbeatS, args: config.args },
    workers: env.workers.length,
    kills: rounds.length,
    disksMoved: leasedMs.length,
    leasedMs: { p50: percentile(leasedMs, 50), max: Math.max(...leasedMs), min: Math.min(...leasedMs) },
    firstEventMs: { p50: percentile(firstEventMs, 50), max: Math.max(...firstEventMs), min: Math.min(...firstEventMs), missing: firstEventMs.filter((x) => !Number.isFinite(x)).length },
    eventsStored: stored.length,
    rounds,
  };
}

/** Headers of every event stored from stream sequence `fromSeq` on: disk, worker, msg id, stream time. */
async function readEventHeaders(nc, fromSeq) {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const last = (await jsm.streams.info(STREAM_EVENTS)).state.last_seq;
  const out = [];
  if (last < fromSeq) return out;
  const c = await js.consumers.get(STREAM_EVENTS, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq, headers_only: true });
  const it = await c.consume({ max_messages: 1024 });
  for await (const m of it) {
    out.push({ disk: m.subject.split('.')[1], worker: m.headers?.get(HEADER_WORKER), msgId: m.headers?.get('Nats-Msg-Id'), time: m.time.getTime() });
    if (m.seq >= last) break;
  }
  return out;
}

// ---- reporting -------------------------------------------------------------------------------------------

function probeText(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return undefined;
  return `${r.stdout}${r.stderr}`.trim().split('\n')[0];
}

function gitRevision() {
  const head = probeText('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']);
  if (head === undefined || head.includes('fatal')) return 'unknown';
  const dirty = spawnSync('git', ['-C', REPO, 'status', '--porcelain', '--', 'packages', 'services'], { encoding: 'utf8' }).stdout.trim();
  return dirty ? `${head}+dirty` : head;
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
    qemuIo: probeText('qemu-io', ['--version']),
    natsJs: JSON.parse(readFileSync(join(REPO, 'node_modules', '@nats-io', 'jetstream', 'package.json'), 'utf8')).version,
    git: gitRevision(),
  };
}

const loadavg = () => os.loadavg().map((x) => +x.toFixed(2));
const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '-');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const fx = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-');


/** Per W: medians over runs of the times, rates and CPU shares. */
function summarize(tput, maxW) {
  const out = [];
  for (let w = 1; w <= maxW; w++) {
    const xs = tput.filter((t) => t.workers === w);
    const med = (f) => median(xs.map(f));
    const span = (f) => ({ median: med(f), min: Math.min(...xs.map(f)), max: Math.max(...xs.map(f)) });
    out.push({
      workers: w,
      runs: xs.length,
      seconds: span((t) => t.seconds),
      recordsPerS: span((t) => t.recordsPerS),
      activeSeconds: span((t) => t.activeSeconds),
      activeRecordsPerS: span((t) => t.activeRecordsPerS),
      disksPerWorker: xs[0].disksPerWorker,
      events: xs[0].events,
      cpu: {
        workers: med((t) => t.cpu.workers.reduce((a, b) => a + b, 0)),
        perWorker: med((t) => t.cpu.workers.reduce((a, b) => a + b, 0) / w),
        natsServer: med((t) => t.cpu.natsServer),
        capture: med((t) => t.cpu.capture),
        bench: med((t) => t.cpu.bench),
        others: med((t) => t.cpu.others),
        machineBusy: med((t) => t.cpu.machineBusy),
      },
    });
  }
  const base = out[0];
  for (const s of out) {
    s.ratio = s.recordsPerS.median / base.recordsPerS.median;
    s.activeRatio = s.activeRecordsPerS.median / base.activeRecordsPerS.median;
  }
  return out;
}

function report(o, facts, rec, summary, takeovers, load0, load1, started, seconds) {
  const out = [];
  const r = (s, f) => `${f(s.median)} (${f(s.min)}-${f(s.max)})`;
  out.push(`bench/scale: ${started.toISOString()}, ${seconds.toFixed(0)} s`);
  out.push(`machine: ${facts.nproc} CPUs (${facts.cpuModel}), ${facts.memGiB} GiB, Linux ${facts.kernel}; load ${load0.join(' / ')} at start, ${load1.join(' / ')} at end`);
  out.push(`versions: node ${facts.node}, ${facts.natsServer}, @nats-io/jetstream ${facts.natsJs}, ${facts.qemuIo}; gammaray ${facts.git}`);
  out.push('');
  out.push(`Backlog: ${o.disks} disks, ${rec.records} records (${o.writes} x 4 KiB writes per disk, qemu-io, one in flight), ${(rec.streamBytes / 2 ** 20).toFixed(0)} MiB of stream; the workers restore seq-0 checkpoints.`);
  out.push(`${o.runs} run(s) per W, medians (min-max). All: from the capture's spawn (it registers the disks; the workers are up and idle) to the last event stored. Active: first to last event stored.`);
  out.push('| workers | disks each | events | all s | records/s | vs 1 | active s | records/s | vs 1 |');
  out.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const t of summary) {
    out.push(`| ${t.workers} | ${t.disksPerWorker.join(' / ')} | ${t.events} | ${r(t.seconds, f2)} | ${r(t.recordsPerS, f0)} | ${fx(t.ratio)} | ${r(t.activeSeconds, f2)} | ${r(t.activeRecordsPerS, f0)} | ${fx(t.activeRatio)} |`);
  }
  out.push('');
  out.push(`CPU over the measurement, % of one core (medians; the machine has ${facts.nproc * 100}):`);
  out.push('| workers | inferencers (sum) | per inferencer | nats-server | capture | bench | others | machine busy |');
  out.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const t of summary) {
    const c = t.cpu;
    out.push(`| ${t.workers} | ${f0(c.workers)} | ${f0(c.perWorker)} | ${f0(c.natsServer)} | ${f0(c.capture)} | ${f0(c.bench)} | ${f0(c.others)} | ${f0(c.machineBusy)} |`);
  }
  if (takeovers.length > 0) {
    out.push('');
    out.push(`Takeover after kill -9 of one of ${takeovers[0].workers} workers (steady load: a 4 KiB write per disk every ~${STEADY_SLEEP_MS} ms), ms from the kill:`);
    out.push('| lease TTL / heartbeat | kills | disks moved | lease taken p50 | lease taken max | first event stored p50 | first event stored max |');
    out.push('|---|---:|---:|---:|---:|---:|---:|');
    for (const t of takeovers) {
      out.push(`| ${t.config.leaseTtlS} s / ${t.config.heartbeatS} s | ${t.kills} | ${t.disksMoved} | ${f0(t.leasedMs.p50)} | ${f0(t.leasedMs.max)} | ${f0(t.firstEventMs.p50)} | ${f0(t.firstEventMs.max)} |`);
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---- main ------------------------------------------------------------------------------------------------

function preflight() {
  for (const [cmd, args, pkg] of [[NATS_SERVER, ['--version'], 'nats-server'], ['qemu-io', ['--version'], 'qemu-utils'], ['mkfs.ext4', ['-V'], 'e2fsprogs'], ['debugfs', ['-V'], 'e2fsprogs']]) {
    if (spawnSync(cmd, args, { stdio: 'ignore' }).error) throw new BenchError(`${cmd} not found; install ${pkg}`);
  }
  if (!existsSync(join(REPO, 'packages', 'cli', 'dist', 'gammaray.cjs')) || !existsSync(join(REPO, 'services', 'inferencer', 'dist', 'index.js'))) {
    note('the CLI or the services are not built; running pnpm -s build');
    const r = spawnSync('pnpm', ['-s', 'build'], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new BenchError(`pnpm -s build failed (${r.error?.message ?? `exit ${r.status}`})`);
  }
  const stale = staleBuilds();
  if (stale.length > 0) note(`warning: sources newer than the build in ${stale.join(', ')} (run pnpm build)`);
  return stale;
}

/** Packages whose newest source file is newer than their newest dist file. */
function staleBuilds() {
  const newest = (dir) => {
    const r = spawnSync('find', [dir, '-type', 'f', '-printf', '%T@\n'], { encoding: 'utf8' });
    return Math.max(0, ...r.stdout.split('\n').filter(Boolean).map(Number));
  };
  return BUILT.filter((p) => existsSync(join(REPO, p, 'src')) && newest(join(REPO, p, 'src')) > newest(join(REPO, p, 'dist')));
}

async function main() {
  const o = readOptions();
  const staleBuild = preflight();
  const started = new Date();
  const load0 = loadavg();
  const facts = machineFacts();
  tmpRoot = mkdtempSync('/var/tmp/gammaray-bench-scale-');
  removeOnExit.add(tmpRoot);
  note(`in ${tmpRoot}; load ${load0.join(' ')}`);
  const t0 = performance.now();
  const rec = await record(o, tmpRoot);
  const tput = [];
  const takeovers = [];
  const ws = Array.from({ length: o.workers }, (_, i) => i + 1);
  for (let run = 1; run <= o.runs; run++) {
    // Rotated so that noise spreads over every W, and the last measurement is W = max: its processes stay up
    // for the takeover phase.
    const k = (o.runs - run) % ws.length;
    const order = [...ws.slice(k), ...ws.slice(0, k)];
    for (const w of order) {
      const keep = run === o.runs && w === o.workers && o.kills + o.shortKills > 0;
      const { result, env } = await measureThroughput(o, tmpRoot, rec, w, run, keep);
      tput.push(result);
      if (result.events !== tput[0].events) throw new BenchError(`run ${run} W=${w} stored ${result.events} events, the first measurement ${tput[0].events}: not the same events`);
      if (!keep) continue;
      try {
        if (o.kills > 0) takeovers.push(await measureTakeover(env, rec, DEFAULT_TTL, o.kills));
        if (o.shortKills > 0) {
          const n = env.workers.length;
          for (const x of env.workers) await stop(x.child);
          env.workers = [];
          for (let i = 0; i < n; i++) env.workers.push(await startWorker(env.runDir, env.nats.url, SHORT_TTL.args));
          takeovers.push(await measureTakeover(env, rec, SHORT_TTL, o.shortKills));
        }
      } finally {
        await teardown(env);
      }
    }
  }
  const summary = summarize(tput, o.workers);
  const seconds = (performance.now() - t0) / 1000;
  const load1 = loadavg();
  report(o, facts, rec, summary, takeovers, load0, load1, started, seconds);
  const ratios = Object.fromEntries(summary.map((t) => [`w${t.workers}VsW1`, { all: t.ratio, active: t.activeRatio }]));
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, 'last.json');
  const setup = {
    images: `${o.disks} x mkfs.ext4 -q -F -b 4096 -d SRC IMG ${IMAGE_MIB}M, SRC = data.bin (8 MiB random) + readme.txt`,
    recording: `gammaray capture --disk dN=IMG ...; one gammaray inferencer crawls and checkpoints every disk at seq 0, stopped; then per disk qemu-io -f raw -c 'write -q -P 0xNN OFFSET 4096' x ${o.writes} (random blocks of data.bin) nbd://.../dN`,
    measurement: 'copy of the recording store dir under a fresh nats-server -js; W x gammaray inferencer --metrics HOST:PORT (defaults: checkpoint 2 s, lease TTL 5 s, heartbeat 1 s), settled; then gammaray capture (registers the disks); timed until every disk applied its last record',
    takeover: `steady load: per disk qemu-io -c 'write ...' -c 'sleep ${STEADY_SLEEP_MS}' x ${STEADY_WRITES_PER_PROCESS}, repeated; kill -9 of a random worker after 1.5-3.5 s, restart, balanced spread before the next`,
  };
  writeFileSync(
    file,
    `${JSON.stringify({ started: started.toISOString(), seconds, options: o, setup, machine: { ...facts, staleBuild, loadStart: load0, loadEnd: load1 }, recording: { records: rec.records, streamBytes: rec.streamBytes, loadSeconds: rec.loadSeconds, perDisk: rec.perDisk }, ratios, summary, throughput: tput, takeovers }, null, 2)}\n`,
  );
  note(`wrote ${file}`);
}

runMain('bench/scale', main);
