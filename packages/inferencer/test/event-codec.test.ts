import { execFileSync } from 'node:child_process';
import { BSON } from 'bson';
import { describe, expect, it } from 'vitest';
import { CorruptError, EncodeError, MAX_EVENT_BYTES } from '@gammaray/wire';
import { decodeEvent, encodeEvent, encodeEventGeneric } from '../src/event-codec.js';
import type { FsEvent, FsStat } from '../src/events.js';
import { NodeStat } from '../src/node.js';

const stat: FsStat = {
  mode: 0o644,
  uid: 1000,
  gid: 1000,
  size: 5 * 2 ** 32,
  nlink: 1,
  atime: { sec: 1_700_000_000, nsec: 1 },
  mtime: { sec: 1_700_000_001, nsec: 999_999_999 },
  ctime: { sec: -5, nsec: 0 },
  flags: 0x80000,
};
const write: FsEvent = {
  v: 1,
  disk: 'vm1',
  kind: 'write',
  path: '/home/é/f\\xff',
  ino: 12,
  type: 'file',
  seq: 2 ** 33 + 7,
  idx: 2,
  ts: new Date('2024-05-06T07:08:09.123Z'),
  stat,
  offset: 4096,
  length: 3,
  data: new Uint8Array([1, 2, 3]),
};

describe('event codec', () => {
  it('round-trips an event, omitting absent fields', () => {
    const back = decodeEvent(encodeEvent(write));
    expect(back).toEqual({ ...write, data: Buffer.from([1, 2, 3]) });
    const raw = BSON.deserialize(encodeEvent({ ...write, data: undefined, dataOmitted: true }));
    expect('data' in raw).toBe(false);
    expect(raw['dataOmitted']).toBe(true);
  });

  it('round-trips the device number of a create of a device as {major, minor}', () => {
    const create = { ...write, kind: 'create', type: 'chr', rdev: { major: 1, minor: 1 }, offset: undefined, length: undefined, data: undefined } as FsEvent;
    expect(decodeEvent(encodeEvent(create))).toEqual(create);
    expect(BSON.deserialize(encodeEvent(create))['rdev']).toEqual({ major: 1, minor: 1 });
  });

  it('writes sizes, offsets, sequences and inode numbers as int64 and small counters as int32', () => {
    const raw = BSON.deserialize(encodeEvent(write), { useBigInt64: true });
    for (const k of ['seq', 'ino', 'offset', 'length']) expect(typeof raw[k]).toBe('bigint');
    expect(typeof raw['idx']).toBe('number');
    expect(raw['stat'].size).toBe(5n * 2n ** 32n);
    expect(typeof raw['stat'].mode).toBe('number');
    expect(raw['ts']).toBeInstanceOf(Date);
  });

  it('is decoded by an independent BSON implementation (Debian python3-bson)', () => {
    const script = [
      'import bson, sys, json',
      'd = bson.decode(bytes.fromhex(sys.stdin.read()))',
      'print(json.dumps({"path": d["path"], "seq": d["seq"], "ts": d["ts"].isoformat(), "data": d["data"].hex(),',
      '  "size": d["stat"]["size"], "types": {k: type(v).__name__ for k, v in d.items()}}))',
    ].join('\n');
    const py = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: Buffer.from(encodeEvent(write)).toString('hex') }).toString());
    expect(py).toMatchObject({ path: write.path, seq: write.seq, data: '010203', size: 5 * 2 ** 32 });
    expect(py.ts.startsWith('2024-05-06T07:08:09.123')).toBe(true);
    expect(py.types).toMatchObject({ seq: 'Int64', ino: 'Int64', idx: 'int', data: 'bytes', ts: 'datetime' });
  });

  it.each<[string, FsEvent]>([
    ['a write', write],
    ['a write without data', { ...write, data: undefined, dataOmitted: true }],
    ['a create with parent and target', { ...write, kind: 'create', type: 'symlink', target: 'ü/'.repeat(40), parent: { ino: 2, stat: { ...stat, size: 0 } } } as FsEvent],
    ['a rename with both parents', { ...write, kind: 'rename', from: '/a', parent: { ino: 2 ** 40, stat }, fromParent: { ino: 3, stat } } as FsEvent],
    ['an exchange', { ...write, kind: 'rename', from: '/b', exchange: true, parent: { ino: 2, stat } } as FsEvent],
    ['a create of a device', { ...write, kind: 'create', type: 'blk', rdev: { major: 4095, minor: 0xfffff }, parent: { ino: 2, stat } } as FsEvent],
    [
      'an attr with every kind of change value',
      {
        ...write,
        kind: 'attr',
        changes: {
          mode: { old: 0o644, new: 0o600 },
          mtime: { old: { sec: 1, nsec: 2 }, new: { sec: -(2 ** 40), nsec: 0 } },
          'xattr.user.a': { old: null, new: 'ff00' },
          odd: { old: -0, new: 1.5 },
          list: { old: [1, 2 ** 40, 'x', null, { size: 1, ino: 2 }], new: [] },
          flag: { old: true, new: false },
        },
      } as FsEvent,
    ],
    ['a corrupt with a long message', { ...write, kind: 'corrupt', corruptKind: 'InodeField', message: 'm\u0000ä'.repeat(500), block: 2 ** 50 } as FsEvent],
    ['a snapshot', { ...write, kind: 'snapshot', path: '', ino: 0, type: '', files: 0, dirs: 2 ** 31, stat: undefined, offset: undefined, length: undefined, data: undefined } as FsEvent],
    ['an invalid date and a lone surrogate', { ...write, ts: new Date(Number.NaN), path: '/a\ud800b' } as FsEvent],
  ])('writes %s byte for byte as the bson package does', (_name, e) => {
    expect(Buffer.from(encodeEvent(e)).equals(Buffer.from(encodeEventGeneric(e)))).toBe(true);
  });

  it.each<[string, FsStat]>([
    ['an ordinary stat', stat],
    ['small and zero values', { ...stat, size: 0, mode: 0, ctime: { sec: 0, nsec: 0 } }],
    ['values past int32 and negative times', { ...stat, uid: 2 ** 32 - 1, gid: 2 ** 31, flags: 2 ** 31 + 5, nlink: 70_000, atime: { sec: -(2 ** 40), nsec: 5 }, mtime: { sec: 2 ** 33, nsec: 0 } }],
    ['a negative zero and a fraction', { ...stat, mode: -0, nlink: 1.5 }],
  ])('writes an engine-made stat (NodeStat, written without a walk) with %s as the bson package does', (_name, s) => {
    const ns = new NodeStat(s.mode, s.uid, s.gid, s.size, s.nlink, s.atime, s.mtime, s.ctime, s.flags);
    for (const e of [{ ...write, stat: ns }, { ...write, kind: 'create', parent: { ino: 2, stat: ns }, stat: ns } as FsEvent]) {
      expect(Buffer.from(encodeEvent(e)).equals(Buffer.from(encodeEventGeneric(e)))).toBe(true);
      expect(Buffer.from(encodeEvent(e)).equals(Buffer.from(encodeEvent({ ...e, stat: { ...s } })))).toBe(true);
    }
    expect(() => encodeEvent({ ...write, stat: new NodeStat(s.mode, s.uid, s.gid, 2 ** 60, s.nlink, s.atime, s.mtime, s.ctime, s.flags) })).toThrow(EncodeError);
  });

  it('writes events of every size one after the other as the bson package does (across its output pools)', () => {
    const out: [Uint8Array, FsEvent][] = [];
    for (let i = 0; i < 400; i++) {
      const e = { ...write, idx: i, path: `/d/${'x'.repeat(i % 300)}`, data: new Uint8Array((i * 7919) % 70_000).fill(i & 0xff), parent: { ino: i, stat } } as FsEvent;
      out.push([encodeEvent(e), e]);
    }
    // Earlier results must stay intact while later events are written.
    for (const [bytes, e] of out) expect(Buffer.from(bytes).equals(Buffer.from(encodeEventGeneric(e)))).toBe(true);
  });

  it('refuses what the bson package refuses: unsafe integers, NUL in a field name, too deep', () => {
    expect(() => encodeEvent({ ...write, offset: 2 ** 60 })).toThrow(EncodeError);
    expect(() => encodeEvent({ ...write, kind: 'attr', changes: { 'a\u0000b': { old: 1, new: 2 } } } as FsEvent)).toThrow(EncodeError);
    expect(() => encodeEvent({ ...write, kind: 'attr', changes: { x: { old: { a: { b: { c: { d: { e: { f: 1 } } } } } }, new: 1 } } } as FsEvent)).toThrow(EncodeError);
  });

  it('refuses to encode an event larger than MAX_EVENT_BYTES as EncodeError', () => {
    expect(() => encodeEvent({ ...write, data: new Uint8Array(MAX_EVENT_BYTES) })).toThrow(EncodeError);
  });

  it.each([
    ['another version', { v: 2 }],
    ['an unknown kind', { kind: 'explode' }],
    ['a bad disk id', { disk: 'VM' }],
    ['a string seq', { seq: '1' }],
    ['a negative ino', { ino: -1 }],
    ['an unknown file type', { type: 'door' }],
    ['a stat without mode', { stat: { ...stat, mode: undefined } }],
    ['data that is not binary', { data: 'abc' }],
    ['an rdev that is not a document', { rdev: 257 }],
    ['an rdev without minor', { rdev: { major: 1 } }],
    ['an rdev with a negative major', { rdev: { major: -1, minor: 1 } }],
  ])('rejects %s as CorruptError', (_name, patch) => {
    const doc = { ...BSON.deserialize(encodeEvent(write)), ...patch };
    expect(() => decodeEvent(BSON.serialize(doc, { ignoreUndefined: true }))).toThrow(CorruptError);
  });

  it('rejects bytes that are not BSON and int64 beyond 2^53 as CorruptError', () => {
    expect(() => decodeEvent(new Uint8Array([1, 2, 3]))).toThrow(CorruptError);
    const doc = { ...BSON.deserialize(encodeEvent(write)), seq: 2n ** 60n };
    expect(() => decodeEvent(BSON.serialize(doc))).toThrow(CorruptError);
  });
});
