import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32 } from '../src/index.js';

describe('crc32', () => {
  it('matches the IEEE check value for "123456789"', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });

  it('matches zlib for every length 0..300 and unaligned views', () => {
    const buf = randomBytes(400);
    for (let n = 0; n <= 300; n++) {
      const view = buf.subarray(n % 7, (n % 7) + n);
      expect(crc32(view)).toBe(zlibCrc32(view));
    }
  });

  it('continues a running checksum across chunks', () => {
    const buf = randomBytes(1000);
    for (const cut of [0, 1, 7, 8, 9, 500, 999, 1000]) {
      expect(crc32(buf.subarray(cut), crc32(buf.subarray(0, cut)))).toBe(zlibCrc32(buf));
    }
  });

  it('checksums 16 MiB in well under a second', () => {
    const buf = randomBytes(16 << 20);
    const t0 = performance.now();
    const c = crc32(buf);
    const ms = performance.now() - t0;
    expect(c).toBe(zlibCrc32(buf));
    expect(ms).toBeLessThan(1000);
  });
});
