import { crc16, crc32c, crc32cU32 } from '../crc.js';
import { CorruptError, CorruptKind } from '../errors.js';
import { u64, viewOf } from '../u64.js';
import { SUPERBLOCK_OFFSET, type Ext4Superblock } from './superblock.js';

/** bg_flags bits. */
export const GroupFlags = { inodeUninit: 0x1, blockUninit: 0x2, inodeZeroed: 0x4 } as const;

/**
 * A block group descriptor (`struct ext4_group_desc`), 32 bytes, or 64 with
 * the 64bit feature (s_desc_size).
 *
 * | off  | size | ext4.h name             |
 * |------|------|-------------------------|
 * | 0x0  | le32 | bg_block_bitmap_lo      |
 * | 0x4  | le32 | bg_inode_bitmap_lo      |
 * | 0x8  | le32 | bg_inode_table_lo       |
 * | 0xC  | le16 | bg_free_blocks_count_lo |
 * | 0xE  | le16 | bg_free_inodes_count_lo |
 * | 0x10 | le16 | bg_used_dirs_count_lo   |
 * | 0x12 | le16 | bg_flags                |
 * | 0x1C | le16 | bg_itable_unused_lo     |
 * | 0x1E | le16 | bg_checksum             |
 * | 0x20 | le32 | bg_block_bitmap_hi      |
 * | 0x24 | le32 | bg_inode_bitmap_hi      |
 * | 0x28 | le32 | bg_inode_table_hi       |
 * | 0x2C | le16 | bg_free_blocks_count_hi |
 * | 0x2E | le16 | bg_free_inodes_count_hi |
 * | 0x32 | le16 | bg_itable_unused_hi     |
 */
export interface Ext4GroupDesc {
  readonly group: number;
  readonly blockBitmap: number;
  readonly inodeBitmap: number;
  readonly inodeTable: number;
  readonly flags: number;
  readonly itableUnused: number;
  /** Free blocks (clusters with bigalloc) and free inodes of the group, at most the group's own counts. */
  readonly freeBlocks: number;
  readonly freeInodes: number;
}

/**
 * Decodes descriptor `group` from `bytes` (exactly s_desc_size bytes),
 * verifying its checksum (crc32c with metadata_csum, crc16 with gdt_csum).
 */
export function decodeGroupDesc(bytes: Uint8Array, group: number, sb: Ext4Superblock): Ext4GroupDesc {
  const v = viewOf(bytes);
  const where = { group };
  const bg_block_bitmap_lo = v.getUint32(0x0, true);
  const bg_inode_bitmap_lo = v.getUint32(0x4, true);
  const bg_inode_table_lo = v.getUint32(0x8, true);
  const bg_flags = v.getUint16(0x12, true);
  const bg_itable_unused_lo = v.getUint16(0x1c, true);
  const bg_checksum = v.getUint16(0x1e, true);
  const wide = sb.descSize >= 64;
  const bg_block_bitmap_hi = wide ? v.getUint32(0x20, true) : 0;
  const bg_inode_bitmap_hi = wide ? v.getUint32(0x24, true) : 0;
  const bg_inode_table_hi = wide ? v.getUint32(0x28, true) : 0;
  const bg_itable_unused_hi = wide ? v.getUint16(0x32, true) : 0;

  if (sb.metadataCsum || sb.has.gdtCsum) {
    const want = groupDescChecksum(bytes, group, sb);
    if (want !== bg_checksum) {
      throw new CorruptError(CorruptKind.GroupDescriptorChecksum, `checksum 0x${bg_checksum.toString(16)} != computed 0x${want.toString(16)}`, { group, field: 'bg_checksum' });
    }
  }
  const inodeTable = u64(bg_inode_table_lo, bg_inode_table_hi, CorruptKind.GroupDescriptor, { ...where, field: 'bg_inode_table_hi' });
  const itableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
  if (inodeTable < sb.firstDataBlock || inodeTable + itableBlocks > sb.blocksCount) {
    throw new CorruptError(CorruptKind.GroupDescriptor, `inode table at block ${inodeTable} (+${itableBlocks}) is outside the file system`, { group, field: 'bg_inode_table_lo' });
  }
  const itableUnused = bg_itable_unused_lo + bg_itable_unused_hi * 0x10000;
  const freeBlocks = v.getUint16(0xc, true) + (wide ? v.getUint16(0x2c, true) * 0x10000 : 0);
  const freeInodes = v.getUint16(0xe, true) + (wide ? v.getUint16(0x2e, true) * 0x10000 : 0);
  return Object.freeze({
    group,
    blockBitmap: u64(bg_block_bitmap_lo, bg_block_bitmap_hi, CorruptKind.GroupDescriptor, { ...where, field: 'bg_block_bitmap_hi' }),
    inodeBitmap: u64(bg_inode_bitmap_lo, bg_inode_bitmap_hi, CorruptKind.GroupDescriptor, { ...where, field: 'bg_inode_bitmap_hi' }),
    inodeTable,
    flags: bg_flags,
    itableUnused: itableUnused <= sb.inodesPerGroup ? itableUnused : 0,
    freeBlocks: Math.min(freeBlocks, sb.clustersPerGroup),
    freeInodes: Math.min(freeInodes, sb.inodesPerGroup),
  });
}

/** The checksum ext4 stores in bg_checksum for `bytes` of descriptor `group`. */
export function groupDescChecksum(bytes: Uint8Array, group: number, sb: Ext4Superblock): number {
  if (sb.metadataCsum) {
    let c = crc32cU32(sb.csumSeed, group);
    c = crc32c(c, bytes, 0, 0x1e);
    c = crc32c(c, new Uint8Array(2));
    if (bytes.length > 0x20) c = crc32c(c, bytes, 0x20, bytes.length);
    return c & 0xffff;
  }
  let c = crc16(0xffff, sb.uuid);
  const g = new Uint8Array(4);
  new DataView(g.buffer).setUint32(0, group >>> 0, true);
  c = crc16(c, g);
  c = crc16(c, bytes, 0, 0x1e);
  if (bytes.length > 0x20) c = crc16(c, bytes, 0x20, bytes.length);
  return c;
}

/**
 * Byte offset (within the file system) of the block holding descriptors of
 * meta-group `metaGroup` (the kernel's descriptor_loc()). Classic layout puts
 * the whole table after the superblock; meta_bg puts each block's worth of
 * descriptors in the first group of the meta-group (after its backup
 * superblock, if any).
 */
export function descriptorBlock(sb: Ext4Superblock, metaGroup: number, hasSuper: (group: number) => boolean): number {
  // After the block holding the primary superblock (the kernel's logical_sb_block): block 1 with 1 KiB blocks, even
  // when s_first_data_block is 0 (bigalloc), else block 0.
  if (!sb.has.metaBg || metaGroup < sb.firstMetaBg) return Math.floor(SUPERBLOCK_OFFSET / sb.blockSize) + 1 + metaGroup;
  const descPerBlock = sb.blockSize / sb.descSize;
  const bg = descPerBlock * metaGroup;
  let extra = hasSuper(bg) ? 1 : 0;
  if (sb.blockSize === 1024 && metaGroup === 0 && sb.firstDataBlock === 0) extra++;
  return bg * sb.blocksPerGroup + sb.firstDataBlock + extra;
}
