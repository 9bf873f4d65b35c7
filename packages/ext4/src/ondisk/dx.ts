import { CorruptError, CorruptKind } from '../errors.js';
import { viewOf } from '../u64.js';

/**
 * The htree root (`struct dx_root`) at the start of block 0 of an indexed
 * directory, after the "." (12 bytes) and ".." entries:
 *
 * | off  | size | name              |                                    |
 * |------|------|-------------------|------------------------------------|
 * | 0x18 | le32 | reserved_zero     |                                    |
 * | 0x1C | u8   | hash_version      | 0 legacy, 1 half_md4, 2 tea, +3 unsigned, 6 siphash |
 * | 0x1D | u8   | info_length       | 8                                  |
 * | 0x1E | u8   | indirect_levels   | < 2, or < 3 with largedir          |
 * | 0x1F | u8   | unused_flags      |                                    |
 * | 0x20 | le16 | limit             | capacity of the entry array        |
 * | 0x22 | le16 | count             | entries in use                     |
 *
 * gammaray lists directories by scanning every block linearly (index nodes
 * look like one empty entry spanning the block), so the index is validated
 * but not needed for listing.
 */
export interface DxRoot {
  readonly hashVersion: number;
  readonly indirectLevels: number;
  readonly limit: number;
  readonly count: number;
}

/** Decodes and validates the htree root of `block0`. */
export function decodeDxRoot(block0: Uint8Array, where: { inode: number; block?: number }, largedir: boolean): DxRoot {
  if (block0.length < 0x28) throw new CorruptError(CorruptKind.HtreeRoot, 'root block too small', where);
  const v = viewOf(block0);
  const info_length = v.getUint8(0x1d);
  const hash_version = v.getUint8(0x1c);
  const indirect_levels = v.getUint8(0x1e);
  const limit = v.getUint16(0x20, true);
  const count = v.getUint16(0x22, true);
  if (info_length !== 8) throw new CorruptError(CorruptKind.HtreeRoot, `info_length ${info_length}`, { ...where, field: 'info_length' });
  if (indirect_levels >= (largedir ? 3 : 2)) throw new CorruptError(CorruptKind.HtreeRoot, `indirect_levels ${indirect_levels}`, { ...where, field: 'indirect_levels' });
  if (hash_version > 6) throw new CorruptError(CorruptKind.HtreeRoot, `hash_version ${hash_version}`, { ...where, field: 'hash_version' });
  const cap = Math.floor((block0.length - 0x20) / 8);
  if (limit === 0 || limit > cap || count === 0 || count > limit) {
    throw new CorruptError(CorruptKind.HtreeRoot, `count ${count} / limit ${limit} (capacity ${cap})`, { ...where, field: 'count' });
  }
  return Object.freeze({ hashVersion: hash_version, indirectLevels: indirect_levels, limit, count });
}
