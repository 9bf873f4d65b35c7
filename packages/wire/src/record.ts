import { BSON } from 'bson';
import { CorruptError, EncodeError, WireCorruptKind } from './errors.js';
import { describe, toSafeUint } from './int64.js';
import {
  MAX_OP_LENGTH,
  MAX_OPS_PER_RECORD,
  MAX_RANGE_CHUNK_BYTES,
  MAX_RECORD_BYTES,
  MAX_WRITE_CHUNK_BYTES,
  OP_OVERHEAD_BYTES,
  RECORD_OVERHEAD_BYTES,
} from './limits.js';
import { isDiskId } from './subjects.js';

/** Version of the write record format this package writes and reads. */
export const WRITE_RECORD_VERSION = 1;

/** The kinds of op in a write record. */
export const OpKind = { Write: 'write', Zero: 'zero', Trim: 'trim', Flush: 'flush' } as const;
/** See {@link OpKind}. */
export type OpKind = (typeof OpKind)[keyof typeof OpKind];

/** `data` was written at byte `offset` (`length` = `data.length`); `fua`: it was forced to stable storage. */
export interface WriteDataOp {
  readonly op: 'write';
  readonly offset: number;
  readonly length: number;
  readonly data: Uint8Array;
  readonly fua: boolean;
}
/**
 * `length` bytes at `offset` now read as zeros. `noHole`: the client asked that no hole be punched (only a
 * storage-allocation hint; the contents are zeros either way).
 */
export interface WriteZeroOp {
  readonly op: 'zero';
  readonly offset: number;
  readonly length: number;
  readonly fua: boolean;
  readonly noHole?: boolean;
}
/**
 * The client discarded `length` bytes at `offset`: their contents are unspecified from now on. Capture leaves the
 * image bytes untouched, so a replayer reproduces the captured image by not changing them either.
 */
export interface WriteTrimOp {
  readonly op: 'trim';
  readonly offset: number;
  readonly length: number;
  readonly fua: boolean;
}
/** Every write before this one (in stream order) reached stable storage. */
export interface WriteFlushOp {
  readonly op: 'flush';
}
/** One disk operation of a write record. */
export type WriteOp = WriteDataOp | WriteZeroOp | WriteTrimOp | WriteFlushOp;

/**
 * One message of stream GAMMARAY_WRITES on `gammaray.<disk>.writes`. Ops are in the order the VM issued them;
 * records of one disk are in stream order.
 *
 * BSON layout (field: BSON type):
 * | field  | type     | meaning                                                          |
 * |--------|----------|------------------------------------------------------------------|
 * | v      | int32    | format version, 1                                                 |
 * | disk   | string   | disk id, `[a-z0-9_-]{1,64}`                                       |
 * | ts     | datetime | when capture cut the record                                        |
 * | ops    | array    | op documents, at most MAX_OPS_PER_RECORD                           |
 * | .op    | string   | write / zero / trim / flush                                        |
 * | .offset| int64    | byte offset on the disk (not for flush)                            |
 * | .length| int32    | byte count (not for flush)                                         |
 * | .data  | binary 0 | the bytes (write only), exactly `length` of them                   |
 * | .fua   | bool     | forced unit access (not for flush)                                 |
 * | .noHole| bool     | zero only, present when true                                       |
 */
export interface WriteRecord {
  readonly v: 1;
  readonly disk: string;
  readonly ts: Date;
  readonly ops: readonly WriteOp[];
}

/** Upper bound of the encoded size one op adds to a record. */
export function opEncodedBound(op: WriteOp): number {
  return OP_OVERHEAD_BYTES + (op.op === 'write' ? op.data.length : 0);
}

/** Upper bound of the encoded size of a record with these ops. */
export function recordEncodedBound(ops: readonly WriteOp[]): number {
  let n = RECORD_OVERHEAD_BYTES;
  for (const op of ops) n += opEncodedBound(op);
  return n;
}

function checkRange(offset: number, length: number, field: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new EncodeError(`${field}.offset ${offset} is not a non-negative safe integer`, { field });
  if (!Number.isInteger(length) || length < 0 || length > MAX_OP_LENGTH) throw new EncodeError(`${field}.length ${length} is not in 0..${MAX_OP_LENGTH}`, { field });
  if (!Number.isSafeInteger(offset + length)) throw new EncodeError(`${field} ends beyond 2^53`, { field });
}

/**
 * Encodes a record as BSON. Throws {@link EncodeError} if it breaks a limit: more than MAX_OPS_PER_RECORD ops, an
 * encoded size above MAX_RECORD_BYTES, a write whose data length differs from its length, a bad offset/length.
 */
export function encodeWriteRecord(rec: WriteRecord): Uint8Array {
  if (!isDiskId(rec.disk)) throw new EncodeError('record disk is not a valid disk id', { field: 'disk' });
  if (rec.ops.length > MAX_OPS_PER_RECORD) throw new EncodeError(`record has ${rec.ops.length} ops, more than ${MAX_OPS_PER_RECORD}`, { field: 'ops' });
  if (recordEncodedBound(rec.ops) > MAX_RECORD_BYTES) throw new EncodeError(`record may exceed ${MAX_RECORD_BYTES} bytes`, { field: 'ops' });
  const ops = rec.ops.map((op, i) => {
    const field = `ops[${i}]`;
    switch (op.op) {
      case 'write':
        checkRange(op.offset, op.length, field);
        if (op.data.length !== op.length) throw new EncodeError(`${field}: data has ${op.data.length} bytes, length says ${op.length}`, { field });
        return { op: op.op, offset: BigInt(op.offset), length: op.length, data: op.data, fua: op.fua };
      case 'zero':
        checkRange(op.offset, op.length, field);
        return op.noHole
          ? { op: op.op, offset: BigInt(op.offset), length: op.length, fua: op.fua, noHole: true }
          : { op: op.op, offset: BigInt(op.offset), length: op.length, fua: op.fua };
      case 'trim':
        checkRange(op.offset, op.length, field);
        return { op: op.op, offset: BigInt(op.offset), length: op.length, fua: op.fua };
      case 'flush':
        return { op: op.op };
      default:
        throw new EncodeError(`${field}: unknown op`, { field });
    }
  });
  // Serialized straight into a buffer of the (conservative) bound: BSON.serialize would build the document in
  // its internal buffer and copy it out again, a second copy of every written byte.
  const out = Buffer.allocUnsafe(recordEncodedBound(rec.ops));
  const end = BSON.serializeWithBufferAndIndex({ v: WRITE_RECORD_VERSION, disk: rec.disk, ts: rec.ts, ops }, out);
  const bytes = out.subarray(0, end + 1);
  // ok: the bound above is conservative; this is the belt to its braces.
  if (bytes.length > MAX_RECORD_BYTES) throw new EncodeError(`record is ${bytes.length} bytes, more than ${MAX_RECORD_BYTES}`);
  return bytes;
}

/** Deserializes untrusted BSON into a plain object, as {@link CorruptError} on failure. */
export function deserializeUntrusted(bytes: Uint8Array, maxBytes: number): Record<string, unknown> {
  if (bytes.length > maxBytes) throw new CorruptError(WireCorruptKind.TooLarge, `document is ${bytes.length} bytes, more than ${maxBytes}`);
  try {
    return BSON.deserialize(bytes, { useBigInt64: true, promoteBuffers: true, validation: { utf8: true } }) as Record<string, unknown>;
  } catch (cause) {
    throw new CorruptError(WireCorruptKind.NotBson, 'not a valid BSON document', { cause });
  }
}

function readLength(raw: unknown, field: string, op: number): number {
  const n = toSafeUint(raw, WireCorruptKind.Length, field, op);
  if (n > MAX_OP_LENGTH) throw new CorruptError(WireCorruptKind.Length, `${field} ${n} is larger than ${MAX_OP_LENGTH}`, { field, op });
  return n;
}

function readFlag(raw: unknown, field: string, op: number): boolean {
  if (typeof raw !== 'boolean') throw new CorruptError(WireCorruptKind.Flag, `${field} is ${describe(raw)}, expected a boolean`, { field, op });
  return raw;
}

function decodeOp(raw: unknown, i: number): WriteOp {
  const f = (name: string): string => `ops[${i}].${name}`;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CorruptError(WireCorruptKind.OpKind, `ops[${i}] is ${describe(raw)}, expected a document`, { field: `ops[${i}]`, op: i });
  }
  const d = raw as Record<string, unknown>;
  const kind = d['op'];
  if (kind === 'flush') return Object.freeze({ op: 'flush' });
  if (kind !== 'write' && kind !== 'zero' && kind !== 'trim') {
    throw new CorruptError(WireCorruptKind.OpKind, `${f('op')} is not one of write, zero, trim, flush`, { field: f('op'), op: i });
  }
  const offset = toSafeUint(d['offset'], WireCorruptKind.Offset, f('offset'), i);
  const length = readLength(d['length'], f('length'), i);
  if (!Number.isSafeInteger(offset + length)) {
    throw new CorruptError(WireCorruptKind.Offset, `ops[${i}] ends beyond 2^53`, { field: f('offset'), op: i });
  }
  const fua = d['fua'] === undefined ? false : readFlag(d['fua'], f('fua'), i);
  if (kind === 'write') {
    const data = d['data'];
    if (!(data instanceof Uint8Array)) throw new CorruptError(WireCorruptKind.Data, `${f('data')} is ${describe(data)}, expected binary`, { field: f('data'), op: i });
    if (data.length !== length) {
      throw new CorruptError(WireCorruptKind.Data, `${f('data')} has ${data.length} bytes, length says ${length}`, { field: f('data'), op: i });
    }
    return Object.freeze({ op: 'write', offset, length, data, fua });
  }
  if (kind === 'zero') {
    const noHole = d['noHole'] === undefined ? false : readFlag(d['noHole'], f('noHole'), i);
    return Object.freeze(noHole ? { op: 'zero', offset, length, fua, noHole } : { op: 'zero', offset, length, fua });
  }
  return Object.freeze({ op: 'trim', offset, length, fua });
}

/**
 * Decodes and validates a write record from untrusted bytes. Only ever throws {@link CorruptError}: too large,
 * not BSON, wrong version, bad disk id or timestamp, too many ops, an unknown op, an offset that is negative or
 * not a safe integer, a length outside int32, write data whose size differs from its length.
 */
export function decodeWriteRecord(bytes: Uint8Array): WriteRecord {
  const d = deserializeUntrusted(bytes, MAX_RECORD_BYTES);
  const v = d['v'];
  if (v !== WRITE_RECORD_VERSION) throw new CorruptError(WireCorruptKind.Version, `record version ${typeof v === 'number' ? v : describe(v)} is not 1`, { field: 'v' });
  const disk = d['disk'];
  if (!isDiskId(disk)) throw new CorruptError(WireCorruptKind.DiskId, 'record disk is not a valid disk id', { field: 'disk' });
  const ts = d['ts'];
  if (!(ts instanceof Date) || Number.isNaN(ts.getTime())) throw new CorruptError(WireCorruptKind.Timestamp, `record ts is ${describe(ts)}, expected a date`, { field: 'ts' });
  const rawOps = d['ops'];
  if (!Array.isArray(rawOps)) throw new CorruptError(WireCorruptKind.OpCount, `record ops is ${describe(rawOps)}, expected an array`, { field: 'ops' });
  if (rawOps.length > MAX_OPS_PER_RECORD) {
    throw new CorruptError(WireCorruptKind.OpCount, `record has ${rawOps.length} ops, more than ${MAX_OPS_PER_RECORD}`, { field: 'ops' });
  }
  const ops = Object.freeze(rawOps.map((op: unknown, i: number) => decodeOp(op, i)));
  return Object.freeze({ v: WRITE_RECORD_VERSION, disk, ts, ops });
}

/**
 * Splits a write into `write` ops of at most `chunk` (default MAX_WRITE_CHUNK_BYTES) bytes each, in ascending
 * offset order. The data arrays are views into `data` (no copy). Every piece carries `fua` (a FUA write is
 * stable only when all its pieces are).
 */
export function splitWrite(offset: number, data: Uint8Array, fua: boolean, chunk = MAX_WRITE_CHUNK_BYTES): WriteDataOp[] {
  if (!(chunk > 0 && chunk <= MAX_WRITE_CHUNK_BYTES)) throw new EncodeError(`chunk ${chunk} is not in 1..${MAX_WRITE_CHUNK_BYTES}`);
  const out: WriteDataOp[] = [];
  if (data.length === 0) return [{ op: 'write', offset, length: 0, data, fua }];
  for (let at = 0; at < data.length; at += chunk) {
    const piece = data.subarray(at, Math.min(at + chunk, data.length));
    out.push({ op: 'write', offset: offset + at, length: piece.length, data: piece, fua });
  }
  return out;
}

/** Splits a zero or trim range into ops of at most MAX_RANGE_CHUNK_BYTES bytes (int32 lengths). */
export function splitRange(kind: 'zero' | 'trim', offset: number, length: number, fua: boolean, noHole = false): (WriteZeroOp | WriteTrimOp)[] {
  const out: (WriteZeroOp | WriteTrimOp)[] = [];
  let at = 0;
  do {
    const n = Math.min(MAX_RANGE_CHUNK_BYTES, length - at);
    const o = offset + at;
    out.push(kind === 'trim' ? { op: 'trim', offset: o, length: n, fua } : noHole ? { op: 'zero', offset: o, length: n, fua, noHole } : { op: 'zero', offset: o, length: n, fua });
    at += n;
  } while (at < length);
  return out;
}

/**
 * Groups ops, in order, into as few record-sized batches as possible: each batch has at most MAX_OPS_PER_RECORD
 * ops and an encoded bound of at most MAX_RECORD_BYTES. A write op larger than one record must be split first
 * ({@link splitWrite}); it throws {@link EncodeError} otherwise.
 */
export function batchOps(ops: readonly WriteOp[]): WriteOp[][] {
  const out: WriteOp[][] = [];
  let cur: WriteOp[] = [];
  let size = RECORD_OVERHEAD_BYTES;
  for (const op of ops) {
    const n = opEncodedBound(op);
    if (RECORD_OVERHEAD_BYTES + n > MAX_RECORD_BYTES) throw new EncodeError('one op is larger than a record; split it first');
    if (cur.length > 0 && (size + n > MAX_RECORD_BYTES || cur.length >= MAX_OPS_PER_RECORD)) {
      out.push(cur);
      cur = [];
      size = RECORD_OVERHEAD_BYTES;
    }
    cur.push(op);
    size += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}
