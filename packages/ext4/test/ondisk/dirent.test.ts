import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptKind, DirFileType, decodeDirBlock, dirTailLength, recLenFromDisk, type DirEntry, type Ext4Volume } from '../../src/index.js';
import {
  BIG_DIR_FILES,
  buildImage,
  direntOffset,
  flip,
  isCorrupt,
  openDamaged,
  openImage,
  physicalBlock,
  resealDirBlock,
  standardTree,
  wr16,
  wr32,
  wr8,
} from '../fixtures.js';

interface Row {
  readonly ino: number;
  readonly name: string | Uint8Array;
  readonly type?: number;
  /** rec_len used for the layout; default: minimal, the last row spans the rest of the block. */
  readonly recLen?: number;
  /** rec_len written to disk when it differs from the layout (a damaged field). */
  readonly storedRecLen?: number;
  /** Stored name_len; default: the name's length. */
  readonly nameLen?: number;
}

/** A directory block built by hand (ext4_dir_entry_2, or ext4_dir_entry with a 16-bit name_len). */
function dirBlock(size: number, rows: readonly Row[], fileType = true): Uint8Array {
  const b = new Uint8Array(size);
  let off = 0;
  rows.forEach((r, i) => {
    const name = typeof r.name === 'string' ? Buffer.from(r.name, 'utf8') : r.name;
    const min = 8 + ((name.length + 3) & ~3);
    const recLen = r.recLen ?? (i === rows.length - 1 ? size - off : min);
    wr32(b, off, r.ino);
    wr16(b, off + 4, (r.storedRecLen ?? recLen) & 0xffff);
    if (fileType) {
      wr8(b, off + 6, r.nameLen ?? name.length);
      wr8(b, off + 7, r.type ?? DirFileType.file);
    } else {
      wr16(b, off + 6, r.nameLen ?? name.length);
    }
    b.set(name.subarray(0, Math.max(0, Math.min(name.length, size - off - 8))), off + 8);
    off += recLen;
  });
  return b;
}

const opts = (blockSize: number, fileTypeFeature = true) => ({ blockSize, fileTypeFeature, inodesCount: 1000, where: { inode: 12, block: 77 } });
const names = (entries: readonly DirEntry[]) => entries.map((e) => Buffer.from(e.name).toString('latin1'));
const where = { inode: 12, block: 77 };

describe('recLenFromDisk', () => {
  it('returns rec_len unchanged below 64 KiB blocks', () => {
    for (const raw of [0, 8, 12, 4096, 65535]) expect(recLenFromDisk(raw, 4096)).toBe(raw);
  });

  it('reads 0 and 65535 as a whole 64 KiB block', () => {
    expect(recLenFromDisk(0, 65536)).toBe(65536);
    expect(recLenFromDisk(65535, 65536)).toBe(65536);
  });

  it('takes bits 16-17 of a 64 KiB-block rec_len from its low two bits', () => {
    expect(recLenFromDisk(12, 65536)).toBe(12);
    expect(recLenFromDisk(65532, 65536)).toBe(65532);
    expect(recLenFromDisk(1, 65536)).toBe(65536);
    expect(recLenFromDisk(0x0010 | 1, 65536)).toBe(0x10010);
  });
});

describe('decodeDirBlock', () => {
  it('decodes names, inode numbers and file types, skipping unused slots', () => {
    const b = dirBlock(1024, [
      { ino: 2, name: '.', type: DirFileType.dir },
      { ino: 2, name: '..', type: DirFileType.dir },
      { ino: 0, name: 'deleted' },
      { ino: 13, name: 'file.txt' },
      { ino: 14, name: 'link', type: DirFileType.symlink },
    ]);
    const r = decodeDirBlock(b, opts(1024));
    expect(r.error).toBeUndefined();
    expect(names(r.entries)).toEqual(['.', '..', 'file.txt', 'link']);
    expect(r.entries.map((e) => [e.ino, e.fileType])).toEqual([
      [2, 2],
      [2, 2],
      [13, 1],
      [14, 7],
    ]);
  });

  it('reads a 16-bit name_len and no file type without the filetype feature', () => {
    const b = dirBlock(1024, [{ ino: 11, name: 'x'.repeat(20) }], false);
    const r = decodeDirBlock(b, opts(1024, false));
    expect(r.error).toBeUndefined();
    expect(r.entries).toEqual([{ ino: 11, name: expect.any(Uint8Array) as Uint8Array, fileType: 0 }]);
    expect(names(r.entries)).toEqual(['x'.repeat(20)]);
  });

  it('accepts 255-byte names and non-UTF-8 bytes', () => {
    const odd = Uint8Array.from([0xff, 0xfe, 0x41]);
    const b = dirBlock(1024, [{ ino: 20, name: 'n'.repeat(255) }, { ino: 21, name: odd }]);
    const r = decodeDirBlock(b, opts(1024));
    expect(r.error).toBeUndefined();
    expect(r.entries[0]!.name).toHaveLength(255); // ok: two entries decoded
    expect([...r.entries[1]!.name]).toEqual([0xff, 0xfe, 0x41]); // ok: two entries decoded
  });

  it('decodes a 64 KiB block whose only entry spans it (rec_len stored as 0 or 65535)', () => {
    for (const stored of [0, 65535]) {
      const b = dirBlock(65536, [{ ino: 30, name: 'only', recLen: stored }]);
      const r = decodeDirBlock(b, opts(65536));
      expect(r.error).toBeUndefined();
      expect(names(r.entries)).toEqual(['only']);
    }
  });

  it('decodes an empty region', () => {
    expect(decodeDirBlock(new Uint8Array(0), opts(1024))).toEqual({ entries: [], error: undefined });
  });

  it.each([
    ['rec_len 0', 0],
    ['rec_len 4 (below the 8-byte header)', 4],
    ['rec_len 14 (not a multiple of 4)', 14],
    ['rec_len past the end of the block', 2048],
  ])('rejects %s as Corrupt(DirEntryRecLen) and keeps the entries before it', (_what, recLen) => {
    const b = dirBlock(1024, [{ ino: 2, name: '.' }, { ino: 13, name: 'kept' }, { ino: 14, name: 'bad', storedRecLen: recLen }, { ino: 15, name: 'lost' }]);
    const r = decodeDirBlock(b, opts(1024));
    expect(names(r.entries)).toEqual(['.', 'kept']);
    isCorrupt(r.error, CorruptKind.DirEntryRecLen, { ...where, field: 'rec_len' });
  });

  it('rejects fewer than 8 trailing bytes as Corrupt(DirEntryRecLen)', () => {
    const b = dirBlock(16, [{ ino: 13, name: 'a', recLen: 12 }]);
    const r = decodeDirBlock(b, opts(1024));
    expect(names(r.entries)).toEqual(['a']);
    isCorrupt(r.error, CorruptKind.DirEntryRecLen, { ...where, field: 'rec_len' });
  });

  it.each([
    ['name_len 0', 0, true],
    ['name_len longer than rec_len allows', 40, true],
    ['a 16-bit name_len of 256', 256, false],
  ] as const)('rejects %s as Corrupt(DirEntryNameLen)', (_what, nameLen, fileType) => {
    const b = dirBlock(1024, [{ ino: 13, name: 'kept' }, { ino: 14, name: 'bad', nameLen, recLen: 32 }, { ino: 15, name: 'lost' }], fileType);
    const r = decodeDirBlock(b, opts(1024, fileType));
    expect(names(r.entries)).toEqual(['kept']);
    isCorrupt(r.error, CorruptKind.DirEntryNameLen, { ...where, field: 'name_len' });
  });

  it.each([
    ["a '/'", 'a/b'],
    ['a NUL byte', 'a\0b'],
  ])('rejects a name containing %s as Corrupt(DirEntryName)', (_what, name) => {
    const r = decodeDirBlock(dirBlock(1024, [{ ino: 13, name: 'kept' }, { ino: 14, name }]), opts(1024));
    expect(names(r.entries)).toEqual(['kept']);
    isCorrupt(r.error, CorruptKind.DirEntryName, { ...where, field: 'name' });
  });

  it('rejects an inode number past s_inodes_count as Corrupt(DirEntryInode)', () => {
    const r = decodeDirBlock(dirBlock(1024, [{ ino: 13, name: 'kept' }, { ino: 1001, name: 'ghost' }]), opts(1024));
    expect(names(r.entries)).toEqual(['kept']);
    isCorrupt(r.error, CorruptKind.DirEntryInode, { ...where, field: 'inode' });
  });

  it('ignores the name bytes of an unused slot (inode 0)', () => {
    const r = decodeDirBlock(dirBlock(1024, [{ ino: 0, name: 'a/b', nameLen: 0 }, { ino: 13, name: 'ok' }]), opts(1024));
    expect(r.error).toBeUndefined();
    expect(names(r.entries)).toEqual(['ok']);
  });
});

describe('dirTailLength', () => {
  const withTail = (size: number) => {
    const b = dirBlock(size - 12, [{ ino: 13, name: 'a' }]);
    const out = new Uint8Array(size);
    out.set(b);
    wr16(out, size - 12 + 4, 12);
    wr8(out, size - 12 + 7, 0xde);
    return out;
  };

  it('finds the checksum tail and returns the length of the entries before it', () => {
    expect(dirTailLength(withTail(1024), 1024)).toBe(1012);
    expect(dirTailLength(withTail(65536), 65536)).toBe(65524);
  });

  it('returns undefined for a block without a tail or too short for one', () => {
    expect(dirTailLength(dirBlock(1024, [{ ino: 13, name: 'a' }]), 1024)).toBeUndefined();
    const b = withTail(1024);
    wr8(b, 1024 - 12 + 7, 0xdd);
    expect(dirTailLength(b, 1024)).toBeUndefined();
    expect(dirTailLength(new Uint8Array(8), 1024)).toBeUndefined();
  });
});

describe('directory blocks on a real image', () => {
  let img: Uint8Array;
  let plain: Uint8Array;
  let vol: Ext4Volume;
  let dirIno: number;
  let dirBlk: number;
  let pristine: string[];

  beforeAll(async () => {
    img = buildImage({ populate: standardTree });
    plain = buildImage({ populate: standardTree, features: '^metadata_csum' });
    vol = await openImage(img);
    const dir = await vol.lookup('/dir');
    dirIno = dir.ino;
    dirBlk = await physicalBlock(vol, '/dir');
    const listing = await vol.readDir(dir);
    expect(listing.errors).toEqual([]);
    pristine = names(listing.entries);
    expect([...pristine].sort()).toEqual(['.', '..', 'a.txt', 'sub']);
  });

  /** Damages the entry `name` of /dir with `edit(entryOffset)`, re-seals the block, and lists /dir. */
  async function listDamaged(name: string, edit: (b: Uint8Array, off: number) => void, reseal = true) {
    const v = await openDamaged(img, async (b) => {
      edit(b, direntOffset(b, dirBlk * 4096, 4096, name));
      if (reseal) await resealDirBlock(b, vol, dirIno, dirBlk);
    });
    return v.readDir(await v.readInode(dirIno));
  }

  const before = (name: string) => pristine.slice(0, pristine.indexOf(name));
  const at = () => ({ inode: dirIno, block: dirBlk });

  it('lists a directory as stored, "." and ".." included', async () => {
    const big = await vol.readDir(await vol.lookup('/big'));
    expect(big.errors).toEqual([]);
    expect(big.entries).toHaveLength(BIG_DIR_FILES + 2);
    expect(new Set(names(big.entries))).toEqual(new Set(['.', '..', ...Array.from({ length: BIG_DIR_FILES }, (_, i) => `file${i + 1}`)]));
  });

  it('rejects rec_len 0 as Corrupt(DirEntryRecLen)', async () => {
    const r = await listDamaged('sub', (b, off) => wr16(b, off + 4, 0));
    expect(names(r.entries)).toEqual(before('sub'));
    expect(r.errors).toHaveLength(1);
    isCorrupt(r.errors[0], CorruptKind.DirEntryRecLen, { ...at(), field: 'rec_len' });
  });

  it('rejects name_len 0 as Corrupt(DirEntryNameLen)', async () => {
    const r = await listDamaged('a.txt', (b, off) => wr8(b, off + 6, 0));
    expect(names(r.entries)).toEqual(before('a.txt'));
    isCorrupt(r.errors[0], CorruptKind.DirEntryNameLen, { ...at(), field: 'name_len' });
  });

  it("rejects a '/' in a name as Corrupt(DirEntryName)", async () => {
    const r = await listDamaged('a.txt', (b, off) => wr8(b, off + 8 + 1, 0x2f));
    expect(names(r.entries)).toEqual(before('a.txt'));
    isCorrupt(r.errors[0], CorruptKind.DirEntryName, { ...at(), field: 'name' });
  });

  it('rejects an entry inode past s_inodes_count as Corrupt(DirEntryInode)', async () => {
    const r = await listDamaged('a.txt', (b, off) => wr32(b, off, vol.superblock.inodesCount + 1));
    expect(names(r.entries)).toEqual(before('a.txt'));
    isCorrupt(r.errors[0], CorruptKind.DirEntryInode, { ...at(), field: 'inode' });
  });

  it('rejects a flipped name byte as Corrupt(DirBlockChecksum) and drops that block', async () => {
    const r = await listDamaged('a.txt', (b, off) => flip(b, off + 8), false);
    expect(r.entries).toEqual([]);
    expect(r.errors).toHaveLength(1);
    isCorrupt(r.errors[0], CorruptKind.DirBlockChecksum, { ...at(), field: 'det_checksum' });
  });

  it('rejects a leaf block whose checksum tail is gone as Corrupt(DirBlockChecksum)', async () => {
    const v = await openDamaged(img, (b) => wr8(b, dirBlk * 4096 + 4096 - 12 + 7, 0));
    const r = await v.readDir(await v.readInode(dirIno));
    expect(r.entries).toEqual([]);
    isCorrupt(r.errors[0], CorruptKind.DirBlockChecksum, { ...at(), field: 'det_checksum' });
  });

  it('reports the field error itself when metadata_csum is off', async () => {
    const pv = await openImage(plain);
    const dir = await pv.lookup('/dir');
    const blk = await physicalBlock(pv, '/dir');
    const v = await openDamaged(plain, (b) => wr16(b, direntOffset(b, blk * 4096, 4096, 'sub') + 4, 6));
    const r = await v.readDir(await v.readInode(dir.ino));
    isCorrupt(r.errors[0], CorruptKind.DirEntryRecLen, { inode: dir.ino, block: blk, field: 'rec_len' });
  });

  it('keeps the entries of the good blocks when one block of a directory is corrupt', async () => {
    const big = await vol.lookup('/big');
    expect(big.size / 4096).toBeGreaterThanOrEqual(2);
    const bad = await physicalBlock(vol, '/big', 1);
    const pristineBlock = img.subarray(bad * 4096, (bad + 1) * 4096);
    const lost = decodeDirBlock(pristineBlock.subarray(0, dirTailLength(pristineBlock, 4096)), {
      blockSize: 4096,
      fileTypeFeature: true,
      inodesCount: vol.superblock.inodesCount,
      where: { inode: big.ino },
    }).entries.length;
    expect(lost).toBeGreaterThan(0);
    const v = await openDamaged(img, async (b) => {
      wr16(b, bad * 4096 + 4, 0);
      await resealDirBlock(b, vol, big.ino, bad);
    });
    const r = await v.readDir(await v.readInode(big.ino));
    expect(r.entries).toHaveLength(BIG_DIR_FILES + 2 - lost);
    expect(r.errors).toHaveLength(1);
    isCorrupt(r.errors[0], CorruptKind.DirEntryRecLen, { inode: big.ino, block: bad, field: 'rec_len' });
  });
});
