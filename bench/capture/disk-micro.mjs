#!/usr/bin/env node
/**
 * CaptureDisk alone, for the CPU cost of its own write path: 16 writers of 4 KiB random writes into a fresh
 * sparse image, and an in-process publisher that acks every record on the next turn of the event loop (no NATS,
 * no NBD). Prints user and system CPU per write; run it a few times alternating two builds, the noise of a shared
 * machine is +-15% per run.
 *
 *   node bench/capture/disk-micro.mjs [--writes N] [--repo DIR]    (DIR: a built checkout, default this one)
 */
import { closeSync, ftruncateSync, openSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: v } = parseArgs({ options: { writes: { type: 'string', default: '300000' }, repo: { type: 'string' } } });
const repo = resolve(v.repo ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..'));
const { CaptureDisk } = await import(join(repo, 'packages', 'capture', 'dist', 'index.js'));
const N = Number(v.writes);
const DEPTH = 16;
const image = `/var/tmp/gammaray-disk-micro-${process.pid}.raw`;
const fd = openSync(image, 'w');
ftruncateSync(fd, 256 * 1024 * 1024);
closeSync(fd);
let seq = 0;
const publisher = { publish: () => new Promise((ok) => setImmediate(() => ok({ seq: ++seq, duplicate: false }))) };
const disk = await CaptureDisk.open({ disk: 'micro', image, js: {}, publisher });
const data = Buffer.alloc(4096, 0xa5);
let issued = 0;
let done = 0;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await new Promise((finish) => {
  const next = () => {
    if (issued === N) {
      if (done === N) finish();
      return;
    }
    issued++;
    // A fresh payload per write, as the NBD server hands over (the disk keeps it until it is stored).
    disk.write(Math.floor(Math.random() * 65536) * 4096, Buffer.from(data), { fua: false }).then(() => {
      done++;
      next();
    });
  };
  for (let i = 0; i < DEPTH; i++) next();
});
const c = process.cpuUsage(cpu0);
const s = (performance.now() - t0) / 1000;
process.stdout.write(
  `${repo}: ${N} writes in ${s.toFixed(2)} s, ${disk.stats.records} records; CPU per write ${((c.user + c.system) / N).toFixed(2)} us (user ${(c.user / N).toFixed(2)}, system ${(c.system / N).toFixed(2)})\n`,
);
await disk.close();
rmSync(image, { force: true });
