import { describe, expect, it } from 'vitest';
import type { WatchedEvent } from '@gammaray/service-view';
import { eventJson, parseSince, textLine } from '../src/commands/follow.js';

const ts = new Date('2026-01-02T03:04:05.678Z');
const ev = (e: Partial<WatchedEvent['event']>, seq = 7): WatchedEvent => ({
  seq,
  subject: `gammaray.vm1.fs.${e.kind}`,
  event: { v: 1, disk: 'vm1', path: '', ino: 0, type: '', seq: 3, idx: 0, ts, kind: 'create', ...e } as WatchedEvent['event'],
});
const plain = (s: string) => s;

describe('gammaray follow lines', () => {
  it('prints STREAMSEQ TS KIND PATH DETAILS for each kind', () => {
    expect(textLine(ev({ kind: 'create', path: '/a', type: 'file' }), plain)).toBe('7 2026-01-02T03:04:05.678Z create /a file');
    expect(textLine(ev({ kind: 'create', path: '/l', type: 'symlink', target: '../x' }), plain)).toBe('7 2026-01-02T03:04:05.678Z create /l symlink -> ../x');
    expect(textLine(ev({ kind: 'create', path: '/tmp/mem', type: 'chr', rdev: { major: 1, minor: 1 } }), plain)).toBe('7 2026-01-02T03:04:05.678Z create /tmp/mem chr 1,1');
    expect(textLine(ev({ kind: 'create', path: '/n', type: 'blk', rdev: { major: 259, minor: 65536 } }), plain)).toBe('7 2026-01-02T03:04:05.678Z create /n blk 259,65536');
    expect(textLine(ev({ kind: 'rename', path: '/b', from: '/a', type: 'file' }), plain)).toBe('7 2026-01-02T03:04:05.678Z rename /b <- /a');
    expect(textLine(ev({ kind: 'write', path: '/a', type: 'file', offset: 4096, length: 10, dataOmitted: true }), plain)).toBe('7 2026-01-02T03:04:05.678Z write /a 4096+10 (data omitted)');
    expect(textLine(ev({ kind: 'truncate', path: '/a', type: 'file', oldSize: 9, size: 0 }), plain)).toBe('7 2026-01-02T03:04:05.678Z truncate /a 9 -> 0');
    expect(textLine(ev({ kind: 'attr', path: '/a', type: 'file', changes: { mode: { old: 420, new: 384 }, 'xattr.user.x': { old: null, new: '61' } } }), plain)).toBe('7 2026-01-02T03:04:05.678Z attr /a mode,xattr.user.x');
    expect(textLine(ev({ kind: 'snapshot', files: 3, dirs: 2 }), plain)).toBe('7 2026-01-02T03:04:05.678Z snapshot files=3 dirs=2');
    expect(textLine(ev({ kind: 'corrupt', corruptKind: 'DirEntryRecLen', message: 'bad', block: 12 }), plain)).toBe('7 2026-01-02T03:04:05.678Z corrupt DirEntryRecLen block 12: bad');
  });
  it('escapes control characters in names through the given function', () => {
    const line = textLine(ev({ kind: 'delete', path: '/a\nb', type: 'file' }), (s) => s.replace(/\n/g, '\\x0a'));
    expect(line).toBe('7 2026-01-02T03:04:05.678Z delete /a\\x0ab file');
  });
  it('prints JSON with the stream sequence, ISO time and base64 data', () => {
    const j = eventJson(ev({ kind: 'write', path: '/a', type: 'file', offset: 0, length: 3, data: new Uint8Array([104, 105, 10]) }, 42));
    expect(j).toMatchObject({ streamSeq: 42, kind: 'write', path: '/a', seq: 3, ts: '2026-01-02T03:04:05.678Z', data: 'aGkK' });
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });
});

describe('gammaray follow --since', () => {
  const now = Date.parse('2026-11-28T06:00:00Z');
  it('takes a duration ago in seconds, minutes, hours or days', () => {
    expect(parseSince('90s', now)?.toISOString()).toBe('2026-11-28T05:58:30.000Z');
    expect(parseSince('10m', now)?.toISOString()).toBe('2026-11-28T05:50:00.000Z');
    expect(parseSince('2h', now)?.toISOString()).toBe('2026-11-28T04:00:00.000Z');
    expect(parseSince('1d', now)?.toISOString()).toBe('2026-11-27T06:00:00.000Z');
  });
  it('takes an ISO 8601 time, with a zone or without (local time)', () => {
    expect(parseSince('2026-11-28T05:30:00Z')?.toISOString()).toBe('2026-11-28T05:30:00.000Z');
    expect(parseSince('2026-11-28T07:30:00.5+02:00')?.toISOString()).toBe('2026-11-28T05:30:00.500Z');
    expect(parseSince('2026-11-28T05:30')?.getTime()).toBe(new Date(2026, 10, 28, 5, 30).getTime());
  });
  it('refuses anything else', () => {
    for (const bad of ['', 'yesterday', '10', '10y', '-5m', '2026-13-01T00:00:00Z', 'Sat Nov 28 2026', '1e3s']) expect(parseSince(bad, now), bad).toBeUndefined();
  });
});

