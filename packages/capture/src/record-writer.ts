import {
  EncodeError,
  MAX_OP_LENGTH,
  MAX_OPS_PER_RECORD,
  MAX_RECORD_BYTES,
  WRITE_RECORD_VERSION,
  isDiskId,
  type WriteOp,
} from '@gammaray/wire';

/**
 * The write record encoder of the capture hot path: the same bytes as `encodeWriteRecord` from @gammaray/wire
 * (the BSON the `bson` package writes for `{v, disk, ts, ops}`), written by hand for the one fixed shape. It
 * sizes the document exactly first, so every data byte is copied once, straight into the message, and it skips
 * the generic serializer's per-field type dispatch, which costs more than the copy for 4 KiB writes.
 *
 * Field order and types (see WriteRecord in @gammaray/wire):
 * ```
 * record: v int32 (0x10), disk string (0x02), ts datetime (0x09), ops array (0x04)
 * op:     op string, offset int64 (0x12), length int32 (0x10), data binary subtype 0 (0x05, writes only),
 *         fua bool (0x08), noHole bool (zero only, when true); a flush has only `op`
 * ```
 */

const T_STRING = 0x02;
const T_DOC = 0x03;
const T_ARRAY = 0x04;
const T_BINARY = 0x05;
const T_BOOL = 0x08;
const T_DATE = 0x09;
const T_INT32 = 0x10;
const T_INT64 = 0x12;

/** Element sizes: type byte + key + NUL + value. */
const E_V = 1 + 2 + 4;
const E_TS = 1 + 3 + 8;
const E_OFFSET = 1 + 7 + 8;
const E_LENGTH = 1 + 7 + 4;
const E_FUA = 1 + 4 + 1;
const E_NOHOLE = 1 + 7 + 1;
/** `op` string element for a kind of `n` characters. */
const eOp = (n: number): number => 1 + 3 + 4 + n + 1;
/** Document framing: int32 size + terminating NUL. */
const DOC = 4 + 1;

/** Decimal keys of array elements, cached (a record has at most MAX_OPS_PER_RECORD). */
const KEYS: string[] = [];
function keyOf(i: number): string {
  let k = KEYS[i];
  if (k === undefined) {
    k = String(i);
    if (i < MAX_OPS_PER_RECORD) KEYS[i] = k;
  }
  return k;
}

function checkRange(offset: number, length: number, i: number): void {
  const field = `ops[${i}]`;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new EncodeError(`${field}.offset ${offset} is not a non-negative safe integer`, { field });
  if (!Number.isInteger(length) || length < 0 || length > MAX_OP_LENGTH) throw new EncodeError(`${field}.length ${length} is not in 0..${MAX_OP_LENGTH}`, { field });
  if (!Number.isSafeInteger(offset + length)) throw new EncodeError(`${field} ends beyond 2^53`, { field });
}

/** Encoded size of one op document (without its array element header). */
function opDocSize(op: WriteOp, i: number): number {
  switch (op.op) {
    case 'write':
      checkRange(op.offset, op.length, i);
      if (op.data.length !== op.length) throw new EncodeError(`ops[${i}]: data has ${op.data.length} bytes, length says ${op.length}`, { field: `ops[${i}]` });
      return DOC + eOp(5) + E_OFFSET + E_LENGTH + (1 + 5 + 4 + 1 + op.length) + E_FUA;
    case 'zero':
      checkRange(op.offset, op.length, i);
      return DOC + eOp(4) + E_OFFSET + E_LENGTH + E_FUA + (op.noHole ? E_NOHOLE : 0);
    case 'trim':
      checkRange(op.offset, op.length, i);
      return DOC + eOp(4) + E_OFFSET + E_LENGTH + E_FUA;
    case 'flush':
      return DOC + eOp(5);
    default:
      throw new EncodeError(`ops[${i}]: unknown op`, { field: `ops[${i}]` });
  }
}

/** Exact encoded size of a record, validating every op on the way (throws EncodeError as encodeWriteRecord does). */
export function writeRecordSize(disk: string, ops: readonly WriteOp[]): number {
  if (!isDiskId(disk)) throw new EncodeError('record disk is not a valid disk id', { field: 'disk' });
  if (ops.length > MAX_OPS_PER_RECORD) throw new EncodeError(`record has ${ops.length} ops, more than ${MAX_OPS_PER_RECORD}`, { field: 'ops' });
  let arr = DOC;
  for (let i = 0; i < ops.length; i++) arr += 1 + keyOf(i).length + 1 + opDocSize(ops[i]!, i); // ok: i < length
  const size = DOC + E_V + (1 + 5 + 4 + disk.length + 1) + E_TS + (1 + 4) + arr;
  if (size > MAX_RECORD_BYTES) throw new EncodeError(`record is ${size} bytes, more than ${MAX_RECORD_BYTES}`, { field: 'ops' });
  return size;
}

/** Writes `s` (ASCII: disk ids, op kinds, keys) and its NUL at `at`; returns the next position. */
function cstring(buf: Buffer, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) buf[at++] = s.charCodeAt(i);
  buf[at++] = 0;
  return at;
}

function int64(buf: Buffer, at: number, n: number): number {
  // n is a non-negative safe integer (checked) or a date's milliseconds (may be negative): split exactly.
  const lo = n % 0x1_0000_0000;
  const hi = Math.floor(n / 0x1_0000_0000);
  buf.writeInt32LE(lo | 0, at);
  buf.writeInt32LE(hi | 0, at + 4);
  return at + 8;
}

function stringElement(buf: Buffer, at: number, key: string, value: string): number {
  buf[at++] = T_STRING;
  at = cstring(buf, at, key);
  buf.writeInt32LE(value.length + 1, at);
  return cstring(buf, at + 4, value);
}

/**
 * Encodes `{v: 1, disk, ts, ops}` as BSON, byte for byte what `encodeWriteRecord` returns for the same record.
 * Throws {@link EncodeError} on the same limits (disk id, op count, offsets and lengths, data length, size).
 * With `into` (large enough), the record is written at `into[offset]` and a view of it returned: a caller recycling
 * record buffers spares the garbage collector a megabyte per sequential write, and can leave room around it.
 */
export function writeRecord(disk: string, ts: Date, ops: readonly WriteOp[], into?: Buffer, offset = 0): Buffer {
  const size = writeRecordSize(disk, ops);
  const ms = ts.getTime();
  if (!Number.isSafeInteger(ms)) throw new EncodeError('record ts is not a valid date', { field: 'ts' });
  const buf = into && offset >= 0 && into.length >= offset + size ? into.subarray(offset, offset + size) : Buffer.allocUnsafe(size);
  buf.writeInt32LE(size, 0);
  let at = 4;
  buf[at++] = T_INT32;
  at = cstring(buf, at, 'v');
  buf.writeInt32LE(WRITE_RECORD_VERSION, at);
  at += 4;
  at = stringElement(buf, at, 'disk', disk);
  buf[at++] = T_DATE;
  at = cstring(buf, at, 'ts');
  // Dates are int64 ms; the split of a negative ms in int64() keeps two's complement right.
  at = int64(buf, at, ms);
  buf[at++] = T_ARRAY;
  at = cstring(buf, at, 'ops');
  const arrStart = at;
  at += 4;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!; // ok: i < length
    buf[at++] = T_DOC;
    at = cstring(buf, at, keyOf(i));
    const docStart = at;
    at += 4;
    at = stringElement(buf, at, 'op', op.op);
    if (op.op !== 'flush') {
      buf[at++] = T_INT64;
      at = cstring(buf, at, 'offset');
      at = int64(buf, at, op.offset);
      buf[at++] = T_INT32;
      at = cstring(buf, at, 'length');
      buf.writeInt32LE(op.length, at);
      at += 4;
      if (op.op === 'write') {
        buf[at++] = T_BINARY;
        at = cstring(buf, at, 'data');
        buf.writeInt32LE(op.length, at);
        buf[at + 4] = 0; // subtype 0, generic binary
        at += 5;
        buf.set(op.data, at);
        at += op.length;
      }
      buf[at++] = T_BOOL;
      at = cstring(buf, at, 'fua');
      buf[at++] = op.fua ? 1 : 0;
      if (op.op === 'zero' && op.noHole) {
        buf[at++] = T_BOOL;
        at = cstring(buf, at, 'noHole');
        buf[at++] = 1;
      }
    }
    buf[at++] = 0;
    buf.writeInt32LE(at - docStart, docStart);
  }
  buf[at++] = 0;
  buf.writeInt32LE(at - arrStart, arrStart);
  buf[at++] = 0;
  // ok: the size computation and the writes above describe the same layout; a mismatch is a bug here.
  if (at !== size) throw new EncodeError(`record writer produced ${at} bytes, expected ${size}`);
  return buf;
}
