import { CorruptError, type CorruptKind, type CorruptLocation } from './errors.js';

/**
 * Combines a 64-bit on-disk value from its halves. Values above
 * Number.MAX_SAFE_INTEGER cannot be a real disk offset or size here, so they
 * are corrupt rather than silently rounded.
 */
export function u64(lo: number, hi: number, kind: CorruptKind, where: CorruptLocation): number {
  if (hi >= 0x200000) throw new CorruptError(kind, `64-bit value ${hi.toString(16)}:${lo.toString(16)} exceeds 2^53`, where);
  return hi * 0x1_0000_0000 + lo;
}

/** Reads a little-endian u64 from `view` at `off` via {@link u64}. */
export function readU64(view: DataView, off: number, kind: CorruptKind, where: CorruptLocation): number {
  return u64(view.getUint32(off, true), view.getUint32(off + 4, true), kind, where);
}

/** A DataView over exactly `bytes`. */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
