import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EncodeError, MAX_OPS_PER_RECORD, MAX_WRITE_CHUNK_BYTES, encodeWriteRecord, decodeWriteRecord, type WriteOp } from '@gammaray/wire';
import { recordPartsSlabBytes, writeRecord, writeRecordParts, writeRecordSize } from '../src/record-writer.js';

const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

const every: WriteOp[] = [
  { op: 'write', offset: 2 ** 40 + 512, length: 8, data: bytes(8), fua: true },
  { op: 'write', offset: 2 ** 31 + 4096, length: 3, data: bytes(3, 7), fua: false },
  { op: 'write', offset: 2 ** 32 - 512, length: 0, data: new Uint8Array(0), fua: false },
  { op: 'zero', offset: 4096, length: 65536, fua: false, noHole: true },
  { op: 'zero', offset: 0, length: 512, fua: true },
  { op: 'zero', offset: 512, length: 512, fua: true, noHole: false },
  { op: 'trim', offset: Number.MAX_SAFE_INTEGER - 1024, length: 1024, fua: false },
  { op: 'trim', offset: 0, length: 0x7fff_ffff, fua: true },
  { op: 'flush' },
];

/** A pseudo-random op (deterministic per seed). */
function randomOp(r: () => number): WriteOp {
  const kind = Math.floor(r() * 4);
  const offset = Math.floor(r() * 2 ** 40) * 512;
  const fua = r() < 0.3;
  if (kind === 0) {
    const length = Math.floor(r() * 9000);
    return { op: 'write', offset, length, data: randomBytes(length), fua };
  }
  if (kind === 1) return r() < 0.5 ? { op: 'zero', offset, length: Math.floor(r() * 2 ** 30), fua, noHole: true } : { op: 'zero', offset, length: 4096, fua };
  if (kind === 2) return { op: 'trim', offset, length: Math.floor(r() * 2 ** 31), fua };
  return { op: 'flush' };
}

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 2 ** 32;
  };
}

describe('writeRecord (the capture hot-path encoder)', () => {
  it('writes the same bytes as encodeWriteRecord for every op kind, offsets above 2^31 and 2^40', () => {
    const ts = new Date('2024-05-06T07:08:09.123Z');
    const mine = writeRecord('vm-1_a', ts, every);
    expect(Buffer.from(mine).equals(Buffer.from(encodeWriteRecord({ v: 1, disk: 'vm-1_a', ts, ops: every })))).toBe(true);
    expect(decodeWriteRecord(mine).ops).toHaveLength(every.length);
  });

  it('writes the same bytes as encodeWriteRecord for 200 random records and dates before 1970 and after 2106', () => {
    const r = prng(42);
    for (let n = 0; n < 200; n++) {
      const ops = Array.from({ length: Math.floor(r() * 40) }, () => randomOp(r));
      const ts = new Date(Math.floor((r() - 0.3) * 2 ** 43));
      const disk = 'd'.repeat(1 + Math.floor(r() * 64));
      const expected = Buffer.from(encodeWriteRecord({ v: 1, disk, ts, ops }));
      expect(writeRecord(disk, ts, ops).equals(expected), `record ${n}`).toBe(true);
    }
  });

  it('writeRecordParts: the pieces concatenate to writeRecord\'s bytes, large data is gathered uncopied, the rest packed at the offset', () => {
    const r = prng(7);
    for (let n = 0; n < 200; n++) {
      const ops = Array.from({ length: Math.floor(r() * 12) }, () => randomOp(r));
      const ts = new Date(Math.floor(r() * 2 ** 42));
      const gatherMin = [0, 1, 512, 4096, Infinity][n % 5]!;
      const expected = writeRecord('vm', ts, ops);
      const own = recordPartsSlabBytes('vm', ops, gatherMin);
      const into = Buffer.alloc(own + 100, 0xee);
      const parts = writeRecordParts('vm', ts, ops, gatherMin, into, 37);
      expect(Buffer.concat(parts).equals(expected), `record ${n}`).toBe(true);
      const gathered = ops.filter((o) => o.op === 'write' && o.length >= gatherMin);
      expect(parts).toHaveLength(1 + 2 * gathered.length);
      for (let k = 0; k < gathered.length; k++) {
        const op = gathered[k] as Extract<WriteOp, { op: 'write' }>;
        expect(parts[1 + 2 * k]!.buffer).toBe(op.data.buffer); // the op's own bytes, not a copy
      }
      // Everything else lies contiguously in `into` from offset 37; the bytes around it are untouched.
      const own0 = parts.filter((_, k) => k % 2 === 0);
      expect(own0.reduce((a, b) => a + b.length, 0)).toBe(own);
      expect(own0.every((b) => b.buffer === into.buffer)).toBe(true);
      expect(into[36]).toBe(0xee);
      expect(into[37 + own]).toBe(0xee);
    }
    expect(() => writeRecordParts('vm', new Date(0), every, 1, Buffer.alloc(10), 0)).toThrow(RangeError);
  });

  it('writes the same bytes for a record of one maximal write chunk and one of MAX_OPS_PER_RECORD flushes', () => {
    const ts = new Date(1_700_000_000_000);
    const big: WriteOp[] = [{ op: 'write', offset: 1 << 30, length: MAX_WRITE_CHUNK_BYTES, data: randomBytes(MAX_WRITE_CHUNK_BYTES), fua: false }];
    expect(writeRecord('big', ts, big).equals(Buffer.from(encodeWriteRecord({ v: 1, disk: 'big', ts, ops: big })))).toBe(true);
    const flushes: WriteOp[] = Array.from({ length: MAX_OPS_PER_RECORD }, () => ({ op: 'flush' }));
    expect(writeRecord('f', ts, flushes).equals(Buffer.from(encodeWriteRecord({ v: 1, disk: 'f', ts, ops: flushes })))).toBe(true);
    expect(writeRecordSize('f', flushes)).toBe(writeRecord('f', ts, flushes).length);
  });

  it('rejects what encodeWriteRecord rejects: bad disk id, too many ops, bad ranges, data length mismatch, oversize', () => {
    const ts = new Date();
    const bad = (disk: string, ops: WriteOp[]) => () => writeRecord(disk, ts, ops);
    expect(bad('Bad Disk', [])).toThrow(EncodeError);
    expect(bad('d', Array.from({ length: MAX_OPS_PER_RECORD + 1 }, () => ({ op: 'flush' as const })))).toThrow(EncodeError);
    expect(bad('d', [{ op: 'zero', offset: -512, length: 512, fua: false }])).toThrow(EncodeError);
    expect(bad('d', [{ op: 'trim', offset: 0, length: 2 ** 31, fua: false }])).toThrow(EncodeError);
    expect(bad('d', [{ op: 'trim', offset: Number.MAX_SAFE_INTEGER, length: 512, fua: false }])).toThrow(EncodeError);
    expect(bad('d', [{ op: 'write', offset: 0, length: 4, data: new Uint8Array(3), fua: false }])).toThrow(EncodeError);
    expect(bad('d', [{ op: 'write', offset: 0, length: 1_000_000, data: new Uint8Array(1_000_000), fua: false }])).toThrow(EncodeError);
    expect(bad('d', [{ op: 'nope' } as unknown as WriteOp])).toThrow(EncodeError);
  });
});
