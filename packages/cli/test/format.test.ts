import { describe, expect, it } from 'vitest';
import { isoSeconds, modeString, shellWord, statTime, uuidString, xattrValueText } from '../src/format.js';
import { escapeControls } from '../src/output.js';
import { normalizePath } from '../src/paths.js';

describe('format', () => {
  it('modeString spells setuid, setgid and sticky like ls', () => {
    expect(modeString('file', 0o644)).toBe('-rw-r--r--');
    expect(modeString('file', 0o4755)).toBe('-rwsr-xr-x');
    expect(modeString('file', 0o2644)).toBe('-rw-r-Sr--');
    expect(modeString('dir', 0o1777)).toBe('drwxrwxrwt');
    expect(modeString('dir', 0o1770)).toBe('drwxrwx--T');
    expect(modeString('symlink', 0o777)).toBe('lrwxrwxrwx');
    expect(modeString('sock', 0)).toBe('s---------');
  });

  it('prints times in UTC with nanoseconds, before 1970 too', () => {
    expect(isoSeconds(0)).toBe('1970-01-01T00:00:00Z');
    expect(statTime({ sec: -1, nsec: 5 })).toBe('1969-12-31 23:59:59.000000005 +0000');
    expect(statTime({ sec: 2 ** 34, nsec: 0 })).toMatch(/^2514-/);
  });

  it('formats UUIDs, xattr values, shell words and control characters', () => {
    expect(uuidString(Uint8Array.from({ length: 16 }, (_, i) => i))).toBe('00010203-0405-0607-0809-0a0b0c0d0e0f');
    expect(xattrValueText(Buffer.from('system_u:object_r:etc_t:s0\0'))).toBe('"system_u:object_r:etc_t:s0"');
    expect(xattrValueText(new Uint8Array([1, 2, 0xff]))).toBe('0x0102ff');
    expect(shellWord('/a b')).toBe("'/a b'");
    expect(shellWord("it's")).toBe("'it'\\''s'");
    expect(shellWord('disk.img')).toBe('disk.img');
    expect(escapeControls('a\nb\x1b[31m')).toBe('a\\x0ab\\x1b[31m');
  });

  it('normalizes user paths to the spelling of the tree', () => {
    expect(normalizePath('')).toBe('/');
    expect(normalizePath('a//b/./c/../d/')).toBe('/a/b/d');
    expect(normalizePath('/../x')).toBe('/x');
    expect(normalizePath('/f\\xff')).toBe('/f\\xff');
  });
});
