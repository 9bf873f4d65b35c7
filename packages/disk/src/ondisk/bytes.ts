import { CorruptError, type DiskCorruptKind } from '../errors.js';

// Little-endian field readers for the decoders. Callers check the buffer length
// before reading, so these never index past the end; they return plain numbers
// (or a bigint for 64-bit flag words) and never throw.

/** Reads a u8. */
export function u8(b: Uint8Array, off: number): number {
  return b[off] ?? 0;
}

/** Reads a little-endian u16. */
export function u16le(b: Uint8Array, off: number): number {
  return u8(b, off) | (u8(b, off + 1) << 8);
}

/** Reads a little-endian u32 as a non-negative number. */
export function u32le(b: Uint8Array, off: number): number {
  return (u8(b, off) | (u8(b, off + 1) << 8) | (u8(b, off + 2) << 16) | (u8(b, off + 3) << 24)) >>> 0;
}

/** Reads a little-endian u64 as a bigint (for flag words such as GPT attributes). */
export function u64le(b: Uint8Array, off: number): bigint {
  return (BigInt(u32le(b, off + 4)) << 32n) | BigInt(u32le(b, off));
}

/**
 * Reads a little-endian u64 that must fit in a JavaScript number (LBAs, sizes).
 * The one place 64-bit disk values become numbers: anything above
 * `Number.MAX_SAFE_INTEGER` is a {@link CorruptError} of `kind`, never a
 * silently rounded value.
 */
export function safeU64le(b: Uint8Array, off: number, kind: DiskCorruptKind, field: string, block?: number): number {
  const hi = u32le(b, off + 4);
  // 2^53 - 1 has 21 bits in the high word.
  if (hi > 0x1fffff) {
    throw new CorruptError(kind, `${field} 0x${u64le(b, off).toString(16)} does not fit in 53 bits`, { block, field });
  }
  return hi * 0x1_0000_0000 + u32le(b, off);
}

/**
 * Formats a 16-byte on-disk GUID as lowercase text. The first three groups are
 * stored little-endian, the last two as plain bytes (the "mixed-endian" EFI
 * layout), so `28 73 2a c1 1f f8 d2 11 ba 4b 00 a0 c9 3e c9 3b` is
 * `c12a7328-f81f-11d2-ba4b-00a0c93ec93b`.
 */
export function formatGuid(b: Uint8Array, off: number): string {
  const hex = (i: number): string => u8(b, off + i).toString(16).padStart(2, '0');
  const group = (idx: readonly number[]): string => idx.map(hex).join('');
  return `${group([3, 2, 1, 0])}-${group([5, 4])}-${group([7, 6])}-${group([8, 9])}-${group([10, 11, 12, 13, 14, 15])}`;
}

/** True if `len` bytes at `off` are all zero. */
export function isZero(b: Uint8Array, off: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (u8(b, off + i) !== 0) return false;
  return true;
}
