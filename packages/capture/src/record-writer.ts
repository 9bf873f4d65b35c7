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
  const buf = into && offset >= 0 && into.length >= offset + size ? into.subarray(offset, offset + size) : Buffer.allocUnsafe(size);
  encode(disk, ts, ops, size, buf, Infinity, undefined);
  return buf;
}

/**
 * The same record as {@link writeRecord}, as pieces whose concatenation is those bytes, for a scatter write to the
 * socket: the data of each write op of at least `gatherMin` bytes is not copied but is a piece of its own (the
 * op's own `data`), and everything else is written at `into[offset]` onward, contiguously, the pieces of it being
 * views of `into`. So a 1 MiB write goes from the NBD receive buffer to the NATS socket without a copy in this
 * process. The caller must keep every gathered `data` unchanged until the pieces are written out.
 *
 * Throws {@link EncodeError} as writeRecord does, and a RangeError when `into` has too little room after `offset`
 * for the bytes that are not gathered ({@link recordPartsSlabBytes}).
 */
export function writeRecordParts(disk: string, ts: Date, ops: readonly WriteOp[], gatherMin: number, into: Buffer, offset: number): Buffer[] {
  const size = writeRecordSize(disk, ops);
  const own = size - gatheredBytes(ops, gatherMin);
  if (offset < 0 || into.length < offset + own) throw new RangeError(`record needs ${own} bytes at ${offset} of a ${into.length}-byte buffer`);
  const parts: Buffer[] = [];
  encode(disk, ts, ops, size, into.subarray(offset, offset + own), gatherMin, parts);
  return parts;
}

/** Bytes of a record's data that {@link writeRecordParts} gathers instead of copying. */
function gatheredBytes(ops: readonly WriteOp[], gatherMin: number): number {
  let n = 0;
  for (const op of ops) if (op.op === 'write' && op.length >= gatherMin) n += op.length;
  return n;
}

/** Bytes {@link writeRecordParts} writes into its buffer: the record less the data it gathers. */
export function recordPartsSlabBytes(disk: string, ops: readonly WriteOp[], gatherMin: number): number {
  return writeRecordSize(disk, ops) - gatheredBytes(ops, gatherMin);
}

/**
 * Writes the record of `size` bytes into `buf`, except the data of write ops of `gatherMin` bytes or more, which
 * go into `parts` between views of `buf` (`parts` undefined: nothing is gathered). Two cursors: `at` is the
 * position in the record (what the BSON lengths count), `p` the position in `buf`.
 */
function encode(disk: string, ts: Date, ops: readonly WriteOp[], size: number, buf: Buffer, gatherMin: number, parts: Buffer[] | undefined): void {
  const ms = ts.getTime();
  if (!Number.isSafeInteger(ms)) throw new EncodeError('record ts is not a valid date', { field: 'ts' });
  buf.writeInt32LE(size, 0);
  let p = 4;
  buf[p++] = T_INT32;
  p = cstring(buf, p, 'v');
  buf.writeInt32LE(WRITE_RECORD_VERSION, p);
  p += 4;
  p = stringElement(buf, p, 'disk', disk);
  buf[p++] = T_DATE;
  p = cstring(buf, p, 'ts');
  // Dates are int64 ms; the split of a negative ms in int64() keeps two's complement right.
  p = int64(buf, p, ms);
  buf[p++] = T_ARRAY;
  p = cstring(buf, p, 'ops');
  let skipped = 0; // data bytes gathered so far: at = p + skipped
  let pieceStart = 0;
  const arrStart = p;
  p += 4;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!; // ok: i < length
    buf[p++] = T_DOC;
    p = cstring(buf, p, keyOf(i));
    const docStart = p;
    const docSkipped = skipped;
    p += 4;
    p = stringElement(buf, p, 'op', op.op);
    if (op.op !== 'flush') {
      buf[p++] = T_INT64;
      p = cstring(buf, p, 'offset');
      p = int64(buf, p, op.offset);
      buf[p++] = T_INT32;
      p = cstring(buf, p, 'length');
      buf.writeInt32LE(op.length, p);
      p += 4;
      if (op.op === 'write') {
        buf[p++] = T_BINARY;
        p = cstring(buf, p, 'data');
        buf.writeInt32LE(op.length, p);
        buf[p + 4] = 0; // subtype 0, generic binary
        p += 5;
        if (parts !== undefined && op.length >= gatherMin) {
          parts.push(buf.subarray(pieceStart, p), Buffer.from(op.data.buffer, op.data.byteOffset, op.length));
          pieceStart = p;
          skipped += op.length;
        } else {
          buf.set(op.data, p);
          p += op.length;
        }
      }
      buf[p++] = T_BOOL;
      p = cstring(buf, p, 'fua');
      buf[p++] = op.fua ? 1 : 0;
      if (op.op === 'zero' && op.noHole) {
        buf[p++] = T_BOOL;
        p = cstring(buf, p, 'noHole');
        buf[p++] = 1;
      }
    }
    buf[p++] = 0;
    buf.writeInt32LE(p + skipped - (docStart + docSkipped), docStart);
  }
  buf[p++] = 0;
  buf.writeInt32LE(p + skipped - arrStart, arrStart);
  buf[p++] = 0;
  parts?.push(buf.subarray(pieceStart, p));
  // ok: the size computation and the writes above describe the same layout; a mismatch is a bug here.
  if (p + skipped !== size) throw new EncodeError(`record writer produced ${p + skipped} bytes, expected ${size}`);
}
