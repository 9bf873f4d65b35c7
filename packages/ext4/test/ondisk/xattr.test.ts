import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptKind, XATTR_PREFIXES, decodeInodeXattrs, decodeXattrBlock, limits, type Ext4Inode, type Ext4Volume } from '../../src/index.js';
import {
  BIG_XATTR,
  buildImage,
  flip,
  inodeOffset,
  openDamaged,
  openImage,
  rd16,
  rejectsCorrupt,
  resealInode,
  resealXattrBlock,
  standardTree,
  throwsCorrupt,
  wr16,
  wr32,
  wr8,
} from '../fixtures.js';

const MAGIC = 0xea020000;
/** user::rw-, user:1234:r--, group::r--, mask::r--, other::r-- in the VFS xattr format (version 2). */
const ACL_XATTR = '0200000001000600ffffffff02000400d204000004000400ffffffff10000400ffffffff20000400ffffffff';

interface Attr {
  readonly index: number;
  readonly name: string;
  readonly value?: string;
  readonly inum?: number;
  readonly size?: number;
}

/**
 * Lays out entries from `first` and their values from the end of `region` down, offsets relative to `base`
 * (the block start, or the first in-inode entry).
 */
function layout(region: Uint8Array, first: number, base: number, attrs: readonly Attr[]): void {
  let off = first;
  let valueEnd = region.length;
  for (const a of attrs) {
    const name = Buffer.from(a.name, 'utf8');
    const value = Buffer.from(a.value ?? '', 'utf8');
    wr8(region, off, name.length);
    wr8(region, off + 1, a.index);
    if (a.inum === undefined) {
      valueEnd = (valueEnd - value.length) & ~3;
      region.set(value, valueEnd);
      wr16(region, off + 2, valueEnd - base);
    }
    wr32(region, off + 4, a.inum ?? 0);
    wr32(region, off + 8, a.size ?? value.length);
    region.set(name, off + 16);
    off = (off + 16 + name.length + 3) & ~3;
  }
}

/** An xattr block (no checksum) holding `attrs`. */
function xattrBlock(size: number, attrs: readonly Attr[]): Uint8Array {
  const b = new Uint8Array(size);
  wr32(b, 0, MAGIC);
  wr32(b, 4, 1);
  wr32(b, 8, 1);
  layout(b, 32, 0, attrs);
  return b;
}

const where = { inode: 12, block: 900 };
const byName = (xs: readonly { name: string; value: Uint8Array }[]) => Object.fromEntries(xs.map((x) => [x.name, Buffer.from(x.value).toString('latin1')]));

describe('decodeXattrBlock (hand-built)', () => {
  it('decodes every namespace prefix and keeps unknown ones visible', () => {
    const b = xattrBlock(1024, [
      { index: 1, name: 'mime', value: 'text/plain' },
      { index: 4, name: 'secret', value: 't' },
      { index: 6, name: 'selinux', value: 'ctx' },
      { index: 7, name: 'data', value: '' },
      { index: 9, name: 'odd', value: 'v' },
    ]);
    const xs = decodeXattrBlock(b, 900, where, undefined);
    expect(xs.map((x) => x.name)).toEqual(['user.mime', 'trusted.secret', 'security.selinux', 'system.data', 'unknown9.odd']);
    expect(byName(xs)['user.mime']).toBe('text/plain');
    expect(xs[3]!.valueSize).toBe(0); // ok: five entries
    expect(XATTR_PREFIXES[6]).toBe('security.');
  });

  it('decodes POSIX ACLs, whose whole name is the prefix (e_name_len 0)', () => {
    // The kernel stores system.posix_acl_access as index 2 with the empty name "" (ext4_xattr_set_handle(...,
    // EXT4_XATTR_INDEX_POSIX_ACL_ACCESS, "", ...)); e_name_len 0 is valid there.
    const b = xattrBlock(1024, [
      { index: 2, name: '', value: 'acl-a' },
      { index: 3, name: '', value: 'acl-d' },
    ]);
    expect(byName(decodeXattrBlock(b, 900, where, undefined))).toEqual({ 'system.posix_acl_access': 'acl-a', 'system.posix_acl_default': 'acl-d' });
  });

  it('reports a value stored in an EA inode by its inode number', () => {
    const xs = decodeXattrBlock(xattrBlock(1024, [{ index: 1, name: 'huge', inum: 77, size: 70000 - 10000 }]), 900, where, undefined);
    expect(xs).toEqual([{ name: 'user.huge', value: new Uint8Array(0), valueInode: 77, valueSize: 60000 }]);
  });

  it('rejects a damaged h_magic as Corrupt(XattrHeader)', () => {
    const b = xattrBlock(1024, []);
    flip(b, 3);
    throwsCorrupt(() => decodeXattrBlock(b, 900, where, undefined), CorruptKind.XattrHeader, { ...where, field: 'h_magic' });
  });

  it('rejects a block shorter than its header as Corrupt(XattrHeader)', () => {
    throwsCorrupt(() => decodeXattrBlock(new Uint8Array(16), 900, where, undefined), CorruptKind.XattrHeader, where);
  });

  it('rejects an e_name_len that runs past the block as Corrupt(XattrEntry)', () => {
    const b = xattrBlock(64, [{ index: 1, name: 'a', value: 'v' }]);
    wr8(b, 32, 40);
    throwsCorrupt(() => decodeXattrBlock(b, 900, where, undefined), CorruptKind.XattrEntry, { ...where, field: 'e_name_len' });
  });

  it('rejects an entry that runs past the block as Corrupt(XattrEntry)', () => {
    const b = xattrBlock(44, []);
    b.fill(0x11, 32, 44); // a non-zero word where an entry starts, but no room for its 16-byte header
    throwsCorrupt(() => decodeXattrBlock(b, 900, where, undefined), CorruptKind.XattrEntry, { ...where, field: 'e_name_len' });
  });

  it('rejects more than MAX_XATTRS entries as Corrupt(XattrEntry)', () => {
    const attrs = Array.from({ length: limits.MAX_XATTRS + 1 }, (_, i) => ({ index: 1, name: 'n', inum: i + 100, size: 1 }));
    throwsCorrupt(() => decodeXattrBlock(xattrBlock(65536, attrs), 900, where, undefined), CorruptKind.XattrEntry, where);
  });
});

describe('decodeInodeXattrs (hand-built)', () => {
  const inode = (attrs: readonly Attr[], extra = 32, magic = MAGIC) => {
    const raw = new Uint8Array(256);
    wr16(raw, 0x80, extra);
    wr32(raw, 128 + extra, magic);
    layout(raw.subarray(128 + extra + 4), 0, 0, attrs);
    return raw;
  };

  it('decodes entries after i_extra_isize, values relative to the first entry', () => {
    const xs = decodeInodeXattrs(inode([{ index: 1, name: 'k', value: 'val' }, { index: 6, name: 's', value: 'x' }]), 32, 12);
    expect(byName(xs)).toEqual({ 'user.k': 'val', 'security.s': 'x' });
  });

  it('returns nothing without the magic or without room for it', () => {
    expect(decodeInodeXattrs(inode([{ index: 1, name: 'k', value: 'v' }], 32, 0), 32, 12)).toEqual([]);
    expect(decodeInodeXattrs(new Uint8Array(128), 0, 12)).toEqual([]);
    expect(decodeInodeXattrs(new Uint8Array(256), 124, 12)).toEqual([]);
  });

  it('rejects a value past the end of the inode as Corrupt(XattrEntry)', () => {
    const raw = inode([{ index: 1, name: 'k', value: 'val' }]);
    wr16(raw, 128 + 32 + 4 + 2, 200);
    throwsCorrupt(() => decodeInodeXattrs(raw, 32, 12), CorruptKind.XattrEntry, { inode: 12, field: 'e_value_offs' });
  });
});

describe('xattrs on a real image', () => {
  let img: Uint8Array;
  let vol: Ext4Volume;
  let file: Ext4Inode;
  let blk: number;

  beforeAll(async () => {
    img = buildImage({
      populate: (root) => {
        standardTree(root);
        execFileSync('setfattr', ['-n', 'system.posix_acl_access', '-v', `0x${ACL_XATTR}`, join(root, 'small.txt')]);
      },
    });
    vol = await openImage(img);
    file = await vol.lookup('/dir/a.txt');
    blk = file.fileAcl;
    expect(blk).toBeGreaterThan(0);
  });

  /** Byte offset of the first entry in the xattr block (user.big, the only one there). */
  const entry = () => blk * 4096 + 32;

  async function readDamaged(damage: (b: Uint8Array) => void | Promise<void>) {
    const v = await openDamaged(img, damage);
    return v.readXattrs(await v.readInode(file.ino));
  }

  it('reads the in-inode and the block attributes e2fsprogs wrote', async () => {
    const xs = await vol.readXattrs(file);
    expect(byName(xs)).toEqual({ 'user.small': 'tiny', 'user.big': BIG_XATTR });
    expect(decodeInodeXattrs(file.raw, file.extraIsize, file.ino).map((x) => x.name)).toEqual(['user.small']);
  });

  it('reads the POSIX ACL mke2fs stored in the inode (index 2, e_name_len 0)', async () => {
    const small = await vol.lookup('/small.txt');
    const xs = await vol.readXattrs(small);
    expect(xs.map((x) => x.name)).toEqual(['system.posix_acl_access']);
    // ext4 stores ACLs in its own compact format (version 1, no ids for the *_OBJ, MASK and OTHER entries).
    expect(xs[0]!.valueSize).toBe(28); // ok: one entry
  });

  it('rejects a damaged h_magic as Corrupt(XattrHeader)', async () => {
    await rejectsCorrupt(
      readDamaged((b) => flip(b, blk * 4096)),
      CorruptKind.XattrHeader,
      { inode: file.ino, block: blk, field: 'h_magic' },
    );
  });

  it('rejects h_blocks 2 as Corrupt(XattrHeader)', async () => {
    await rejectsCorrupt(
      readDamaged((b) => {
        wr32(b, blk * 4096 + 8, 2);
        resealXattrBlock(b, vol.superblock, blk);
      }),
      CorruptKind.XattrHeader,
      { inode: file.ino, block: blk, field: 'h_blocks' },
    );
  });

  it('rejects a flipped value byte as Corrupt(XattrChecksum)', async () => {
    const valueOffs = rd16(img, entry() + 2);
    await rejectsCorrupt(
      readDamaged((b) => flip(b, blk * 4096 + valueOffs)),
      CorruptKind.XattrChecksum,
      { inode: file.ino, block: blk, field: 'h_checksum' },
    );
  });

  it('rejects e_value_size over 64 KiB as Corrupt(XattrEntry)', async () => {
    await rejectsCorrupt(
      readDamaged((b) => {
        wr32(b, entry() + 8, limits.MAX_XATTR_VALUE_BYTES + 1);
        resealXattrBlock(b, vol.superblock, blk);
      }),
      CorruptKind.XattrEntry,
      { inode: file.ino, block: blk, field: 'e_value_size' },
    );
  });

  it('rejects e_value_offs past the block as Corrupt(XattrEntry)', async () => {
    await rejectsCorrupt(
      readDamaged((b) => {
        wr16(b, entry() + 2, 4000);
        resealXattrBlock(b, vol.superblock, blk);
      }),
      CorruptKind.XattrEntry,
      { inode: file.ino, block: blk, field: 'e_value_offs' },
    );
  });

  it('rejects an in-inode e_value_offs past the inode as Corrupt(XattrEntry)', async () => {
    const first = inodeOffset(vol, file.ino) + 128 + file.extraIsize + 4;
    await rejectsCorrupt(
      readDamaged((b) => {
        wr16(b, first + 2, 250);
        resealInode(b, vol, file.ino);
      }),
      CorruptKind.XattrEntry,
      { inode: file.ino, field: 'e_value_offs' },
    );
  });

  it('rejects e_value_inum naming an inode that is not an EA inode as Corrupt(XattrEntry)', async () => {
    const other = (await vol.lookup('/small.txt')).ino;
    await rejectsCorrupt(
      readDamaged((b) => {
        wr32(b, entry() + 4, other);
        resealXattrBlock(b, vol.superblock, blk);
      }),
      CorruptKind.XattrEntry,
      { inode: file.ino, field: 'e_value_inum' },
    );
  });

  it('rejects e_value_inum past s_inodes_count as Corrupt(InodeNumber)', async () => {
    const bad = vol.superblock.inodesCount + 3;
    await rejectsCorrupt(
      readDamaged((b) => {
        wr32(b, entry() + 4, bad);
        resealXattrBlock(b, vol.superblock, blk);
      }),
      CorruptKind.InodeNumber,
      { inode: bad },
    );
  });

  it('rejects i_file_acl past the end of the file system as Corrupt(BlockNumber)', async () => {
    const end = vol.superblock.blocksCount;
    await rejectsCorrupt(
      readDamaged((b) => {
        wr32(b, inodeOffset(vol, file.ino) + 0x68, end);
        resealInode(b, vol, file.ino);
      }),
      CorruptKind.BlockNumber,
      { inode: file.ino, block: end, field: 'i_file_acl' },
    );
  });
});
