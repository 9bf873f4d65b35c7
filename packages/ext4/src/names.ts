import { MAX_NAME_BYTES } from './limits.js';

// ignoreBOM: a name's leading U+FEFF is part of it (the default strips it, and two names would print alike)
const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A backslash that would read as an escape (`\x` and two lowercase hex digits follow it). */
const ESCAPE_LIKE = /\\(?=x[0-9a-f]{2})/g;

/**
 * Decodes a name or path from the guest's bytes as UTF-8; each byte that is
 * not part of a valid UTF-8 sequence becomes the four characters `\xNN`
 * (lowercase hex), and so does a backslash that would otherwise read as such
 * an escape (`\x5c`): two names never decode to one string (a name holding
 * the bytes `\xff` and one holding the byte 0xff would hide each other).
 * The same rule is used by every command that prints names.
 */
export function decodeName(bytes: Uint8Array): string {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  let s: string;
  if (ascii) s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  else {
    try {
      s = strict.decode(bytes);
    } catch {
      return decodeLossy(bytes);
    }
  }
  return s.includes('\\') ? s.replace(ESCAPE_LIKE, '\\x5c') : s;
}

const isLowerHex = (c: number | undefined): boolean => c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66));

function seqLen(b: Uint8Array, i: number): number {
  const c = b[i]!;
  let n: number;
  let min: number;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) { n = 2; min = 0x80; }
  else if (c >= 0xe0 && c <= 0xef) { n = 3; min = 0x800; }
  else if (c >= 0xf0 && c <= 0xf4) { n = 4; min = 0x10000; }
  else return 0;
  if (i + n > b.length) return 0;
  let cp = c & (0xff >> (n + 1));
  for (let k = 1; k < n; k++) {
    const cc = b[i + k]!;
    if ((cc & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

function decodeLossy(b: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const n = seqLen(b, i);
    if (n === 0 || (b[i] === 0x5c && b[i + 1] === 0x78 && isLowerHex(b[i + 2]) && isLowerHex(b[i + 3]))) {
      out += `\\x${b[i]!.toString(16).padStart(2, '0')}`;
      i++;
    } else {
      out += strict.decode(b.subarray(i, i + n));
      i += n;
    }
  }
  return out;
}

/**
 * Splits a user-supplied path into byte components, dropping empty ones and
 * ".". Returns undefined if a component is longer than a name may be.
 */
export function splitPath(path: string): Uint8Array[] | undefined {
  const out: Uint8Array[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    const b = encodeName(part);
    if (b.length > MAX_NAME_BYTES) return undefined;
    out.push(b);
  }
  return out;
}

/** Inverse of {@link decodeName}: UTF-8 with `\xNN` escapes turned back into bytes. */
export function encodeName(s: string): Uint8Array {
  if (!s.includes('\\x')) return Buffer.from(s, 'utf8');
  const parts: Buffer[] = [];
  let last = 0;
  const re = /\\x([0-9a-f]{2})/g;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    parts.push(Buffer.from(s.slice(last, m.index), 'utf8'), Buffer.from([parseInt(m[1]!, 16)]));
    last = m.index + m[0].length;
  }
  parts.push(Buffer.from(s.slice(last), 'utf8'));
  return Buffer.concat(parts);
}
