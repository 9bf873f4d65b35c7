import { crc32c } from '../crc.js';
import { CorruptError, CorruptKind, IncompatibleError } from '../errors.js';
import { MAX_BLOCK_SIZE, MAX_GROUPS } from '../limits.js';
import { u64, viewOf } from '../u64.js';

/** Byte offset of the primary superblock from the start of the file system. */
export const SUPERBLOCK_OFFSET = 1024;
/** Bytes of the superblock. */
export const SUPERBLOCK_SIZE = 1024;
/** `s_magic`. */
export const EXT4_SUPER_MAGIC = 0xef53;

/** s_feature_compat bits. */
export const FeatureCompat = {
  dir_prealloc: 0x1,
  imagic_inodes: 0x2,
  has_journal: 0x4,
  ext_attr: 0x8,
  resize_inode: 0x10,
  dir_index: 0x20,
  lazy_bg: 0x40,
  exclude_bitmap: 0x100,
  sparse_super2: 0x200,
  fast_commit: 0x400,
  stable_inodes: 0x800,
  orphan_file: 0x1000,
} as const;

/** s_feature_ro_compat bits. */
export const FeatureRoCompat = {
  sparse_super: 0x1,
  large_file: 0x2,
  btree_dir: 0x4,
  huge_file: 0x8,
  gdt_csum: 0x10,
  dir_nlink: 0x20,
  extra_isize: 0x40,
  has_snapshot: 0x80,
  quota: 0x100,
  bigalloc: 0x200,
  metadata_csum: 0x400,
  replica: 0x800,
  read_only: 0x1000,
  project: 0x2000,
  shared_blocks: 0x4000,
  verity: 0x8000,
  orphan_present: 0x10000,
} as const;

/** s_feature_incompat bits. */
export const FeatureIncompat = {
  compression: 0x1,
  filetype: 0x2,
  recover: 0x4,
  journal_dev: 0x8,
  meta_bg: 0x10,
  extent: 0x40,
  '64bit': 0x80,
  mmp: 0x100,
  flex_bg: 0x200,
  ea_inode: 0x400,
  dirdata: 0x1000,
  metadata_csum_seed: 0x2000,
  largedir: 0x4000,
  inline_data: 0x8000,
  encrypt: 0x10000,
  casefold: 0x20000,
} as const;

/**
 * INCOMPAT features this reader understands. Anything else is refused:
 * reading past a feature that changes the layout would be guessing.
 * (`recover` only means the journal holds unreplayed transactions; like
 * `mount -o noload` we read the checkpointed metadata.)
 */
const SUPPORTED_INCOMPAT =
  FeatureIncompat.filetype |
  FeatureIncompat.recover |
  FeatureIncompat.meta_bg |
  FeatureIncompat.extent |
  FeatureIncompat['64bit'] |
  FeatureIncompat.mmp |
  FeatureIncompat.flex_bg |
  FeatureIncompat.ea_inode |
  FeatureIncompat.metadata_csum_seed |
  FeatureIncompat.largedir |
  FeatureIncompat.inline_data |
  FeatureIncompat.encrypt |
  FeatureIncompat.casefold;

/**
 * The ext2/3/4 superblock (`struct ext4_super_block`), the fields that affect
 * layout or interpretation. Little-endian, at byte 1024 of the file system.
 *
 * | off   | size | ext4.h name              | meaning                                  |
 * |-------|------|--------------------------|------------------------------------------|
 * | 0x0   | le32 | s_inodes_count           | total inodes                             |
 * | 0x4   | le32 | s_blocks_count_lo        | total blocks (low 32)                    |
 * | 0x8   | le32 | s_r_blocks_count_lo      | blocks reserved for root (low 32)        |
 * | 0x14  | le32 | s_first_data_block       | block holding the superblock (1 for 1K)  |
 * | 0x18  | le32 | s_log_block_size         | block size = 1024 << n                   |
 * | 0x1C  | le32 | s_log_cluster_size       | cluster size = 1024 << n (bigalloc)      |
 * | 0x20  | le32 | s_blocks_per_group       |                                          |
 * | 0x24  | le32 | s_clusters_per_group     |                                          |
 * | 0x28  | le32 | s_inodes_per_group       |                                          |
 * | 0x38  | le16 | s_magic                  | 0xEF53                                   |
 * | 0x3A  | le16 | s_state                  | 1 clean, 2 errors, 4 orphans             |
 * | 0x4C  | le32 | s_rev_level              | 0 = fixed 128-byte inodes, first ino 11  |
 * | 0x54  | le32 | s_first_ino              | first non-reserved inode                 |
 * | 0x58  | le16 | s_inode_size             |                                          |
 * | 0x5C  | le32 | s_feature_compat         |                                          |
 * | 0x60  | le32 | s_feature_incompat       |                                          |
 * | 0x64  | le32 | s_feature_ro_compat      |                                          |
 * | 0x68  | u8[16] | s_uuid                 |                                          |
 * | 0x78  | char[16] | s_volume_name        |                                          |
 * | 0xCE  | le16 | s_reserved_gdt_blocks    | resize_inode reservation after the GDT   |
 * | 0xE0  | le32 | s_journal_inum           | journal inode (usually 8)                |
 * | 0xEC  | le32[4] | s_hash_seed           | htree hash seed                          |
 * | 0xFC  | u8   | s_def_hash_version       |                                          |
 * | 0xFE  | le16 | s_desc_size              | group descriptor size (64bit)            |
 * | 0x104 | le32 | s_first_meta_bg          | first group using meta_bg layout         |
 * | 0x10C | le32[17] | s_jnl_blocks         | backup of the journal inode's i_block    |
 * | 0x150 | le32 | s_blocks_count_hi        |                                          |
 * | 0x154 | le32 | s_r_blocks_count_hi      |                                          |
 * | 0x15C | le16 | s_min_extra_isize        |                                          |
 * | 0x15E | le16 | s_want_extra_isize       |                                          |
 * | 0x160 | le32 | s_flags                  | signed/unsigned dirhash                  |
 * | 0x174 | u8   | s_log_groups_per_flex    | flex_bg group size = 2^n                 |
 * | 0x175 | u8   | s_checksum_type          | 1 = crc32c                               |
 * | 0x248 | le32 | s_overhead_clusters      | metadata clusters (0: not computed)      |
 * | 0x24C | le32[2] | s_backup_bgs          | sparse_super2 backup groups              |
 * | 0x270 | le32 | s_checksum_seed          | metadata_csum_seed                       |
 * | 0x3FC | le32 | s_checksum               | crc32c(~0, sb[0..0x3FC])                 |
 */
export interface Ext4Superblock {
  readonly inodesCount: number;
  readonly blocksCount: number;
  /** Blocks only root may allocate (df's "available" leaves them out); at most blocksCount. */
  readonly reservedBlocks: number;
  readonly firstDataBlock: number;
  readonly blockSize: number;
  readonly clusterSize: number;
  readonly blocksPerGroup: number;
  readonly clustersPerGroup: number;
  readonly inodesPerGroup: number;
  readonly groupCount: number;
  readonly state: number;
  readonly revLevel: number;
  readonly firstIno: number;
  readonly inodeSize: number;
  readonly featureCompat: number;
  readonly featureIncompat: number;
  readonly featureRoCompat: number;
  readonly uuid: Uint8Array;
  readonly volumeName: string;
  readonly reservedGdtBlocks: number;
  readonly journalInum: number;
  readonly hashSeed: readonly number[];
  readonly defHashVersion: number;
  readonly descSize: number;
  readonly firstMetaBg: number;
  readonly minExtraIsize: number;
  readonly flags: number;
  readonly logGroupsPerFlex: number;
  readonly backupBgs: readonly [number, number];
  /** s_overhead_clusters: clusters of metadata as mke2fs or the kernel stored them; 0 when never computed. */
  readonly overheadClusters: number;
  /** Seed for metadata checksums: s_checksum_seed or crc32c(~0, uuid). */
  readonly csumSeed: number;
  /** True when metadata_csum is on and checksums are verified. */
  readonly metadataCsum: boolean;
  /** Names of all features set, for display. */
  readonly features: readonly string[];
  /** Convenience flags derived from the feature words. */
  readonly has: {
    readonly journal: boolean;
    readonly extents: boolean;
    readonly is64bit: boolean;
    readonly metaBg: boolean;
    readonly flexBg: boolean;
    readonly fileType: boolean;
    readonly inlineData: boolean;
    readonly sparseSuper: boolean;
    readonly sparseSuper2: boolean;
    readonly hugeFile: boolean;
    readonly gdtCsum: boolean;
    readonly bigalloc: boolean;
    readonly dirIndex: boolean;
    readonly largeFile: boolean;
    readonly eaInode: boolean;
    /** INCOMPAT_RECOVER: the journal holds committed transactions not yet replayed (a crash, or a mounted file system). */
    readonly needsRecovery: boolean;
  };
}

function featureNames(word: number, table: Record<string, number>, prefix: string): string[] {
  const names: string[] = [];
  let rest = word >>> 0;
  for (const [name, bit] of Object.entries(table)) {
    if (rest & bit) {
      names.push(name);
      rest = (rest & ~bit) >>> 0;
    }
  }
  for (let bit = 1; rest !== 0 && bit !== 0; bit = (bit << 1) >>> 0) {
    if (rest & bit) {
      names.push(`${prefix}_0x${bit.toString(16)}`);
      rest = (rest & ~bit) >>> 0;
    }
  }
  return names;
}

/**
 * Decodes and validates the 1024 superblock bytes. Throws CorruptError for
 * impossible geometry, IncompatibleError for INCOMPAT features we do not
 * understand.
 */
export function decodeSuperblock(bytes: Uint8Array): Ext4Superblock {
  if (bytes.length < SUPERBLOCK_SIZE) throw new CorruptError(CorruptKind.SuperblockField, `superblock is ${bytes.length} bytes, need 1024`);
  const v = viewOf(bytes);
  const s_magic = v.getUint16(0x38, true);
  if (s_magic !== EXT4_SUPER_MAGIC) {
    throw new CorruptError(CorruptKind.SuperblockMagic, `no ext2/3/4 superblock (magic 0x${s_magic.toString(16)}, want 0xef53)`, { field: 's_magic' });
  }
  const s_inodes_count = v.getUint32(0x0, true);
  const s_blocks_count_lo = v.getUint32(0x4, true);
  const s_first_data_block = v.getUint32(0x14, true);
  const s_log_block_size = v.getUint32(0x18, true);
  const s_log_cluster_size = v.getUint32(0x1c, true);
  const s_blocks_per_group = v.getUint32(0x20, true);
  const s_clusters_per_group = v.getUint32(0x24, true);
  const s_inodes_per_group = v.getUint32(0x28, true);
  const s_state = v.getUint16(0x3a, true);
  const s_rev_level = v.getUint32(0x4c, true);
  const s_first_ino = v.getUint32(0x54, true);
  const s_inode_size = v.getUint16(0x58, true);
  const s_feature_compat = v.getUint32(0x5c, true);
  const s_feature_incompat = v.getUint32(0x60, true);
  const s_feature_ro_compat = v.getUint32(0x64, true);
  const s_uuid = bytes.slice(0x68, 0x78);
  const s_volume_name = bytes.subarray(0x78, 0x88);
  const s_reserved_gdt_blocks = v.getUint16(0xce, true);
  const s_journal_inum = v.getUint32(0xe0, true);
  const s_hash_seed = [v.getUint32(0xec, true), v.getUint32(0xf0, true), v.getUint32(0xf4, true), v.getUint32(0xf8, true)];
  const s_def_hash_version = v.getUint8(0xfc);
  const s_desc_size = v.getUint16(0xfe, true);
  const s_first_meta_bg = v.getUint32(0x104, true);
  const s_blocks_count_hi = v.getUint32(0x150, true);
  const s_r_blocks_count_lo = v.getUint32(0x8, true);
  const s_r_blocks_count_hi = v.getUint32(0x154, true);
  const s_min_extra_isize = v.getUint16(0x15c, true);
  const s_flags = v.getUint32(0x160, true);
  const s_log_groups_per_flex = v.getUint8(0x174);
  const s_checksum_type = v.getUint8(0x175);
  const s_overhead_clusters = v.getUint32(0x248, true);
  const s_backup_bgs: [number, number] = [v.getUint32(0x24c, true), v.getUint32(0x250, true)];
  const s_checksum_seed = v.getUint32(0x270, true);
  const s_checksum = v.getUint32(0x3fc, true);

  const incompat = s_feature_incompat >>> 0;
  const unknown = (incompat & ~SUPPORTED_INCOMPAT) >>> 0;
  if (unknown !== 0) {
    const feats = featureNames(unknown, FeatureIncompat, 'incompat');
    throw new IncompatibleError(
      `file system uses INCOMPAT feature(s) this reader does not support: ${feats.join(', ')}; refusing to guess its layout`,
      feats,
    );
  }
  const is64bit = (incompat & FeatureIncompat['64bit']) !== 0;
  const metadataCsum = (s_feature_ro_compat & FeatureRoCompat.metadata_csum) !== 0;
  const where = (field: string) => ({ field });

  if (metadataCsum) {
    if (s_checksum_type !== 1) throw new CorruptError(CorruptKind.SuperblockField, `unknown checksum type ${s_checksum_type}`, where('s_checksum_type'));
    const c = crc32c(0xffffffff, bytes, 0, 0x3fc);
    if (c !== s_checksum) throw new CorruptError(CorruptKind.SuperblockChecksum, `superblock checksum 0x${s_checksum.toString(16)} != computed 0x${c.toString(16)}`, where('s_checksum'));
  }
  if (s_log_block_size > 6) throw new CorruptError(CorruptKind.SuperblockField, `block size 2^(10+${s_log_block_size}) is over 64 KiB`, where('s_log_block_size'));
  const blockSize = 1024 << s_log_block_size;
  if (blockSize > MAX_BLOCK_SIZE) throw new CorruptError(CorruptKind.SuperblockField, `block size ${blockSize}`, where('s_log_block_size'));
  const bigalloc = (s_feature_ro_compat & FeatureRoCompat.bigalloc) !== 0;
  let clusterSize = blockSize;
  if (bigalloc) {
    if (s_log_cluster_size < s_log_block_size || s_log_cluster_size > 20) {
      throw new CorruptError(CorruptKind.SuperblockField, `cluster size 2^(10+${s_log_cluster_size}) is invalid for block size ${blockSize}`, where('s_log_cluster_size'));
    }
    clusterSize = 1024 * 2 ** s_log_cluster_size;
  }
  const blocksCount = is64bit ? u64(s_blocks_count_lo, s_blocks_count_hi, CorruptKind.SuperblockField, where('s_blocks_count_hi')) : s_blocks_count_lo;
  if (blocksCount === 0) throw new CorruptError(CorruptKind.SuperblockField, 'zero blocks', where('s_blocks_count_lo'));
  const expectFirst = blockSize === 1024 && !bigalloc ? 1 : 0;
  if (s_first_data_block !== expectFirst && !(blockSize === 1024 && s_first_data_block === 0)) {
    throw new CorruptError(CorruptKind.SuperblockField, `first data block ${s_first_data_block} for block size ${blockSize}`, where('s_first_data_block'));
  }
  if (s_first_data_block >= blocksCount) throw new CorruptError(CorruptKind.SuperblockField, 'first data block past the end', where('s_first_data_block'));
  if (s_blocks_per_group === 0 || s_blocks_per_group > blockSize * 8 * (clusterSize / blockSize)) {
    throw new CorruptError(CorruptKind.SuperblockField, `blocks per group ${s_blocks_per_group} (at most ${blockSize * 8 * (clusterSize / blockSize)})`, where('s_blocks_per_group'));
  }
  if (s_inodes_per_group === 0 || s_inodes_per_group > blockSize * 8) {
    throw new CorruptError(CorruptKind.SuperblockField, `inodes per group ${s_inodes_per_group} (at most ${blockSize * 8})`, where('s_inodes_per_group'));
  }
  const groupCount = Math.ceil((blocksCount - s_first_data_block) / s_blocks_per_group);
  if (groupCount === 0 || groupCount > MAX_GROUPS) throw new CorruptError(CorruptKind.SuperblockField, `${groupCount} block groups`, where('s_blocks_count_lo'));
  if (s_inodes_count === 0 || s_inodes_count > groupCount * s_inodes_per_group) {
    throw new CorruptError(CorruptKind.SuperblockField, `inode count ${s_inodes_count} exceeds ${groupCount} groups x ${s_inodes_per_group}`, where('s_inodes_count'));
  }
  const inodeSize = s_rev_level === 0 ? 128 : s_inode_size;
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) {
    throw new CorruptError(CorruptKind.SuperblockField, `inode size ${inodeSize}`, where('s_inode_size'));
  }
  const firstIno = s_rev_level === 0 ? 11 : s_first_ino;
  if (firstIno < 3 || firstIno > s_inodes_count) throw new CorruptError(CorruptKind.SuperblockField, `first inode ${firstIno}`, where('s_first_ino'));
  let descSize = 32;
  if (is64bit) {
    if (s_desc_size < 32 || s_desc_size > 1024 || (s_desc_size & (s_desc_size - 1)) !== 0) {
      throw new CorruptError(CorruptKind.SuperblockField, `group descriptor size ${s_desc_size}`, where('s_desc_size'));
    }
    descSize = s_desc_size;
  }
  const csumSeed = incompat & FeatureIncompat.metadata_csum_seed ? s_checksum_seed : crc32c(0xffffffff, s_uuid);
  let volEnd = s_volume_name.indexOf(0);
  if (volEnd < 0) volEnd = s_volume_name.length;
  const volumeName = new TextDecoder('utf-8', { fatal: false }).decode(s_volume_name.subarray(0, volEnd));

  const features = [
    ...featureNames(s_feature_compat, FeatureCompat, 'compat'),
    ...featureNames(s_feature_incompat, FeatureIncompat, 'incompat'),
    ...featureNames(s_feature_ro_compat, FeatureRoCompat, 'ro_compat'),
  ];
  // Advisory (what statfs reports), so out-of-range values are clamped rather than rejected.
  const reservedBlocks = Math.min(blocksCount, s_r_blocks_count_lo + (is64bit ? s_r_blocks_count_hi * 0x1_0000_0000 : 0));
  return Object.freeze({
    inodesCount: s_inodes_count,
    blocksCount,
    reservedBlocks,
    firstDataBlock: s_first_data_block,
    blockSize,
    clusterSize,
    blocksPerGroup: s_blocks_per_group,
    clustersPerGroup: s_clusters_per_group,
    inodesPerGroup: s_inodes_per_group,
    groupCount,
    state: s_state,
    revLevel: s_rev_level,
    firstIno,
    inodeSize,
    featureCompat: s_feature_compat,
    featureIncompat: s_feature_incompat,
    featureRoCompat: s_feature_ro_compat,
    uuid: s_uuid,
    volumeName,
    reservedGdtBlocks: s_reserved_gdt_blocks,
    journalInum: s_journal_inum,
    hashSeed: Object.freeze(s_hash_seed),
    defHashVersion: s_def_hash_version,
    descSize,
    firstMetaBg: s_first_meta_bg,
    minExtraIsize: s_min_extra_isize,
    flags: s_flags,
    logGroupsPerFlex: s_log_groups_per_flex,
    backupBgs: Object.freeze(s_backup_bgs) as readonly [number, number],
    overheadClusters: s_overhead_clusters,
    csumSeed,
    metadataCsum,
    features: Object.freeze(features),
    has: Object.freeze({
      journal: (s_feature_compat & FeatureCompat.has_journal) !== 0,
      extents: (incompat & FeatureIncompat.extent) !== 0,
      is64bit,
      metaBg: (incompat & FeatureIncompat.meta_bg) !== 0,
      flexBg: (incompat & FeatureIncompat.flex_bg) !== 0,
      fileType: (incompat & FeatureIncompat.filetype) !== 0,
      inlineData: (incompat & FeatureIncompat.inline_data) !== 0,
      sparseSuper: (s_feature_ro_compat & FeatureRoCompat.sparse_super) !== 0,
      sparseSuper2: (s_feature_compat & FeatureCompat.sparse_super2) !== 0,
      hugeFile: (s_feature_ro_compat & FeatureRoCompat.huge_file) !== 0,
      gdtCsum: (s_feature_ro_compat & FeatureRoCompat.gdt_csum) !== 0,
      bigalloc,
      dirIndex: (s_feature_compat & FeatureCompat.dir_index) !== 0,
      largeFile: (s_feature_ro_compat & FeatureRoCompat.large_file) !== 0,
      eaInode: (incompat & FeatureIncompat.ea_inode) !== 0,
      needsRecovery: (incompat & FeatureIncompat.recover) !== 0,
    }),
  });
}

/** Whether block group `group` holds a superblock backup (and so a GDT copy). */
export function groupHasSuper(sb: Ext4Superblock, group: number): boolean {
  if (group === 0) return true;
  if (sb.has.sparseSuper2) return group === sb.backupBgs[0] || group === sb.backupBgs[1];
  if (group <= 1 || !sb.has.sparseSuper) return true;
  if ((group & 1) === 0) return false;
  return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
}

/**
 * Blocks of metadata that Linux's ext4 leaves out of statfs' `f_blocks` (`df`'s size), as `ext4_calculate_overhead`
 * (fs/ext4/super.c) counts them: the blocks before `s_first_data_block`; in every group its superblock backup and
 * descriptor blocks (`ext4_bg_has_super`, `ext4_bg_num_gdb`: the whole table, or with meta_bg one block in the
 * first, second and last group of a meta-group) with the reserved GDT blocks, its two bitmaps and its inode table; and the internal journal's `journalBlocks` (its superblock's s_maxlen; 0 without one). With
 * bigalloc the kernel trusts `s_overhead_clusters` when it is set and not above the block count, and so does this;
 * otherwise undefined (its per-cluster count is not done here). The kernel recomputes the count at mount for
 * every other file system, ignoring the stored value, and so does this.
 */
export function metadataOverhead(sb: Ext4Superblock, journalBlocks: number): number | undefined {
  const ratio = sb.clusterSize / sb.blockSize;
  if (sb.has.bigalloc) {
    const stored = sb.overheadClusters * ratio;
    return stored > 0 && stored <= sb.blocksCount ? stored : undefined;
  }
  const descPerBlock = sb.blockSize / sb.descSize;
  const gdbCount = Math.ceil(sb.groupCount / descPerBlock);
  const itbPerGroup = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
  let overhead = sb.firstDataBlock;
  for (let g = 0; g < sb.groupCount; g++) {
    const hasSuper = groupHasSuper(sb, g);
    let gdb: number;
    if (!sb.has.metaBg || Math.floor(g / descPerBlock) < sb.firstMetaBg) gdb = !hasSuper ? 0 : sb.has.metaBg ? sb.firstMetaBg : gdbCount;
    else {
      const first = Math.floor(g / descPerBlock) * descPerBlock;
      gdb = g === first || g === first + 1 || g === first + descPerBlock - 1 ? 1 : 0;
    }
    overhead += (hasSuper ? 1 + sb.reservedGdtBlocks : 0) + gdb + itbPerGroup + 2;
  }
  return overhead + journalBlocks;
}

function isPowerOf(n: number, base: number): boolean {
  let x = base;
  while (x < n) x *= base;
  return x === n;
}
