import { decodeName, encodeName } from '@gammaray/ext4';
import { ReplicaError, ReplicaErrorCode } from './errors.js';

/** Longest path a request may name (Linux PATH_MAX). */
export const MAX_REQUEST_PATH_BYTES = 4096;
/** Longest name component (ext4's limit). */
export const MAX_NAME_BYTES = 255;

/**
 * Splits an absolute request path into its names. `.` and empty components are skipped; `..` is refused rather
 * than resolved, so no request can name anything outside the disk's root (or rely on lexical tricks). Names are
 * the guest's bytes in the printed form (`\xNN` for a byte that is not UTF-8): each is taken back to its bytes
 * and printed again, so every spelling the tools print (`gammaray stat` shows a newline as `\x0a`) names the
 * file, and the limits count the bytes on the disk, not the up to four characters that print one byte.
 */
export function splitRequestPath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `path ${JSON.stringify(path)} is not absolute: give it from the disk's root, e.g. "/etc/hostname"`);
  }
  // `\xNN` prints one byte as four characters; the byte count is checked once the names are decoded.
  if (path.length > 4 * MAX_REQUEST_PATH_BYTES) tooLong();
  if (path.includes('\0')) throw new ReplicaError(ReplicaErrorCode.InvalidArgument, 'path contains a NUL byte');
  const out: string[] = [];
  let bytes = 0;
  for (const part of path.split('/')) {
    const raw = encodeName(part);
    const name = decodeName(raw); // `\x2e\x2e` is `..` too
    if (name === '' || name === '.') continue;
    if (name === '..') throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `path ${JSON.stringify(path)} contains "..": give the path without it`);
    if (raw.length > MAX_NAME_BYTES) throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `a name in the path is longer than ${MAX_NAME_BYTES} bytes`);
    bytes += 1 + raw.length;
    out.push(name);
  }
  if (bytes > MAX_REQUEST_PATH_BYTES) tooLong();
  return out;
}

function tooLong(): never {
  throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `path is longer than ${MAX_REQUEST_PATH_BYTES} bytes`);
}

/**
 * Orders two names as the offline commands list them (`gammaray ls`, `crawl`): by the guest's bytes, not by the
 * printed form (where `\xff` would sort before `a`).
 */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(encodeName(a), encodeName(b));
}

/** Sorts names as {@link compareNames} orders them, encoding each name once. */
export function sortNames(names: string[]): string[] {
  const keyed = names.map((name) => ({ name, bytes: encodeName(name) }));
  keyed.sort((x, y) => Buffer.compare(x.bytes, y.bytes));
  return keyed.map((k) => k.name);
}

/**
 * Sorts tree entries (or anything with a `path`) in the order `gammaray ls -R` and `crawl` print them: depth
 * first, the names of each directory by their bytes, so `/a`, `/a/x`, `/a.conf` (sorted as whole strings,
 * `/a.conf` would come before `/a/x`, and `tree --json` would not equal `ls -R --json` line for line).
 */
export function sortDepthFirst<T extends { readonly path: string }>(items: T[]): T[] {
  const keyed = items.map((item) => ({ item, names: item.path === '/' ? [] : item.path.slice(1).split('/').map((n) => encodeName(n)) }));
  keyed.sort((x, y) => {
    const n = Math.min(x.names.length, y.names.length);
    for (let i = 0; i < n; i++) {
      const c = Buffer.compare(x.names[i]!, y.names[i]!); // ok: i < both lengths
      if (c !== 0) return c;
    }
    return x.names.length - y.names.length;
  });
  return keyed.map((k) => k.item);
}

/** Joins names back into an absolute path ("/" for none). */
export function joinPath(names: readonly string[]): string {
  return names.length === 0 ? '/' : `/${names.join('/')}`;
}
