import { describe, expect, it } from 'vitest';
import { BSON } from 'bson';
import { CHECKPOINT_VERSION, decodeCheckpoint, encodeCheckpoint, encodeCheckpointParts, CheckpointError } from '../src/checkpoint.js';
import { DataIndex } from '../src/data-index.js';
import { MAX_RUNS_PER_DATA_BUCKET } from '../src/limits.js';
import { EventKind, type FsEvent, type FsStat } from '../src/events.js';
import { foldEvents, type FoldEntry } from '../src/fold.js';
import type { InferencerState } from '../src/inferencer.js';
import type { FsNode } from '../src/node.js';
import { BlockStore, type BlockFetcher } from '../src/store.js';

const T = { sec: 1, nsec: 2 };

function node(ino: number, extra: Partial<FsNode> = {}): FsNode {
  return { ino, generation: 7, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, nlink: 1, atime: T, mtime: T, ctime: T, flags: 0, rdev: 0, xattrs: {}, owned: [], ...extra };
}

describe('DataIndex', () => {
  it('maps physical blocks to (inode, logical block) across buckets, and forgets removed runs', () => {
    const idx = new DataIndex();
    const big = { ino: 12, logical: 10, physical: 1000, length: 500 };
    idx.add(big);
    idx.add({ ino: 13, logical: 0, physical: 5, length: 1 });
    expect(idx.lookup(1000)).toEqual({ ino: 12, logical: 10 });
    expect(idx.lookup(1499)).toEqual({ ino: 12, logical: 509 });
    expect(idx.lookup(1500)).toBeUndefined();
    expect(idx.lookup(5)).toEqual({ ino: 13, logical: 0 });
    idx.remove(big);
    expect(idx.lookup(1200)).toBeUndefined();
    expect(idx.lookup(5)).toEqual({ ino: 13, logical: 0 });
  });
});

describe('DataIndex under crafted extents', () => {
  it('lists at most MAX_RUNS_PER_DATA_BUCKET runs claiming one bucket, so 200,000 files claiming one block cost no more than that', () => {
    const idx = new DataIndex();
    const runs = Array.from({ length: 200_000 }, (_, i) => ({ ino: 100 + i, logical: 0, physical: 5000, length: 1 }));
    const t0 = performance.now();
    for (const r of runs) idx.add(r);
    expect(idx.lookup(5000)).toEqual({ ino: 100 + MAX_RUNS_PER_DATA_BUCKET - 1, logical: 0 }); // the last one listed
    for (const r of runs) {
      idx.remove(r);
      // Fails in bounded time rather than hang: removing each from a list of all of them was quadratic.
      if (r.ino % 1000 === 0 && performance.now() - t0 > 10_000) throw new Error(`removing ${r.ino - 100} runs took over 10 s`);
    }
    expect(idx.lookup(5000)).toBeUndefined();
    idx.add({ ino: 7, logical: 3, physical: 5001, length: 1 });
    expect(idx.lookup(5001)).toEqual({ ino: 7, logical: 3 });
  }, 20_000);
});

describe('BlockStore', () => {
  const fetcher = (seq: number): BlockFetcher & { calls: number } => {
    const f = { calls: 0, size: 16 * 1024, read: async (o: number, l: number) => (f.calls++, { data: new Uint8Array(l).fill(o / 1024 + 1), seq }) };
    return f;
  };

  it('fetches missing blocks in runs and skips stream writes its read already included', async () => {
    const f = fetcher(5);
    const s = new BlockStore(f, 1024);
    await s.read(2048, 4096);
    expect(f.calls).toBe(1);
    expect(s.setHome(2, new Uint8Array(1024).fill(9), 5)).toBe(false); // seq 5 is in the read
    expect(s.setHome(2, new Uint8Array(1024).fill(9), 6)).toBe(true);
    expect((await s.read(2048, 1))[0]).toBe(9);
  });

  it('keeps a committed journal image until its home location repeats it', () => {
    const s = new BlockStore(fetcher(0), 1024);
    const committed = new Uint8Array(1024).fill(1);
    expect(s.setJournal(3, committed, 10)).toBe(true);
    expect(s.setHome(3, new Uint8Array(1024).fill(2), 11)).toBe(false); // an older checkpoint: ignored
    expect(s.get(3)?.journal).toBe(true);
    expect(s.setHome(3, committed, 12)).toBe(false);
    expect(s.get(3)?.journal).toBe(false);
  });
});

describe('checkpoint bytes', () => {
  const state: InferencerState = {
    disk: 'vm1',
    appliedSeq: 42,
    blockSize: 1024,
    nodes: [
      node(2, { type: 'dir', entries: new Map([['a', 12], ['b\\xff', 13]]), owned: [100] }),
      node(12, { size: 5000, runs: [{ ino: 12, logical: 0, physical: 300, length: 2 }], xattrs: { 'user.k': '7631' } }),
      node(13, { type: 'symlink', target: '/x' }),
      node(14, { type: 'blk', rdev: 0x1001_0300 }), // makedev(259, 65536)
    ],
    links: [[2, []], [12, [[2, 'a']]], [13, [[2, 'b\\xff']]], [14, [[2, 'nvme']]]],
    blocks: [
      [100, new Uint8Array(1024).fill(3), 40, true],
      [2 ** 40, new Uint8Array(1024), 2 ** 50, false],
    ],
    itables: [[5, 16, 1], [8197, 16, 129]],
    geometryDirty: true,
    watched: [[100, 13]],
    remapped: [12],
    pending: [[500, new Uint8Array([4]), 41, new Date(1000), 1]],
    omitted: [[501, 39, new Date(2000)]],
    dirty: [12],
    tails: [[12, 1, 301, new Uint8Array([5]), null]],
    heldTails: [12],
    prealloc: [[12, [1]], [14, []]],
    recent: [],
    retries: [[13, 1]],
    namedBy: [[14, 2]],
    journal: { sb: new Uint8Array([1, 2]), open: [[7, new Uint8Array([8])]], starts: [[9, 7]], next: 8, expected: 9 },
    idxSeq: 42,
    idx: 3,
  };

  it('round-trips the whole state', () => {
    const back = decodeCheckpoint(encodeCheckpoint(state));
    expect(back.appliedSeq).toBe(42);
    expect(back.nodes.map((n) => n.ino)).toEqual([2, 12, 13, 14]);
    expect(back.nodes.map((n) => n.rdev)).toEqual([0, 0, 0, 0x1001_0300]);
    expect([...back.nodes[0]!.entries!]).toEqual([['a', 12], ['b\\xff', 13]]); // ok: node 2 first
    expect(back.nodes[1]!.runs).toEqual(state.nodes[1]!.runs); // ok
    expect(back.nodes[1]!.xattrs).toEqual({ 'user.k': '7631' }); // ok
    expect(back.nodes[2]!.target).toBe('/x'); // ok
    expect(back.links).toEqual(state.links);
    expect(back.pending[0]![3]).toEqual(new Date(1000)); // ok
    expect(back.journal).toEqual(state.journal);
    expect(back.tails).toEqual(state.tails);
    expect(back.blocks).toEqual(state.blocks);
    for (const k of ['blockSize', 'itables', 'geometryDirty', 'watched', 'remapped', 'heldTails', 'prealloc', 'namedBy'] as const) expect(back[k], k).toEqual(state[k]);
  });

  it('restores nodes of a checkpoint written before nodes had device numbers (no `rd`) with rdev 0', () => {
    const docs: Uint8Array[] = [];
    const bytes = Buffer.from(encodeCheckpoint(state, 2));
    for (let off = 0; off < bytes.length; off += bytes.readInt32LE(off)) {
      const d = BSON.deserialize(bytes.subarray(off, off + bytes.readInt32LE(off)), { promoteBuffers: true });
      if (d.k === 'nodes') for (const item of d.items as Record<string, unknown>[]) delete item.rd;
      docs.push(BSON.serialize(d));
    }
    const back = decodeCheckpoint(Buffer.concat(docs));
    expect(back.nodes.map((n) => [n.type, n.rdev])).toEqual([['dir', 0], ['file', 0], ['symlink', 0], ['blk', 0]]);
  });

  it('reads a version 2 checkpoint (a document per node and per file\'s runs) as the same state as version 3', () => {
    const many = Array.from({ length: 70 }, (_, i) => ({ ino: 15, logical: i * 2, physical: 900 + i * 3, length: 1, ...(i % 9 === 0 ? { unwritten: true } : {}) }));
    const rich: InferencerState = {
      ...state,
      nodes: [
        ...state.nodes,
        node(15, { size: 140 * 1024, runs: many, owned: [700, 701], xattrs: { 'user.\u0000x': '00', 'trusted.y': '' } }), // past RUNS_IN_CHUNK_MAX: in runs documents
        node(16, { size: 0, runs: [] }), // a file with no blocks
        node(17, { size: 3, inline: new Uint8Array([1, 2, 3]) }),
        node(18, { size: 8192, runs: [{ ino: 18, logical: 0, physical: 50, length: 1, unwritten: true }, { ino: 18, logical: 1, physical: 60, length: 1 }], generation: -5 }),
      ],
      links: [...state.links, [15, [[2, 'c'], [2, 'c2'], [13, 'z\u00e9\ud83d\ude00']]], [16, []], [17, [[2, '']]], [18, [[2, 'd']]]],
    };
    const v3 = encodeCheckpoint(rich);
    const v2 = encodeCheckpoint(rich, 2);
    const kinds = (b: Uint8Array) => {
      const buf = Buffer.from(b);
      const out: string[] = [];
      for (let off = 0; off < buf.length; off += buf.readInt32LE(off)) out.push(BSON.deserialize(buf.subarray(off, off + buf.readInt32LE(off))).k as string);
      return out;
    };
    expect(kinds(v2).filter((k) => k === 'runs').length).toBe(4); // every file's runs (12, 15, 16, 18)
    expect(kinds(v3).filter((k) => k === 'runs').length).toBe(1); // the file of 70 runs only
    expect(kinds(v3)).toContain('nodecols');
    const a = decodeCheckpoint(v3);
    const b = decodeCheckpoint(v2);
    const view = (x: InferencerState) =>
      x.nodes.map((n) => ({
        ...Object.fromEntries((['ino', 'generation', 'type', 'mode', 'uid', 'gid', 'size', 'nlink', 'atime', 'mtime', 'ctime', 'flags', 'rdev', 'xattrs', 'owned'] as const).map((k) => [k, n[k]])),
        target: n.target,
        runs: n.runs,
        inline: n.inline,
        entries: n.entries && [...n.entries],
      }));
    expect(view(a)).toEqual(view(b));
    expect(view(a)).toEqual(view(rich));
    expect(a.links).toEqual(rich.links);
    expect(b.links).toEqual(rich.links);
    expect(a.nodes[4]!.runs!.filter((r) => r.unwritten).length).toBe(8); // ok: node 15
    expect(a.nodes[6]!.inline).toEqual(new Uint8Array([1, 2, 3])); // ok: node 17
    // Restored nodes share their times, as derived ones do.
    expect(a.nodes[4]!.mtime).toBe(a.nodes[5]!.mtime); // ok
  });

  it('applies deltas over a full checkpoint: changed and new nodes and blocks, inodes gone, the rest from the delta', () => {
    const base = encodeCheckpoint(state);
    const enc = (s: InferencerState, gone: number[], blocks = s.blocks) => Buffer.concat(encodeCheckpointParts(s, CHECKPOINT_VERSION, blocks, { gone }));
    // Delta 1: file 12 grew and moved to a new name, 19 is new, symlink 13 is gone, block 100 changed, 7 is new.
    const d1 = enc(
      {
        ...state,
        appliedSeq: 50,
        nodes: [node(2, { type: 'dir', entries: new Map([['a2', 12], ['n', 19], ['nvme', 14]]) }), node(12, { size: 9000 }), node(19, { size: 1 })],
        links: [[2, []], [12, [[2, 'a2']]], [19, [[2, 'n']]]],
        pending: [],
        dirty: [19],
      },
      [13],
      [[100, new Uint8Array(1024).fill(4), 50, false], [7, new Uint8Array(1024).fill(7), 49, false]],
    );
    // Delta 2: 19 is gone again, nothing else changed.
    const d2 = enc({ ...state, appliedSeq: 51, nodes: [], links: [], pending: [], dirty: [] }, [19], []);
    const back = decodeCheckpoint(base, [d1, d2]);
    expect(back.appliedSeq).toBe(51);
    expect(back.nodes.map((n) => [n.ino, n.size])).toEqual([[2, 0], [12, 9000], [14, 0]]);
    expect([...back.nodes[0]!.entries!]).toEqual([['a2', 12], ['n', 19], ['nvme', 14]]); // ok: the root
    expect(back.links).toEqual([[2, []], [12, [[2, 'a2']]], [14, [[2, 'nvme']]]]);
    expect(back.blocks.map(([b, data, seq, j]) => [b, data[0], seq, j])).toEqual([[100, 4, 50, false], [2 ** 40, 0, 2 ** 50, false], [7, 7, 49, false]]);
    expect(back.pending).toEqual([]);
    expect(back.dirty).toEqual([]);
    // Only the first delta: 19 is still there.
    expect(decodeCheckpoint(base, [d1]).nodes.map((n) => n.ino)).toEqual([2, 12, 14, 19]);
  });

  it('refuses a delta in place of a full checkpoint, a full one in place of a delta, and a delta of another disk or going back', () => {
    const base = encodeCheckpoint(state);
    const delta = (s: Partial<InferencerState>) => Buffer.concat(encodeCheckpointParts({ ...state, nodes: [], links: [], ...s }, CHECKPOINT_VERSION, [], { gone: [] }));
    expect(() => decodeCheckpoint(delta({}))).toThrow(/is a delta/);
    expect(() => decodeCheckpoint(base, [base])).toThrow(/delta 1 is a full checkpoint/);
    expect(() => decodeCheckpoint(base, [delta({}), delta({ disk: 'vm2' })])).toThrow(/delta 2 is of disk vm2/);
    expect(() => decodeCheckpoint(base, [delta({ appliedSeq: 41 })])).toThrow(/before its base/);
    expect(() => decodeCheckpoint(base, [delta({ blockSize: 4096 })])).toThrow(CheckpointError);
    expect(decodeCheckpoint(base, [delta({ appliedSeq: 43 })]).appliedSeq).toBe(43);
  });

  it('refuses a node chunk whose columns disagree', () => {
    const buf = Buffer.from(encodeCheckpoint(state));
    const docs: Uint8Array[] = [];
    for (let off = 0; off < buf.length; off += buf.readInt32LE(off)) {
      const d = BSON.deserialize(buf.subarray(off, off + buf.readInt32LE(off)), { promoteBuffers: true });
      if (d.k === 'nodecols') d.lnl = Buffer.from(new Uint32Array([1, 1, 99]).buffer);
      docs.push(BSON.serialize(d));
    }
    expect(() => decodeCheckpoint(Buffer.concat(docs))).toThrow(/node chunk: link names shorter than their lengths/);
  });

  it('holds 20,000 held blocks in a few documents, deflated', () => {
    const blocks: [number, Uint8Array, number, boolean][] = Array.from({ length: 20_000 }, (_, i) => [1000 + i, new Uint8Array(4096).fill(i % 7, 0, 64), i, i % 2 === 0]);
    const bytes = encodeCheckpoint({ ...state, blockSize: 4096, blocks });
    expect(bytes.length).toBeLessThan(20_000 * 4096 / 20);
    const back = decodeCheckpoint(bytes).blocks;
    expect(back.length).toBe(20_000);
    expect(back[12_345]).toEqual(blocks[12_345]);
  });

  it('keeps a journal transaction held for the rest of its log, and refuses a malformed one', () => {
    const withHeld = { ...state, journal: { ...state.journal!, held: [4_294_967_295, 17] as const } }; // ok: the fixture has a journal
    expect(decodeCheckpoint(encodeCheckpoint(withHeld)).journal?.held).toEqual([4_294_967_295, 17]);
    expect(decodeCheckpoint(encodeCheckpoint(state)).journal?.held).toBeUndefined();
    const bad = { ...state, journal: { ...state.journal!, held: [1.5, -2] as const } }; // ok: as above
    expect(() => decodeCheckpoint(encodeCheckpoint(bad))).toThrow(CheckpointError);
  });

  it('refuses truncated or foreign bytes with CheckpointError', () => {
    const bytes = encodeCheckpoint(state);
    expect(() => decodeCheckpoint(bytes.subarray(0, bytes.length - 7))).toThrow(CheckpointError);
    expect(() => decodeCheckpoint(new Uint8Array([1, 2, 3, 4, 5, 6]))).toThrow(CheckpointError);
  });
});

describe('foldEvents', () => {
  const stat = (size: number, mode = 0o644): FsStat => ({ mode, uid: 0, gid: 0, size, nlink: 1, atime: T, mtime: T, ctime: T, flags: 0 });
  const ev = (e: Partial<FsEvent>): FsEvent => ({ v: 1, disk: 'd', kind: EventKind.Attr, path: '', ino: 0, type: 'file', seq: 1, idx: 0, ts: new Date(0), ...e });
  const root: FoldEntry = { path: '/', ino: 2, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 4096, nlink: 3, mtime: 0, mtimeNsec: 0, atime: 0, atimeNsec: 0, ctime: 0, ctimeNsec: 0 };

  it('creates, writes, renames a directory with its children, and deletes', () => {
    const tree = new Map<string, FoldEntry>([['/', { ...root }]]);
    foldEvents(tree, [
      ev({ kind: EventKind.Create, path: '/d', ino: 11, type: 'dir', stat: stat(4096, 0o755) }),
      ev({ kind: EventKind.Create, path: '/d/f', ino: 12, stat: stat(0) }),
      ev({ kind: EventKind.Write, path: '/d/f', ino: 12, offset: 0, length: 3, data: new Uint8Array([1, 2, 3]), stat: stat(3) }),
      ev({ kind: EventKind.Rename, path: '/e', from: '/d', ino: 11, type: 'dir', stat: stat(4096, 0o755) }),
      ev({ kind: EventKind.Truncate, path: '/e/f', ino: 12, oldSize: 3, size: 2, stat: stat(2) }),
    ]);
    expect([...tree.keys()].sort()).toEqual(['/', '/e', '/e/f']);
    expect(tree.get('/e/f')!.content).toEqual(new Uint8Array([1, 2])); // ok: folded above
    foldEvents(tree, [ev({ kind: EventKind.Delete, path: '/e', ino: 11, type: 'dir' })]);
    expect([...tree.keys()]).toEqual(['/']);
  });

  it('keeps the device number of a created device, of a link to it, and follows an attr change of it', () => {
    const tree = new Map<string, FoldEntry>([['/', { ...root }]]);
    foldEvents(tree, [
      ev({ kind: EventKind.Create, path: '/mem', ino: 12, type: 'chr', rdev: { major: 1, minor: 3 }, stat: stat(0) }),
      ev({ kind: EventKind.Link, path: '/mem2', ino: 12, type: 'chr', stat: stat(0) }),
      ev({ kind: EventKind.Create, path: '/f', ino: 13, stat: stat(0) }),
      ev({ kind: EventKind.Attr, path: '/mem', ino: 12, type: 'chr', stat: stat(0), changes: { rdev: { old: { major: 1, minor: 3 }, new: { major: 1, minor: 1 } } } }),
    ]);
    expect([...tree.values()].map((e) => [e.path, e.rdev])).toEqual([['/', undefined], ['/mem', { major: 1, minor: 1 }], ['/mem2', { major: 1, minor: 1 }], ['/f', undefined]]);
  });

  it('keeps no content for a file of terabytes (a sparse create, a truncate, a write far out) instead of throwing', () => {
    const tree = new Map<string, FoldEntry>([['/', { ...root }]]);
    foldEvents(tree, [
      ev({ kind: EventKind.Create, path: '/huge', ino: 12, stat: stat(3e12) }),
      ev({ kind: EventKind.Create, path: '/grown', ino: 13, stat: stat(0) }),
      ev({ kind: EventKind.Truncate, path: '/grown', ino: 13, oldSize: 0, size: 5e9, stat: stat(5e9) }),
      ev({ kind: EventKind.Create, path: '/far', ino: 14, stat: stat(0) }),
      ev({ kind: EventKind.Write, path: '/far', ino: 14, offset: 5e9, length: 1, data: new Uint8Array([1]), stat: stat(5e9 + 1) }),
    ]);
    expect(tree.get('/huge')!.size).toBe(3e12); // ok: folded above
    for (const p of ['/huge', '/grown', '/far']) expect(tree.get(p)!.content, p).toBeUndefined(); // ok: folded above
  });
});

describe('checkpoint size limits', () => {
  it('holds a directory of 100,000 entries and a file of 100,000 extents, every document far below BSON and NATS limits', () => {
    const entries = new Map<string, number>();
    for (let i = 0; i < 100_000; i++) entries.set(`file-with-a-longish-name-${i}`, 100 + i);
    const runs = Array.from({ length: 100_000 }, (_, i) => ({ ino: 12, logical: i * 2, physical: 1_000_000 + i * 3, length: 1 }));
    const state: InferencerState = {
      disk: 'big', appliedSeq: 1, blockSize: 4096, nodes: [node(2, { type: 'dir', entries }), node(12, { size: 200_000 * 4096, runs })],
      links: [[2, []], [12, [[2, 'file-with-a-longish-name-0']]]], blocks: [], itables: [], geometryDirty: false, watched: [], remapped: [], pending: [], omitted: [],
      dirty: [], tails: [], heldTails: [], recent: [], retries: [], namedBy: [], journal: undefined, idxSeq: 0, idx: 0,
    };
    const bytes = encodeCheckpoint(state);
    // Each BSON document carries its length: walk them and check none nears 1 MiB.
    let off = 0;
    let docs = 0;
    const view = Buffer.from(bytes);
    while (off < view.length) {
      const len = view.readInt32LE(off);
      expect(len).toBeLessThan(3 * 1024 * 1024);
      off += len;
      docs++;
    }
    expect(docs).toBeGreaterThan(5);
    const back = decodeCheckpoint(bytes);
    expect(back.nodes[0]!.entries!.size).toBe(100_000); // ok: the directory first
    expect(back.nodes[1]!.runs!.length).toBe(100_000); // ok
    expect(back.nodes[1]!.runs![99_999]).toEqual(runs[99_999]); // ok
  });
});
