/**
 * The shape every oracle produces, identical to one line of `gammaray ls IMAGE -R --json --hash`.
 *
 * Conventions shared by all oracles (and expected from the CLI):
 * - `path` is absolute from the file-system root, `/` for the root itself, components joined with `/`, each
 *   name decoded by {@link decodeName}.
 * - Times are split into whole seconds (floor, so pre-1970 times are negative) plus `0 <= nsec < 1e9`.
 * - `mode` is `st_mode & 0o7777`; the file type is only in `type`.
 * - `target` exists only for symlinks, `rdev` ({major, minor}) only for character and block devices, `sha256` only
 *   for regular files and only when hashing was asked for.
 * - Lists are sorted by {@link comparePaths}.
 */

/** File types as the CLI prints them. */
export const ENTRY_TYPE = {
  file: 'file',
  dir: 'dir',
  symlink: 'symlink',
  chr: 'chr',
  blk: 'blk',
  fifo: 'fifo',
  sock: 'sock',
} as const;
export type EntryType = (typeof ENTRY_TYPE)[keyof typeof ENTRY_TYPE];

/** One file-system entry as printed by `gammaray ls --json`. */
export interface TreeEntry {
  path: string;
  ino: number;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  mtime: number;
  mtimeNsec: number;
  atime: number;
  atimeNsec: number;
  ctime: number;
  ctimeNsec: number;
  /** Symlink text, decoded like a name. Only for symlinks. */
  target?: string;
  /** Device number. Only for character and block devices. */
  rdev?: { major: number; minor: number };
  /** Lower-case hex SHA-256 of the content. Only for regular files, only when hashing. */
  sha256?: string;
}

/** `S_IFMT` bits of `st_mode`/`i_mode` mapped to {@link EntryType}; anything else is not a valid ext4 type. */
export function typeFromMode(mode: number): EntryType | undefined {
  switch (mode & 0o170000) {
    case 0o100000:
      return 'file';
    case 0o040000:
      return 'dir';
    case 0o120000:
      return 'symlink';
    case 0o020000:
      return 'chr';
    case 0o060000:
      return 'blk';
    case 0o010000:
      return 'fifo';
    case 0o140000:
      return 'sock';
    default:
      return undefined;
  }
}

/**
 * Length of the well-formed UTF-8 sequence starting at `i`, or 0 if the byte there cannot start one.
 * Follows Unicode Table 3-7: no overlong forms, no surrogates (ED A0..BF), nothing above U+10FFFF.
 */
function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i] ?? 0x100;
  const cont = (k: number, lo = 0x80, hi = 0xbf): boolean => {
    const b = bytes[i + k];
    return b !== undefined && b >= lo && b <= hi;
  };
  if (b0 < 0x80) return 1;
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((b0 >= 0xe1 && b0 <= 0xec) || b0 === 0xee || b0 === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b0 === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (b0 === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xf1 && b0 <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/**
 * Decodes raw name (or symlink target) bytes the way the CLI does: every well-formed UTF-8 sequence is kept as
 * its character, and every byte that is not part of one becomes the four characters `\xNN` (lower-case hex).
 * Control characters such as `\n` are valid UTF-8 and therefore kept verbatim (JSON escapes them).
 * Scanning restarts at the next byte after an invalid one, which gives the same result as escaping each byte of
 * the "maximal subpart" (WHATWG/Unicode replacement practice), just with escapes instead of U+FFFD.
 * A backslash that would read as such an escape (`\x` and two lower-case hex digits follow it) is escaped too
 * (`\x5c`), so two names never decode to one string.
 */
export function decodeName(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const n = utf8SequenceLength(bytes, i);
    const hex = (k: number) => /^[0-9a-f]$/.test(String.fromCharCode(bytes[i + k] ?? 0));
    if (n === 0 || (bytes[i] === 0x5c && bytes[i + 1] === 0x78 && hex(2) && hex(3))) {
      out += `\\x${(bytes[i] ?? 0).toString(16).padStart(2, '0')}`;
      i += 1;
    } else {
      out += Buffer.from(bytes.subarray(i, i + n)).toString('utf8');
      i += n;
    }
  }
  return out;
}

/**
 * Total order used for every oracle list: plain JS string comparison of `path`, i.e. by UTF-16 code units.
 * That differs from byte order only for characters above U+FFFF versus U+E000..U+FFFF, which no fixture name
 * mixes in one directory; the CLI's order does not matter because tests sort both sides with this function.
 */
export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Sorts entries in place by {@link comparePaths} and returns them. */
export function sortEntries<T extends { path: string }>(entries: T[]): T[] {
  return entries.sort((a, b) => comparePaths(a.path, b.path));
}

/** Splits a bigint nanosecond timestamp into floor seconds and a non-negative nanosecond remainder. */
export function splitNs(ns: bigint): { sec: number; nsec: number } {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    nsec += 1_000_000_000n;
    sec -= 1n;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

/**
 * Decodes an on-disk ext4 timestamp the way Linux `ext4_decode_extra_time()` does: the 32-bit base is signed,
 * the two low bits of `*_extra` extend the epoch, the other 30 bits are nanoseconds. Without an extra field
 * (128-byte inodes) the time is the signed 32-bit base.
 */
export function decodeExt4Time(lo: number, extra: number | undefined): { sec: number; nsec: number } {
  const base = lo | 0;
  if (extra === undefined) return { sec: base, nsec: 0 };
  return { sec: base + (extra & 3) * 2 ** 32, nsec: extra >>> 2 };
}
