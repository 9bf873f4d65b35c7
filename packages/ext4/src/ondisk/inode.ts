import { crc32c, crc32cU32 } from '../crc.js';
import { CorruptError, CorruptKind } from '../errors.js';
import { u64, viewOf } from '../u64.js';
import type { Ext4Superblock } from './superblock.js';

/** File type bits of i_mode. */
export const S_IFMT = 0o170000;
/** i_mode file types. */
export const FileMode = {
  fifo: 0o010000,
  chr: 0o020000,
  dir: 0o040000,
  blk: 0o060000,
  file: 0o100000,
  symlink: 0o120000,
  sock: 0o140000,
} as const;

/** The file types gammaray reports. */
export const FileType = {
  file: 'file',
  dir: 'dir',
  symlink: 'symlink',
  chr: 'chr',
  blk: 'blk',
  fifo: 'fifo',
  sock: 'sock',
} as const;
/** See {@link FileType}. */
export type FileType = (typeof FileType)[keyof typeof FileType];

/** i_flags bits that change how an inode is read. */
export const InodeFlags = {
  secrm: 0x1,
  immutable: 0x10,
  append: 0x20,
  index: 0x1000,
  hugeFile: 0x40000,
  extents: 0x80000,
  eaInode: 0x200000,
  inlineData: 0x10000000,
  encrypt: 0x800,
  casefold: 0x40000000,
} as const;

/** Inode numbers with fixed meaning. */
export const ROOT_INO = 2;
/** The journal inode unless s_journal_inum says otherwise. */
export const JOURNAL_INO = 8;

/** One timestamp: whole seconds since the epoch and nanoseconds. */
export interface Ext4Time {
  readonly sec: number;
  readonly nsec: number;
}

/**
 * An inode (`struct ext4_inode`), 128 bytes plus i_extra_isize extra bytes.
 *
 * | off  | size | ext4.h name       |                                        |
 * |------|------|-------------------|----------------------------------------|
 * | 0x0  | le16 | i_mode            | type and permission bits               |
 * | 0x2  | le16 | i_uid             | low 16 bits of uid                     |
 * | 0x4  | le32 | i_size_lo         |                                        |
 * | 0x8  | le32 | i_atime           | signed seconds                         |
 * | 0xC  | le32 | i_ctime           |                                        |
 * | 0x10 | le32 | i_mtime           |                                        |
 * | 0x14 | le32 | i_dtime           | deletion time                          |
 * | 0x18 | le16 | i_gid             |                                        |
 * | 0x1A | le16 | i_links_count     |                                        |
 * | 0x1C | le32 | i_blocks_lo       | 512-byte units (or fs blocks, huge)    |
 * | 0x20 | le32 | i_flags           |                                        |
 * | 0x28 | u8[60] | i_block         | extent root, block map, symlink, inline|
 * | 0x64 | le32 | i_generation      |                                        |
 * | 0x68 | le32 | i_file_acl_lo     | xattr block                            |
 * | 0x6C | le32 | i_size_high       |                                        |
 * | 0x74 | le16 | l_i_blocks_high   |                                        |
 * | 0x76 | le16 | l_i_file_acl_high |                                        |
 * | 0x78 | le16 | l_i_uid_high      |                                        |
 * | 0x7A | le16 | l_i_gid_high      |                                        |
 * | 0x7C | le16 | l_i_checksum_lo   |                                        |
 * | 0x80 | le16 | i_extra_isize     |                                        |
 * | 0x82 | le16 | i_checksum_hi     |                                        |
 * | 0x84 | le32 | i_ctime_extra     | (nsec << 2) | epoch bits             |
 * | 0x88 | le32 | i_mtime_extra     |                                        |
 * | 0x8C | le32 | i_atime_extra     |                                        |
 * | 0x90 | le32 | i_crtime          |                                        |
 * | 0x94 | le32 | i_crtime_extra    |                                        |
 * | 0x9C | le32 | i_projid          |                                        |
 */
export interface Ext4Inode {
  readonly ino: number;
  /** Full i_mode (type and permission bits). */
  readonly mode: number;
  readonly type: FileType;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly linksCount: number;
  /** i_blocks in 512-byte units. */
  readonly blocks512: number;
  readonly flags: number;
  readonly generation: number;
  /** Block of the external xattr block, 0 if none. */
  readonly fileAcl: number;
  readonly atime: Ext4Time;
  readonly mtime: Ext4Time;
  readonly ctime: Ext4Time;
  /** Creation time, when the inode is large enough to hold it. */
  readonly crtime: Ext4Time | undefined;
  readonly dtime: number;
  readonly projid: number | undefined;
  readonly extraIsize: number;
  /** The 60 raw i_block bytes. */
  readonly iBlock: Uint8Array;
  /** The raw on-disk inode (inode_size bytes), for in-inode xattrs. */
  readonly raw: Uint8Array;
}

function fileType(mode: number): FileType | undefined {
  switch (mode & S_IFMT) {
    case FileMode.file: return FileType.file;
    case FileMode.dir: return FileType.dir;
    case FileMode.symlink: return FileType.symlink;
    case FileMode.chr: return FileType.chr;
    case FileMode.blk: return FileType.blk;
    case FileMode.fifo: return FileType.fifo;
    case FileMode.sock: return FileType.sock;
    default: return undefined;
  }
}

function decodeTime(seconds: number, extra: number | undefined): Ext4Time {
  // Seconds are signed 32-bit; the two low extra bits extend the epoch.
  const base = seconds | 0;
  if (extra === undefined) return { sec: base, nsec: 0 };
  const sec = base + (extra & 3) * 0x1_0000_0000;
  const nsec = extra >>> 2;
  return { sec, nsec: nsec < 1_000_000_000 ? nsec : 0 };
}

/**
 * Whether the inode slot is in use. A zero i_links_count with a zero mode, or
 * a dtime on an unlinked inode, means free; directory entries pointing to
 * such an inode are stale.
 */
export function inodeInUse(inode: Ext4Inode): boolean {
  return inode.mode !== 0 && (inode.linksCount !== 0 || inode.dtime === 0);
}

/** The metadata_csum checksum of an inode as stored (lo | hi << 16). */
export function inodeChecksum(raw: Uint8Array, ino: number, generation: number, sb: Ext4Superblock): number {
  const hasHi = raw.length > 128 && (raw[0x80]! | (raw[0x81]! << 8)) >= 4;
  let c = crc32cU32(sb.csumSeed, ino);
  c = crc32cU32(c, generation);
  c = crc32c(c, raw, 0, 0x7c);
  c = crc32c(c, ZERO2);
  c = crc32c(c, raw, 0x7e, 128);
  if (raw.length > 128) {
    c = crc32c(c, raw, 128, 0x82);
    c = hasHi ? crc32c(c, ZERO2) : crc32c(c, raw, 0x82, 0x84);
    c = crc32c(c, raw, 0x84, raw.length);
  }
  return hasHi ? c >>> 0 : c & 0xffff;
}
const ZERO2 = new Uint8Array(2);

/**
 * Decodes inode `ino` from its `raw` bytes (s_inode_size of them).
 * Verifies the checksum when metadata_csum is on. An unused slot decodes
 * fine (mode 0); callers check {@link inodeInUse}.
 */
export function decodeInode(raw: Uint8Array, ino: number, sb: Ext4Superblock): Ext4Inode {
  const where = { inode: ino };
  // Byte arithmetic instead of a DataView: this runs once per file in a crawl.
  const u16 = (o: number) => raw[o]! | (raw[o + 1]! << 8);
  const u32 = (o: number) => (raw[o]! | (raw[o + 1]! << 8) | (raw[o + 2]! << 16) | (raw[o + 3]! << 24)) >>> 0;
  const i_mode = u16(0x0);
  const i_uid = u16(0x2);
  const i_size_lo = u32(0x4);
  const i_atime = u32(0x8);
  const i_ctime = u32(0xc);
  const i_mtime = u32(0x10);
  const i_dtime = u32(0x14);
  const i_gid = u16(0x18);
  const i_links_count = u16(0x1a);
  const i_blocks_lo = u32(0x1c);
  const i_flags = u32(0x20);
  const i_generation = u32(0x64);
  const i_file_acl_lo = u32(0x68);
  const i_size_high = u32(0x6c);
  const l_i_blocks_high = u16(0x74);
  const l_i_file_acl_high = u16(0x76);
  const l_i_uid_high = u16(0x78);
  const l_i_gid_high = u16(0x7a);
  const l_i_checksum_lo = u16(0x7c);
  let i_extra_isize = 0;
  if (raw.length > 128) {
    i_extra_isize = u16(0x80);
    if (i_extra_isize + 128 > raw.length || (i_extra_isize & 3) !== 0) {
      throw new CorruptError(CorruptKind.InodeField, `i_extra_isize ${i_extra_isize} does not fit a ${raw.length}-byte inode`, { ...where, field: 'i_extra_isize' });
    }
  }
  const isizeEnd = 128 + i_extra_isize;
  if (sb.metadataCsum && i_mode !== 0) {
    const stored = isizeEnd >= 0x84 ? l_i_checksum_lo | (u16(0x82) << 16) : l_i_checksum_lo;
    const want = inodeChecksum(raw, ino, i_generation, sb);
    if ((stored >>> 0) !== want) {
      throw new CorruptError(CorruptKind.InodeChecksum, `checksum 0x${(stored >>> 0).toString(16)} != computed 0x${want.toString(16)}`, { ...where, field: 'l_i_checksum_lo' });
    }
  }
  const type = fileType(i_mode);
  if (type === undefined && i_mode !== 0) {
    throw new CorruptError(CorruptKind.InodeField, `unknown file type in mode 0${i_mode.toString(8)}`, { ...where, field: 'i_mode' });
  }
  const size = i_size_high === 0 ? i_size_lo : u64(i_size_lo, i_size_high, CorruptKind.InodeField, { ...where, field: 'i_size_high' });
  const hugeUnits = sb.has.hugeFile && i_flags & InodeFlags.hugeFile ? sb.blockSize / 512 : 1;
  const blocks512 = (i_blocks_lo + (sb.has.hugeFile ? l_i_blocks_high * 0x1_0000_0000 : 0)) * hugeUnits;
  const fileAcl = (sb.has.is64bit ? l_i_file_acl_high * 0x1_0000_0000 : 0) + i_file_acl_lo;
  // Inodes are built in bulk during a crawl: a plain object literal with
  // readonly types, not Object.freeze, which costs more than the decode.
  return {
    ino,
    mode: i_mode,
    type: type ?? FileType.file,
    uid: i_uid + l_i_uid_high * 0x10000,
    gid: i_gid + l_i_gid_high * 0x10000,
    size,
    linksCount: i_links_count,
    blocks512,
    flags: i_flags,
    generation: i_generation,
    fileAcl,
    atime: decodeTime(i_atime, isizeEnd >= 0x90 ? u32(0x8c) : undefined),
    mtime: decodeTime(i_mtime, isizeEnd >= 0x8c ? u32(0x88) : undefined),
    ctime: decodeTime(i_ctime, isizeEnd >= 0x88 ? u32(0x84) : undefined),
    crtime: isizeEnd >= 0x94 ? decodeTime(u32(0x90), isizeEnd >= 0x98 ? u32(0x94) : undefined) : undefined,
    dtime: i_dtime,
    projid: isizeEnd >= 0xa0 ? u32(0x9c) : undefined,
    extraIsize: i_extra_isize,
    iBlock: raw.subarray(0x28, 0x28 + 60),
    raw,
  };
}

/** A device number as its two halves (what `ls -l` shows as "major, minor"). */
export interface DeviceNumber {
  readonly major: number;
  readonly minor: number;
}

/**
 * Device numbers of a chr/blk inode, from i_block, as the kernel reads them (ext4_iget): a non-zero i_block[0]
 * is the old 16-bit encoding (`major << 8 | minor`, 8 bits each), else i_block[1] holds the new 32-bit one,
 * the Linux `dev_t` of {@link makedev} (12-bit major, 20-bit minor).
 *
 * | i_block | bits                                            |
 * |---------|-------------------------------------------------|
 * | [0]     | 15..8 major, 7..0 minor                         |
 * | [1]     | 31..20 minor high, 19..8 major, 7..0 minor low  |
 */
export function decodeDevice(iBlock: Uint8Array): DeviceNumber {
  const v = viewOf(iBlock);
  const old = v.getUint32(0, true);
  if (old !== 0) return { major: (old >>> 8) & 0xff, minor: old & 0xff };
  return majorMinor(v.getUint32(4, true));
}

/**
 * The Linux `dev_t` of a device number, as `st_rdev` holds it and glibc's makedev(3) builds it (for majors below
 * 4096 and minors below 2^20, all ext4 can store): `(minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)`.
 * An unsigned 32-bit value; also the new encoding of i_block[1].
 */
export function makedev(d: DeviceNumber): number {
  return ((d.minor & 0xff) | ((d.major & 0xfff) << 8) | ((d.minor & 0xfff00) << 12)) >>> 0;
}

/** The two halves of a Linux `dev_t` made by {@link makedev} (glibc's major(3) and minor(3) for 32-bit values). */
export function majorMinor(rdev: number): DeviceNumber {
  return { major: (rdev >>> 8) & 0xfff, minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) };
}
