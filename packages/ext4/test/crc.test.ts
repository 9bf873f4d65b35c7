import { describe, expect, it } from 'vitest';
import { crc16, crc32Be, crc32c } from '../src/index.js';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);
const CHECK = ascii('123456789');

/** Bit-at-a-time crc32c (reflected 0x82F63B78), the reference the sliced tables must agree with. */
function crc32cBitwise(crc: number, data: Uint8Array): number {
  let c = crc >>> 0;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return c >>> 0;
}

/** Deterministic pseudo-random bytes (xorshift32). */
function noise(n: number, seed = 0x12345678): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe('crc32c', () => {
  const finished = (data: Uint8Array) => (crc32c(0xffffffff, data) ^ 0xffffffff) >>> 0;

  it('gives 0xE3069283 for "123456789" with init ~0 and final xor', () => {
    expect(finished(CHECK)).toBe(0xe3069283);
  });

  it('matches the RFC 3720 (iSCSI) test vectors', () => {
    expect(finished(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(finished(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(finished(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(finished(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
  });

  it('is raw: no inversion, so empty input returns the seed unchanged', () => {
    expect(crc32c(0xffffffff, new Uint8Array(0))).toBe(0xffffffff);
    expect(crc32c(0x1234, new Uint8Array(0))).toBe(0x1234);
    expect(crc32c(0, new Uint8Array(0))).toBe(0);
  });

  it('returns an unsigned 32-bit value', () => {
    for (let n = 0; n < 40; n++) {
      const c = crc32c(0xffffffff, noise(n, n + 1));
      expect(c).toBeGreaterThanOrEqual(0);
      expect(c).toBeLessThanOrEqual(0xffffffff);
      expect(Number.isInteger(c)).toBe(true);
    }
  });

  it('agrees with a bitwise crc32c for every length 0..70 (sliced and byte tails)', () => {
    const data = noise(70);
    for (let n = 0; n <= 70; n++) {
      expect(crc32c(0xffffffff, data.subarray(0, n))).toBe(crc32cBitwise(0xffffffff, data.subarray(0, n)));
    }
  });

  it('honours start and end, including unaligned views', () => {
    const data = noise(4096 + 13, 99);
    for (const [s, e] of [
      [0, 4096],
      [3, 4096 + 13],
      [7, 8],
      [100, 100],
      [1, 1000],
    ] as const) {
      expect(crc32c(0xffffffff, data, s, e)).toBe(crc32cBitwise(0xffffffff, data.subarray(s, e)));
    }
    const unaligned = data.subarray(5, 205);
    expect(crc32c(0x9abcdef0, unaligned)).toBe(crc32cBitwise(0x9abcdef0, unaligned));
  });

  it('continues a previous value: crc(crc(seed, a), b) = crc(seed, a + b)', () => {
    const data = noise(1000, 7);
    for (const cut of [0, 1, 8, 9, 511, 1000]) {
      expect(crc32c(crc32c(0xffffffff, data.subarray(0, cut)), data.subarray(cut))).toBe(crc32c(0xffffffff, data));
    }
  });
});

describe('crc16', () => {
  it('is CRC-16/ARC with init 0: 0xBB3D for "123456789"', () => {
    expect(crc16(0, CHECK)).toBe(0xbb3d);
  });

  it('is CRC-16/MODBUS with init 0xffff (as ext4 seeds it): 0x4B37 for "123456789"', () => {
    expect(crc16(0xffff, CHECK)).toBe(0x4b37);
  });

  it('keeps only the low 16 bits of the seed and returns 16 bits', () => {
    expect(crc16(0x1ffff, CHECK)).toBe(0x4b37);
    const c = crc16(0xffff, noise(300));
    expect(c).toBeGreaterThanOrEqual(0);
    expect(c).toBeLessThanOrEqual(0xffff);
  });

  it('honours start/end and continues a previous value', () => {
    const data = noise(333, 5);
    expect(crc16(crc16(0xffff, data, 0, 100), data, 100, 333)).toBe(crc16(0xffff, data));
    expect(crc16(0xffff, data, 10, 20)).toBe(crc16(0xffff, data.subarray(10, 20)));
    expect(crc16(0x1234, data, 50, 50)).toBe(0x1234);
  });
});

describe('crc32Be', () => {
  it('is CRC-32/BZIP2 before its final inversion (check value 0xfc891918)', () => {
    expect((~crc32Be(0xffffffff, CHECK)) >>> 0).toBe(0xfc891918);
  });

  it('continues a crc over pieces', () => {
    expect(crc32Be(crc32Be(0xffffffff, CHECK, 0, 4), CHECK, 4)).toBe(crc32Be(0xffffffff, CHECK));
  });
});
