#!/usr/bin/env node
/**
 * bench/view/load: the load generator of bench/view/run.mjs, run as its own process so the measured server does
 * not share an event loop with its client. A closed loop: `--concurrency` requests outstanding at all times, each
 * one's latency recorded, for `--seconds` after `--warmup-seconds`. Prints one JSON line:
 * `{op, target, concurrency, requests, errors, seconds, rps, p50Ms, p90Ms, p99Ms, maxMs, firstError?}`.
 *
 *   node bench/view/load.mjs --target grpc --address 127.0.0.1:50051 --disk d --op stat --paths FILE ...
 *   node bench/view/load.mjs --target fs --root /mnt/loop --op listdir --paths FILE ...
 *
 * Ops: `stat` (gRPC Stat / lstat(2)), `listdir` (gRPC ListDir, one page of up to 1000 entries with every entry's
 * attributes / readdir(3) + lstat(2) of every entry, what `ls -l` does). FILE holds one absolute path per line;
 * requests cycle through them.
 */
import { lstat, readdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '..', '..');

const { values: v } = parseArgs({
  options: {
    target: { type: 'string' },
    address: { type: 'string' },
    disk: { type: 'string' },
    root: { type: 'string' },
    op: { type: 'string' },
    paths: { type: 'string' },
    concurrency: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '5' },
    'warmup-seconds': { type: 'string', default: '1' },
  },
});
const concurrency = Number(v.concurrency);
const seconds = Number(v.seconds);
const warmup = Number(v['warmup-seconds']);
const paths = readFileSync(v.paths, 'utf8').split('\n').filter((p) => p !== '');
if (paths.length === 0) throw new Error('no paths');

let request;
let close = () => {};
if (v.target === 'grpc') {
  const { ViewClient } = await import(pathToFileURL(join(REPO, 'services', 'view', 'dist', 'index.js')).href);
  const client = new ViewClient(v.address);
  await client.waitForReady(10_000);
  close = () => client.close();
  request =
    v.op === 'stat'
      ? (p) => client.stat(v.disk, p)
      : async (p) => {
          const r = await client.listDir(v.disk, p, { pageSize: 1000 });
          if (r.entries.length === 0) throw new Error(`ListDir ${p} returned nothing`);
        };
} else if (v.target === 'fs') {
  const root = v.root;
  request =
    v.op === 'stat'
      ? (p) => lstat(root + p)
      : async (p) => {
          const dir = root + p;
          const names = await readdir(dir);
          await Promise.all(names.map((n) => lstat(`${dir}/${n}`)));
        };
} else {
  throw new Error(`--target must be grpc or fs, got ${v.target}`);
}

const latencies = [];
let errors = 0;
let firstError;
let next = 0;
let recording = false;
let stopAt = Infinity;
const worker = async () => {
  while (performance.now() < stopAt) {
    const p = paths[next++ % paths.length];
    const t0 = performance.now();
    try {
      await request(p);
      if (recording) latencies.push(performance.now() - t0);
    } catch (err) {
      if (recording) errors++;
      firstError ??= err?.details ?? err?.message ?? String(err);
    }
  }
};
const t0 = performance.now();
stopAt = t0 + (warmup + seconds) * 1000;
let measuredFrom = t0;
setTimeout(() => {
  recording = true;
  measuredFrom = performance.now();
}, warmup * 1000);
await Promise.all(Array.from({ length: concurrency }, worker));
const elapsed = (performance.now() - measuredFrom) / 1000;
close();

const sorted = Float64Array.from(latencies).sort();
const pct = (q) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);
const round = (x) => Math.round(x * 1000) / 1000;
process.stdout.write(
  `${JSON.stringify({
    op: v.op,
    target: v.target,
    concurrency,
    requests: sorted.length,
    errors,
    seconds: round(elapsed),
    rps: Math.round(sorted.length / elapsed),
    p50Ms: round(pct(0.5)),
    p90Ms: round(pct(0.9)),
    p99Ms: round(pct(0.99)),
    maxMs: round(sorted.length ? sorted[sorted.length - 1] : NaN),
    ...(firstError ? { firstError } : {}),
  })}\n`,
);
