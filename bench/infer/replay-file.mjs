#!/usr/bin/env node
/**
 * bench/infer/replay-file.mjs: the engine alone, for profiling and for checking that a change keeps the events.
 * Replays a cached recording of bench/infer/run.mjs (its `records.bin` and `start.img`) straight from the file,
 * without NATS: bootstrap, then decodeWriteRecord, apply and encodeEvent for every record, as replay.mjs does.
 * Prints the timings, the engine's memory and a sha256 over every encoded event (in order), which must not
 * change when only the engine's speed or memory does.
 *
 *   node --expose-gc bench/infer/replay-file.mjs [--dir /var/tmp/gammaray-bench/infer-v1-f50000-d50-512M] [--repeat N] [--stream]
 *   node --cpu-prof --cpu-prof-dir /tmp bench/infer/replay-file.mjs
 *
 * The records are read into memory first (untimed), so their bytes are in the baseline; with --stream each is
 * read from the file into a buffer of its own when it is applied (as messages arrive), so the peak RSS is the
 * engine's and the garbage its records leave.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DiskInferencer, encodeEvent } from '@gammaray/inferencer';
import { decodeWriteRecord } from '@gammaray/wire';
import { fileFetcher } from './file-fetcher.mjs';

const { values: v } = parseArgs({
  options: {
    dir: { type: 'string', default: '/var/tmp/gammaray-bench/infer-v1-f50000-d50-512M' },
    repeat: { type: 'string', default: '1' },
    stream: { type: 'boolean', default: false },
  },
});

function* streamRecords(path) {
  const fd = openSync(path, 'r');
  const head = Buffer.alloc(12);
  for (let at = 0; readSync(fd, head, 0, 12, at) === 12; ) {
    const len = head.readUInt32LE(8);
    const data = Buffer.allocUnsafe(len);
    readSync(fd, data, 0, len, at + 12);
    yield { seq: Number(head.readBigUInt64LE(0)), data };
    at += 12 + len;
  }
  closeSync(fd);
}

function readRecords(path) {
  const buf = readFileSync(path);
  const out = [];
  for (let at = 0; at < buf.length; ) {
    const seq = Number(buf.readBigUInt64LE(at));
    const len = buf.readUInt32LE(at + 8);
    out.push({ seq, data: buf.subarray(at + 12, at + 12 + len) });
    at += 12 + len;
  }
  return out;
}

const records = v.stream ? undefined : readRecords(join(v.dir, 'records.bin'));
for (let r = 0; r < Number(v.repeat); r++) {
  global.gc?.();
  const base = process.memoryUsage();
  const { fetcher, close } = fileFetcher(join(v.dir, 'start.img'));
  const hash = createHash('sha256');
  let events = 0;
  let eventBytes = 0;
  let encodeMs = 0;
  const count = (list) => {
    const e0 = performance.now();
    for (const e of list) {
      const b = encodeEvent(e);
      hash.update(b);
      eventBytes += b.length;
      events++;
    }
    encodeMs += performance.now() - e0;
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const boot = await DiskInferencer.bootstrap(fetcher, { disk: 'bench' }, 0, new Date(0));
  const inf = boot.inferencer;
  count(boot.events);
  for (const m of records ?? streamRecords(join(v.dir, 'records.bin'))) count(await inf.apply(m.seq, decodeWriteRecord(m.data)));
  const t1 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  global.gc?.();
  await new Promise((res) => setTimeout(res, 200));
  global.gc?.();
  const mem = process.memoryUsage();
  const nodes = inf.nodes.size;
  const retained = mem.heapUsed + mem.arrayBuffers - (base.heapUsed + base.arrayBuffers);
  process.stdout.write(
    `${JSON.stringify({
      seconds: +((t1 - t0) / 1000).toFixed(3),
      cpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(3),
      encodeSeconds: +(encodeMs / 1000).toFixed(3),
      events,
      eventBytes,
      nodes,
      heapPerInode: Math.round((mem.heapUsed - base.heapUsed) / nodes),
      buffersPerInode: Math.round((mem.arrayBuffers - base.arrayBuffers) / nodes),
      retainedPerInode: Math.round(retained / nodes),
      maxRss: process.resourceUsage().maxRSS * 1024,
      baseRss: base.rss,
      sha256: hash.digest('hex'),
    })}\n`,
  );
  close();
}
