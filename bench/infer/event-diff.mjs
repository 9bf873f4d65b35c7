#!/usr/bin/env node
/**
 * bench/infer/event-diff.mjs: what a change to the engine did to the events of a recording, when the sha256 that
 * replay-file.mjs --stream prints changes. Replays the recording through two builds of the engine (two worktrees,
 * each built with `pnpm build`) and compares the events: those only one build gives, and those both give (the
 * same kind, path, range, bytes and size) but with another record (seq): from which record to which, of which kind.
 *
 *   node bench/infer/event-diff.mjs --old /work/wt-main --new . [--dir /var/tmp/gammaray-bench/infer-v1-f50000-d50-512M]
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values: v } = parseArgs({
  options: {
    old: { type: 'string' },
    new: { type: 'string', default: '.' },
    dir: { type: 'string', default: '/var/tmp/gammaray-bench/infer-v1-f50000-d50-512M' },
  },
});
if (!v.old) throw new Error('--old <worktree> is required');

/** [seq, what] per event of the recording, replayed through the engine built in worktree `root`. */
async function events(root) {
  const { DiskInferencer } = await import(resolve(root, 'packages/inferencer/dist/index.js'));
  const { decodeWriteRecord } = await import(resolve(root, 'packages/wire/dist/index.js'));
  const { fileFetcher } = await import(resolve(root, 'bench/infer/file-fetcher.mjs'));
  const { fetcher, close } = fileFetcher(`${v.dir}/start.img`, 0);
  const out = [];
  const what = (e) => `${e.kind} ${e.path} ${e.offset ?? ''}+${e.length ?? ''} ${e.data ? createHash('sha256').update(e.data).digest('hex').slice(0, 16) : e.dataOmitted ? 'omitted' : '-'} size=${e.stat?.size ?? ''}`;
  const { inferencer: inf, events: first } = await DiskInferencer.bootstrap(fetcher, { disk: 'diff' }, 0, new Date(0));
  for (const e of first) out.push([e.seq, what(e)]);
  const fd = openSync(`${v.dir}/records.bin`, 'r');
  const head = Buffer.alloc(12);
  for (let at = 0; readSync(fd, head, 0, 12, at) === 12; ) {
    const len = head.readUInt32LE(8);
    const data = Buffer.allocUnsafe(len);
    readSync(fd, data, 0, len, at + 12);
    for (const e of await inf.apply(Number(head.readBigUInt64LE(0)), decodeWriteRecord(data))) out.push([e.seq, what(e)]);
    at += 12 + len;
  }
  closeSync(fd);
  close();
  return out;
}

const before = await events(v.old);
const after = await events(v.new);
const bySame = new Map();
for (const [seq, w] of before) {
  const list = bySame.get(w);
  if (list) list.push(seq);
  else bySame.set(w, [seq]);
}
const added = [];
const moves = new Map();
let moved = 0;
for (const [seq, w] of after) {
  const list = bySame.get(w);
  const was = list?.shift();
  if (was === undefined) added.push(`${seq} ${w}`);
  else if (was !== seq) {
    moved++;
    const k = `${was} -> ${seq}: ${w.split(' ')[0]}`;
    moves.set(k, (moves.get(k) ?? 0) + 1);
  }
}
const removed = [];
for (const [w, seqs] of bySame) for (const seq of seqs) removed.push(`${seq} ${w}`);
console.log(`${before.length} events before, ${after.length} after; ${removed.length} only before, ${added.length} only after, ${moved} moved to another record`);
for (const r of removed.slice(0, 20)) console.log(`- ${r}`);
for (const a of added.slice(0, 20)) console.log(`+ ${a}`);
for (const [k, n] of [...moves].slice(0, 40)) console.log(`moved from record ${k} x${n}`);
