/** A copy of `b` in a buffer of its own (a memcpy; `Uint8Array.from` walks an iterator and is far slower). */
export function copyBytes(b: Uint8Array): Uint8Array {
  const c = new Uint8Array(b.length);
  c.set(b);
  return c;
}

/** Zeros to compare against (the largest block size). */
const ZEROS = Buffer.alloc(65536);

/** Whether `b[from..to)` is all zeros (a memcmp). */
function zeroRange(b: Uint8Array, from: number, to: number): boolean {
  for (let at = from; at < to; at += ZEROS.length) {
    const end = Math.min(to, at + ZEROS.length);
    if (ZEROS.compare(b, at, end, 0, end - at) !== 0) return false;
  }
  return true;
}

/** The length of `b` without its trailing zeros. */
export function trimmedLength(b: Uint8Array): number {
  const n = b.length;
  if (n === 0 || b[n - 1] !== 0) return n;
  // Data sits at the start of a block: look for the first all-zero remainder at offsets 64, 128, 256, ...
  // (one memcmp each), then narrow down by halving, and walk the last few bytes.
  let lo = 0;
  let hi = n - 1;
  for (let k = 64; k < n - 1; k *= 2) {
    if (zeroRange(b, k, n)) {
      hi = k;
      break;
    }
    lo = k;
  }
  // b[hi..] is all zeros; the answer is in lo..hi.
  while (hi - lo > 64) {
    const mid = (lo + hi) >>> 1;
    if (zeroRange(b, mid, hi)) hi = mid;
    else lo = mid;
  }
  while (hi > 0 && b[hi - 1] === 0) hi--;
  return hi;
}

/**
 * A copy of `b` without its trailing zeros (read back through {@link widen}). A data block of a small file is
 * mostly zeros past its end: the copy is a few bytes from Node's buffer pool instead of a block of its own.
 */
export function trimmedCopy(b: Uint8Array): Uint8Array {
  const n = trimmedLength(b);
  const c = n === b.length ? new Uint8Array(n) : Buffer.allocUnsafe(n);
  c.set(n === b.length ? b : b.subarray(0, n));
  return c;
}

/** `b` as exactly `length` bytes: cut, or zero-extended into a new buffer. */
export function widen(b: Uint8Array, length: number): Uint8Array {
  if (b.length === length) return b;
  if (b.length > length) return b.subarray(0, length);
  const c = new Uint8Array(length);
  c.set(b);
  return c;
}

/** `b` without its trailing zeros, as a view of the same bytes (no copy). */
export function trimmedView(b: Uint8Array): Uint8Array {
  const n = trimmedLength(b);
  return n === b.length ? b : b.subarray(0, n);
}
