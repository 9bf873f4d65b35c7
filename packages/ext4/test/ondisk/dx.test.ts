import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptKind, InodeFlags, decodeDxRoot, type Ext4Inode, type Ext4Volume } from '../../src/index.js';
import { BIG_DIR_FILES, buildImage, debugfs, isCorrupt, openDamaged, openImage, physicalBlock, standardTree, throwsCorrupt, wr16, wr8 } from '../fixtures.js';

let img: Uint8Array;
let vol: Ext4Volume;
let big: Ext4Inode;
let root: number; // physical block 0 of /big

beforeAll(async () => {
  img = buildImage({ populate: standardTree, indexDirs: true });
  vol = await openImage(img);
  big = await vol.lookup('/big');
  root = await physicalBlock(vol, '/big', 0);
});

const block0 = () => img.slice(root * 4096, (root + 1) * 4096);
const at = { inode: 99, block: 5 };

function field(out: string, label: string): number {
  const m = new RegExp(`${label}:\\s+(\\d+)`).exec(out);
  if (!m) throw new Error(`${label} not in debugfs htree output`);
  return Number(m[1]);
}

describe('decodeDxRoot', () => {
  it('decodes the root of an htree directory as debugfs htree shows it', () => {
    expect(big.flags & InodeFlags.index).toBe(InodeFlags.index);
    const out = debugfs(img, 'htree /big');
    const r = decodeDxRoot(block0(), { inode: big.ino, block: root }, false);
    expect(r).toEqual({
      hashVersion: field(out, 'Hash Version'),
      indirectLevels: field(out, 'Indirect levels'),
      limit: field(out, 'Number of entries \\(limit\\)'),
      count: field(out, 'Number of entries \\(count\\)'),
    });
    expect(r.count).toBeGreaterThanOrEqual(2);
  });

  it('lists an indexed directory completely by scanning its blocks', async () => {
    const listing = await vol.readDir(big);
    expect(listing.errors).toEqual([]);
    expect(listing.entries).toHaveLength(BIG_DIR_FILES + 2);
  });

  it('rejects info_length 9 as Corrupt(HtreeRoot) and still lists every entry', async () => {
    const v = await openDamaged(img, (b) => wr8(b, root * 4096 + 0x1d, 9));
    const listing = await v.readDir(await v.readInode(big.ino));
    expect(listing.entries).toHaveLength(BIG_DIR_FILES + 2);
    expect(listing.errors).toHaveLength(1);
    isCorrupt(listing.errors[0], CorruptKind.HtreeRoot, { inode: big.ino, block: root, field: 'info_length' });
  });

  it.each([
    ['indirect_levels 2 without largedir', (b: Uint8Array) => wr8(b, 0x1e, 2), 'indirect_levels'],
    ['hash_version 7', (b: Uint8Array) => wr8(b, 0x1c, 7), 'hash_version'],
    ['count 0', (b: Uint8Array) => wr16(b, 0x22, 0), 'count'],
    ['count above limit', (b: Uint8Array) => wr16(b, 0x22, 508), 'count'],
    ['limit 0', (b: Uint8Array) => wr16(b, 0x20, 0), 'count'],
    ['limit above the block capacity', (b: Uint8Array) => wr16(b, 0x20, 509), 'count'],
  ])('rejects %s as Corrupt(HtreeRoot)', (_what, damage, f) => {
    const b = block0();
    damage(b);
    throwsCorrupt(() => decodeDxRoot(b, at, false), CorruptKind.HtreeRoot, { ...at, field: f });
  });

  it('allows a third level with largedir only', () => {
    const b = block0();
    wr8(b, 0x1e, 2);
    expect(decodeDxRoot(b, at, true).indirectLevels).toBe(2);
    wr8(b, 0x1e, 3);
    throwsCorrupt(() => decodeDxRoot(b, at, true), CorruptKind.HtreeRoot, { ...at, field: 'indirect_levels' });
  });

  it('rejects a block too small for a root as Corrupt(HtreeRoot)', () => {
    throwsCorrupt(() => decodeDxRoot(block0().subarray(0, 0x20), at, false), CorruptKind.HtreeRoot, at);
  });
});
