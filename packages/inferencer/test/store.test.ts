import { describe, expect, it } from 'vitest';
import { BlockStore, packBlock, unpackBlock } from '../src/store.js';

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
});
