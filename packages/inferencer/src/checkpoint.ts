/**
 * Checkpoint bytes: an inferencer's whole state as a sequence of BSON documents (each carries its own length,
 * so the sequence needs no other framing). State is chunked so no document nears BSON's 16 MiB limit however
 * many nodes, directory entries, held blocks or pending data blocks there are. Held blocks (mostly inode
 * tables and directories, much of them zeros) are stored deflated, a chunk of blocks per document.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { copyBytes } from './bytes.js';
import { BSON } from 'bson';
import { SUPERBLOCK_SIZE, type FileType } from '@gammaray/ext4';
import type { InferencerState } from './inferencer.js';
import type { JournalState } from './journal.js';
import { CHECKPOINT_ENTRIES_PER_CHUNK, CHECKPOINT_NODES_PER_CHUNK } from './limits.js';
import type { MappedRun } from './data-index.js';
import type { VolumeWindow } from './volume-window.js';
import { TimeCache, makeNode, type FsNode } from './node.js';

/** Extents per checkpoint document (24 bytes each as float64 triples). */
const RUNS_PER_CHUNK = 100_000;
/** Bytes of held blocks per checkpoint document, before deflating. */
const BLOCK_BYTES_PER_CHUNK = 4 * 1024 * 1024;

/**
 * Version of the checkpoint format (2: every held block, not only journal images; 3: nodes, their links and their
 * runs in columns, a document per chunk of nodes instead of one per node and one per file's runs; 4: deltas (see
 * {@link DeltaOf}), and pending data and remembered end-of-file blocks without their trailing zeros, which a
 * version 3 reader would take as short blocks). This build reads 2, 3 and 4.
 */
export const CHECKPOINT_VERSION = 4;
const READABLE_VERSIONS: readonly unknown[] = [2, 3, 4];
/** Numbers per node in a `nodecols` document (see encodeNodeColumns). */
const NODE_NUMBERS = 15;
/** A file with more runs than this keeps them in `runs` documents of their own, not in its chunk of nodes. */
const RUNS_IN_CHUNK_MAX = 64;
/** rc of a node without runs (not a file, or inline data). */
const NO_RUNS = -1;
/** rc of a node whose runs are in `runs` documents. */
const RUNS_APART = -2;

/** The checkpoint could not be read (damaged or from another version): re-crawl instead. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

type Doc = Record<string, unknown>;

/** A node as version 2 wrote it (see encodeCheckpoint's `version`). */
function nodeDoc(n: FsNode, links: ReadonlyMap<number, readonly (readonly [number, string])[]>): Doc {
  const d: Doc = {
    i: n.ino,
    g: n.generation,
    t: n.type,
    m: n.mode,
    u: n.uid,
    gi: n.gid,
    s: n.size,
    n: n.nlink,
    tm: [n.atime.sec, n.atime.nsec, n.mtime.sec, n.mtime.nsec, n.ctime.sec, n.ctime.nsec],
    f: n.flags,
    x: Object.entries(n.xattrs),
    o: n.owned,
    l: links.get(n.ino) ?? [],
  };
  if (n.target !== undefined) d.tg = n.target;
  if (n.rdev !== 0) d.rd = n.rdev;
  if (n.inline) d.il = n.inline;
  return d;
}

/** A node's xattrs from a checkpoint: [name, value] pairs, or (checkpoints before 2026-11-27 15:00) an object. */
function xattrsOf(x: unknown): Record<string, string> {
  if (!Array.isArray(x)) return x as Record<string, string>;
  const out: Record<string, string> = {};
  for (const [name, value] of x as [string, string][]) out[name] = value;
  return out;
}

/** A node as read from a checkpoint, before the directory entries and runs that come in later documents. */
interface NodeSpec {
  readonly base: Parameters<typeof makeNode>[0];
  readonly links: [number, string][];
  /** Its runs when its own document carried them; undefined to take them from `runs` documents. */
  readonly runs: MappedRun[] | undefined;
  readonly target: string | undefined;
  readonly inline: Uint8Array | undefined;
  readonly xattrs: Readonly<Record<string, string>>;
  readonly owned: readonly number[];
}

const NO_XATTRS: Readonly<Record<string, string>> = Object.freeze({});
const NOTHING: readonly number[] = Object.freeze([]);

/** A version 2 node document. */
function specOfDoc(d: Doc, times: TimeCache): NodeSpec {
  const tm = d.tm as number[];
  return {
    base: {
      ino: d.i as number,
      generation: d.g as number,
      type: d.t as FileType,
      mode: d.m as number,
      uid: d.u as number,
      gid: d.gi as number,
      size: d.s as number,
      nlink: d.n as number,
      atime: times.get(tm[0]!, tm[1]!), // ok: six times written
      mtime: times.get(tm[2]!, tm[3]!), // ok
      ctime: times.get(tm[4]!, tm[5]!), // ok
      flags: d.f as number,
      rdev: (d.rd as number | undefined) ?? 0,
    },
    links: d.l as [number, string][],
    runs: undefined,
    target: d.tg as string | undefined,
    inline: d.il !== undefined ? new Uint8Array(d.il as Uint8Array) : undefined,
    xattrs: xattrsOf(d.x),
    owned: d.o as number[],
  };
}

/** The node of `spec`, with its directory entries and the runs `runs` documents gave it. */
function nodeOfSpec(spec: NodeSpec, entries: Map<number, Map<string, number>>, runs: Map<number, MappedRun[]>): FsNode {
  const ino = spec.base.ino;
  return makeNode(
    spec.base,
    { target: spec.target, inline: spec.inline, runs: spec.runs ?? runs.get(ino), entries: spec.base.type === 'dir' ? (entries.get(ino) ?? new Map()) : undefined },
    spec.xattrs,
    spec.owned,
  );
}

/**
 * One `nodecols` document: a chunk of nodes as columns. `num`: NODE_NUMBERS float64s per node (ino, generation,
 * mode, uid, gid, size, nlink, atime s/ns, mtime s/ns, ctime s/ns, flags, rdev); `t`: a byte per node indexing
 * `tl`, the chunk's type names; links: `lc` (uint32 per node), then every link's directory (`ld`, float64s) and
 * name (`ln`, the names concatenated, `lnl` their lengths in UTF-16 units, uint32s); runs: `rc` (int32 per node:
 * NO_RUNS, RUNS_APART or a count), `r` (logical, physical, length float64 triples of the counted runs), `ru` (a
 * byte per counted run, 1 when preallocated; empty when none is); `rich`: {j (index in the chunk), x, o, tg, il}
 * for the few nodes with xattrs, owned blocks, a target or inline data.
 */
function encodeNodeColumns(part: readonly FsNode[], links: ReadonlyMap<number, readonly (readonly [number, string])[]>): Doc {
  const k = part.length;
  const num = new Float64Array(k * NODE_NUMBERS);
  const t = new Uint8Array(k);
  const tl: string[] = [];
  const lc = new Uint32Array(k);
  const ld: number[] = [];
  const names: string[] = [];
  const rc = new Int32Array(k);
  const r: number[] = [];
  const ru: number[] = [];
  let unwritten = false;
  const rich: Doc[] = [];
  for (let j = 0; j < k; j++) {
    const n = part[j]!; // ok: j < k
    const o = j * NODE_NUMBERS;
    num[o] = n.ino;
    num[o + 1] = n.generation;
    num[o + 2] = n.mode;
    num[o + 3] = n.uid;
    num[o + 4] = n.gid;
    num[o + 5] = n.size;
    num[o + 6] = n.nlink;
    num[o + 7] = n.atime.sec;
    num[o + 8] = n.atime.nsec;
    num[o + 9] = n.mtime.sec;
    num[o + 10] = n.mtime.nsec;
    num[o + 11] = n.ctime.sec;
    num[o + 12] = n.ctime.nsec;
    num[o + 13] = n.flags;
    num[o + 14] = n.rdev;
    let ti = tl.indexOf(n.type);
    if (ti < 0) ti = tl.push(n.type) - 1;
    t[j] = ti;
    const ls = links.get(n.ino) ?? [];
    lc[j] = ls.length;
    for (const [dir, name] of ls) {
      ld.push(dir);
      names.push(name);
    }
    const runs = n.runs;
    if (runs === undefined) rc[j] = NO_RUNS;
    else if (runs.length > RUNS_IN_CHUNK_MAX) rc[j] = RUNS_APART;
    else {
      rc[j] = runs.length;
      for (const x of runs) {
        r.push(x.logical, x.physical, x.length);
        ru.push(x.unwritten ? 1 : 0);
        if (x.unwritten) unwritten = true;
      }
    }
    const xattrs = Object.entries(n.xattrs);
    if (xattrs.length > 0 || n.owned.length > 0 || n.target !== undefined || n.inline !== undefined) {
      // Pairs, not an object: a guest's xattr name may hold a NUL byte, which no BSON field name can.
      const d: Doc = { j, x: xattrs, o: n.owned };
      if (n.target !== undefined) d.tg = n.target;
      if (n.inline !== undefined) d.il = n.inline;
      rich.push(d);
    }
  }
  return {
    k: 'nodecols',
    num: new Uint8Array(num.buffer),
    t,
    tl,
    lc: new Uint8Array(lc.buffer),
    ld: floats(ld),
    ln: names.join(''),
    lnl: new Uint8Array(Uint32Array.from(names, (x) => x.length).buffer),
    rc: new Uint8Array(rc.buffer),
    r: floats(r),
    ru: unwritten ? Uint8Array.from(ru) : new Uint8Array(0),
    rich,
  };
}

/** The nodes of one `nodecols` document (see encodeNodeColumns), checked for consistency. */
function decodeNodeColumns(d: Doc, times: TimeCache): NodeSpec[] {
  const bad = (what: string) => new CheckpointError(`checkpoint node chunk: ${what}`);
  const num = floatsOf(d.num, 'node numbers');
  const t = d.t;
  const tl = d.tl;
  if (!(t instanceof Uint8Array) || !Array.isArray(tl) || !tl.every((x) => typeof x === 'string')) throw bad('no types');
  const k = t.length;
  if (num.length !== k * NODE_NUMBERS) throw bad(`${num.length} numbers for ${k} nodes`);
  const lc = uint32sOf(d.lc, k, 'link counts');
  const ld = floatsOf(d.ld, 'link directories');
  const ln = d.ln;
  if (typeof ln !== 'string') throw bad('no link names');
  const lnl = uint32sOf(d.lnl, ld.length, 'link name lengths');
  const rc = d.rc instanceof Uint8Array && d.rc.length === 4 * k ? new Int32Array(copyBytes(d.rc).buffer) : undefined;
  if (!rc) throw bad('no run counts');
  const r = floatsOf(d.r, 'runs');
  const ru = d.ru;
  if (!(ru instanceof Uint8Array) || (ru.length !== 0 && ru.length * 3 !== r.length)) throw bad('unwritten flags do not match the runs');
  const rich = new Map<number, Doc>();
  if (!Array.isArray(d.rich)) throw bad('no rich list');
  for (const x of d.rich as Doc[]) rich.set(x.j as number, x);
  const out: NodeSpec[] = [];
  let li = 0;
  let at = 0;
  let ri = 0;
  for (let j = 0; j < k; j++) {
    const o = j * NODE_NUMBERS;
    const type = tl[t[j]!] as FileType | undefined; // ok: j < k
    if (type === undefined) throw bad(`type index ${t[j]}`);
    const links: [number, string][] = [];
    const end = li + lc[j]!; // ok: j < k
    if (end > ld.length) throw bad('more links than directories');
    for (; li < end; li++) {
      const len = lnl[li]!; // ok: li < ld.length = lnl.length
      if (at + len > ln.length) throw bad('link names shorter than their lengths');
      links.push([ld[li]!, ln.slice(at, at + len)]); // ok: li < ld.length
      at += len;
    }
    const count = rc[j]!; // ok: j < k
    let runs: MappedRun[] | undefined;
    if (count >= 0) {
      if ((ri + count) * 3 > r.length) throw bad('more runs counted than stored');
      const ino = num[o]!; // ok: in range
      runs = [];
      for (let q = 0; q < count; q++, ri++) {
        const run = { ino, logical: r[3 * ri]!, physical: r[3 * ri + 1]!, length: r[3 * ri + 2]! }; // ok: checked above
        runs.push(ru.length !== 0 && ru[ri] === 1 ? { ...run, unwritten: true } : run);
      }
    } else if (count !== NO_RUNS && count !== RUNS_APART) throw bad(`run count ${count}`);
    const x = rich.get(j);
    out.push({
      base: {
        ino: num[o]!, // ok: in range
        generation: num[o + 1]!, // ok
        type,
        mode: num[o + 2]!, // ok
        uid: num[o + 3]!, // ok
        gid: num[o + 4]!, // ok
        size: num[o + 5]!, // ok
        nlink: num[o + 6]!, // ok
        atime: times.get(num[o + 7]!, num[o + 8]!), // ok
        mtime: times.get(num[o + 9]!, num[o + 10]!), // ok
        ctime: times.get(num[o + 11]!, num[o + 12]!), // ok
        flags: num[o + 13]!, // ok
        rdev: num[o + 14]!, // ok
      },
      links,
      // A file's empty list of runs is kept (a file with no blocks); RUNS_APART and NO_RUNS look in `runs` documents.
      runs,
      target: x?.tg as string | undefined,
      inline: x?.il !== undefined ? new Uint8Array(x.il as Uint8Array) : undefined,
      xattrs: x ? xattrsOf(x.x) : NO_XATTRS,
      owned: x ? (x.o as number[]) : NOTHING,
    });
  }
  if (li !== ld.length || at !== ln.length || ri * 3 !== r.length) throw bad('links, names or runs left over');
  return out;
}

function uint32sOf(v: unknown, count: number, what: string): Uint32Array {
  if (!(v instanceof Uint8Array) || v.length !== 4 * count) throw new CheckpointError(`checkpoint ${what}: not ${count} uint32s`);
  return new Uint32Array(copyBytes(v).buffer);
}

/**
 * Serializes an inferencer's state. `version` 2 writes the nodes as the builds before version 3 did (a document
 * per node, one per file's runs): for tests of reading such checkpoints.
 */
export function encodeCheckpoint(s: InferencerState, version: 2 | typeof CHECKPOINT_VERSION = CHECKPOINT_VERSION): Uint8Array {
  return Buffer.concat(encodeCheckpointParts(s, version));
}

/** A held block as a checkpoint takes it: number, bytes, the sequence they include, from the journal. */
export type HeldBlock = readonly [number, Uint8Array, number, boolean];

/**
 * What makes {@link encodeCheckpointParts} write a delta: the state it is given then holds only the nodes (with
 * their links) and held blocks that changed since the checkpoint before, and `gone` the inodes that left the tree
 * since; everything else in the state (head, journal, pending data, the small lists) is written whole, as in a
 * full checkpoint. {@link decodeCheckpoint} applies deltas, in order, over the full checkpoint they follow.
 */
export interface DeltaOf {
  readonly gone: readonly number[];
}

/**
 * {@link encodeCheckpoint}'s documents, not concatenated (a store writes them one after the other: no copy of
 * the whole). With `blocks`, the held blocks are taken from it as they are encoded instead of from `s.blocks`, so
 * a store's blocks are read (and unpacked) one at a time rather than all at once.
 */
export function encodeCheckpointParts(s: InferencerState, version: 2 | typeof CHECKPOINT_VERSION = CHECKPOINT_VERSION, blocks: Iterable<HeldBlock> = s.blocks, delta?: DeltaOf): Uint8Array[] {
  const docs: Uint8Array[] = [];
  const push = (d: Doc) => docs.push(BSON.serialize(d));
  push({
    v: version,
    k: 'head',
    ...(delta ? { delta: true } : {}),
    disk: s.disk,
    appliedSeq: s.appliedSeq,
    blockSize: s.blockSize,
    dirty: s.dirty,
    journal: s.journal ? { sb: s.journal.sb, next: s.journal.next, expected: s.journal.expected, starts: s.journal.starts, ...(s.journal.held ? { held: floats([...s.journal.held]) } : {}), ...(s.journalMap ? { map: floats(s.journalMap.flat()) } : {}) } : null,
    ...(s.superblock ? { superblock: s.superblock } : {}),
    itables: floats(s.itables.flat()),
    geometryDirty: s.geometryDirty,
    ...(s.journalUnread ? { journalUnread: true } : {}),
    idxSeq: s.idxSeq,
    idx: s.idx,
    ...(s.window && (s.window.partition !== 0 || s.window.start !== 0)
      ? { window: floats([s.window.partition, s.window.start, s.window.size, ...(s.window.meta ?? [])]), ...(s.window.lv !== undefined ? { windowLv: s.window.lv } : {}) }
      : {}),
  });
  const bs = s.blockSize;
  const perChunk = Math.max(1, Math.floor(BLOCK_BYTES_PER_CHUNK / bs));
  // One chunk of raw blocks at a time: the bytes of the others stay packed in the store.
  const raw = Buffer.alloc(perChunk * bs);
  let nums: number[] = [];
  let seqs: number[] = [];
  let journal: number[] = [];
  const flush = () => {
    if (nums.length === 0) return;
    push({ k: 'blocks', b: floats(nums), s: floats(seqs), j: Uint8Array.from(journal), z: deflateRawSync(raw.subarray(0, nums.length * bs), { level: 1 }) });
    nums = [];
    seqs = [];
    journal = [];
  };
  for (const [b, data, seq, fromJournal] of blocks) {
    raw.set(data.length >= bs ? data.subarray(0, bs) : data, nums.length * bs);
    if (data.length < bs) raw.fill(0, nums.length * bs + data.length, (nums.length + 1) * bs);
    nums.push(b);
    seqs.push(seq);
    journal.push(fromJournal ? 1 : 0);
    if (nums.length === perChunk) flush();
  }
  flush();
  if (delta) push({ k: 'gone', inos: floats(delta.gone) });
  const links = new Map(s.links);
  for (let i = 0; i < s.nodes.length; i += CHECKPOINT_NODES_PER_CHUNK) {
    const part = s.nodes.slice(i, i + CHECKPOINT_NODES_PER_CHUNK);
    push(version === 2 ? { k: 'nodes', items: part.map((n) => nodeDoc(n, links)) } : encodeNodeColumns(part, links));
  }
  for (const n of s.nodes) {
    if (!n.entries) continue;
    const all = [...n.entries];
    for (let i = 0; i < all.length; i += CHECKPOINT_ENTRIES_PER_CHUNK) {
      const part = all.slice(i, i + CHECKPOINT_ENTRIES_PER_CHUNK);
      push({ k: 'entries', ino: n.ino, names: part.map((e) => e[0]), inos: part.map((e) => e[1]) });
    }
  }
  for (const n of s.nodes) {
    // Only files with many runs: the others' are in their chunk of nodes (version 2: every file's).
    if (!n.runs || (version !== 2 && n.runs.length <= RUNS_IN_CHUNK_MAX)) continue;
    if (n.runs.length === 0) push({ k: 'runs', ino: n.ino, r: new Uint8Array(0) });
    for (let i = 0; i < n.runs.length; i += RUNS_PER_CHUNK) {
      const part = n.runs.slice(i, i + RUNS_PER_CHUNK);
      const flat = new Float64Array(part.length * 3);
      part.forEach((r, k) => flat.set([r.logical, r.physical, r.length], 3 * k));
      // `u`: which runs are preallocated (unwritten), one byte each; only when some are.
      if (part.some((r) => r.unwritten)) push({ k: 'runs', ino: n.ino, r: new Uint8Array(flat.buffer), u: Uint8Array.from(part, (r) => (r.unwritten ? 1 : 0)) });
      else push({ k: 'runs', ino: n.ino, r: new Uint8Array(flat.buffer) });
    }
  }
  const chunked = (k: string, items: unknown[], per: number) => {
    for (let i = 0; i < items.length; i += per) push({ k, items: items.slice(i, i + per) });
  };
  chunked('pending', s.pending, 1024);
  chunked('omitted', s.omitted, 65536);
  chunked('open', s.journal?.open ?? [], 1024);
  chunked('tails', s.tails, 1024);
  chunked('recent', s.recent, 1024);
  chunked('logged', s.logged ?? [], 1024);
  chunked('retries', s.retries, 65536);
  chunked('heldTails', s.heldTails, 65536);
  chunked('prealloc', s.prealloc ?? [], 1024);
  chunked('remapped', s.remapped, 65536);
  chunked('watched', s.watched, 65536);
  chunked('namedBy', s.namedBy, 65536);
  chunked('unreadable', s.unreadable ?? [], 65536);
  push({ k: 'end' });
  return docs;
}

/**
 * Reads checkpoint bytes back, then applies each delta of `deltas` (see {@link DeltaOf}) over them in order;
 * CheckpointError when they are not a complete checkpoint of this version, or a delta does not follow.
 */
export function decodeCheckpoint(bytes: Uint8Array, deltas: readonly Uint8Array[] = []): InferencerState {
  const base = decodeOne(bytes);
  if (base.gone) throw new CheckpointError('checkpoint is a delta, not a full checkpoint');
  if (deltas.length === 0) return base.state;
  // Keyed once for the whole chain; Maps keep the base's order (a node or block that changed stays where it was,
  // new ones come last).
  const nodes = new Map(base.state.nodes.map((x) => [x.ino, x]));
  const links = new Map(base.state.links);
  const blocks = new Map(base.state.blocks.map((b) => [b[0], b]));
  let last = base.state;
  deltas.forEach((bytes, i) => {
    const { state: d, gone } = decodeOne(bytes);
    const n = i + 1;
    if (!gone) throw new CheckpointError(`checkpoint delta ${n} is a full checkpoint`);
    if (d.disk !== last.disk || d.blockSize !== last.blockSize) throw new CheckpointError(`checkpoint delta ${n} is of disk ${d.disk} with ${d.blockSize}-byte blocks, its base of ${last.disk} with ${last.blockSize}`);
    if (d.appliedSeq < last.appliedSeq) throw new CheckpointError(`checkpoint delta ${n} is at sequence ${d.appliedSeq}, before its base's ${last.appliedSeq}`);
    for (const ino of gone) {
      nodes.delete(ino);
      links.delete(ino);
    }
    for (const x of d.nodes) nodes.set(x.ino, x);
    for (const [ino, l] of d.links) links.set(ino, l);
    for (const b of d.blocks) blocks.set(b[0], b);
    last = d;
  });
  // The rest of the state is the last delta's, which holds it whole.
  return { ...last, nodes: [...nodes.values()], links: [...links], blocks: [...blocks.values()] };
}

/** One checkpoint or delta; `gone` is set for a delta. */
function decodeOne(bytes: Uint8Array): { state: InferencerState; gone: Float64Array | undefined } {
  let gone: Float64Array | undefined;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 0;
  let head: Doc | undefined;
  const nodes: NodeSpec[] = [];
  const times = new TimeCache();
  const entries = new Map<number, Map<string, number>>();
  const runs = new Map<number, MappedRun[]>();
  const blocks: [number, Uint8Array, number, boolean][] = [];
  const pending: [number, Uint8Array, number, Date, number][] = [];
  const omitted: [number, number, Date][] = [];
  const open: [number, Uint8Array][] = [];
  const tails: [number, number, number, Uint8Array, Uint8Array | null][] = [];
  const recent: [number, Uint8Array][] = [];
  const logged: [number, number, number, Uint8Array][] = [];
  const retries: [number, number][] = [];
  const heldTails: number[] = [];
  const prealloc: [number, number[]][] = [];
  const remapped: number[] = [];
  const watched: [number, number][] = [];
  const namedBy: [number, number][] = [];
  const unreadable: [number, number][] = [];
  let ended = false;
  while (off < buf.length) {
    if (off + 5 > buf.length) throw new CheckpointError('checkpoint ends inside a document header');
    const len = buf.readInt32LE(off);
    if (len < 5 || off + len > buf.length) throw new CheckpointError(`checkpoint document at byte ${off} claims ${len} bytes`);
    let d: Doc;
    try {
      d = BSON.deserialize(buf.subarray(off, off + len), { promoteBuffers: true }) as Doc;
    } catch (cause) {
      throw new CheckpointError(`checkpoint document at byte ${off} is not BSON: ${(cause as Error).message}`);
    }
    off += len;
    switch (d.k) {
      case 'head':
        if (!READABLE_VERSIONS.includes(d.v)) throw new CheckpointError(`checkpoint version ${String(d.v)}, this build reads ${READABLE_VERSIONS.join(', ')}`);
        head = d;
        break;
      case 'nodes':
        for (const item of d.items as Doc[]) nodes.push(specOfDoc(item, times));
        break;
      case 'nodecols':
        for (const spec of decodeNodeColumns(d, times)) nodes.push(spec);
        break;
      case 'entries': {
        const ino = d.ino as number;
        let m = entries.get(ino);
        if (!m) entries.set(ino, (m = new Map()));
        const names = d.names as string[];
        const inos = d.inos as number[];
        for (let i = 0; i < names.length; i++) m.set(names[i]!, inos[i]!); // ok: same lengths
        break;
      }
      case 'runs': {
        const ino = d.ino as number;
        const raw = d.r as Buffer;
        if (raw.length % 24 !== 0) throw new CheckpointError(`extent chunk of inode ${ino} is ${raw.length} bytes, not whole triples`);
        const flat = new Float64Array(copyBytes(raw).buffer);
        const u = d.u as Buffer | undefined;
        if (u !== undefined && u.length * 3 !== flat.length) throw new CheckpointError(`extent chunk of inode ${ino} has ${u.length} unwritten flags for ${flat.length / 3} runs`);
        let list = runs.get(ino);
        if (!list) runs.set(ino, (list = []));
        for (let k = 0; k < flat.length; k += 3) {
          const run = { ino, logical: flat[k]!, physical: flat[k + 1]!, length: flat[k + 2]! }; // ok: whole triples
          list.push(u?.[k / 3] ? { ...run, unwritten: true } : run);
        }
        break;
      }
      case 'blocks': {
        const bs = head?.blockSize as number | undefined;
        if (bs === undefined) throw new CheckpointError('checkpoint holds blocks before its head');
        const nums = floatsOf(d.b, 'block numbers');
        const seqs = floatsOf(d.s, 'block sequences');
        const flags = d.j as Buffer;
        if (seqs.length !== nums.length || flags.length !== nums.length) throw new CheckpointError('checkpoint block chunk has lists of different lengths');
        let raw: Buffer;
        try {
          raw = inflateRawSync(d.z as Buffer, { maxOutputLength: Math.max(1, nums.length * bs) });
        } catch (cause) {
          throw new CheckpointError(`checkpoint block chunk does not inflate: ${(cause as Error).message}`);
        }
        if (raw.length !== nums.length * bs) throw new CheckpointError(`checkpoint block chunk holds ${raw.length} bytes for ${nums.length} blocks`);
        for (let i = 0; i < nums.length; i++) blocks.push([nums[i]!, copyBytes(raw.subarray(i * bs, (i + 1) * bs)), seqs[i]!, flags[i] === 1]); // ok: same lengths
        break;
      }
      case 'pending':
        for (const [b, data, seq, ts, commits] of d.items as [number, Buffer, number, Date, number][]) pending.push([b, new Uint8Array(data), seq, ts, commits]);
        break;
      case 'omitted':
        omitted.push(...(d.items as [number, number, Date][]));
        break;
      case 'open':
        for (const [j, data] of d.items as [number, Buffer][]) open.push([j, new Uint8Array(data)]);
        break;
      case 'tails':
        for (const [ino, logical, block, data, reported] of d.items as [number, number, number, Buffer, Buffer | null][]) {
          tails.push([ino, logical, block, new Uint8Array(data), reported ? new Uint8Array(reported) : null]);
        }
        break;
      case 'recent':
        for (const [b, data] of d.items as [number, Buffer][]) recent.push([b, new Uint8Array(data)]);
        break;
      case 'logged':
        for (const [b, ino, logical, data] of d.items as [number, number, number, Buffer][]) logged.push([b, ino, logical, new Uint8Array(data)]);
        break;
      case 'retries':
        retries.push(...(d.items as [number, number][]));
        break;
      case 'heldTails':
        heldTails.push(...(d.items as number[]));
        break;
      case 'prealloc':
        for (const [ino, held] of d.items as [number, number[]][]) {
          if (!Number.isSafeInteger(ino) || !Array.isArray(held) || !held.every((l) => Number.isSafeInteger(l))) throw new CheckpointError('checkpoint preallocated file is not [inode, logical blocks]');
          prealloc.push([ino, held]);
        }
        break;
      case 'remapped':
        remapped.push(...(d.items as number[]));
        break;
      case 'watched':
        watched.push(...(d.items as [number, number][]));
        break;
      case 'namedBy':
        namedBy.push(...(d.items as [number, number][]));
        break;
      case 'unreadable':
        unreadable.push(...(d.items as [number, number][]));
        break;
      case 'gone':
        gone = floatsOf(d.inos, 'inodes gone');
        break;
      case 'end':
        ended = true;
        break;
      default:
        throw new CheckpointError(`unknown checkpoint document kind ${JSON.stringify(d.k)}`);
    }
  }
  if (!head || !ended) throw new CheckpointError('checkpoint is incomplete (no head or no end document)');
  if ((head.delta === true) !== (gone !== undefined)) throw new CheckpointError('checkpoint delta without its list of inodes gone, or such a list in a full checkpoint');
  const bs = head.blockSize as number;
  if (!Number.isInteger(bs) || bs < 1024 || bs > 65536 || (bs & (bs - 1)) !== 0) throw new CheckpointError(`checkpoint block size ${String(bs)}`);
  const j = head.journal as { sb: unknown; next: number; expected: number; starts: [number, number][]; held?: unknown; map?: unknown } | null;
  let journal: JournalState | undefined;
  let journalMap: [number, number, number][] | undefined;
  if (j) {
    if (!(j.sb instanceof Uint8Array)) throw new CheckpointError('checkpoint journal state has no superblock');
    let held: [number, number] | undefined;
    if (j.held !== undefined) {
      const h = floatsOf(j.held, 'held journal transaction');
      if (h.length !== 2 || !h.every((x) => Number.isSafeInteger(x) && x >= 0)) throw new CheckpointError('checkpoint held journal transaction is not [sequence, start]');
      held = [h[0]!, h[1]!]; // ok: length 2
    }
    journal = { sb: copyBytes(j.sb), next: j.next, expected: j.expected, starts: j.starts, open, ...(held ? { held } : {}) };
    if (j.map !== undefined) {
      const m = floatsOf(j.map, 'journal extents');
      if (m.length % 3 !== 0) throw new CheckpointError('checkpoint journal extents are not whole triples');
      journalMap = [];
      for (let k = 0; k < m.length; k += 3) journalMap.push([m[k]!, m[k + 1]!, m[k + 2]!]); // ok: whole triples
    }
  }
  const superblock = head.superblock;
  if (superblock !== undefined && !(superblock instanceof Uint8Array && superblock.length === SUPERBLOCK_SIZE)) throw new CheckpointError('checkpoint superblock is not 1024 bytes');
  let window: VolumeWindow | undefined;
  if (head.window !== undefined) {
    const w = floatsOf(head.window, 'partition window');
    const [partition, start, size, m0, m1] = w;
    const lv = head.windowLv;
    const ints = [...w].every((x) => Number.isSafeInteger(x) && x >= 0);
    if ((w.length !== 3 && w.length !== 5) || !ints || (partition! < 1 && lv === undefined) || size! < 1 || (lv !== undefined && typeof lv !== 'string')) {
      throw new CheckpointError('checkpoint partition window is not [partition, start, size, metadata start, metadata end]');
    }
    window = { partition: partition!, start: start!, size: size!, ...(typeof lv === 'string' ? { lv } : {}), ...(w.length === 5 ? { meta: [m0!, m1!] as const } : {}) }; // ok: checked above
  }
  const it = floatsOf(head.itables, 'inode-table runs');
  if (it.length % 3 !== 0) throw new CheckpointError('checkpoint inode-table runs are not whole triples');
  const itables: [number, number, number][] = [];
  for (let k = 0; k < it.length; k += 3) itables.push([it[k]!, it[k + 1]!, it[k + 2]!]); // ok: whole triples
  const state: InferencerState = {
    disk: head.disk as string,
    appliedSeq: head.appliedSeq as number,
    blockSize: bs,
    nodes: nodes.map((spec) => nodeOfSpec(spec, entries, runs)),
    links: nodes.map((spec) => [spec.base.ino, spec.links]),
    blocks,
    itables,
    geometryDirty: head.geometryDirty === true,
    journalUnread: head.journalUnread === true,
    watched,
    remapped,
    pending,
    omitted,
    dirty: head.dirty as number[],
    tails,
    heldTails,
    prealloc,
    recent,
    logged,
    retries,
    namedBy,
    unreadable,
    journal,
    journalMap,
    superblock: superblock === undefined ? undefined : copyBytes(superblock),
    idxSeq: head.idxSeq as number,
    idx: head.idx as number,
    ...(window ? { window } : {}),
  };
  return { state, gone };
}

/** Numbers as the bytes of a float64 array (a BSON binary: compact, and whole integers up to 2^53 survive). */
function floats(xs: readonly number[]): Uint8Array {
  return new Uint8Array(Float64Array.from(xs).buffer);
}

function floatsOf(v: unknown, what: string): Float64Array {
  if (!(v instanceof Uint8Array) || v.length % 8 !== 0) throw new CheckpointError(`checkpoint ${what} are not float64s`);
  return new Float64Array(copyBytes(v).buffer);
}
