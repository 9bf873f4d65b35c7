import { crc32c } from '../crc.js';
import { CorruptError, CorruptKind } from '../errors.js';

/** jbd2 h_magic. */
export const JBD2_MAGIC = 0xc03b3998;
/** jbd2 block types. */
export const JournalBlockType = { descriptor: 1, commit: 2, superblockV1: 3, superblockV2: 4, revoke: 5, fcTag: 6 } as const;
/** Fast-commit blocks at the end of the journal when s_num_fc_blks is 0 (the kernel's JBD2_DEFAULT_FAST_COMMIT_BLOCKS). */
export const JBD2_DEFAULT_FAST_COMMIT_BLOCKS = 256;
/** s_feature_compat bits of the journal: `checksum` is the v1 transaction checksum (crc32_be in the commit block). */
export const JournalCompat = { checksum: 0x1 } as const;
/** s_feature_incompat bits of the journal. */
export const JournalIncompat = { revoke: 0x1, '64bit': 0x2, asyncCommit: 0x4, csumV2: 0x8, csumV3: 0x10, fastCommit: 0x20 } as const;

/**
 * The jbd2 journal superblock (`journal_superblock_t`), big-endian, in
 * block 0 of the journal inode.
 *
 * | off  | size  | name               |                                  |
 * |------|-------|--------------------|----------------------------------|
 * | 0x0  | be32  | h_magic            | 0xC03B3998                       |
 * | 0x4  | be32  | h_blocktype        | 3 (v1) or 4 (v2)                 |
 * | 0x8  | be32  | h_sequence         |                                  |
 * | 0xC  | be32  | s_blocksize        | journal block size               |
 * | 0x10 | be32  | s_maxlen           | blocks in the journal            |
 * | 0x14 | be32  | s_first            | first log block                  |
 * | 0x18 | be32  | s_sequence         | first expected commit id         |
 * | 0x1C | be32  | s_start            | log start block; 0 = clean       |
 * | 0x20 | be32  | s_errno            |                                  |
 * | 0x24 | be32  | s_feature_compat   | (v2)                             |
 * | 0x28 | be32  | s_feature_incompat |                                  |
 * | 0x2C | be32  | s_feature_ro_compat|                                  |
 * | 0x30 | u8[16]| s_uuid             |                                  |
 * | 0x40 | be32  | s_nr_users         |                                  |
 * | 0x50 | u8    | s_checksum_type    | 4 = crc32c                       |
 * | 0x54 | be32  | s_num_fc_blks      | fast-commit blocks               |
 * | 0xFC | be32  | s_checksum         | crc32c(~0, sb with this zeroed)  |
 */
export interface JournalSuperblock {
  readonly version: 1 | 2;
  readonly blockSize: number;
  readonly maxLen: number;
  readonly first: number;
  readonly sequence: number;
  readonly start: number;
  readonly errno: number;
  readonly featureCompat: number;
  readonly featureIncompat: number;
  readonly featureRoCompat: number;
  readonly uuid: Uint8Array;
  readonly checksumType: number;
  readonly numFcBlocks: number;
  /**
   * End (exclusive) of the regular log: s_maxlen, less the fast-commit area with the fast_commit feature (the
   * kernel's j_last; it wraps the log from here to s_first, and keeps the blocks from here on for fast commits).
   */
  readonly logEnd: number;
  readonly has: { readonly checksumV1: boolean; readonly revoke: boolean; readonly is64bit: boolean; readonly csumV2: boolean; readonly csumV3: boolean; readonly asyncCommit: boolean; readonly fastCommit: boolean };
}

/** Decodes the journal superblock (the first 1024 bytes of journal block 0). */
export function decodeJournalSuperblock(bytes: Uint8Array, where: { inode?: number; block?: number } = {}): JournalSuperblock {
  if (bytes.length < 1024) throw new CorruptError(CorruptKind.JournalSuperblock, 'journal superblock shorter than 1024 bytes', where);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h_magic = v.getUint32(0);
  const h_blocktype = v.getUint32(4);
  if (h_magic !== JBD2_MAGIC) throw new CorruptError(CorruptKind.JournalSuperblock, `bad magic 0x${h_magic.toString(16)}`, { ...where, field: 'h_magic' });
  if (h_blocktype !== JournalBlockType.superblockV1 && h_blocktype !== JournalBlockType.superblockV2) {
    throw new CorruptError(CorruptKind.JournalSuperblock, `block type ${h_blocktype} is not a superblock`, { ...where, field: 'h_blocktype' });
  }
  const version = h_blocktype === JournalBlockType.superblockV2 ? 2 : 1;
  const s_blocksize = v.getUint32(0xc);
  const s_maxlen = v.getUint32(0x10);
  const s_first = v.getUint32(0x14);
  const s_sequence = v.getUint32(0x18);
  const s_start = v.getUint32(0x1c);
  const s_errno = v.getInt32(0x20);
  const compat = version === 2 ? v.getUint32(0x24) : 0;
  const incompat = version === 2 ? v.getUint32(0x28) : 0;
  const rocompat = version === 2 ? v.getUint32(0x2c) : 0;
  const s_checksum_type = v.getUint8(0x50);
  const s_num_fc_blks = v.getUint32(0x54);
  if (s_blocksize < 1024 || s_blocksize > 65536 || (s_blocksize & (s_blocksize - 1)) !== 0) {
    throw new CorruptError(CorruptKind.JournalSuperblock, `block size ${s_blocksize}`, { ...where, field: 's_blocksize' });
  }
  if (s_first === 0 || s_first >= s_maxlen) throw new CorruptError(CorruptKind.JournalSuperblock, `s_first ${s_first} / s_maxlen ${s_maxlen}`, { ...where, field: 's_first' });
  if (s_start !== 0 && (s_start < s_first || s_start >= s_maxlen)) throw new CorruptError(CorruptKind.JournalSuperblock, `s_start ${s_start}`, { ...where, field: 's_start' });
  const fastCommit = (incompat & JournalIncompat.fastCommit) !== 0;
  // As the kernel's journal_load_superblock(): s_num_fc_blks 0 means the default; a fast-commit area that leaves
  // no regular log fails the mount there.
  const logEnd = fastCommit ? s_maxlen - (s_num_fc_blks || JBD2_DEFAULT_FAST_COMMIT_BLOCKS) : s_maxlen;
  if (logEnd <= s_first) throw new CorruptError(CorruptKind.JournalSuperblock, `s_num_fc_blks ${s_num_fc_blks} leaves no log in s_first ${s_first} / s_maxlen ${s_maxlen}`, { ...where, field: 's_num_fc_blks' });
  if (s_start !== 0 && s_start >= logEnd) throw new CorruptError(CorruptKind.JournalSuperblock, `s_start ${s_start} is in the fast-commit area (from ${logEnd})`, { ...where, field: 's_start' });
  const csumV2 = (incompat & JournalIncompat.csumV2) !== 0;
  const csumV3 = (incompat & JournalIncompat.csumV3) !== 0;
  if (csumV2 || csumV3) {
    const stored = v.getUint32(0xfc);
    let c = crc32c(0xffffffff, bytes, 0, 0xfc);
    c = crc32c(c, new Uint8Array(4));
    c = crc32c(c, bytes, 0x100, 1024);
    if (c !== stored) throw new CorruptError(CorruptKind.JournalChecksum, `checksum 0x${stored.toString(16)} != computed 0x${c.toString(16)}`, { ...where, field: 's_checksum' });
  }
  return Object.freeze({
    version,
    blockSize: s_blocksize,
    maxLen: s_maxlen,
    first: s_first,
    sequence: s_sequence,
    start: s_start,
    errno: s_errno,
    featureCompat: compat,
    featureIncompat: incompat,
    featureRoCompat: rocompat,
    uuid: bytes.slice(0x30, 0x40),
    checksumType: s_checksum_type,
    numFcBlocks: s_num_fc_blks,
    logEnd,
    has: Object.freeze({
      checksumV1: (compat & JournalCompat.checksum) !== 0,
      revoke: (incompat & JournalIncompat.revoke) !== 0,
      is64bit: (incompat & JournalIncompat['64bit']) !== 0,
      csumV2,
      csumV3,
      asyncCommit: (incompat & JournalIncompat.asyncCommit) !== 0,
      fastCommit,
    }),
  });
}
