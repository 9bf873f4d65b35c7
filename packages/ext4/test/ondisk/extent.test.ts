import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptKind, EXT4_EXT_MAGIC, decodeExtentNode, verifyExtentBlock, type Ext4Volume, type ExtentIndex } from '../../src/index.js';
import {
  SPARSE_ISLANDS,
  buildImage,
  debugfs,
  flip,
  inodeOffset,
  inodeSeed,
  openDamaged,
  openImage,
  rd32,
  rejectsCorrupt,
  resealExtentBlock,
  resealInode,
  standardTree,
  throwsCorrupt,
  wr16,
  wr32,
} from '../fixtures.js';

/** One extent node built by hand: header then 12-byte entries. */
function node(size: number, h: { entries: number; max: number; depth: number; magic?: number }, rows: number[][]): Uint8Array {
  const b = new Uint8Array(size);
  wr16(b, 0, h.magic ?? EXT4_EXT_MAGIC);
  wr16(b, 2, h.entries);
  wr16(b, 4, h.max);
  wr16(b, 6, h.depth);
  rows.forEach((r, i) => {
    const o = 12 + i * 12;
    if (h.depth > 0) {
      wr32(b, o, r[0]!); // ok: rows are [ei_block, ei_leaf_lo, ei_leaf_hi]
      wr32(b, o + 4, r[1]!);
      wr16(b, o + 8, r[2] ?? 0);
    } else {
      wr32(b, o, r[0]!); // ok: rows are [ee_block, ee_len, ee_start_lo, ee_start_hi]
      wr16(b, o + 4, r[1]!);
      wr32(b, o + 8, r[2]!);
      wr16(b, o + 6, r[3] ?? 0);
    }
  });
  return b;
}

const at = { inode: 12 };

describe('decodeExtentNode (hand-built)', () => {
  it('decodes leaf extents, unwritten ones and 48-bit starts', () => {
    const leaf = node(60, { entries: 3, max: 4, depth: 0 }, [
      [0, 5, 100],
      [5, 32768 + 3, 7, 1],
      [20, 32768, 200],
    ]);
    expect(decodeExtentNode(leaf, at, undefined)).toEqual({
      depth: 0,
      entries: [
        { logical: 0, physical: 100, length: 5, initialized: true },
        { logical: 5, physical: 2 ** 32 + 7, length: 3, initialized: false },
        { logical: 20, physical: 200, length: 32768, initialized: true },
      ],
    });
  });

  it('decodes index entries with ei_leaf_hi', () => {
    const idx = node(60, { entries: 2, max: 4, depth: 2 }, [
      [0, 500],
      [1000, 9, 2],
    ]);
    expect(decodeExtentNode(idx, at, 2)).toEqual({ depth: 2, entries: [{ block: 0, leaf: 500 }, { block: 1000, leaf: 2 * 2 ** 32 + 9 }] });
  });

  it('accepts an empty leaf and a tree block of 340 entries', () => {
    expect(decodeExtentNode(node(60, { entries: 0, max: 4, depth: 0 }, []), at, undefined).entries).toEqual([]);
    expect(decodeExtentNode(node(4096, { entries: 0, max: 340, depth: 0 }, []), at, 0).depth).toBe(0);
  });

  const headerCases: [string, Uint8Array, number | undefined, string | undefined][] = [
    ['eh_magic 0xf30b', node(60, { entries: 0, max: 4, depth: 0, magic: 0xf30b }, []), undefined, 'eh_magic'],
    ['eh_max 0', node(60, { entries: 0, max: 0, depth: 0 }, []), undefined, 'eh_max'],
    ['eh_max 5 in the 60-byte i_block', node(60, { entries: 0, max: 5, depth: 0 }, []), undefined, 'eh_max'],
    ['eh_entries above eh_max', node(60, { entries: 4, max: 3, depth: 0 }, []), undefined, 'eh_entries'],
    ['eh_depth 6', node(60, { entries: 0, max: 4, depth: 6 }, []), undefined, 'eh_depth'],
    ['eh_depth other than the parent expects', node(60, { entries: 0, max: 4, depth: 1 }, []), 0, 'eh_depth'],
    ['a node shorter than its header', new Uint8Array(8), undefined, undefined],
  ];
  it.each(headerCases)('rejects %s as Corrupt(ExtentHeader)', (_what, bytes, parentDepth, field) => {
    throwsCorrupt(() => decodeExtentNode(bytes, at, parentDepth), CorruptKind.ExtentHeader, field ? { ...at, field } : at);
  });

  it.each([
    ['ee_len 0', [[0, 0, 100]], 'ee_len'],
    ['overlapping extents', [[0, 10, 100], [9, 1, 300]], 'ee_block'],
    ['an extent running past 2^32 blocks', [[0xffffffff, 2, 100]], 'ee_len'],
  ] as [string, number[][], string][])('rejects %s as Corrupt(ExtentEntry)', (_what, rows, field) => {
    throwsCorrupt(() => decodeExtentNode(node(60, { entries: rows.length, max: 4, depth: 0 }, rows), at, undefined), CorruptKind.ExtentEntry, { ...at, field });
  });

  it('rejects index entries that do not increase as Corrupt(ExtentEntry)', () => {
    const idx = node(60, { entries: 2, max: 4, depth: 1 }, [
      [10, 500],
      [10, 501],
    ]);
    throwsCorrupt(() => decodeExtentNode(idx, at, undefined), CorruptKind.ExtentEntry, { ...at, field: 'ei_block' });
  });
});

describe('verifyExtentBlock', () => {
  it('rejects an eh_max that leaves no room for the tail as Corrupt(ExtentHeader)', () => {
    const b = node(4096, { entries: 0, max: 341, depth: 0 }, []);
    throwsCorrupt(() => verifyExtentBlock(b, 0, { inode: 12, block: 5 }), CorruptKind.ExtentHeader, { inode: 12, block: 5, field: 'eh_max' });
  });
});

describe('extent trees on a real image', () => {
  let img: Uint8Array;
  let vol: Ext4Volume;
  let sparseIno: number;
  let root: readonly ExtentIndex[];

  beforeAll(async () => {
    img = buildImage({ populate: standardTree });
    vol = await openImage(img);
    const sparse = await vol.lookup('/sparse');
    sparseIno = sparse.ino;
    const n = decodeExtentNode(sparse.iBlock, { inode: sparseIno }, undefined);
    expect(n.depth).toBe(1);
    root = n.entries as readonly ExtentIndex[];
    expect(root.length).toBeGreaterThanOrEqual(2);
  });

  /** Byte offset of i_block entry `i` of inode `ino`. */
  const rootEntry = (ino: number, i: number) => inodeOffset(vol, ino) + 0x28 + 12 + i * 12;

  it('maps a sparse file through index and leaf blocks as debugfs does', async () => {
    const sparse = await vol.readInode(sparseIno);
    const map = await vol.blockMap(sparse);
    expect(map).toHaveLength(SPARSE_ISLANDS);
    expect(map.map((e) => e.logical)).toEqual(Array.from({ length: SPARSE_ISLANDS }, (_, i) => i * 2));
    // debugfs lists the tree blocks among the data blocks.
    const treeBlocks = new Set(root.map((e) => e.leaf));
    const want = debugfs(img, 'blocks /sparse').trim().split(/\s+/).map(Number).filter((b) => !treeBlocks.has(b));
    expect(map.flatMap((e) => Array.from({ length: e.length }, (_, k) => e.physical + k))).toEqual(want);
    const data = await vol.readFile(sparse, 4096 - 2, 6);
    expect([...data]).toEqual([0x78, 0x78, 0, 0, 0, 0]);
  });

  it('verifies the tail checksum of every tree block e2fsprogs wrote', async () => {
    const sparse = await vol.readInode(sparseIno);
    for (const e of root) {
      const block = img.subarray(e.leaf * 4096, (e.leaf + 1) * 4096);
      expect(() => verifyExtentBlock(block, inodeSeed(vol.superblock, sparseIno, sparse.generation), { inode: sparseIno, block: e.leaf })).not.toThrow();
    }
  });

  it('rejects a damaged eh_magic in i_block as Corrupt(ExtentHeader)', async () => {
    const ino = (await vol.lookup('/small.txt')).ino;
    const v = await openDamaged(img, (b) => {
      flip(b, inodeOffset(vol, ino) + 0x28);
      resealInode(b, vol, ino);
    });
    await rejectsCorrupt(v.blockMap(await v.readInode(ino)), CorruptKind.ExtentHeader, { inode: ino, field: 'eh_magic' });
  });

  it('rejects a leaf whose eh_depth disagrees with its parent as Corrupt(ExtentHeader)', async () => {
    const leaf = root[1]!.leaf; // ok: length checked in beforeAll
    const v = await openDamaged(img, async (b) => {
      wr16(b, leaf * 4096 + 6, 1);
      await resealExtentBlock(b, vol, sparseIno, leaf);
    });
    await rejectsCorrupt(v.blockMap(await v.readInode(sparseIno)), CorruptKind.ExtentHeader, { inode: sparseIno, block: leaf, field: 'eh_depth' });
  });

  it('rejects ee_len 0 in a leaf block as Corrupt(ExtentEntry)', async () => {
    const leaf = root[0]!.leaf; // ok: length checked in beforeAll
    const v = await openDamaged(img, async (b) => {
      wr16(b, leaf * 4096 + 12 + 3 * 12 + 4, 0);
      await resealExtentBlock(b, vol, sparseIno, leaf);
    });
    await rejectsCorrupt(v.blockMap(await v.readInode(sparseIno)), CorruptKind.ExtentEntry, { inode: sparseIno, block: leaf, field: 'ee_len' });
  });

  it('rejects root index entries out of order as Corrupt(ExtentEntry)', async () => {
    const v = await openDamaged(img, (b) => {
      wr32(b, rootEntry(sparseIno, 1), root[0]!.block); // ok: length checked in beforeAll
      resealInode(b, vol, sparseIno);
    });
    await rejectsCorrupt(v.readInode(sparseIno).then((i) => v.blockMap(i)), CorruptKind.ExtentEntry, { inode: sparseIno, field: 'ei_block' });
  });

  it('rejects leaves that map logical blocks out of order as Corrupt(ExtentEntry)', async () => {
    const v = await openDamaged(img, (b) => {
      // Swap the two leaf pointers: the second leaf's extents now come first.
      const a = rd32(b, rootEntry(sparseIno, 0) + 4);
      wr32(b, rootEntry(sparseIno, 0) + 4, rd32(b, rootEntry(sparseIno, 1) + 4));
      wr32(b, rootEntry(sparseIno, 1) + 4, a);
      resealInode(b, vol, sparseIno);
    });
    await rejectsCorrupt(v.blockMap(await v.readInode(sparseIno)), CorruptKind.ExtentEntry, { inode: sparseIno, field: 'ee_block' });
  });

  it('rejects an index entry naming an already visited block as Corrupt(ExtentLoop)', async () => {
    const first = root[0]!.leaf; // ok: length checked in beforeAll
    const v = await openDamaged(img, (b) => {
      wr32(b, rootEntry(sparseIno, 1) + 4, first);
      resealInode(b, vol, sparseIno);
    });
    await rejectsCorrupt(v.blockMap(await v.readInode(sparseIno)), CorruptKind.ExtentLoop, { inode: sparseIno, block: first });
  });

  it('rejects a flipped eh_generation byte of a leaf block as Corrupt(ExtentChecksum)', async () => {
    const leaf = root[1]!.leaf; // ok: length checked in beforeAll
    const v = await openDamaged(img, (b) => flip(b, leaf * 4096 + 8));
    await rejectsCorrupt(v.blockMap(await v.readInode(sparseIno)), CorruptKind.ExtentChecksum, { inode: sparseIno, block: leaf, field: 'et_checksum' });
  });

  it('rejects ee_start_lo past the end of the file system as Corrupt(BlockNumber)', async () => {
    const ino = (await vol.lookup('/small.txt')).ino;
    const end = vol.superblock.blocksCount;
    const v = await openDamaged(img, (b) => {
      wr32(b, rootEntry(ino, 0) + 8, end);
      resealInode(b, vol, ino);
    });
    const inode = await v.readInode(ino);
    await rejectsCorrupt(v.blockMap(inode), CorruptKind.BlockNumber, { inode: ino, block: end, field: 'ee_start_lo' });
    await rejectsCorrupt(v.readFile(inode, 0, 10), CorruptKind.BlockNumber, { inode: ino });
  });

  it('rejects an extent that runs past the last block as Corrupt(BlockNumber)', async () => {
    const ino = (await vol.lookup('/small.txt')).ino;
    const end = vol.superblock.blocksCount;
    const v = await openDamaged(img, (b) => {
      wr32(b, rootEntry(ino, 0) + 8, end - 1);
      wr16(b, rootEntry(ino, 0) + 4, 2);
      resealInode(b, vol, ino);
    });
    await rejectsCorrupt(v.blockMap(await v.readInode(ino)), CorruptKind.BlockNumber, { inode: ino, block: end - 1 });
  });

  it('rejects ei_leaf_lo past the end of the file system as Corrupt(BlockNumber)', async () => {
    const end = vol.superblock.blocksCount;
    const v = await openDamaged(img, (b) => {
      wr32(b, rootEntry(sparseIno, 1) + 4, end + 5);
      resealInode(b, vol, sparseIno);
    });
    await rejectsCorrupt(v.blockMap(await v.readInode(sparseIno)), CorruptKind.BlockNumber, { inode: sparseIno, block: end + 5, field: 'ei_leaf_lo' });
  });
});
