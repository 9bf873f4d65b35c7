import { crc32c } from '../crc.js';
import { CorruptError, CorruptKind, type CorruptLocation } from '../errors.js';
import { u64, viewOf } from '../u64.js';
import { JBD2_MAGIC, JournalBlockType, type JournalSuperblock } from './journal-superblock.js';

/** Bytes of `journal_header_t`, the common start of every jbd2 metadata block. */
export const JOURNAL_HEADER_SIZE = 12;
/** Bytes of `jbd2_journal_block_tail` at the end of descriptor and revoke blocks with csum v2/v3. */
const BLOCK_TAIL_SIZE = 4;
/** Bytes of `jbd2_journal_revoke_header_t`. */
const REVOKE_HEADER_SIZE = 16;
/** Bytes of the UUID that follows a tag without SAME_UUID. */
const TAG_UUID_SIZE = 16;

/** t_flags bits of a descriptor tag (`JBD2_FLAG_*`). */
export const JournalTagFlag = { escape: 0x1, sameUuid: 0x2, deleted: 0x4, lastTag: 0x8 } as const;
/** See {@link JournalTagFlag}. */
export type JournalTagFlag = (typeof JournalTagFlag)[keyof typeof JournalTagFlag];

/** Where in the journal a block was read; copied into errors. */
type Where = { inode?: number; block?: number };

/**
 * `journal_header_t`, big-endian, at the start of every journal metadata block.
 *
 * | off | size | name        |                                  |
 * |-----|------|-------------|----------------------------------|
 * | 0x0 | be32 | h_magic     | 0xC03B3998                       |
 * | 0x4 | be32 | h_blocktype | {@link JournalBlockType}         |
 * | 0x8 | be32 | h_sequence  | transaction id                   |
 */
export interface JournalHeader {
  readonly blockType: number;
  readonly sequence: number;
}

/**
 * One descriptor tag: the file-system block that the next data block of the
 * log belongs to.
 *
 * `journal_block_tag3_t` (csum v3, 16 bytes):
 *
 * | off | size | name           |                                   |
 * |-----|------|----------------|-----------------------------------|
 * | 0x0 | be32 | t_blocknr      | low 32 bits of the target block   |
 * | 0x4 | be32 | t_flags        | {@link JournalTagFlag}            |
 * | 0x8 | be32 | t_blocknr_high | high 32 bits (64bit feature only) |
 * | 0xC | be32 | t_checksum     | crc32c(seed, be32 seq, data)      |
 *
 * `journal_block_tag_t` (otherwise; 8 bytes, +4 with 64bit, +2 with csum v2,
 * as the kernel's `journal_tag_bytes()` counts):
 *
 * | off | size | name           |                                   |
 * |-----|------|----------------|-----------------------------------|
 * | 0x0 | be32 | t_blocknr      |                                   |
 * | 0x4 | be16 | t_checksum     | low 16 bits of the csum v2 crc    |
 * | 0x6 | be16 | t_flags        |                                   |
 * | 0x8 | be32 | t_blocknr_high | only with the 64bit feature       |
 *
 * A 16-byte UUID follows a tag whose flags lack SAME_UUID.
 */
export interface JournalTag {
  /** File-system block the logged data block is written back to. */
  readonly fsBlock: number;
  readonly flags: number;
  /** The logged copy had its first 4 bytes (the jbd2 magic) zeroed; see {@link unescapeBlock}. */
  readonly escaped: boolean;
  readonly deleted: boolean;
  readonly lastTag: boolean;
  /** t_checksum as stored (16 bits without csum v3); 0 without checksums. */
  readonly checksum: number;
}

/** A decoded descriptor block (`h_blocktype` 1): its header and tags in log order. */
export interface JournalDescriptor {
  readonly sequence: number;
  readonly tags: readonly JournalTag[];
}

/**
 * `commit_header`, big-endian (`h_blocktype` 2).
 *
 * | off  | size    | name          |                                       |
 * |------|---------|---------------|---------------------------------------|
 * | 0x0  | 12      | h_header      | journal_header_t                      |
 * | 0xC  | u8      | h_chksum_type | checksum type (async commit)          |
 * | 0xD  | u8      | h_chksum_size |                                       |
 * | 0xE  | u8[2]   | h_padding     |                                       |
 * | 0x10 | be32[8] | h_chksum      | [0] = crc32c(seed, block, [0] zeroed) |
 * | 0x30 | be64    | h_commit_sec  |                                       |
 * | 0x38 | be32    | h_commit_nsec |                                       |
 */
export interface JournalCommit {
  readonly sequence: number;
  readonly checksumType: number;
  readonly checksumSize: number;
  /** h_chksum[0]. */
  readonly checksum: number;
  /**
   * Seconds of the commit time; undefined when the be64 is not a safe integer.
   * Recovery never reads it, and e2fsprogs 1.47's debugfs journal writer
   * leaves the time in the high half, so a huge value is not damage.
   */
  readonly commitSec: number | undefined;
  readonly commitNsec: number;
}

/**
 * `jbd2_journal_revoke_header_t`, big-endian (`h_blocktype` 5), followed by
 * be32 block numbers (be64 with the 64bit feature) from 0x10 up to r_count.
 *
 * | off | size | name     |                                         |
 * |-----|------|----------|-----------------------------------------|
 * | 0x0 | 12   | r_header | journal_header_t                        |
 * | 0xC | be32 | r_count  | bytes used, including this 16-byte head |
 */
export interface JournalRevoke {
  readonly sequence: number;
  /** File-system blocks whose earlier logged copies must not be replayed. */
  readonly blocks: readonly number[];
}

/** Whether `block` starts with the jbd2 magic (a log data block is arbitrary bytes and may not). */
export function isJournalMetadataBlock(block: Uint8Array): boolean {
  return block.length >= JOURNAL_HEADER_SIZE && viewOf(block).getUint32(0) === JBD2_MAGIC;
}

/** Decodes the `journal_header_t` of a metadata block; a wrong magic is Corrupt(JournalBlock). */
export function decodeJournalHeader(block: Uint8Array, where: Where = {}): JournalHeader {
  if (block.length < JOURNAL_HEADER_SIZE) throw new CorruptError(CorruptKind.JournalBlock, `block of ${block.length} bytes`, where);
  const v = viewOf(block);
  const h_magic = v.getUint32(0);
  const h_blocktype = v.getUint32(4);
  const h_sequence = v.getUint32(8);
  if (h_magic !== JBD2_MAGIC) throw new CorruptError(CorruptKind.JournalBlock, `bad magic 0x${h_magic.toString(16)}`, { ...where, field: 'h_magic' });
  return Object.freeze({ blockType: h_blocktype, sequence: h_sequence });
}

/** The journal's checksum seed: crc32c(~0, s_uuid), the kernel's `j_csum_seed`. */
export function journalChecksumSeed(sb: JournalSuperblock): number {
  return crc32c(0xffffffff, sb.uuid);
}

/** Bytes of one descriptor tag for this journal (the kernel's `journal_tag_bytes()`). */
export function journalTagBytes(sb: JournalSuperblock): number {
  if (sb.has.csumV3) return 16;
  let sz = 12;
  if (sb.has.csumV2) sz += 2;
  return sb.has.is64bit ? sz : sz - 4;
}

const hasCsum = (sb: JournalSuperblock): boolean => sb.has.csumV2 || sb.has.csumV3;

/** Checks the block size and header type shared by the log block decoders. */
function checkedHeader(block: Uint8Array, sb: JournalSuperblock, type: number, what: string, where: Where): JournalHeader {
  if (block.length !== sb.blockSize) throw new CorruptError(CorruptKind.JournalBlock, `${what} block of ${block.length} bytes, journal block size ${sb.blockSize}`, where);
  const h = decodeJournalHeader(block, where);
  if (h.blockType !== type) throw new CorruptError(CorruptKind.JournalBlock, `block type ${h.blockType} is not a ${what} block`, { ...where, field: 'h_blocktype' });
  return h;
}

/**
 * Verifies `jbd2_journal_block_tail` of a descriptor or revoke block, as the
 * kernel's `jbd2_descriptor_block_csum_verify()`: crc32c(seed, whole block with
 * the tail zeroed).
 */
function verifyBlockTail(block: Uint8Array, sb: JournalSuperblock, where: Where): void {
  const tail = block.length - BLOCK_TAIL_SIZE;
  const stored = viewOf(block).getUint32(tail);
  let c = crc32c(journalChecksumSeed(sb), block, 0, tail);
  c = crc32c(c, new Uint8Array(BLOCK_TAIL_SIZE));
  if (c !== stored) throw new CorruptError(CorruptKind.JournalChecksum, `checksum 0x${stored.toString(16)} != computed 0x${c.toString(16)}`, { ...where, field: 't_checksum' });
}

/**
 * Decodes a descriptor block: the tags naming the file-system blocks of the
 * data blocks that follow it in the log. Verifies the block tail with csum v2/v3.
 */
export function decodeDescriptorBlock(block: Uint8Array, sb: JournalSuperblock, where: Where = {}): JournalDescriptor {
  const h = checkedHeader(block, sb, JournalBlockType.descriptor, 'descriptor', where);
  if (hasCsum(sb)) verifyBlockTail(block, sb, where);
  const v = viewOf(block);
  const tagBytes = journalTagBytes(sb);
  const end = block.length - (hasCsum(sb) ? BLOCK_TAIL_SIZE : 0);
  // Every tag takes >= 8 bytes, so the loop ends after at most blockSize/8 tags; the cap states it.
  const maxTags = block.length >>> 3;
  const tags: JournalTag[] = [];
  let off = JOURNAL_HEADER_SIZE;
  while (off + tagBytes <= end && tags.length < maxTags) {
    const t_blocknr = v.getUint32(off);
    let t_flags: number;
    let t_blocknr_high = 0;
    let t_checksum: number;
    if (sb.has.csumV3) {
      t_flags = v.getUint32(off + 4);
      t_blocknr_high = v.getUint32(off + 8);
      t_checksum = v.getUint32(off + 12);
    } else {
      t_checksum = v.getUint16(off + 4);
      t_flags = v.getUint16(off + 6);
      if (sb.has.is64bit) t_blocknr_high = v.getUint32(off + 8);
    }
    // Like the kernel's read_tag_block(): the high half only counts with the 64bit feature.
    const fsBlock = u64(t_blocknr, sb.has.is64bit ? t_blocknr_high : 0, CorruptKind.JournalTag, { ...where, field: 't_blocknr_high' });
    const lastTag = (t_flags & JournalTagFlag.lastTag) !== 0;
    tags.push(
      Object.freeze({
        fsBlock,
        flags: t_flags,
        escaped: (t_flags & JournalTagFlag.escape) !== 0,
        deleted: (t_flags & JournalTagFlag.deleted) !== 0,
        lastTag,
        checksum: t_checksum,
      }),
    );
    off += tagBytes;
    if ((t_flags & JournalTagFlag.sameUuid) === 0) off += TAG_UUID_SIZE;
    if (lastTag) break;
  }
  return Object.freeze({ sequence: h.sequence, tags: Object.freeze(tags) });
}

/**
 * Decodes a commit block. With csum v2/v3 verifies h_chksum[0] as the kernel's
 * `jbd2_commit_block_csum_verify()`: crc32c(seed, whole block with h_chksum[0] zeroed).
 */
export function decodeCommitBlock(block: Uint8Array, sb: JournalSuperblock, where: Where = {}): JournalCommit {
  const h = checkedHeader(block, sb, JournalBlockType.commit, 'commit', where);
  const v = viewOf(block);
  const h_chksum_type = v.getUint8(0xc);
  const h_chksum_size = v.getUint8(0xd);
  const h_chksum0 = v.getUint32(0x10);
  const h_commit_sec_hi = v.getUint32(0x30);
  const h_commit_sec_lo = v.getUint32(0x34);
  const h_commit_nsec = v.getUint32(0x38);
  if (hasCsum(sb)) {
    let c = crc32c(journalChecksumSeed(sb), block, 0, 0x10);
    c = crc32c(c, new Uint8Array(4));
    c = crc32c(c, block, 0x14);
    if (c !== h_chksum0) throw new CorruptError(CorruptKind.JournalChecksum, `checksum 0x${h_chksum0.toString(16)} != computed 0x${c.toString(16)}`, { ...where, field: 'h_chksum' });
  }
  const commitSec = h_commit_sec_hi < 0x200000 ? h_commit_sec_hi * 0x1_0000_0000 + h_commit_sec_lo : undefined;
  return Object.freeze({
    sequence: h.sequence,
    checksumType: h_chksum_type,
    checksumSize: h_chksum_size,
    checksum: h_chksum0,
    commitSec,
    commitNsec: h_commit_nsec,
  });
}

/**
 * Decodes a revoke block: the file-system blocks revoked by this transaction,
 * the whole records below r_count. Verifies the block tail with csum v2/v3
 * before trusting r_count.
 */
export function decodeRevokeBlock(block: Uint8Array, sb: JournalSuperblock, where: Where = {}): JournalRevoke {
  const h = checkedHeader(block, sb, JournalBlockType.revoke, 'revoke', where);
  if (hasCsum(sb)) verifyBlockTail(block, sb, where);
  const v = viewOf(block);
  const r_count = v.getUint32(0xc);
  const record = sb.has.is64bit ? 8 : 4;
  const max = block.length - (hasCsum(sb) ? BLOCK_TAIL_SIZE : 0);
  const bad: CorruptLocation = { ...where, field: 'r_count' };
  // As the kernel's scan_revoke_records(): past the block (or into its tail) is an error that fails recovery;
  // below the header, or a part record at the end, just holds no (more) records.
  if (r_count > max) throw new CorruptError(CorruptKind.JournalRevoke, `r_count ${r_count} past ${max}`, bad);
  const blocks: number[] = [];
  for (let off = REVOKE_HEADER_SIZE; off + record <= r_count; off += record) {
    blocks.push(record === 8 ? u64(v.getUint32(off + 4), v.getUint32(off), CorruptKind.JournalRevoke, { ...where, field: 'r_blocknr' }) : v.getUint32(off));
  }
  return Object.freeze({ sequence: h.sequence, blocks: Object.freeze(blocks) });
}

/**
 * Whether a logged data block (as in the log: escaped) matches its tag's
 * t_checksum, as the kernel's `jbd2_block_tag_csum_verify()`: crc32c(seed,
 * be32 h_sequence of the descriptor, then the block); csum v2 stores its low 16
 * bits. Always true without csum v2/v3.
 */
export function journalTagChecksumOk(sb: JournalSuperblock, tag: JournalTag, sequence: number, data: Uint8Array): boolean {
  if (!hasCsum(sb)) return true;
  const seq = new Uint8Array(4);
  viewOf(seq).setUint32(0, sequence >>> 0);
  const c = crc32c(crc32c(journalChecksumSeed(sb), seq), data);
  return sb.has.csumV3 ? c === tag.checksum : (c & 0xffff) === tag.checksum;
}

/**
 * Restores a logged data block: jbd2 zeroes the first 4 bytes of a data block
 * that begins with its magic (so recovery cannot mistake it for a metadata
 * block) and sets the tag's ESCAPE flag. Returns a copy when `escaped`, else `data`.
 */
export function unescapeBlock(data: Uint8Array, escaped: boolean): Uint8Array {
  if (!escaped || data.length < 4) return data;
  const out = data.slice();
  viewOf(out).setUint32(0, JBD2_MAGIC);
  return out;
}
