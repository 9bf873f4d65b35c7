#!/usr/bin/env node
/**
 * bench/infer/checkpoint-sizes.mjs: what a delta checkpoint costs against a full one, on a cached recording of
 * bench/infer/run.mjs (its `records.bin` and `start.img`, replayed from the file as replay-file.mjs does).
 * Every `--every` records it takes a delta (the changes since the checkpoint before) and then, for comparison, a
 * full checkpoint of the same state (which starts the next delta's changes), and checks that the full checkpoint
 * before and the delta restore exactly the state the full one holds. It prints, per point, both sizes and times,
 * and at the end their medians and the ratio; then a delta of a disk that did not change (the fixed part every
 * delta repeats). Sizes are deterministic; times are as noisy as the machine.
 *
 *   node bench/infer/checkpoint-sizes.mjs [--dir /var/tmp/gammaray-bench/infer-v1-f50000-d50-512M] [--every 200]
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DiskInferencer, decodeCheckpoint, encodeCheckpoint } from '@gammaray/inferencer';
import { decodeWriteRecord } from '@gammaray/wire';
import { fileFetcher, streamRecords } from './file-fetcher.mjs';

const { values: v } = parseArgs({
  options: {
    dir: { type: 'string', default: '/var/tmp/gammaray-bench/infer-v1-f50000-d50-512M' },
    every: { type: 'string', default: '200' },
  },
});
const every = Number(v.every);

const bytesOf = (parts) => parts.reduce((n, p) => n + p.length, 0);
/** A state's checkpoint bytes with nodes, links and blocks in number order (a restored chain orders them otherwise). */
const canonical = (s) => Buffer.from(encodeCheckpoint({ ...s, nodes: [...s.nodes].sort((a, b) => a.ino - b.ino), links: [...s.links].sort((a, b) => a[0] - b[0]), blocks: [...s.blocks].sort((a, b) => a[0] - b[0]) }));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const { fetcher, close } = fileFetcher(join(v.dir, 'start.img'));
const { inferencer: inf } = await DiskInferencer.bootstrap(fetcher, { disk: 'bench' }, 0, new Date(0));
let base = Buffer.concat(inf.checkpointParts());
const rows = [];
let n = 0;
for (const m of streamRecords(join(v.dir, 'records.bin'))) {
  await inf.apply(m.seq, decodeWriteRecord(m.data));
  if (++n % every !== 0) continue;
  const t0 = performance.now();
  const delta = inf.deltaCheckpointParts();
  const t1 = performance.now();
  const full = inf.checkpointParts();
  const t2 = performance.now();
  const fullBytes = Buffer.concat(full);
  if (!canonical(decodeCheckpoint(base, [Buffer.concat(delta)])).equals(canonical(decodeCheckpoint(fullBytes)))) throw new Error(`record ${n}: the full checkpoint before and the delta do not hold the state the full one does`);
  rows.push({ record: n, nodes: inf.nodes.size, deltaBytes: bytesOf(delta), deltaMs: t1 - t0, fullBytes: fullBytes.length, fullMs: t2 - t1 });
  base = fullBytes;
}
inf.deltaCheckpointParts(); // the changes since the last point
const idle = bytesOf(inf.deltaCheckpointParts());
close();
const mb = (b) => (b / 1e6).toFixed(2);
process.stdout.write(`| record | inodes | delta, MB | delta, ms | full, MB | full, ms |\n|---:|---:|---:|---:|---:|---:|\n`);
for (const r of rows) process.stdout.write(`| ${r.record} | ${r.nodes} | ${mb(r.deltaBytes)} | ${r.deltaMs.toFixed(0)} | ${mb(r.fullBytes)} | ${r.fullMs.toFixed(0)} |\n`);
const md = { deltaBytes: median(rows.map((r) => r.deltaBytes)), fullBytes: median(rows.map((r) => r.fullBytes)), deltaMs: median(rows.map((r) => r.deltaMs)), fullMs: median(rows.map((r) => r.fullMs)) };
process.stdout.write(`medians over ${rows.length} points (a delta every ${every} records): delta ${mb(md.deltaBytes)} MB in ${md.deltaMs.toFixed(0)} ms, full ${mb(md.fullBytes)} MB in ${md.fullMs.toFixed(0)} ms: delta / full ${(md.deltaBytes / md.fullBytes).toFixed(2)}x bytes, ${(md.deltaMs / md.fullMs).toFixed(2)}x time\n`);
process.stdout.write(`a delta with nothing changed (the disk idle after the last record): ${(idle / 1e3).toFixed(1)} kB; every delta and full checkpoint restored exactly\n`);
