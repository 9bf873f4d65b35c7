import { execFileSync } from 'node:child_process';
import { BSON } from 'bson';
import { describe, expect, it } from 'vitest';
import {
  CorruptError,
  EncodeError,
  MAX_OPS_PER_RECORD,
  MAX_RECORD_BYTES,
  MAX_WRITE_CHUNK_BYTES,
  WireCorruptKind,
  batchOps,
  decodeWriteRecord,
  encodeWriteRecord,
  splitRange,
  splitWrite,
  type WriteOp,
  type WriteRecord,
} from '../src/index.js';

const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

const sample: WriteRecord = {
  v: 1,
  disk: 'vm-1_a',
  ts: new Date('2024-05-06T07:08:09.123Z'),
  ops: [
    { op: 'write', offset: 2 ** 40 + 512, length: 8, data: bytes(8), fua: true },
    { op: 'write', offset: 2 ** 31 + 4096, length: 3, data: bytes(3, 7), fua: false },
    { op: 'zero', offset: 4096, length: 65536, fua: false, noHole: true },
    { op: 'zero', offset: 0, length: 512, fua: true },
    { op: 'trim', offset: Number.MAX_SAFE_INTEGER - 1024, length: 1024, fua: false },
    { op: 'flush' },
  ],
};

/** Re-serializes a record after `mutate` changed its raw BSON document. */
function tamper(mutate: (d: Record<string, any>) => void): Uint8Array {
  const d = BSON.deserialize(encodeWriteRecord(sample), { useBigInt64: true, promoteBuffers: true }) as Record<string, any>;
  mutate(d);
  return BSON.serialize(d);
}

function corruptKind(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    if (err instanceof CorruptError) return err.kind;
    throw err;
  }
  return undefined;
}

describe('write record codec', () => {
  it('round-trips every op kind, with offsets above 2^31 and 2^40 exact', () => {
    const back = decodeWriteRecord(encodeWriteRecord(sample));
    expect(back.v).toBe(1);
    expect(back.disk).toBe(sample.disk);
    expect(back.ts.getTime()).toBe(sample.ts.getTime());
    expect(back.ops.map((o) => ({ ...o, ...('data' in o ? { data: Array.from(o.data) } : {}) }))).toEqual(
      sample.ops.map((o) => ({ ...o, ...('data' in o ? { data: Array.from(o.data) } : {}) })),
    );
  });

  it('stores offsets as BSON int64 and lengths as int32', () => {
    const raw = BSON.deserialize(encodeWriteRecord(sample), { useBigInt64: true });
    expect(raw['ops'][0].offset).toBe(BigInt(2 ** 40 + 512));
    expect(raw['ops'][3].offset).toBe(0n); // even small offsets are int64
    expect(typeof raw['ops'][0].length).toBe('number');
  });

  it('is decoded identically by an independent BSON implementation (Debian python3-bson)', () => {
    const hex = Buffer.from(encodeWriteRecord(sample)).toString('hex');
    const script = [
      'import bson, sys, json',
      'd = bson.decode(bytes.fromhex(sys.stdin.read()))',
      'out = {"v": d["v"], "disk": d["disk"], "ts": d["ts"].isoformat(), "ops": []}',
      'for o in d["ops"]:',
      '    e = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in o.items()}',
      '    e["types"] = {k: type(v).__name__ for k, v in o.items()}',
      '    out["ops"].append(e)',
      'print(json.dumps(out))',
    ].join('\n');
    const py = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: hex }).toString());
    expect(py.v).toBe(1);
    expect(py.disk).toBe('vm-1_a');
    expect(py.ts.startsWith('2024-05-06T07:08:09.123')).toBe(true);
    expect(py.ops[0]).toMatchObject({ op: 'write', offset: 2 ** 40 + 512, length: 8, data: Buffer.from(bytes(8)).toString('hex'), fua: true });
    expect(py.ops[0].types).toMatchObject({ offset: 'Int64', length: 'int', fua: 'bool' });
    expect(py.ops[1].offset).toBe(2 ** 31 + 4096);
    expect(py.ops[2]).toMatchObject({ op: 'zero', noHole: true, length: 65536 });
    expect(py.ops[4].offset).toBe(Number.MAX_SAFE_INTEGER - 1024);
    expect(py.ops[5]).toMatchObject({ op: 'flush' });
  });

  it('decodes a record written by python (int32 offsets from another encoder are accepted)', () => {
    const script = [
      'import bson, sys, datetime',
      'from bson.int64 import Int64',
      'd = {"v": 1, "disk": "py", "ts": datetime.datetime(2024,1,1), "ops": [',
      ' {"op": "write", "offset": Int64(3 * 2**32), "length": 4, "data": b"abcd", "fua": False},',
      ' {"op": "zero", "offset": 512, "length": 512, "fua": True}, {"op": "flush"}]}',
      'sys.stdout.write(bson.encode(d).hex())',
    ].join('\n');
    const rec = decodeWriteRecord(Buffer.from(execFileSync('/usr/bin/python3', ['-c', script]).toString(), 'hex'));
    expect(rec.disk).toBe('py');
    expect(rec.ops[0]).toMatchObject({ op: 'write', offset: 3 * 2 ** 32, length: 4 });
    expect(rec.ops[1]).toEqual({ op: 'zero', offset: 512, length: 512, fua: true });
    expect(rec.ops[2]).toEqual({ op: 'flush' });
  });

  it('rejects garbage as Corrupt(NotBson)', () => {
    expect(corruptKind(() => decodeWriteRecord(new Uint8Array([1, 2, 3, 4, 5])))).toBe(WireCorruptKind.NotBson);
  });
  it('rejects an oversized message as Corrupt(TooLarge)', () => {
    expect(corruptKind(() => decodeWriteRecord(new Uint8Array(MAX_RECORD_BYTES + 1)))).toBe(WireCorruptKind.TooLarge);
  });
  it('rejects v 2 as Corrupt(Version)', () => {
    expect(corruptKind(() => decodeWriteRecord(tamper((d) => (d['v'] = 2))))).toBe(WireCorruptKind.Version);
  });
  it('rejects a disk id with a dot as Corrupt(DiskId)', () => {
    expect(corruptKind(() => decodeWriteRecord(tamper((d) => (d['disk'] = 'a.b'))))).toBe(WireCorruptKind.DiskId);
  });
  it('rejects a string ts as Corrupt(Timestamp)', () => {
    expect(corruptKind(() => decodeWriteRecord(tamper((d) => (d['ts'] = 'now'))))).toBe(WireCorruptKind.Timestamp);
  });
  it('rejects too many ops as Corrupt(OpCount)', () => {
    const many = BSON.serialize({ v: 1, disk: 'd', ts: new Date(), ops: Array.from({ length: MAX_OPS_PER_RECORD + 1 }, () => ({ op: 'flush' })) });
    expect(corruptKind(() => decodeWriteRecord(many))).toBe(WireCorruptKind.OpCount);
  });
  it('rejects an unknown op as Corrupt(OpKind)', () => {
    expect(corruptKind(() => decodeWriteRecord(tamper((d) => (d['ops'][0].op = 'erase'))))).toBe(WireCorruptKind.OpKind);
  });
  it('rejects a negative offset as Corrupt(Offset)', () => {
    expect(corruptKind(() => decodeWriteRecord(tamper((d) => (d['ops'][0].offset = -512n))))).toBe(WireCorruptKind.Offset);
  });
  it('rejects an offset beyond 2^53 as Corrupt(Offset)', () => {
    expect(corruptKind(() => decodeWriteRecord(tamper((d) => (d['ops'][0].offset = 2n ** 60n))))).toBe(WireCorruptKind.Offset);
  });
  it('rejects a fractional length as Corrupt(Length)', () => {
    expect(corruptKind(() => decodeWriteRecord(tamper((d) => (d['ops'][2].length = 1.5))))).toBe(WireCorruptKind.Length);
  });
  it('rejects data shorter than length as Corrupt(Data)', () => {
    expect(corruptKind(() => decodeWriteRecord(tamper((d) => (d['ops'][0].length = 9))))).toBe(WireCorruptKind.Data);
  });
  it('rejects a string fua as Corrupt(Flag)', () => {
    expect(corruptKind(() => decodeWriteRecord(tamper((d) => (d['ops'][0].fua = 'yes'))))).toBe(WireCorruptKind.Flag);
  });

  it('refuses to encode a record above MAX_RECORD_BYTES', () => {
    const ops: WriteOp[] = [0, 1].map((i) => ({ op: 'write', offset: i * MAX_WRITE_CHUNK_BYTES, length: MAX_WRITE_CHUNK_BYTES, data: new Uint8Array(MAX_WRITE_CHUNK_BYTES), fua: false }));
    expect(() => encodeWriteRecord({ v: 1, disk: 'd', ts: new Date(), ops })).toThrow(EncodeError);
  });
});

describe('splitting', () => {
  it('splits a 5 MiB write into pieces that each encode below MAX_RECORD_BYTES', () => {
    const data = bytes(5 * 1024 * 1024);
    const pieces = splitWrite(2 ** 33, data, true);
    expect(pieces.length).toBe(Math.ceil(data.length / MAX_WRITE_CHUNK_BYTES));
    let at = 2 ** 33;
    for (const p of pieces) {
      expect(p.offset).toBe(at);
      at += p.length;
      expect(p.fua).toBe(true);
    }
    expect(at).toBe(2 ** 33 + data.length);
    const batches = batchOps(pieces);
    expect(batches.length).toBe(pieces.length);
    for (const b of batches) expect(encodeWriteRecord({ v: 1, disk: 'd'.repeat(64), ts: new Date(), ops: b }).length).toBeLessThan(MAX_RECORD_BYTES);
  });

  it('batches many small ops into few records under both caps', () => {
    const ops: WriteOp[] = Array.from({ length: 20_000 }, (_, i) => (i % 2 ? { op: 'flush' } : { op: 'write', offset: i * 512, length: 512, data: bytes(512), fua: false }));
    const batches = batchOps(ops);
    expect(batches.flat().length).toBe(ops.length);
    for (const b of batches) {
      expect(b.length).toBeLessThanOrEqual(MAX_OPS_PER_RECORD);
      expect(encodeWriteRecord({ v: 1, disk: 'd', ts: new Date(), ops: b }).length).toBeLessThanOrEqual(MAX_RECORD_BYTES);
    }
  });

  it('splits a 5 GiB zero range into int32-sized ops', () => {
    const ops = splitRange('zero', 512, 5 * 2 ** 30, false, true);
    expect(ops.length).toBe(5);
    expect(ops.reduce((n, o) => n + o.length, 0)).toBe(5 * 2 ** 30);
    expect(decodeWriteRecord(encodeWriteRecord({ v: 1, disk: 'd', ts: new Date(), ops })).ops).toEqual(ops);
  });
});
