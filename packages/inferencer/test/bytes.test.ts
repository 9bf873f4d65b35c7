import { describe, expect, it } from 'vitest';
import { trimmedCopy, trimmedLength, widen } from '../src/bytes.js';

/** Trailing zeros counted one byte at a time: the reference. */
function naive(b: Uint8Array): number {
  let n = b.length;
  while (n > 0 && b[n - 1] === 0) n--;
  return n;
}

describe('bytes', () => {
  it('trimmedLength finds the end of the last non-zero byte, wherever it is', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (const n of [0, 1, 5, 63, 64, 65, 129, 1024, 4096, 65536]) {
      for (let t = 0; t < 300; t++) {
        const b = new Uint8Array(n);
        const end = Math.floor(rand() * (n + 1));
        for (let i = 0; i < end; i++) if (rand() < 0.2) b[i] = 1 + (i % 250);
        if (end > 0 && rand() < 0.5) b[end - 1] = 9;
        expect(trimmedLength(b)).toBe(naive(b));
      }
    }
  });

  it('trimmedCopy and widen give back the same block', () => {
    const b = new Uint8Array(4096);
    b.set([1, 2, 3], 10);
    const t = trimmedCopy(b);
    expect(t.length).toBe(13);
    expect(Buffer.from(widen(t, 4096)).equals(Buffer.from(b))).toBe(true);
    expect(widen(b, 20)).toEqual(b.subarray(0, 20));
    const full = new Uint8Array(16).fill(5);
    expect(trimmedCopy(full)).toEqual(full);
    expect(trimmedCopy(full)).not.toBe(full);
  });
});
