import { crc32c } from '../crc.js';
import { CorruptError, CorruptKind } from '../errors.js';
import { viewOf } from '../u64.js';

/** ext4_dir_entry_2.file_type values. */
export const DirFileType = { unknown: 0, file: 1, dir: 2, chr: 3, blk: 4, fifo: 5, sock: 6, symlink: 7 } as const;
/** file_type of the fake entry that holds a leaf block's checksum. */
export const DIR_TAIL_FILE_TYPE = 0xde;
/** Bytes of `struct ext4_dir_entry_tail`. */
export const DIR_TAIL_SIZE = 12;

/**
 * A directory entry (`struct ext4_dir_entry_2`):
 *
 * | off | size | name       |                                            |
 * |-----|------|------------|--------------------------------------------|
 * | 0x0 | le32 | inode      | 0 = unused slot                            |
 * | 0x4 | le16 | rec_len    | distance to the next entry (>= 8, 4-aligned)|
 * | 0x6 | u8   | name_len   | (le16 name_len without the filetype feature)|
 * | 0x7 | u8   | file_type  | DirFileType                                |
 * | 0x8 | char[] | name     | name_len bytes, no NUL                     |
 */
export interface DirEntry {
  readonly ino: number;
  /** The guest's bytes: never contain '/' or NUL, 1..255 long. */
  readonly name: Uint8Array;
  /** DirFileType value, 0 when the file system has no filetype feature. */
  readonly fileType: number;
}

/** Options for {@link decodeDirBlock}. */
export interface DirBlockOptions {
  readonly blockSize: number;
  readonly fileTypeFeature: boolean;
  readonly inodesCount: number;
  /** Where the block came from, for errors. */
  readonly where: { inode: number; block?: number };
}

/** Result of decoding one directory block: the entries and the first problem, if any. */
export interface DirBlockResult {
  readonly entries: DirEntry[];
  readonly error: CorruptError | undefined;
}

/**
 * The true rec_len from its on-disk encoding. With 64 KiB blocks a rec_len
 * of 65536 does not fit in 16 bits: 0 or 65535 mean the whole block and the
 * low two bits carry bits 16-17 (e2fsprogs' ext2fs_get_rec_len).
 */
export function recLenFromDisk(raw: number, blockSize: number): number {
  if (blockSize < 65536) return raw;
  if (raw === 65535 || raw === 0) return blockSize;
  return (raw & 65532) | ((raw & 3) << 16);
}

/**
 * Decodes the linear entries of one directory block (or an inline-data
 * region). Walks rec_len chains with rec_len >= 8 and inside the region, so
 * it ends. Stops at the first corrupt entry and returns what came before
 * together with the error (a partial result). A checksum tail is skipped.
 */
export function decodeDirBlock(bytes: Uint8Array, opts: DirBlockOptions): DirBlockResult {
  const v = viewOf(bytes);
  const entries: DirEntry[] = [];
  const end = bytes.length;
  let off = 0;
  while (off < end) {
    if (end - off < 8) return { entries, error: new CorruptError(CorruptKind.DirEntryRecLen, `${end - off} trailing bytes at offset ${off}`, { ...opts.where, field: 'rec_len' }) };
    const inode = v.getUint32(off, true);
    const rec_len = recLenFromDisk(v.getUint16(off + 4, true), opts.blockSize);
    const name_len = opts.fileTypeFeature ? v.getUint8(off + 6) : v.getUint16(off + 6, true);
    const file_type = opts.fileTypeFeature ? v.getUint8(off + 7) : 0;
    if (rec_len < 8 || (rec_len & 3) !== 0 || off + rec_len > end) {
      return { entries, error: new CorruptError(CorruptKind.DirEntryRecLen, `rec_len ${rec_len} at offset ${off}`, { ...opts.where, field: 'rec_len' }) };
    }
    if (inode !== 0) {
      if (name_len === 0 || name_len > 255 || 8 + name_len > rec_len) {
        return { entries, error: new CorruptError(CorruptKind.DirEntryNameLen, `name_len ${name_len} with rec_len ${rec_len} at offset ${off}`, { ...opts.where, field: 'name_len' }) };
      }
      if (inode > opts.inodesCount) {
        return { entries, error: new CorruptError(CorruptKind.DirEntryInode, `entry at offset ${off} names inode ${inode} > ${opts.inodesCount}`, { ...opts.where, field: 'inode' }) };
      }
      const name = bytes.subarray(off + 8, off + 8 + name_len);
      if (hasSlashOrNul(name)) {
        return { entries, error: new CorruptError(CorruptKind.DirEntryName, `name at offset ${off} contains '/' or NUL`, { ...opts.where, field: 'name' }) };
      }
      entries.push({ ino: inode, name, fileType: file_type });
    }
    off += rec_len;
  }
  return { entries, error: undefined };
}

/**
 * If `block` ends in a checksum tail (`struct ext4_dir_entry_tail`: inode 0,
 * rec_len 12, name_len 0, file_type 0xDE, le32 checksum), verifies it and
 * returns the length of the entry region before it; otherwise returns
 * undefined (an htree node or a block without a tail).
 */
export function dirTailLength(block: Uint8Array, blockSize: number): number | undefined {
  if (block.length < DIR_TAIL_SIZE) return undefined;
  const v = viewOf(block);
  const t = block.length - DIR_TAIL_SIZE;
  if (v.getUint32(t, true) !== 0 || recLenFromDisk(v.getUint16(t + 4, true), blockSize) !== DIR_TAIL_SIZE || v.getUint8(t + 6) !== 0 || v.getUint8(t + 7) !== DIR_TAIL_FILE_TYPE) return undefined;
  return t;
}

/** Verifies a leaf block's tail checksum: crc32c(inode seed, block[0..tail]). */
export function verifyDirTail(block: Uint8Array, tail: number, inodeSeed: number, where: { inode: number; block: number }): void {
  const stored = viewOf(block).getUint32(tail + 8, true);
  const want = crc32c(inodeSeed, block, 0, tail);
  if (stored !== want) throw new CorruptError(CorruptKind.DirBlockChecksum, `checksum 0x${stored.toString(16)} != computed 0x${want.toString(16)}`, { ...where, field: 'det_checksum' });
}

function hasSlashOrNul(name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c === 0x2f || c === 0) return true;
  }
  return false;
}
