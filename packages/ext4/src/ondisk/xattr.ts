import { crc32c } from '../crc.js';
import { CorruptError, CorruptKind } from '../errors.js';
import { MAX_XATTRS, MAX_XATTR_VALUE_BYTES } from '../limits.js';
import { viewOf } from '../u64.js';

/** h_magic / in-inode header magic. */
export const XATTR_MAGIC = 0xea020000;
/** Size of `struct ext4_xattr_header` at the start of an xattr block. */
export const XATTR_BLOCK_HEADER_SIZE = 32;

/** e_name_index values and the prefixes they stand for. */
export const XATTR_PREFIXES: Readonly<Record<number, string>> = Object.freeze({
  1: 'user.',
  2: 'system.posix_acl_access',
  3: 'system.posix_acl_default',
  4: 'trusted.',
  6: 'security.',
  7: 'system.',
  8: 'system.richacl',
});

/** One extended attribute. */
export interface Xattr {
  /** Full name with its namespace prefix, e.g. `user.foo`, `system.data`. */
  readonly name: string;
  /** The value; empty when it lives in an EA inode (see `valueInode`). */
  readonly value: Uint8Array;
  /** With ea_inode: the inode holding the value. */
  readonly valueInode?: number;
  /** Size of the value in bytes. */
  readonly valueSize: number;
}

/**
 * Decodes the entry list of an xattr region.
 *
 * Entry (`struct ext4_xattr_entry`), 4-byte aligned, list ends with a zero u32:
 * | off | size | name           |                                              |
 * |-----|------|----------------|----------------------------------------------|
 * | 0x0 | u8   | e_name_len     |                                              |
 * | 0x1 | u8   | e_name_index   | namespace, see XATTR_PREFIXES                |
 * | 0x2 | le16 | e_value_offs   | from the first entry (inode) or block start  |
 * | 0x4 | le32 | e_value_inum   | ea_inode: inode holding the value            |
 * | 0x8 | le32 | e_value_size   |                                              |
 * | 0xC | le32 | e_hash         |                                              |
 * | 0x10| char[] | e_name       |                                              |
 *
 * `region` holds the entries starting at `entriesStart`; value offsets are
 * relative to `valueBase` within region.
 */
function decodeEntries(region: Uint8Array, entriesStart: number, valueBase: number, where: { inode?: number; block?: number }): Xattr[] {
  const v = viewOf(region);
  const out: Xattr[] = [];
  let off = entriesStart;
  for (let n = 0; ; n++) {
    if (off + 4 > region.length) break; // ran to the end without a terminator; in-inode lists may end at the inode's end
    if (v.getUint32(off, true) === 0) break;
    if (n >= MAX_XATTRS) throw new CorruptError(CorruptKind.XattrEntry, `more than ${MAX_XATTRS} attributes`, where);
    if (off + 16 > region.length) throw new CorruptError(CorruptKind.XattrEntry, `entry at ${off} runs past the region`, { ...where, field: 'e_name_len' });
    const e_name_len = v.getUint8(off);
    const e_name_index = v.getUint8(off + 1);
    const e_value_offs = v.getUint16(off + 2, true);
    const e_value_inum = v.getUint32(off + 4, true);
    const e_value_size = v.getUint32(off + 8, true);
    const nameEnd = off + 16 + e_name_len;
    // Empty names are valid: POSIX ACLs (index 2 and 3) are stored with the prefix alone.
    if (nameEnd > region.length) throw new CorruptError(CorruptKind.XattrEntry, `name of ${e_name_len} bytes at ${off}`, { ...where, field: 'e_name_len' });
    const prefix = XATTR_PREFIXES[e_name_index];
    const suffix = latin1OrUtf8(region.subarray(off + 16, nameEnd));
    const name = (prefix ?? `unknown${e_name_index}.`) + suffix;
    if (e_value_size > MAX_XATTR_VALUE_BYTES) throw new CorruptError(CorruptKind.XattrEntry, `value of ${e_value_size} bytes for ${name}`, { ...where, field: 'e_value_size' });
    if (e_value_inum !== 0) {
      out.push({ name, value: new Uint8Array(0), valueInode: e_value_inum, valueSize: e_value_size });
    } else {
      const vs = valueBase + e_value_offs;
      if (vs + e_value_size > region.length) throw new CorruptError(CorruptKind.XattrEntry, `value of ${name} (${e_value_size} bytes at ${e_value_offs}) runs past the region`, { ...where, field: 'e_value_offs' });
      out.push({ name, value: region.slice(vs, vs + e_value_size), valueSize: e_value_size });
    }
    off = (nameEnd + 3) & ~3;
  }
  return out;
}

function latin1OrUtf8(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
}

/**
 * Decodes in-inode xattrs: after 128 + i_extra_isize comes a le32 magic and
 * the entry list; values are relative to the first entry.
 */
export function decodeInodeXattrs(raw: Uint8Array, extraIsize: number, ino: number): Xattr[] {
  const start = 128 + extraIsize;
  if (raw.length <= 128 || start + 4 > raw.length) return [];
  if ((raw[start]! | (raw[start + 1]! << 8) | (raw[start + 2]! << 16) | (raw[start + 3]! << 24)) >>> 0 !== XATTR_MAGIC) return [];
  const region = raw.subarray(start + 4);
  return decodeEntries(region, 0, 0, { inode: ino });
}

/**
 * Decodes an xattr block (`struct ext4_xattr_header`: 0x0 le32 h_magic,
 * 0x4 le32 h_refcount, 0x8 le32 h_blocks (must be 1), 0xC le32 h_hash,
 * 0x10 le32 h_checksum), verifying its checksum with metadata_csum:
 * crc32c(seed, le64 block number, block with h_checksum zeroed).
 */
export function decodeXattrBlock(block: Uint8Array, blockNr: number, where: { inode: number; block: number }, csumSeed: number | undefined): Xattr[] {
  const v = viewOf(block);
  if (block.length < XATTR_BLOCK_HEADER_SIZE) throw new CorruptError(CorruptKind.XattrHeader, 'block too small', where);
  const h_magic = v.getUint32(0, true);
  const h_blocks = v.getUint32(8, true);
  if (h_magic !== XATTR_MAGIC) throw new CorruptError(CorruptKind.XattrHeader, `bad magic 0x${h_magic.toString(16)}`, { ...where, field: 'h_magic' });
  if (h_blocks !== 1) throw new CorruptError(CorruptKind.XattrHeader, `h_blocks ${h_blocks}`, { ...where, field: 'h_blocks' });
  if (csumSeed !== undefined) {
    const stored = v.getUint32(0x10, true);
    const nr = new Uint8Array(8);
    const nv = new DataView(nr.buffer);
    nv.setUint32(0, blockNr % 0x1_0000_0000, true);
    nv.setUint32(4, Math.floor(blockNr / 0x1_0000_0000), true);
    let c = crc32c(csumSeed, nr);
    c = crc32c(c, block, 0, 0x10);
    c = crc32c(c, new Uint8Array(4));
    c = crc32c(c, block, 0x14, block.length);
    if (c !== stored) throw new CorruptError(CorruptKind.XattrChecksum, `checksum 0x${stored.toString(16)} != computed 0x${c.toString(16)}`, { ...where, field: 'h_checksum' });
  }
  return decodeEntries(block, XATTR_BLOCK_HEADER_SIZE, 0, where);
}
