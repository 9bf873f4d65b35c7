import { CorruptError, type WireCorruptKind } from './errors.js';

/**
 * The one place a decoded 64-bit integer becomes a JS number: accepts a BSON int64 (decoded as bigint with
 * `useBigInt64`), or an int32/double that holds an integer (other encoders may shrink small values), and rejects
 * anything negative or beyond `Number.MAX_SAFE_INTEGER`.
 */
export function toSafeUint(value: unknown, kind: WireCorruptKind, field: string, op?: number): number {
  let n: number;
  if (typeof value === 'bigint') {
    if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new CorruptError(kind, `${field} ${value} is not a non-negative safe integer`, { field, op });
    }
    n = Number(value);
  } else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new CorruptError(kind, `${field} ${value} is not a non-negative safe integer`, { field, op });
    }
    n = value;
  } else {
    throw new CorruptError(kind, `${field} is ${describe(value)}, expected an integer`, { field, op });
  }
  return n;
}

/** A short type description for error messages (never the value itself: it may be large or hostile). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'binary';
  if (value instanceof Date) return 'a date';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
