import { describe, expect, it } from 'vitest';
import { DEFLATE_AFTER_ROUNDS } from '../src/limits.js';
import { BlockStore, deflateBlock, inflateBlock, packBlock, unpackBlock } from '../src/store.js';

describe('BlockStore', () => {
  it('packs a block without its zero words and unpacks it byte for byte', () => {
    for (const fill of [0, 0.01, 0.3, 1]) {
      const raw = new Uint8Array(4096);
      for (let i = 0; i < raw.length; i++) if (((i * 2654435761) >>> 0) / 2 ** 32 < fill) raw[i] = (i % 255) + 1;
      const packed = packBlock(raw);
      expect(Buffer.from(unpackBlock(packed, 4096)).equals(Buffer.from(raw))).toBe(true);
      if (fill === 0) expect(packed.length).toBe(128);
    }
    // Not 4-byte aligned in its buffer: packed all the same.
    const odd = new Uint8Array(1025).subarray(1);
    odd.set([1, 2, 3, 4, 5], 100);
    expect(Buffer.from(unpackBlock(packBlock(odd), 1024)).equals(Buffer.from(odd))).toBe(true);
  });

  it('keeps blocks unused for a whole round packed and gives the same bytes back', async () => {
    const image = new Uint8Array(64 * 1024);
    image.set([9, 8, 7], 4096 * 3 + 10);
    const store = new BlockStore({ size: image.length, read: async (o, l) => ({ data: image.slice(o, o + l), seq: 5 }) }, 4096);
    await store.ensure(0, 16);
    expect(store.unpacked.size).toBe(16);
    store.compact(); // the round they were read in
    expect(store.unpacked.size).toBe(16);
    expect(store.get(3)!.data[10]).toBe(9); // ok: held; used in this round
    store.compact();
    expect(store.unpacked.size).toBe(1);
    expect(Buffer.from(await store.read(3 * 4096, 4096)).equals(Buffer.from(image.subarray(3 * 4096, 4 * 4096)))).toBe(true);
    expect(store.setHome(5, new Uint8Array(4096).fill(1), 6)).toBe(true);
    store.compact();
    store.compact();
    expect(store.unpacked.size).toBe(0);
    expect(store.get(5)!.peek()[4095]).toBe(1); // ok: held
    expect(store.get(5)!.seq).toBe(6); // ok: held
  });

  it('deflates blocks left unused for DEFLATE_AFTER_ROUNDS more rounds, gives the same bytes back, and starts over when one changes', async () => {
    // Inode-table-like content: repeated structure with some varying words.
    const image = new Uint8Array(64 * 1024);
    for (let i = 0; i < image.length; i += 256) image.set([0xa4, 0x81, 0xe8, 0x03, i & 0xff, (i >> 8) & 0xff, 1, 0, 0x0a, 0xf3], i);
    const store = new BlockStore({ size: image.length, read: async (o, l) => ({ data: image.slice(o, o + l), seq: 5 }) }, 4096);
    await store.ensure(0, 16);
    store.compact();
    store.compact(); // packed, zero words dropped
    expect(store.shallow.size).toBe(16);
    for (let r = 0; r < DEFLATE_AFTER_ROUNDS; r++) {
      expect(store.shallow.size).toBe(16);
      store.compact();
    }
    expect(store.shallow.size).toBe(0);
    for (let b = 0; b < 16; b++) expect(Buffer.from(store.get(b)!.peek()).equals(Buffer.from(image.subarray(b * 4096, (b + 1) * 4096)))).toBe(true);
    expect(Buffer.from(await store.read(2 * 4096 + 100, 300)).equals(Buffer.from(image.subarray(2 * 4096 + 100, 2 * 4096 + 400)))).toBe(true);
    // A new content drops the deflated copy: packed cheaply first again.
    expect(store.setHome(7, new Uint8Array(4096).fill(3), 6)).toBe(true);
    store.compact();
    store.compact();
    expect(store.shallow.has(store.get(7)!)).toBe(true); // ok: held
    expect(store.get(7)!.data[4095]).toBe(3); // ok: held
  });

  it('deflates a block into an array of its own, far smaller than zlib\'s output chunk, and inflates it exactly', () => {
    const raw = new Uint8Array(4096);
    for (let i = 0; i < raw.length; i += 64) raw[i] = i & 0xff;
    const d = deflateBlock(raw);
    expect(d.buffer.byteLength).toBe(d.length);
    expect(d.length).toBeLessThan(packBlock(raw).length);
    expect(Buffer.from(inflateBlock(d, 4096)).equals(Buffer.from(raw))).toBe(true);
    expect(() => inflateBlock(d, 1024)).toThrow(/inflated to 4096 bytes/);
  });
});
