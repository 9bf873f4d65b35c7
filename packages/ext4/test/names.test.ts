import { describe, expect, it } from 'vitest';
import { decodeName, encodeName, limits, splitPath } from '../src/index.js';

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const utf8 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));
const text = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

describe('decodeName', () => {
  it('keeps ASCII as is', () => {
    expect(decodeName(utf8('hello.txt'))).toBe('hello.txt');
    expect(decodeName(new Uint8Array(0))).toBe('');
  });

  it('keeps valid multi-byte UTF-8 (2, 3 and 4 byte sequences)', () => {
    for (const s of ['café', 'naïve-€', '日本語', 'emoji-😀', 'ß\u{10ffff}']) expect(decodeName(utf8(s))).toBe(s);
  });

  it('decodes a name that is a view into a larger buffer', () => {
    const big = utf8('xxécolexx');
    expect(decodeName(big.subarray(2, 8))).toBe('école');
    expect(decodeName(utf8('abcdef').subarray(1, 3))).toBe('bc');
  });

  it('turns each invalid byte into \\xNN (lowercase) and keeps the valid rest', () => {
    expect(decodeName(bytes(0xff))).toBe('\\xff');
    expect(decodeName(bytes(0x61, 0x80, 0x62))).toBe('a\\x80b'); // lone continuation byte
    expect(decodeName(bytes(0xc0, 0xaf))).toBe('\\xc0\\xaf'); // overlong '/'
    expect(decodeName(bytes(0xe0, 0x80, 0xaf))).toBe('\\xe0\\x80\\xaf'); // overlong 3-byte
    expect(decodeName(bytes(0xed, 0xa0, 0x80))).toBe('\\xed\\xa0\\x80'); // UTF-16 surrogate
    expect(decodeName(bytes(0xf4, 0x90, 0x80, 0x80))).toBe('\\xf4\\x90\\x80\\x80'); // above U+10FFFF
    expect(decodeName(bytes(0xe2, 0x82))).toBe('\\xe2\\x82'); // truncated sequence
    expect(decodeName(bytes(0xc3, 0xa9, 0xfe, 0xc3, 0xa9))).toBe('é\\xfeé');
    expect(decodeName(bytes(0xe2, 0x82, 0xac, 0xe2, 0x82))).toBe('€\\xe2\\x82');
  });
});

describe('encodeName', () => {
  it('encodes plain strings as UTF-8', () => {
    expect(text(encodeName('abc'))).toBe('abc');
    expect([...encodeName('é')]).toEqual([0xc3, 0xa9]);
  });

  it('turns \\xNN escapes back into single bytes', () => {
    expect([...encodeName('a\\xffb')]).toEqual([0x61, 0xff, 0x62]);
    expect([...encodeName('\\xe2\\x82')]).toEqual([0xe2, 0x82]);
    expect([...encodeName('é\\xfe')]).toEqual([0xc3, 0xa9, 0xfe]);
  });

  it('round-trips decodeName for valid and invalid names', () => {
    const names = [
      utf8('plain'),
      utf8('日本語 and spaces'),
      bytes(0xff, 0xfe, 0x00 + 0x41),
      bytes(0x80),
      bytes(0xc0, 0xaf, 0x2e),
      bytes(0xed, 0xa0, 0x80, 0x7a),
      bytes(0xf4, 0x90, 0x80, 0x80),
      bytes(0x61, 0xe2, 0x82, 0x62, 0xe2, 0x82, 0xac),
      Uint8Array.from({ length: 255 }, (_, i) => 0x80 + (i % 0x80)),
    ];
    for (const n of names) expect([...encodeName(decodeName(n))]).toEqual([...n]);
  });

  it('escapes a backslash that would read as an escape, so no two names print alike', () => {
    // A guest file literally named `\xff` and one named by the byte 0xff: the same string would let the one hide
    // the other from the inferred tree (a directory's entries are keyed by their printed names).
    expect(decodeName(utf8('\\xff'))).toBe('\\x5cxff');
    expect(decodeName(Uint8Array.of(0xff))).toBe('\\xff');
    expect(decodeName(utf8('\\x5c'))).toBe('\\x5cx5c');
    expect(decodeName(utf8('é\\xab'))).toBe('é\\x5cxab'); // the non-ASCII path
    expect(decodeName(Uint8Array.of(0xff, 0x5c, 0x78, 0x61, 0x62))).toBe('\\xff\\x5cxab'); // the lossy path
    // A backslash that reads as no escape stays as it is.
    for (const n of ['a\\b', 'end\\', '\\x', '\\xg1', '\\xAB', '\\x4']) expect(decodeName(utf8(n))).toBe(n);
    expect(decodeName(Uint8Array.of(0x5c, 0xff))).toBe('\\\\xff');
    // A byte-order mark is part of a name, wherever it is (TextDecoder strips a leading one by default).
    const bom = [0xef, 0xbb, 0xbf];
    expect(decodeName(Uint8Array.from([...bom, 0x2e]))).toBe('\ufeff.');
    expect(decodeName(Uint8Array.from([...bom, 0x70]))).not.toBe(decodeName(utf8('p')));
    expect(decodeName(Uint8Array.from([0xff, ...bom, 0x70]))).toBe('\\xff\ufeffp'); // the lossy path
    for (const b of [[...bom, 0x2e], [0xff, ...bom], [...bom, ...bom]]) expect([...encodeName(decodeName(Uint8Array.from(b)))]).toEqual(b);
    // Injective over every name of up to 4 bytes from an alphabet that can spell escapes, and round-trips.
    const alphabet = [0x5c, 0x78, 0x66, 0x35, 0xff, 0xc3, 0xa9, 0xef, 0xbb, 0xbf];
    const seen = new Map<string, string>();
    const walk = (prefix: number[]): void => {
      if (prefix.length > 0) {
        const b = Uint8Array.from(prefix);
        const d = decodeName(b);
        const key = prefix.join(',');
        expect(seen.get(d) ?? key, d).toBe(key);
        seen.set(d, key);
        expect([...encodeName(d)], d).toEqual(prefix);
      }
      if (prefix.length < 4) for (const c of alphabet) walk([...prefix, c]);
    };
    walk([]);
  });
});

describe('splitPath', () => {
  it('drops empty and "." components and keeps ".."', () => {
    expect(splitPath('/a//b/./c/')!.map(text)).toEqual(['a', 'b', 'c']);
    expect(splitPath('/')).toEqual([]);
    expect(splitPath('')).toEqual([]);
    expect(splitPath('a/../b')!.map(text)).toEqual(['a', '..', 'b']);
  });

  it('encodes \\xNN escapes in components into raw bytes', () => {
    expect(splitPath('/d/\\xff')!.map((b) => [...b])).toEqual([[0x64], [0xff]]);
  });

  it('accepts a 255-byte component and refuses a 256-byte one', () => {
    expect(splitPath(`/${'n'.repeat(limits.MAX_NAME_BYTES)}`)).toHaveLength(1);
    expect(splitPath(`/ok/${'n'.repeat(limits.MAX_NAME_BYTES + 1)}`)).toBeUndefined();
    // 128 two-byte characters are 256 bytes although only 128 characters.
    expect(splitPath(`/${'é'.repeat(128)}`)).toBeUndefined();
  });
});
