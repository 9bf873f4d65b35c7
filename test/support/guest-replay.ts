/**
 * Replaying a recorded guest stream (test/support/guest-stream.ts) through the inference engine and checking the
 * result against the kernel's view of the final image: shared by the real-guest inference tests.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { FileBlockSource } from '@gammaray/disk';
import { Ext4Volume } from '@gammaray/ext4';
import { DiskInferencer, decodeCheckpoint, encodeCheckpoint, foldEvents, readContent, type BlockFetcher, type FsEvent, type InferencerState } from '@gammaray/inferencer';
import type { FoldEntry } from '@gammaray/inferencer';
import { kernelTree } from '../oracle/kernel.js';
import type { TreeEntry } from '../oracle/entry.js';
import type { RecordedWorkload } from './guest-stream.js';

/** Block reads answered from a file at a fixed stream sequence. */
export function fileFetcher(image: string, seq: number): BlockFetcher {
  const bytes = readFileSync(image);
  return { size: bytes.length, read: async (offset, length) => ({ data: Uint8Array.from(bytes.subarray(offset, offset + length)), seq }) };
}

/** What {@link replay} returns. */
export interface Replayed {
  readonly inf: DiskInferencer;
  readonly events: FsEvent[];
  readonly snapshotTree: Map<string, FoldEntry>;
}

/** Replays a recorded stream through a DiskInferencer bootstrapped from the starting image. */
export async function replay(rec: RecordedWorkload, disk: string): Promise<Replayed> {
  const { inferencer: inf, events } = await DiskInferencer.bootstrap(fileFetcher(rec.start, 0), { disk }, 0, new Date(0));
  const start = await kernelTree(rec.start, { hash: true });
  const snapshotTree = new Map<string, FoldEntry>(start.map((e) => [e.path, { ...e, content: undefined } as FoldEntry]));
  const all = [...events];
  const t0 = performance.now();
  for (const r of rec.records) all.push(...(await inf.apply(r.seq, r.rec)));
  if (process.env.GAMMARAY_DEBUG_EVENTS) console.log(`replayed ${rec.records.length} records, ${all.length} events in ${(performance.now() - t0).toFixed(0)} ms`);
  return { inf, events: all, snapshotTree };
}

/**
 * The same replay, but the inferencer is checkpointed (through its bytes) and rebuilt every `every` records.
 * Block reads are answered as a live capture answers them: from the image `ahead` records past the last record
 * the engine applied (0: the image as it stood at that point; Infinity: the final image), tagged with the
 * sequence of the last record that image includes. The capture keeps moving while the engine catches up.
 */
/** A state with its nodes, links and held blocks in inode and block order. */
function canonical(s: InferencerState): InferencerState {
  return { ...s, nodes: [...s.nodes].sort((a, b) => a.ino - b.ino), links: [...s.links].sort((a, b) => a[0] - b[0]), blocks: [...s.blocks].sort((a, b) => a[0] - b[0]) };
}

/** Deltas {@link replayWithRestarts} chains onto a full checkpoint before it takes a new one. */
const DELTAS_PER_BASE = 5;

export async function replayWithRestarts(rec: RecordedWorkload, disk: string, every: number, ahead = 0, deltas = false): Promise<FsEvent[]> {
  let { inferencer: inf, events } = await DiskInferencer.bootstrap(fileFetcher(rec.start, 0), { disk }, 0, new Date(0));
  // With `deltas`: a full checkpoint, then a delta at each restart, the engine rebuilt from the full one and
  // every delta since (a new full one after DELTAS_PER_BASE of them), as the service stores them.
  let base = deltas ? Buffer.concat(inf.checkpointParts()) : undefined;
  let chain: Uint8Array[] = [];
  const all = [...events];
  const img = Buffer.from(readFileSync(rec.start));
  let imgAt = -1;
  /** Moves the served image up to record `to` (an index into rec.records). */
  const advance = (to: number) => {
    for (; imgAt < Math.min(to, rec.records.length - 1); ) {
      for (const op of rec.records[++imgAt]!.rec.ops) {
        if (op.op === 'write') img.set(op.data, op.offset);
        else if (op.op === 'zero') img.fill(0, op.offset, op.offset + op.length);
      }
    }
  };
  let reads = 0;
  const capture: BlockFetcher = {
    size: img.length,
    read: async (o, l) => {
      reads++;
      return { data: Uint8Array.from(img.subarray(o, o + l)), seq: imgAt < 0 ? 0 : rec.records[imgAt]!.seq }; // ok: imgAt in range
    },
  };
  let n = 0;
  let bytes = 0;
  let most = 0;
  for (const [i, r] of rec.records.entries()) {
    all.push(...(await inf.apply(r.seq, r.rec)));
    advance(i + ahead);
    if (++n % every === 0) {
      const ck = base ? Buffer.concat(inf.deltaCheckpointParts() ?? []) : inf.checkpoint();
      bytes += ck.length;
      most = Math.max(most, ck.length);
      const before = reads;
      if (base) {
        expect(ck.length, 'a delta of an engine that tracks its changes').toBeGreaterThan(0);
        chain.push(ck);
        // The full checkpoint and its deltas hold exactly the state the engine has now (in another order).
        const restored = canonical(decodeCheckpoint(base, chain));
        const live = canonical(decodeCheckpoint(encodeCheckpoint(inf.exportState())));
        // Compared as bytes (a deep comparison of every node and block is far slower); on a difference, deeply.
        if (!Buffer.from(encodeCheckpoint(restored)).equals(Buffer.from(encodeCheckpoint(live)))) expect(restored, `full checkpoint + ${chain.length} deltas at record ${i}`).toEqual(live);
        inf = await DiskInferencer.restore(base, capture, { disk }, chain);
        inf.trackChanges();
        if (chain.length === DELTAS_PER_BASE) {
          base = Buffer.concat(inf.checkpointParts());
          chain = [];
        }
      } else inf = await DiskInferencer.restore(ck, capture, { disk });
      expect(inf.appliedSeq).toBe(r.seq);
      // Everything the engine had read comes from the checkpoint, as of its sequence, not from the capture.
      expect(reads - before, 'block reads while restoring').toBe(0);
    }
  }
  if (process.env.GAMMARAY_DEBUG_CHECKPOINT) console.log(`${disk} every ${every} ahead ${ahead}: ${Math.floor(n / every)} checkpoints, mean ${Math.round(bytes / Math.max(1, Math.floor(n / every)))} bytes, largest ${most}`);
  return all;
}

const FIELDS = ['path', 'ino', 'type', 'mode', 'uid', 'gid', 'size', 'nlink', 'mtime', 'mtimeNsec', 'ctime', 'ctimeNsec', 'target', 'rdev'] as const;

/** The fields of a tree entry compared against the kernel. */
export function comparable(e: Partial<TreeEntry>): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const f of FIELDS) if (e[f] !== undefined) o[f] = e[f];
  return o;
}

/** One line per event: kind, path, range, changes. */
export function brief(events: FsEvent[]): string[] {
  return events.map((e) => `${e.kind} ${e.path}${e.from ? ` <- ${e.from}` : ''}${e.kind === 'write' ? ` @${e.offset}+${e.length}` : ''}${e.kind === 'truncate' ? ` ${e.oldSize}->${e.size}` : ''}${e.changes ? ` ${Object.keys(e.changes).join(',')}` : ''}${e.message ? ` ${e.message}` : ''}`);
}

/** Everything about an event that identifies it downstream: identity, kind, paths, range, device number and bytes. */
export function fingerprint(events: FsEvent[]): string[] {
  return events.map((e, i) => `${i} ${e.seq}:${e.idx} ${brief([e])[0]}${e.rdev ? ` ${e.rdev.major}:${e.rdev.minor}` : ''} ${e.data ? createHash('sha256').update(e.data).digest('hex').slice(0, 16) : '-'}`);
}

/**
 * The inferred tree, the tree folded from the events, content and extended attributes against the kernel's view
 * of the final image; returns how many folded files carried content.
 */
export async function checkAgainstKernel(rec: RecordedWorkload, r: Replayed, minContent = 1): Promise<number> {
  const kernel = await kernelTree(rec.final, { hash: true });
  const ours = r.inf.tree().filter((e) => !e.path.startsWith('/lost+found/'));
  const theirs = kernel.filter((e) => !e.path.startsWith('/lost+found/'));
  expect(ours.map(comparable), brief(r.events).join('\n')).toEqual(theirs.map(comparable));
  // Folding the events over the starting tree gives the same tree; content where every write carried bytes.
  const start = await kernelTree(rec.start, { hash: false });
  const folded = foldEvents(new Map(start.map((e) => [e.path, { ...e } as FoldEntry])), r.events);
  const foldedList = [...folded.values()].filter((e) => !e.path.startsWith('/lost+found/')).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  expect(foldedList.map(comparable), brief(r.events).join('\n')).toEqual(theirs.map(comparable));
  const byPath = new Map(theirs.map((e) => [e.path, e]));
  // Content through the state's data maps and block reads of the final image, for every file.
  const fin = fileFetcher(rec.final, 0);
  for (const e of ours) {
    if (e.type !== 'file') continue;
    const node = r.inf.nodes.get(e.ino)!; // ok: the tree lists only known nodes
    const { data } = await readContent(node, r.inf.superblock.blockSize, fin);
    expect(createHash('sha256').update(data).digest('hex'), e.path).toBe(byPath.get(e.path)?.sha256);
  }
  // Extended attributes as the reader sees them in the final image.
  const source = await FileBlockSource.open(rec.final);
  try {
    const vol = await Ext4Volume.open(source);
    for (const e of ours) {
      const want: Record<string, string> = {};
      for (const x of await vol.readXattrs(await vol.readInode(e.ino))) if (x.name !== 'system.data') want[x.name] = Buffer.from(x.value).toString('hex');
      expect(r.inf.nodes.get(e.ino)!.xattrs, e.path).toEqual(want); // ok: listed nodes exist
    }
  } finally {
    await source.close();
  }
  let checked = 0;
  for (const e of foldedList) {
    if (!e.content) continue;
    expect(createHash('sha256').update(e.content).digest('hex'), e.path).toBe(byPath.get(e.path)?.sha256);
    checked++;
  }
  expect(checked).toBeGreaterThanOrEqual(minContent);
  return checked;
}
