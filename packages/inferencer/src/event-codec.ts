/**
 * The BSON form of a file-system event: one document per message of GAMMARAY_EVENTS.
 *
 * | field        | BSON type       | notes                                                          |
 * |--------------|-----------------|----------------------------------------------------------------|
 * | v            | int32           | {@link EVENT_VERSION}                                          |
 * | disk         | string          | disk id                                                        |
 * | kind         | string          | {@link EventKind}                                              |
 * | path         | string          | "" for disk-level kinds                                        |
 * | ino          | int64           |                                                                |
 * | type         | string          | file type, "" for disk-level kinds                             |
 * | seq, idx     | int64, int32    | the event's identity                                           |
 * | ts           | datetime        | capture time of the write that completed the change            |
 * | stat         | document        | mode, uid, gid, nlink, flags int32/int64; size int64; times {sec, nsec} |
 * | parent, fromParent | document  | {ino: int64, stat}                                             |
 * | from, target | string          |                                                                |
 * | rdev         | document        | create of chr/blk: {major, minor} int32                        |
 * | exchange     | bool            | rename: the two paths were exchanged                           |
 * | offset, length | int64         | write                                                          |
 * | data         | binary (0)      | write, up to the inline limit                                  |
 * | dataOmitted  | bool            |                                                                |
 * | oldSize, size | int64          | truncate                                                       |
 * | changes      | document        | attr: {name: {old, new}}                                       |
 * | files, dirs  | int64           | snapshot                                                       |
 * | partition    | int32           | snapshot, on a partitioned disk: the partition followed        |
 * | lv           | string          | snapshot, in an LVM logical volume: `vg/lv`                    |
 * | corruptKind, message | string  | corrupt                                                        |
 * | block        | int64           | corrupt                                                        |
 * | reason       | string          | resync                                                         |
 *
 * Fields that may exceed 2^31 (sizes, offsets, inode and block numbers, sequences, counts) are always int64, so a
 * consumer sees one type per field; any other integer is int32 when it fits and int64 otherwise. Absent optional
 * fields are omitted (never null).
 */
import { BSON } from 'bson';
import { FileType, type DeviceNumber } from '@gammaray/ext4';
import { CorruptError, EncodeError, MAX_EVENT_BYTES, WireCorruptKind, isDiskId } from '@gammaray/wire';
import { EVENT_VERSION, EventKind, type AttrChange, type FsEvent, type FsStat, type FsTime, type ParentRef } from './events.js';
import { NodeStat } from './node.js';

/** Top-level fields always written as int64. */
const INT64_FIELDS: ReadonlySet<string> = new Set(['seq', 'ino', 'offset', 'length', 'size', 'oldSize', 'block', 'files', 'dirs']);
const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const EVENT_KINDS: ReadonlySet<string> = new Set(Object.values(EventKind));
const FILE_TYPES: ReadonlySet<string> = new Set(['', ...Object.values(FileType)]);
/** Deepest nesting an event document has (event > changes > name > value document); anything deeper is refused. */
const MAX_DEPTH = 8;

/** An integer as BSON wants it: int64 (bigint) when asked or when it does not fit int32. */
function bsonInt(n: number, int64: boolean): number | bigint {
  if (!Number.isInteger(n)) return n;
  if (!Number.isSafeInteger(n)) throw new EncodeError(`${n} is not a safe integer`);
  return int64 || n < INT32_MIN || n > INT32_MAX ? BigInt(n) : n;
}

/** Recursively prepares a value: integers as above, undefined dropped, dates and binaries as they are. */
function toBson(value: unknown, int64: boolean, depth: number): unknown {
  if (depth > MAX_DEPTH) throw new EncodeError('event nests too deeply');
  if (typeof value === 'number') return bsonInt(value, int64);
  if (value === null || typeof value !== 'object' || value instanceof Date || value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map((v: unknown) => toBson(v, false, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === undefined) continue;
    out[k] = toBson(v, k === 'size' || k === 'ino', depth + 1);
  }
  return out;
}

/**
 * Encodes an event as BSON. Throws {@link EncodeError} when a number is not a safe integer, a field name is not
 * encodable (a NUL byte), or the document is larger than MAX_EVENT_BYTES.
 *
 * Written by hand for the values events hold (strings, numbers, booleans, null, dates, bytes, plain objects and
 * arrays): a generic walk plus `BSON.serialize` cost more than a third of the engine's time. The bytes are the
 * same as {@link encodeEventGeneric}'s (the `bson` package's), which still encodes anything else.
 */
export function encodeEvent(e: FsEvent): Uint8Array {
  const w = writer;
  w.start = w.pos;
  let ok: boolean;
  try {
    ok = writeDoc(w, e as unknown as Record<string, unknown>, 0);
  } catch (err) {
    w.pos = w.start;
    if (err === NUL_KEY) throw Object.assign(new EncodeError(`event ${e.disk}:${e.seq}:${e.idx} cannot be encoded as BSON`), { cause: new Error('a field name holds a NUL byte') });
    throw err;
  }
  const { start, pos } = w;
  if (!ok || pos - start > MAX_EVENT_BYTES) {
    w.pos = start;
    if (!ok) return encodeEventGeneric(e);
    throw new EncodeError(`event is ${pos - start} bytes, more than ${MAX_EVENT_BYTES}`, { field: 'data' });
  }
  return w.buf.subarray(start, pos);
}

/**
 * Where {@link encodeEvent} writes: events are written one after the other into a shared pool and handed out
 * as views of it (as Node's own small buffers are), so an event costs neither an allocation nor a copy. A new
 * pool is started when one is full; the old one lives on while views of it do.
 */
interface Writer {
  buf: Buffer;
  /** Where the event being written starts. */
  start: number;
  pos: number;
}
const POOL_BYTES = 256 * 1024;
const writer: Writer = { buf: Buffer.allocUnsafe(POOL_BYTES), start: 0, pos: 0 };
const NUL_KEY = Symbol('a field name with a NUL byte');
const TWO_32 = 0x1_0000_0000;

/** Room for `n` more bytes: else the event so far moves to a new pool. */
function ensure(w: Writer, n: number): void {
  if (w.pos + n <= w.buf.length) return;
  const used = w.pos - w.start;
  const next = Buffer.allocUnsafe(Math.max(POOL_BYTES, 2 * (used + n)));
  w.buf.copy(next, 0, w.start, w.pos);
  w.buf = next;
  w.start = 0;
  w.pos = used;
}

/** Top-level fields written as int64 whatever their value (a switch: faster than a set lookup). */
function topInt64(k: string): boolean {
  switch (k) {
    case 'seq':
    case 'ino':
    case 'offset':
    case 'length':
    case 'size':
    case 'oldSize':
    case 'block':
    case 'files':
    case 'dirs':
      return true;
    default:
      return false;
  }
}

/** Writes a BSON cstring (a field name). */
function writeKey(w: Writer, k: string): void {
  const n = k.length;
  ensure(w, 3 * n + 1);
  const buf = w.buf;
  let pos = w.pos;
  let i = 0;
  for (; i < n; i++) {
    const c = k.charCodeAt(i);
    if (c === 0) throw NUL_KEY;
    if (c > 127) break;
    buf[pos++] = c;
  }
  if (i < n) {
    if (k.includes('\0')) throw NUL_KEY;
    pos = w.pos + buf.write(k, w.pos, 'utf8');
  }
  buf[pos++] = 0;
  w.pos = pos;
}

function writeInt32(w: Writer, v: number): void {
  const buf = w.buf;
  let pos = w.pos;
  buf[pos++] = v & 0xff;
  buf[pos++] = (v >>> 8) & 0xff;
  buf[pos++] = (v >>> 16) & 0xff;
  buf[pos++] = (v >>> 24) & 0xff;
  w.pos = pos;
}

/** A safe integer as int64 little-endian (two's complement, as `bigint` would be). */
function writeInt64(w: Writer, v: number): void {
  writeInt32(w, v >>> 0);
  writeInt32(w, Math.floor(v / TWO_32) | 0);
}

/**
 * Writes the fields of `o` as a BSON document (length, elements, NUL). Integer fields written as int64 whatever
 * their value: at depth 0 (the event) those of {@link topInt64}, below it size and ino. False when a value is of
 * a kind the hand-written encoder leaves to the generic one.
 */
function writeDoc(w: Writer, o: Record<string, unknown>, depth: number): boolean {
  ensure(w, 5);
  // Relative to the event's start: ensure() may move the event to a new pool while the fields are written.
  const rel = w.pos - w.start;
  w.pos += 4;
  for (const k in o) {
    if (!Object.prototype.hasOwnProperty.call(o, k)) continue;
    // A toBSON method or a BSON type tag means something to the bson package: leave such objects to it.
    if (k === 'toBSON' || k === '_bsontype') return false;
    const v = o[k];
    if (v === undefined) continue;
    if (!writeElement(w, k, v, depth === 0 ? topInt64(k) : k === 'size' || k === 'ino', depth + 1)) return false;
  }
  ensure(w, 1);
  w.buf[w.pos++] = 0;
  endDoc(w, rel);
  return true;
}

/**
 * Writes the type byte and name of a document (0x03) or array (0x04) element and leaves room for its length;
 * returns where the document starts, relative to the event (see writeDoc).
 */
function beginDoc(w: Writer, type: number, k: string): number {
  ensure(w, 1);
  w.buf[w.pos++] = type;
  writeKey(w, k);
  ensure(w, 5);
  const rel = w.pos - w.start;
  w.pos += 4;
  return rel;
}

/** Ends the document begun at `rel`: its NUL and its length. */
function finishDoc(w: Writer, rel: number): void {
  ensure(w, 1);
  w.buf[w.pos++] = 0;
  endDoc(w, rel);
}

/** Writes the length of the document (or array) that starts `rel` bytes into the event. */
function endDoc(w: Writer, rel: number): void {
  const end = w.pos;
  w.pos = w.start + rel;
  writeInt32(w, end - w.pos);
  w.pos = end;
}

function writeElement(w: Writer, k: string, v: unknown, int64: boolean, depth: number): boolean {
  if (depth > MAX_DEPTH) throw new EncodeError('event nests too deeply');
  switch (typeof v) {
    case 'string': {
      ensure(w, 1);
      w.buf[w.pos++] = 0x02;
      writeKey(w, k);
      const n = v.length;
      ensure(w, 4 + 3 * n + 1);
      const buf = w.buf;
      const at = w.pos;
      let pos = at + 4;
      let i = 0;
      if (n <= 64) {
        for (; i < n; i++) {
          const c = v.charCodeAt(i);
          if (c > 127) break;
          buf[pos++] = c;
        }
      }
      if (i < n) pos = at + 4 + buf.write(v, at + 4, 'utf8');
      buf[pos++] = 0;
      w.pos = at;
      writeInt32(w, pos - at - 4);
      w.pos = pos;
      return true;
    }
    case 'number': {
      ensure(w, 1);
      const typeAt = w.pos++;
      if (Number.isInteger(v)) {
        if (!Number.isSafeInteger(v)) throw new EncodeError(`${v} is not a safe integer`);
        if (int64 || v < INT32_MIN || v > INT32_MAX) {
          w.buf[typeAt] = 0x12;
          writeKey(w, k);
          ensure(w, 8);
          writeInt64(w, v);
          return true;
        }
        if (!Object.is(v, -0)) {
          w.buf[typeAt] = 0x10;
          writeKey(w, k);
          ensure(w, 4);
          writeInt32(w, v);
          return true;
        }
      }
      w.buf[typeAt] = 0x01;
      writeKey(w, k);
      ensure(w, 8);
      w.pos = w.buf.writeDoubleLE(v, w.pos);
      return true;
    }
    case 'boolean':
      ensure(w, 1);
      w.buf[w.pos++] = 0x08;
      writeKey(w, k);
      ensure(w, 1);
      w.buf[w.pos++] = v ? 1 : 0;
      return true;
    case 'object': {
      if (v === null) {
        ensure(w, 1);
        w.buf[w.pos++] = 0x0a;
        writeKey(w, k);
        return true;
      }
      if (v instanceof Uint8Array) {
        ensure(w, 1);
        w.buf[w.pos++] = 0x05;
        writeKey(w, k);
        ensure(w, 5 + v.length);
        writeInt32(w, v.length);
        w.buf[w.pos++] = 0;
        w.buf.set(v, w.pos);
        w.pos += v.length;
        return true;
      }
      if (v instanceof Date) {
        ensure(w, 1);
        w.buf[w.pos++] = 0x09;
        writeKey(w, k);
        ensure(w, 8);
        const ms = v.getTime();
        writeInt64(w, Number.isSafeInteger(ms) ? ms : 0);
        return true;
      }
      if (Array.isArray(v)) {
        const rel = beginDoc(w, 0x04, k);
        for (let i = 0; i < v.length; i++) {
          const x: unknown = v[i];
          if (x === undefined) return false; // the generic encoder's choice is left to it
          if (!writeElement(w, String(i), x, false, depth + 1)) return false;
        }
        finishDoc(w, rel);
        return true;
      }
      if (v instanceof NodeStat) return writeStat(w, k, v);
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return false;
      ensure(w, 1);
      w.buf[w.pos++] = 0x03;
      writeKey(w, k);
      return writeDoc(w, v as Record<string, unknown>, depth);
    }
    default:
      return false;
  }
}

/** A field name as BSON writes it after the type byte: its bytes and a NUL. */
function cstring(k: string): Uint8Array {
  return Buffer.from(`${k}\0`, 'latin1');
}
const K_MODE = cstring('mode');
const K_UID = cstring('uid');
const K_GID = cstring('gid');
const K_SIZE = cstring('size');
const K_NLINK = cstring('nlink');
const K_ATIME = cstring('atime');
const K_MTIME = cstring('mtime');
const K_CTIME = cstring('ctime');
const K_FLAGS = cstring('flags');
const K_SEC = cstring('sec');
const K_NSEC = cstring('nsec');

/** A number element with a constant name, by the rules of writeElement (int32, int64 when asked or needed, else double). */
function writeNumber(w: Writer, key: Uint8Array, v: number, int64: boolean): void {
  ensure(w, 1 + key.length + 8);
  const typeAt = w.pos++;
  w.buf.set(key, w.pos);
  w.pos += key.length;
  if (Number.isInteger(v)) {
    if (!Number.isSafeInteger(v)) throw new EncodeError(`${v} is not a safe integer`);
    if (int64 || v < INT32_MIN || v > INT32_MAX) {
      w.buf[typeAt] = 0x12;
      writeInt64(w, v);
      return;
    }
    if (!Object.is(v, -0)) {
      w.buf[typeAt] = 0x10;
      writeInt32(w, v);
      return;
    }
  }
  w.buf[typeAt] = 0x01;
  w.pos = w.buf.writeDoubleLE(v, w.pos);
}

/** A time as the {sec, nsec} document the event format defines. */
function writeTime(w: Writer, key: Uint8Array, t: FsTime): void {
  ensure(w, 1 + key.length + 5);
  w.buf[w.pos++] = 0x03;
  w.buf.set(key, w.pos);
  w.pos += key.length;
  const rel = w.pos - w.start;
  w.pos += 4;
  writeNumber(w, K_SEC, t.sec, false);
  writeNumber(w, K_NSEC, t.nsec, false);
  finishDoc(w, rel);
}

/**
 * A stat the engine made ({@link NodeStat}: nine fields in a fixed order) as the document writeDoc would write
 * for it, without walking it: stats are about half of every create and write event's bytes.
 */
function writeStat(w: Writer, k: string, s: NodeStat): boolean {
  const rel = beginDoc(w, 0x03, k);
  writeNumber(w, K_MODE, s.mode, false);
  writeNumber(w, K_UID, s.uid, false);
  writeNumber(w, K_GID, s.gid, false);
  writeNumber(w, K_SIZE, s.size, true);
  writeNumber(w, K_NLINK, s.nlink, false);
  writeTime(w, K_ATIME, s.atime);
  writeTime(w, K_MTIME, s.mtime);
  writeTime(w, K_CTIME, s.ctime);
  writeNumber(w, K_FLAGS, s.flags, false);
  finishDoc(w, rel);
  return true;
}

/**
 * The generic encoder: each value prepared by a walk (integers as int64 where asked), then `BSON.serialize`.
 * The reference for {@link encodeEvent}'s bytes, and what encodes values of other kinds.
 */
export function encodeEventGeneric(e: FsEvent): Uint8Array {
  const doc: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (v === undefined) continue;
    doc[k] = toBson(v, INT64_FIELDS.has(k), 1);
  }
  let bytes: Uint8Array;
  try {
    bytes = BSON.serialize(doc, { ignoreUndefined: true, checkKeys: false });
  } catch (cause) {
    throw Object.assign(new EncodeError(`event ${e.disk}:${e.seq}:${e.idx} cannot be encoded as BSON`), { cause });
  }
  if (bytes.length > MAX_EVENT_BYTES) throw new EncodeError(`event is ${bytes.length} bytes, more than ${MAX_EVENT_BYTES}`, { field: 'data' });
  return bytes;
}

/** A bigint from BSON int64 back to a number, or CorruptError if it is not safe. */
function fromBson(value: unknown, field: string, depth: number): unknown {
  if (depth > MAX_DEPTH) throw new CorruptError(WireCorruptKind.Field, 'event nests too deeply', { field });
  if (typeof value === 'bigint') {
    if (value < BigInt(Number.MIN_SAFE_INTEGER) || value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new CorruptError(WireCorruptKind.Field, `${field} is not a safe integer`, { field });
    }
    return Number(value);
  }
  if (value === null || typeof value !== 'object' || value instanceof Date || value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map((v: unknown, i) => fromBson(v, `${field}[${i}]`, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = fromBson(v, `${field}.${k}`, depth + 1);
  return out;
}

function bad(field: string, expected: string): CorruptError {
  return new CorruptError(WireCorruptKind.Field, `${field} is not ${expected}`, { field });
}

function uint(d: Record<string, unknown>, k: string, field = k): number {
  const v = d[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(field, 'a non-negative integer');
  return v;
}

function optUint(d: Record<string, unknown>, k: string): number | undefined {
  return d[k] === undefined ? undefined : uint(d, k);
}

function optString(d: Record<string, unknown>, k: string): string | undefined {
  const v = d[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw bad(k, 'a string');
  return v;
}

function time(v: unknown, field: string): FsTime {
  if (v === null || typeof v !== 'object') throw bad(field, 'a {sec, nsec} document');
  const t = v as Record<string, unknown>;
  const sec = t['sec'];
  if (typeof sec !== 'number' || !Number.isSafeInteger(sec)) throw bad(`${field}.sec`, 'an integer');
  return Object.freeze({ sec, nsec: uint(t, 'nsec', `${field}.nsec`) });
}

function stat(v: unknown, field: string): FsStat {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(field, 'a document');
  const s = v as Record<string, unknown>;
  const n = (k: string): number => uint(s, k, `${field}.${k}`);
  return Object.freeze({
    mode: n('mode'),
    uid: n('uid'),
    gid: n('gid'),
    size: n('size'),
    nlink: n('nlink'),
    atime: time(s['atime'], `${field}.atime`),
    mtime: time(s['mtime'], `${field}.mtime`),
    ctime: time(s['ctime'], `${field}.ctime`),
    flags: n('flags'),
  });
}

function device(v: unknown, field: string): DeviceNumber {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(field, 'a {major, minor} document');
  const d = v as Record<string, unknown>;
  return Object.freeze({ major: uint(d, 'major', `${field}.major`), minor: uint(d, 'minor', `${field}.minor`) });
}

function parent(v: unknown, field: string): ParentRef {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(field, 'a document');
  const p = v as Record<string, unknown>;
  return Object.freeze({ ino: uint(p, 'ino', `${field}.ino`), stat: stat(p['stat'], `${field}.stat`) });
}

function changes(v: unknown): Record<string, AttrChange> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('changes', 'a document');
  const out: Record<string, AttrChange> = {};
  for (const [k, c] of Object.entries(v as Record<string, unknown>)) {
    if (c === null || typeof c !== 'object' || Array.isArray(c)) throw bad(`changes.${k}`, 'an {old, new} document');
    const ch = c as Record<string, unknown>;
    out[k] = Object.freeze({ old: ch['old'] ?? null, new: ch['new'] ?? null });
  }
  return Object.freeze(out);
}

/**
 * Decodes and validates an event from untrusted bytes (a message of GAMMARAY_EVENTS). Only ever throws
 * {@link CorruptError}: too large, not BSON, another version, an unknown kind, a field of the wrong type or an
 * integer beyond 2^53. Unknown fields are dropped.
 */
export function decodeEvent(bytes: Uint8Array): FsEvent {
  if (bytes.length > MAX_EVENT_BYTES) throw new CorruptError(WireCorruptKind.TooLarge, `event is ${bytes.length} bytes, more than ${MAX_EVENT_BYTES}`);
  let raw: Record<string, unknown>;
  try {
    raw = BSON.deserialize(bytes, { useBigInt64: true, promoteBuffers: true, validation: { utf8: true } }) as Record<string, unknown>;
  } catch (cause) {
    throw new CorruptError(WireCorruptKind.NotBson, 'event is not a valid BSON document', { cause });
  }
  const d = fromBson(raw, 'event', 0) as Record<string, unknown>;
  if (d['v'] !== EVENT_VERSION) throw new CorruptError(WireCorruptKind.Version, `event version is not ${EVENT_VERSION}`, { field: 'v' });
  const disk = d['disk'];
  if (!isDiskId(disk)) throw new CorruptError(WireCorruptKind.DiskId, 'event disk is not a valid disk id', { field: 'disk' });
  const kind = d['kind'];
  if (typeof kind !== 'string' || !EVENT_KINDS.has(kind)) throw bad('kind', 'a known event kind');
  const ts = d['ts'];
  if (!(ts instanceof Date) || Number.isNaN(ts.getTime())) throw new CorruptError(WireCorruptKind.Timestamp, 'event ts is not a date', { field: 'ts' });
  const path = optString(d, 'path') ?? '';
  const type = optString(d, 'type') ?? '';
  if (!FILE_TYPES.has(type)) throw bad('type', 'a file type');
  const data = d['data'];
  if (data !== undefined && !(data instanceof Uint8Array)) throw bad('data', 'binary');
  const dataOmitted = d['dataOmitted'];
  if (dataOmitted !== undefined && typeof dataOmitted !== 'boolean') throw bad('dataOmitted', 'a boolean');
  const exchange = d['exchange'];
  if (exchange !== undefined && typeof exchange !== 'boolean') throw bad('exchange', 'a boolean');
  const e: Record<string, unknown> = {
    v: EVENT_VERSION,
    disk,
    kind,
    path,
    ino: uint(d, 'ino'),
    type,
    seq: uint(d, 'seq'),
    idx: uint(d, 'idx'),
    ts,
    stat: d['stat'] === undefined ? undefined : stat(d['stat'], 'stat'),
    parent: d['parent'] === undefined ? undefined : parent(d['parent'], 'parent'),
    fromParent: d['fromParent'] === undefined ? undefined : parent(d['fromParent'], 'fromParent'),
    from: optString(d, 'from'),
    exchange,
    target: optString(d, 'target'),
    rdev: d['rdev'] === undefined ? undefined : device(d['rdev'], 'rdev'),
    offset: optUint(d, 'offset'),
    length: optUint(d, 'length'),
    data,
    dataOmitted,
    oldSize: optUint(d, 'oldSize'),
    size: optUint(d, 'size'),
    changes: d['changes'] === undefined ? undefined : changes(d['changes']),
    files: optUint(d, 'files'),
    dirs: optUint(d, 'dirs'),
    partition: optUint(d, 'partition'),
    lv: optString(d, 'lv'),
    corruptKind: optString(d, 'corruptKind'),
    message: optString(d, 'message'),
    block: optUint(d, 'block'),
    reason: optString(d, 'reason'),
  };
  for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k];
  return Object.freeze(e) as unknown as FsEvent; // ok: every field was checked against FsEvent above
}
