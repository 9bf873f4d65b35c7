import { ReplicaError, ReplicaErrorCode } from './errors.js';

/** Longest path a request may name (Linux PATH_MAX). */
export const MAX_REQUEST_PATH_BYTES = 4096;
/** Longest name component (ext4's limit). */
export const MAX_NAME_BYTES = 255;

/**
 * Splits an absolute request path into its names. `.` and empty components are skipped; `..` is refused rather
 * than resolved, so no request can name anything outside the disk's root (or rely on lexical tricks).
 */
export function splitRequestPath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `path ${JSON.stringify(path)} is not absolute: give it from the disk's root, e.g. "/etc/hostname"`);
  }
  if (Buffer.byteLength(path) > MAX_REQUEST_PATH_BYTES) {
    throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `path is longer than ${MAX_REQUEST_PATH_BYTES} bytes`);
  }
  if (path.includes('\0')) throw new ReplicaError(ReplicaErrorCode.InvalidArgument, 'path contains a NUL byte');
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `path ${JSON.stringify(path)} contains "..": give the path without it`);
    if (Buffer.byteLength(part) > MAX_NAME_BYTES) throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `a name in the path is longer than ${MAX_NAME_BYTES} bytes`);
    out.push(part);
  }
  return out;
}

/** Joins names back into an absolute path ("/" for none). */
export function joinPath(names: readonly string[]): string {
  return names.length === 0 ? '/' : `/${names.join('/')}`;
}
