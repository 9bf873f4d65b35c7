import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptKind, FileType, InodeFlags, decodeDevice, decodeInode, inodeInUse, majorMinor, makedev, type Ext4Superblock, type Ext4Volume } from '../../src/index.js';
import {
  buildImage,
  debugfs,
  flip,
  inodeOffset,
  openDamaged,
  openImage,
  rejectsCorrupt,
  resealInode,
  standardTree,
  throwsCorrupt,
  wr16,
  wr32,
} from '../fixtures.js';

let img: Uint8Array; // metadata_csum, 256-byte inodes, with debugfs-set ids and times
let plain: Uint8Array; // no metadata_csum: raw inodes decode without checksums
let small: Uint8Array; // metadata_csum with 128-byte inodes (16-bit checksums)
let vol: Ext4Volume;
let plainSb: Ext4Superblock;

beforeAll(async () => {
  img = buildImage({
    populate: standardTree,
    debugfs: [
      'sif /small.txt uid 70000',
      'sif /small.txt gid 70001',
      'sif /fast uid 4294967294',
      'sif /fast gid 2147483648',
      'sif /small.txt mtime @4102444800',
      'sif /small.txt ctime_extra 0xEE6B27FD',
      'cd /dir',
      'mknod blk b 259 300',
      'mknod chr c 4 5',
    ],
  });
  plain = buildImage({ populate: standardTree, features: '^metadata_csum' });
  small = buildImage({ populate: standardTree, args: ['-I', '128'] });
  vol = await openImage(img);
  plainSb = (await openImage(plain)).superblock;
});

/** `debugfs stat` of `path`, the oracle for inode fields. */
function stat(path: string): string {
  return debugfs(img, `stat ${path}`);
}

function num(out: string, re: RegExp): number {
  const m = re.exec(out);
  if (!m) throw new Error(`${re} not in debugfs output:\n${out}`);
  return Number(m[1]);
}

/** Raw bytes of a real in-use inode of `plain`, to edit and decode by hand. */
async function plainRaw(path = '/small.txt'): Promise<{ raw: Uint8Array; ino: number }> {
  const v = await openImage(plain);
  const inode = await v.lookup(path);
  const off = inodeOffset(v, inode.ino);
  return { raw: plain.slice(off, off + v.superblock.inodeSize), ino: inode.ino };
}

describe('decodeInode', () => {
  it('decodes a file inode as debugfs stat reports it', async () => {
    const inode = await vol.lookup('/dir/a.txt');
    const out = stat('/dir/a.txt');
    expect(inode.ino).toBe(num(out, /Inode: (\d+)/));
    expect(inode.type).toBe(FileType.file);
    expect(inode.mode & 0o7777).toBe(parseInt(/Mode:\s+(\d+)/.exec(out)![1]!, 8)); // ok: always printed
    expect(inode.flags).toBe(num(out, /Flags: (0x[0-9a-f]+)/));
    expect(inode.flags & InodeFlags.extents).toBe(InodeFlags.extents);
    expect(inode.generation).toBe(num(out, /Generation: (\d+)/));
    expect(inode.size).toBe(num(out, /Size: (\d+)/));
    expect(inode.linksCount).toBe(num(out, /Links: (\d+)/));
    expect(inode.blocks512).toBe(num(out, /Blockcount: (\d+)/));
    expect(inode.fileAcl).toBe(num(out, /File ACL: (\d+)/));
    expect(inode.fileAcl).toBeGreaterThan(0);
    expect(inode.extraIsize).toBe(num(out, /Size of extra inode fields: (\d+)/));
    expect(inode.mtime.sec).toBe(num(out, /\bmtime: (0x[0-9a-f]+)/));
    expect(inode.crtime?.sec).toBe(num(out, /crtime: (0x[0-9a-f]+)/));
    expect(inode.iBlock).toHaveLength(60);
    expect(inode.raw).toHaveLength(256);
  });

  it('joins the low and high 16 bits of uid and gid', async () => {
    const inode = await vol.lookup('/small.txt');
    expect(inode.uid).toBe(70000);
    expect(inode.gid).toBe(70001);
  });

  it('decodes a uid or gid of 2^31 and above as an unsigned 32-bit number', async () => {
    const inode = await vol.lookup('/fast');
    expect(inode.uid).toBe(4294967294);
    expect(inode.gid).toBe(2147483648);
  });

  it('adds the epoch bits of i_mtime_extra to the seconds (a date past 2038)', async () => {
    const inode = await vol.lookup('/small.txt');
    expect(inode.mtime).toEqual({ sec: 4102444800, nsec: 0 });
  });

  it('reads nanoseconds and epoch bits from i_ctime_extra', async () => {
    const inode = await vol.lookup('/small.txt');
    const lo = num(stat('/small.txt'), /\bctime: (0x[0-9a-f]+):/);
    expect(inode.ctime).toEqual({ sec: lo + 2 ** 32, nsec: 999_999_999 });
  });

  it('reads 32-bit seconds as signed when the epoch bits are 0', async () => {
    const { raw, ino } = await plainRaw();
    wr32(raw, 0x10, 0x80000000); // i_mtime
    wr32(raw, 0x88, 0); // i_mtime_extra
    wr32(raw, 0x8, 0xffffffff); // i_atime
    wr32(raw, 0x8c, 3 | (5 << 2)); // epoch 3, 5 ns
    wr32(raw, 0x0c, 0); // i_ctime
    wr32(raw, 0x84, 0xffffffff); // nsec field 2^30-1 is not a valid nanosecond count
    const inode = decodeInode(raw, ino, plainSb);
    expect(inode.mtime).toEqual({ sec: -(2 ** 31), nsec: 0 });
    expect(inode.atime).toEqual({ sec: -1 + 3 * 2 ** 32, nsec: 5 });
    expect(inode.ctime).toEqual({ sec: 3 * 2 ** 32, nsec: 0 });
  });

  it('ignores the *_extra fields that lie past i_extra_isize', async () => {
    const { raw, ino } = await plainRaw();
    wr16(raw, 0x80, 4); // only i_checksum_hi fits
    wr32(raw, 0x84, (7 << 2) | 1);
    const inode = decodeInode(raw, ino, plainSb);
    expect(inode.extraIsize).toBe(4);
    expect(inode.ctime.nsec).toBe(0);
    expect(inode.ctime.sec).toBeLessThan(2 ** 31);
    expect(inode.crtime).toBeUndefined();
    expect(inode.projid).toBeUndefined();
  });

  it('decodes a 128-byte inode without extra fields', async () => {
    const { raw, ino } = await plainRaw();
    const inode = decodeInode(raw.slice(0, 128), ino, plainSb);
    expect(inode.extraIsize).toBe(0);
    expect(inode.crtime).toBeUndefined();
    expect(inode.mtime.nsec).toBe(0);
    expect(inode.size).toBe(10);
  });

  it('joins i_size_high, i_blocks_hi, the huge_file unit and i_file_acl_high', async () => {
    const { raw, ino } = await plainRaw();
    wr32(raw, 0x4, 5);
    wr32(raw, 0x6c, 3); // i_size_high
    wr32(raw, 0x1c, 8); // i_blocks_lo
    wr16(raw, 0x74, 1); // l_i_blocks_high
    wr32(raw, 0x68, 7); // i_file_acl_lo
    wr16(raw, 0x76, 2); // l_i_file_acl_high
    let inode = decodeInode(raw, ino, plainSb);
    expect(plainSb.has.hugeFile).toBe(true);
    expect(inode.size).toBe(3 * 2 ** 32 + 5);
    expect(inode.blocks512).toBe(2 ** 32 + 8);
    expect(inode.fileAcl).toBe(2 * 2 ** 32 + 7);
    wr32(raw, 0x20, InodeFlags.hugeFile);
    inode = decodeInode(raw, ino, plainSb);
    expect(inode.blocks512).toBe((2 ** 32 + 8) * (plainSb.blockSize / 512));
  });

  it('accepts every checksum e2fsprogs wrote, for 256- and 128-byte inodes', async () => {
    for (const image of [img, small]) {
      const v = await openImage(image);
      for (let ino = 1; ino <= 40; ino++) await v.readInode(ino);
    }
  });

  it('rejects a flipped i_mtime byte as Corrupt(InodeChecksum)', async () => {
    const ino = (await vol.lookup('/dir/a.txt')).ino;
    const v = await openDamaged(img, (b) => flip(b, inodeOffset(vol, ino) + 0x10));
    await rejectsCorrupt(v.readInode(ino), CorruptKind.InodeChecksum, { inode: ino, field: 'l_i_checksum_lo' });
  });

  it('rejects a flipped byte of a 128-byte inode as Corrupt(InodeChecksum) (16-bit checksum)', async () => {
    const v0 = await openImage(small);
    expect(v0.superblock.inodeSize).toBe(128);
    const ino = (await v0.lookup('/small.txt')).ino;
    const v = await openDamaged(small, (b) => flip(b, inodeOffset(v0, ino) + 0x2));
    await rejectsCorrupt(v.readInode(ino), CorruptKind.InodeChecksum, { inode: ino });
  });

  it('does not check the checksum of a free slot (mode 0)', async () => {
    const free = vol.superblock.firstIno + 200;
    const v = await openDamaged(img, (b) => {
      const off = inodeOffset(vol, free);
      b.fill(0, off, off + 256);
      wr16(b, off + 0x7c, 0x1234);
    });
    expect(inodeInUse(await v.readInode(free))).toBe(false);
  });

  it('rejects an unknown file type in i_mode as Corrupt(InodeField)', async () => {
    const ino = (await vol.lookup('/dir/a.txt')).ino;
    const v = await openDamaged(img, (b) => {
      wr16(b, inodeOffset(vol, ino), 0o030644);
      resealInode(b, vol, ino);
    });
    await rejectsCorrupt(v.readInode(ino), CorruptKind.InodeField, { inode: ino, field: 'i_mode' });
  });

  it.each([
    ['not a multiple of 4', 30],
    ['larger than the inode', 132],
  ])('rejects i_extra_isize %s as Corrupt(InodeField)', async (_what, extra) => {
    const ino = (await vol.lookup('/dir/a.txt')).ino;
    const v = await openDamaged(img, (b) => {
      wr16(b, inodeOffset(vol, ino) + 0x80, extra);
      resealInode(b, vol, ino);
    });
    await rejectsCorrupt(v.readInode(ino), CorruptKind.InodeField, { inode: ino, field: 'i_extra_isize' });
  });

  it('rejects i_size_high that makes the size exceed 2^53 as Corrupt(InodeField)', async () => {
    const ino = (await vol.lookup('/small.txt')).ino;
    const v = await openDamaged(img, (b) => {
      wr32(b, inodeOffset(vol, ino) + 0x6c, 0x200000);
      resealInode(b, vol, ino);
    });
    await rejectsCorrupt(v.readInode(ino), CorruptKind.InodeField, { inode: ino, field: 'i_size_high' });
  });
});

describe('Ext4Volume.readInode numbers', () => {
  it.each([0, -1, 1.5, Number.NaN])('rejects inode number %s as Corrupt(InodeNumber)', async (ino) => {
    await rejectsCorrupt(vol.readInode(ino), CorruptKind.InodeNumber);
  });

  it('rejects an inode number past s_inodes_count as Corrupt(InodeNumber)', async () => {
    const n = vol.superblock.inodesCount;
    expect((await vol.readInode(n)).ino).toBe(n);
    await rejectsCorrupt(vol.readInode(n + 1), CorruptKind.InodeNumber, { inode: n + 1 });
  });
});

describe('decodeDevice', () => {
  it('decodes the new (large) encoding debugfs writes for 259:300', async () => {
    const inode = await vol.lookup('/dir/blk');
    expect(inode.type).toBe(FileType.blk);
    expect(decodeDevice(inode.iBlock)).toEqual({ major: 259, minor: 300 });
  });

  it('decodes the old 8:8 encoding for 4:5', async () => {
    const inode = await vol.lookup('/dir/chr');
    expect(inode.type).toBe(FileType.chr);
    expect(decodeDevice(inode.iBlock)).toEqual({ major: 4, minor: 5 });
  });

  it('decodes both encodings built by hand', () => {
    const b = new Uint8Array(60);
    wr32(b, 0, (8 << 8) | 17);
    expect(decodeDevice(b)).toEqual({ major: 8, minor: 17 });
    b.fill(0);
    wr32(b, 4, (0x1234 & 0xff) | (0xabc << 8) | ((0x1234 & ~0xff) << 12));
    expect(decodeDevice(b)).toEqual({ major: 0xabc, minor: 0x1234 });
  });

  it.each([
    [1, 1], // /dev/mem
    [1, 3], // /dev/null
    [255, 255], // the largest the old encoding holds
    [256, 0], // major > 255
    [0, 256], // minor > 255
    [259, 65536], // an NVMe partition far into the minors
    [4095, 0xfffff], // the largest ext4 stores: 12-bit major, 20-bit minor
  ])('decodes %i:%i written in the new encoding (i_block[0] zero, i_block[1] the Linux dev_t)', (major, minor) => {
    const b = new Uint8Array(60);
    // new_encode_dev of include/linux/kdev_t.h, computed independently of makedev().
    const dev = (minor & 0xff) + major * 0x100 + Math.floor(minor / 0x100) * 0x100000;
    wr32(b, 4, dev);
    expect(decodeDevice(b)).toEqual({ major, minor });
    expect(makedev({ major, minor })).toBe(dev);
    expect(majorMinor(dev)).toEqual({ major, minor });
  });

  it('reads the old encoding whenever i_block[0] is non-zero, from its low 16 bits, as ext4_iget does', () => {
    const b = new Uint8Array(60);
    wr32(b, 4, makedev({ major: 259, minor: 65536 })); // ignored: i_block[0] wins
    wr32(b, 0, (1 << 8) | 1);
    expect(decodeDevice(b)).toEqual({ major: 1, minor: 1 });
    wr32(b, 0, 0xabcd_0103); // old_decode_dev takes a u16: the high half is dropped
    expect(decodeDevice(b)).toEqual({ major: 1, minor: 3 });
    wr32(b, 0, 0x0001_0000); // non-zero, but 0:0 in 16 bits
    expect(decodeDevice(b)).toEqual({ major: 0, minor: 0 });
  });

  it('is what debugfs reports for the devices it made (old encoding for 4:5, new for 259:300)', () => {
    for (const [path, major, minor] of [['/dir/chr', 4, 5], ['/dir/blk', 259, 300]] as const) {
      const m = /Device major\/minor number: (\d+):(\d+)/.exec(stat(path));
      expect([Number(m?.[1]), Number(m?.[2])], path).toEqual([major, minor]);
    }
  });
});

describe('inodeInUse', () => {
  it('tells live inodes from free and deleted slots', async () => {
    const { raw, ino } = await plainRaw();
    expect(inodeInUse(decodeInode(raw, ino, plainSb))).toBe(true);
    const deleted = raw.slice();
    wr16(deleted, 0x1a, 0); // i_links_count
    wr32(deleted, 0x14, 1_700_000_000); // i_dtime
    expect(inodeInUse(decodeInode(deleted, ino, plainSb))).toBe(false);
    wr32(deleted, 0x14, 0); // unlinked but still open (orphan): in use
    expect(inodeInUse(decodeInode(deleted, ino, plainSb))).toBe(true);
    expect(inodeInUse(decodeInode(new Uint8Array(256), ino, plainSb))).toBe(false);
  });
});
