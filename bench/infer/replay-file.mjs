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
 *   node --expose-gc bench/infer/replay-file.mjs --stream --heap-breakdown   # what the live state is made of
 *
 * The records are read into memory first (untimed), so their bytes are in the baseline; with --stream each is
 * read from the file into a buffer of its own when it is applied (as messages arrive), so the peak RSS is the
 * engine's and the garbage its records leave.
 *
 * --heap-breakdown: after the (last) replay and a full GC, writes a V8 heap snapshot of the process (the engine
 * still referenced), then prints the largest kinds of retained memory in bytes per tracked inode, the baseline
 * (modules, code) included: plain objects by their first property names (a node, a link, a run...), arrays,
 * strings, and ArrayBuffer backing stores by size (held blocks, pending data). For work on the memory per inode.
 */
import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { parseArgs } from 'node:util';
import { DiskInferencer, encodeEvent } from '@gammaray/inferencer';
import { decodeWriteRecord } from '@gammaray/wire';
import { fileFetcher, streamRecords } from './file-fetcher.mjs';

const { values: v } = parseArgs({
  options: {
    dir: { type: 'string', default: '/var/tmp/gammaray-bench/infer-v1-f50000-d50-512M' },
    repeat: { type: 'string', default: '1' },
    stream: { type: 'boolean', default: false },
    'heap-breakdown': { type: 'boolean', default: false },
  },
});

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
  if (v['heap-breakdown'] && r === Number(v.repeat) - 1) heapBreakdown(inf, nodes);
}

/** Prints what the heap holds, per tracked inode (see --heap-breakdown). `inf` is kept alive until the snapshot. */
function heapBreakdown(inf, nodes) {
  const file = join(tmpdir(), `gammaray-replay-${process.pid}.heapsnapshot`);
  global.gc?.();
  writeHeapSnapshot(file);
  if (!inf) return;
  const snap = JSON.parse(readFileSync(file, 'utf8'));
  rmSync(file, { force: true });
  const { node_fields: nf, edge_fields: ef, node_types: [types], edge_types: [etypes] } = snap.snapshot.meta;
  const { nodes: N, edges: E, strings } = snap;
  const [ti, ni, si, eci] = ['type', 'name', 'self_size', 'edge_count'].map((f) => nf.indexOf(f));
  const [eti, eni] = ['type', 'name_or_index'].map((f) => ef.indexOf(f));
  const bytes = new Map();
  const count = new Map();
  const add = (key, size) => {
    bytes.set(key, (bytes.get(key) ?? 0) + size);
    count.set(key, (count.get(key) ?? 0) + 1);
  };
  let total = 0;
  for (let i = 0, e = 0; i < N.length; i += nf.length) {
    const type = types[N[i + ti]];
    const name = strings[N[i + ni]];
    const size = N[i + si];
    const edges = N[i + eci];
    total += size;
    if (type === 'object' && name === 'Object') {
      // Smi fields have no edge: a shape shows as the names of its pointer fields.
      const props = [];
      for (let j = e; j < e + edges * ef.length && props.length < 5; j += ef.length) if (etypes[E[j + eti]] === 'property' && strings[E[j + eni]] !== '__proto__') props.push(strings[E[j + eni]]);
      add(`object {${props.join(', ')}${props.length === 5 ? ', ...' : ''}}`, size);
    } else if (type === 'native' && name === 'system / JSArrayBufferData') add(`ArrayBuffer data of ${size} B`, size);
    else if (type === 'string' || type === 'concatenated string' || type === 'sliced string') add('strings', size);
    else if (type === 'object' || type === 'closure' || type === 'native') add(`${type} ${name.slice(0, 40)}`, size);
    else add(type, size);
    e += edges * ef.length;
  }
  const rows = [...bytes].sort((a, b) => b[1] - a[1]).slice(0, 25);
  process.stdout.write(`heap snapshot: ${(total / 1e6).toFixed(1)} MB, ${(total / nodes).toFixed(0)} B per tracked inode (${nodes} inodes; the baseline included)\n`);
  for (const [key, b] of rows) process.stdout.write(`${(b / nodes).toFixed(1).padStart(8)} B/inode ${String(count.get(key)).padStart(8)} x  ${key}\n`);
}
