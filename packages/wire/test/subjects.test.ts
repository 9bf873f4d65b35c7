import { describe, expect, it } from 'vitest';
import {
  BlockReadErrorCode,
  CorruptError,
  DiskState,
  InvalidNameError,
  KV_DISKS,
  MAX_BLOCK_READ_BYTES,
  STREAM_EVENTS,
  STREAM_WRITES,
  WRITES_WILDCARD,
  WireCorruptKind,
  blocksSubject,
  decodeBlockReadReply,
  decodeBlockReadRequest,
  decodeDiskEntry,
  diskOfSubject,
  encodeBlockReadReply,
  encodeBlockReadRequest,
  encodeDiskEntry,
  eventsSubject,
  isDiskId,
  parseDiskId,
  writesSubject,
} from '../src/index.js';
import { BSON } from 'bson';

describe('names', () => {
  it('has the CLI.md names', () => {
    expect([STREAM_WRITES, STREAM_EVENTS, KV_DISKS, WRITES_WILDCARD]).toEqual(['GAMMARAY_WRITES', 'GAMMARAY_EVENTS', 'gammaray-disks', 'gammaray.*.writes']);
    expect(writesSubject('vm1')).toBe('gammaray.vm1.writes');
    expect(blocksSubject('vm1')).toBe('gammaray.vm1.blocks');
    expect(eventsSubject('vm1', 'create')).toBe('gammaray.vm1.fs.create');
    expect(diskOfSubject('gammaray.vm1.writes')).toBe('vm1');
    expect(diskOfSubject('other.vm1.writes')).toBeUndefined();
  });
  it('accepts [a-z0-9_-]{1,64} disk ids only', () => {
    for (const ok of ['a', 'vm-1_x', '0'.repeat(64)]) expect(isDiskId(ok)).toBe(true);
    for (const bad of ['', 'A', 'a.b', 'a*', 'a>', 'a b', '0'.repeat(65), 'é']) expect(isDiskId(bad)).toBe(false);
  });
  it('rejects a wildcard disk id with InvalidNameError naming the rule', () => {
    expect(() => parseDiskId('*')).toThrow(InvalidNameError);
    expect(() => writesSubject('a.>')).toThrow(/\[a-z0-9_-\]\{1,64\}/);
    expect(() => eventsSubject('vm', 'a.b')).toThrow(InvalidNameError);
  });
});

describe('block-read codec', () => {
  it('round-trips request and replies with int64 seq', () => {
    expect(decodeBlockReadRequest(encodeBlockReadRequest({ offset: 2 ** 40, length: 4096 }))).toEqual({ offset: 2 ** 40, length: 4096 });
    const r = decodeBlockReadReply(encodeBlockReadReply({ data: new Uint8Array([9, 8]), seq: 2 ** 35 }));
    expect('data' in r && Array.from(r.data)).toEqual([9, 8]);
    expect('seq' in r && r.seq).toBe(2 ** 35);
    expect(decodeBlockReadReply(encodeBlockReadReply({ error: { code: BlockReadErrorCode.OutOfRange, message: 'x' } }))).toEqual({ error: { code: 'OutOfRange', message: 'x' } });
  });
  it('rejects a request longer than MAX_BLOCK_READ_BYTES as Corrupt(Length)', () => {
    const e = (() => {
      try {
        decodeBlockReadRequest(BSON.serialize({ offset: 0n, length: MAX_BLOCK_READ_BYTES + 1 }));
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(CorruptError);
    expect((e as CorruptError).kind).toBe(WireCorruptKind.Length);
  });
});

describe('registry entry codec', () => {
  it('round-trips and validates', () => {
    const e = { disk: 'vm1', size: 2 ** 34, blockSize: 512, image: '/x.img', capture: 'cap-1', firstSeq: 7, state: DiskState.Attached };
    expect(decodeDiskEntry(encodeDiskEntry(e))).toEqual(e);
    expect(() => decodeDiskEntry(new TextEncoder().encode(JSON.stringify({ ...e, state: 'gone' })))).toThrow(CorruptError);
    expect(() => decodeDiskEntry(new TextEncoder().encode('{'))).toThrow(CorruptError);
  });

  it('carries an optional partition (absent stays absent), and refuses one that is not 0 to 4096', () => {
    const e = { disk: 'vm1', size: 2 ** 34, blockSize: 512, image: '/x.img', capture: 'cap-1', firstSeq: 7, state: DiskState.Attached };
    expect(decodeDiskEntry(encodeDiskEntry({ ...e, partition: 2 }))).toEqual({ ...e, partition: 2 });
    expect('partition' in decodeDiskEntry(encodeDiskEntry(e))).toBe(false);
    expect(decodeDiskEntry(encodeDiskEntry({ ...e, partition: 0 })).partition).toBe(0);
    for (const bad of [-1, 4097, 1.5, '2', null]) {
      expect(() => decodeDiskEntry(new TextEncoder().encode(JSON.stringify({ ...e, partition: bad }))), String(bad)).toThrow(/partition is not 0 to 4096/);
    }
    expect(() => encodeDiskEntry({ ...e, partition: -1 })).toThrow(/partition/);
  });

  it('carries a volume\'s source disk, which must be another valid disk id', () => {
    const v = { disk: 'vm1-boot', size: 2 ** 34, blockSize: 512, image: '/x.img', capture: 'cap-1', firstSeq: 7, state: DiskState.Attached, partition: 2, source: 'vm1' };
    expect(decodeDiskEntry(encodeDiskEntry(v))).toEqual(v);
    for (const bad of ['VM1', 'vm1-boot', '', 3]) {
      expect(() => decodeDiskEntry(new TextEncoder().encode(JSON.stringify({ ...v, source: bad }))), String(bad)).toThrow(/source is not another valid disk id/);
    }
    expect(() => encodeDiskEntry({ ...v, source: 'a b' })).toThrow(/source/);
  });
});
