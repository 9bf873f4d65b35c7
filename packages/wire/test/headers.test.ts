import { describe, expect, it } from 'vitest';
import { OBJ_STATE, decodePathHeader, encodePathHeader } from '../src/index.js';

describe('Gammaray-Path header', () => {
  it('keeps plain paths readable and percent-encodes the rest, reversibly', () => {
    expect(encodePathHeader('/etc/motd')).toBe('/etc/motd');
    for (const p of ['/a b/%41', '/x\r\ny', '/café/😀', '/\\xff', '/#?&=+;,:@$!~*\'()', '/\u0000\u007f']) {
      const h = encodePathHeader(p);
      expect(h).toMatch(/^[\x21-\x7e]*$/); // printable ASCII only: no CR, LF, space or control bytes
      expect(decodePathHeader(h)).toBe(p);
    }
  });

  it('replaces lone surrogates instead of throwing, and rejects malformed header values', () => {
    expect(decodePathHeader(encodePathHeader('/a\uD800b'))).toBe('/a\uFFFDb');
    expect(decodePathHeader('/%E0%A4%A')).toBeUndefined();
  });

  it('names the checkpoint bucket', () => {
    expect(OBJ_STATE).toBe('gammaray-state');
  });
});
