import { crc32c } from '../crc.js';
import { CorruptError, CorruptKind } from '../errors.js';
import { MAX_EXTENT_DEPTH } from '../limits.js';
import { u64, viewOf } from '../u64.js';

/** eh_magic. */
export const EXT4_EXT_MAGIC = 0xf30a;
/** Longest initialized extent; longer ee_len values mark uninitialized extents. */
export const EXT_INIT_MAX_LEN = 32768;

/**
 * One node of an extent tree: a 12-byte header then 12-byte entries, and in
 * tree blocks (not the inode) a 4-byte `ext4_extent_tail` after eh_max entries.
 *
 * Header (`struct ext4_extent_header`):
 * | off | size | name          |                                   |
 * |-----|------|---------------|-----------------------------------|
 * | 0x0 | le16 | eh_magic      | 0xF30A                            |
 * | 0x2 | le16 | eh_entries    | valid entries                     |
 * | 0x4 | le16 | eh_max        | capacity                          |
 * | 0x6 | le16 | eh_depth      | 0 = leaf                          |
 * | 0x8 | le32 | eh_generation |                                   |
 *
 * Index (`struct ext4_extent_idx`): 0x0 le32 ei_block, 0x4 le32 ei_leaf_lo,
 * 0x8 le16 ei_leaf_hi. Leaf (`struct ext4_extent`): 0x0 le32 ee_block,
 * 0x4 le16 ee_len (> 32768: uninitialized, len - 32768), 0x6 le16 ee_start_hi,
 * 0x8 le32 ee_start_lo.
 */
export interface ExtentNode {
  readonly depth: number;
  readonly entries: readonly ExtentIndex[] | readonly Extent[];
}

/** An index entry: the subtree at `leaf` covers logical blocks from `block`. */
export interface ExtentIndex {
  readonly block: number;
  readonly leaf: number;
}

/** A run of `length` logical blocks from `logical` stored at `physical`. */
export interface Extent {
  readonly logical: number;
  readonly physical: number;
  readonly length: number;
  /** False for preallocated (unwritten) extents, which read as zeros. */
  readonly initialized: boolean;
}

/**
 * Decodes one extent node. `bytes` is the 60-byte i_block (in the inode) or
 * a whole tree block. `maxDepth` is the depth the parent promised (the
 * root's own eh_depth bounded by MAX_EXTENT_DEPTH), so depth strictly
 * decreases along every path and the walk ends.
 */
export function decodeExtentNode(bytes: Uint8Array, where: { inode: number; block?: number }, expectDepth: number | undefined): ExtentNode {
  // Byte arithmetic rather than a DataView: every file of a crawl has an extent root.
  const u16 = (o: number) => bytes[o]! | (bytes[o + 1]! << 8);
  const u32 = (o: number) => (bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | (bytes[o + 3]! << 24)) >>> 0;
  if (bytes.length < 12) throw new CorruptError(CorruptKind.ExtentHeader, 'extent node shorter than its header', where);
  const eh_magic = u16(0);
  const eh_entries = u16(2);
  const eh_max = u16(4);
  const eh_depth = u16(6);
  if (eh_magic !== EXT4_EXT_MAGIC) throw new CorruptError(CorruptKind.ExtentHeader, `bad magic 0x${eh_magic.toString(16)}`, { ...where, field: 'eh_magic' });
  const capacity = Math.floor((bytes.length - 12) / 12);
  if (eh_max === 0 || eh_max > capacity) throw new CorruptError(CorruptKind.ExtentHeader, `eh_max ${eh_max} exceeds node capacity ${capacity}`, { ...where, field: 'eh_max' });
  if (eh_entries > eh_max) throw new CorruptError(CorruptKind.ExtentHeader, `eh_entries ${eh_entries} > eh_max ${eh_max}`, { ...where, field: 'eh_entries' });
  if (eh_depth > MAX_EXTENT_DEPTH) throw new CorruptError(CorruptKind.ExtentHeader, `depth ${eh_depth} > ${MAX_EXTENT_DEPTH}`, { ...where, field: 'eh_depth' });
  if (expectDepth !== undefined && eh_depth !== expectDepth) {
    throw new CorruptError(CorruptKind.ExtentHeader, `depth ${eh_depth}, parent expects ${expectDepth}`, { ...where, field: 'eh_depth' });
  }
  if (eh_depth > 0) {
    const out: ExtentIndex[] = [];
    let prev = -1;
    for (let i = 0; i < eh_entries; i++) {
      const o = 12 + i * 12;
      const ei_block = u32(o);
      const leaf = u64(u32(o + 4), u16(o + 8), CorruptKind.ExtentEntry, { ...where, field: 'ei_leaf_hi' });
      if (ei_block <= prev) throw new CorruptError(CorruptKind.ExtentEntry, `index entries out of order (${ei_block} after ${prev})`, { ...where, field: 'ei_block' });
      prev = ei_block;
      out.push({ block: ei_block, leaf });
    }
    return { depth: eh_depth, entries: out };
  }
  const out: Extent[] = [];
  let nextFree = 0;
  for (let i = 0; i < eh_entries; i++) {
    const o = 12 + i * 12;
    const ee_block = u32(o);
    const ee_len = u16(o + 4);
    const ee_start_hi = u16(o + 6);
    const ee_start_lo = u32(o + 8);
    const physical = ee_start_hi === 0 ? ee_start_lo : u64(ee_start_lo, ee_start_hi, CorruptKind.ExtentEntry, { ...where, field: 'ee_start_hi' });
    const initialized = ee_len <= EXT_INIT_MAX_LEN;
    const length = initialized ? ee_len : ee_len - EXT_INIT_MAX_LEN;
    if (length === 0) throw new CorruptError(CorruptKind.ExtentEntry, `zero-length extent at logical ${ee_block}`, { ...where, field: 'ee_len' });
    if (ee_block < nextFree) throw new CorruptError(CorruptKind.ExtentEntry, `extent at logical ${ee_block} overlaps the previous one`, { ...where, field: 'ee_block' });
    if (ee_block + length > 0x1_0000_0000) throw new CorruptError(CorruptKind.ExtentEntry, `extent at ${ee_block}+${length} passes 2^32 blocks`, { ...where, field: 'ee_len' });
    nextFree = ee_block + length;
    out.push({ logical: ee_block, physical, length, initialized });
  }
  return { depth: 0, entries: out };
}

/** Verifies the `ext4_extent_tail` checksum of a tree block (metadata_csum). */
export function verifyExtentBlock(block: Uint8Array, inodeSeed: number, where: { inode: number; block: number }): void {
  const eh_max = viewOf(block).getUint16(4, true);
  const tail = 12 + 12 * eh_max;
  if (tail + 4 > block.length) throw new CorruptError(CorruptKind.ExtentHeader, `no room for the checksum tail`, { ...where, field: 'eh_max' });
  const stored = viewOf(block).getUint32(tail, true);
  const want = crc32c(inodeSeed, block, 0, tail);
  if (stored !== want) throw new CorruptError(CorruptKind.ExtentChecksum, `checksum 0x${stored.toString(16)} != computed 0x${want.toString(16)}`, { ...where, field: 'et_checksum' });
}
