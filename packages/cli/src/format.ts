/** Text formats shared by the commands: mode strings, times, UUIDs. */
import type { Ext4Inode, Ext4Time, FileType } from '@gammaray/ext4';

const TYPE_CHAR: Readonly<Record<FileType, string>> = {
  file: '-',
  dir: 'd',
  symlink: 'l',
  chr: 'c',
  blk: 'b',
  fifo: 'p',
  sock: 's',
};

/** What `stat` calls each type. */
export const TYPE_DESCRIPTION: Readonly<Record<FileType, string>> = {
  file: 'regular file',
  dir: 'directory',
  symlink: 'symbolic link',
  chr: 'character special file',
  blk: 'block special file',
  fifo: 'fifo',
  sock: 'socket',
};

/** `ls -l` style mode string, e.g. `drwxr-xr-x`, `-rwsr-sr-t`. */
export function modeString(type: FileType, mode: number): string {
  const rwx = (bits: number, special: boolean, specialChar: string): string => {
    const x = bits & 1 ? (special ? specialChar : 'x') : special ? specialChar.toUpperCase() : '-';
    return (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + x;
  };
  return (
    TYPE_CHAR[type] +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') +
    rwx(mode & 7, (mode & 0o1000) !== 0, 't')
  );
}

/** UTC ISO 8601 to the second, e.g. `2024-05-01T12:00:00Z`. */
export function isoSeconds(sec: number): string {
  const d = new Date(sec * 1000);
  if (Number.isNaN(d.getTime())) return `@${sec}`;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** coreutils `stat` style UTC time with nanoseconds: `2024-05-01 12:00:00.123456789 +0000`. */
export function statTime(t: Ext4Time): string {
  const iso = isoSeconds(t.sec);
  if (iso.startsWith('@')) return iso;
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${String(t.nsec).padStart(9, '0')} +0000`;
}

/** A 16-byte UUID in its usual lowercase 8-4-4-4-12 form. */
export function uuidString(b: Uint8Array): string {
  const h = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
  if (h.length !== 32) return h;
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Byte counts for people: `16 MiB`, `512 B`. */
export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 || Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/** The permission bits (07777) of an inode, as the contract's `mode`. */
export function permBits(inode: Ext4Inode): number {
  return inode.mode & 0o7777;
}

/**
 * An xattr value for people: a quoted string if it is printable UTF-8
 * (a trailing NUL, common in security labels, is dropped), else `0x` hex.
 */
export function xattrValueText(v: Uint8Array): string {
  const body = v.length > 0 && v[v.length - 1] === 0 ? v.subarray(0, v.length - 1) : v;
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  const printable = !text.includes('\ufffd') && !/[\x00-\x08\x0b-\x1f\x7f]/.test(text);
  if (printable) return JSON.stringify(text);
  return `0x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
}

/** `s` quoted for a POSIX shell if it needs it, for commands suggested in messages. */
export function shellWord(s: string): string {
  return /^[\w./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
