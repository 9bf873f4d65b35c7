import { decodeName } from './names.js';
import { decodeDevice, type DeviceNumber, type Ext4Inode, type FileType } from './ondisk/inode.js';

/**
 * One entry of a file tree in the shape every gammaray command prints with
 * `--json` (see CLI.md): permission bits only in `mode`, times split into
 * whole seconds and nanoseconds, `target` only for symlinks, `rdev` only for
 * character and block devices, `sha256` only when asked for and only for
 * regular files.
 */
export interface TreeEntry {
  path: string;
  ino: number;
  type: FileType;
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
  target?: string;
  /** Character and block devices: the device number the node stands for. */
  rdev?: DeviceNumber;
  sha256?: string;
}

/** Builds the {@link TreeEntry} of `inode` at `path`. */
export function toTreeEntry(path: string, inode: Ext4Inode, extra: { target?: Uint8Array; sha256?: string } = {}): TreeEntry {
  const e: TreeEntry = {
    path,
    ino: inode.ino,
    type: inode.type,
    mode: inode.mode & 0o7777,
    uid: inode.uid,
    gid: inode.gid,
    size: inode.size,
    nlink: inode.linksCount,
    mtime: inode.mtime.sec,
    mtimeNsec: inode.mtime.nsec,
    atime: inode.atime.sec,
    atimeNsec: inode.atime.nsec,
    ctime: inode.ctime.sec,
    ctimeNsec: inode.ctime.nsec,
  };
  if (extra.target !== undefined) e.target = decodeName(extra.target);
  if (inode.type === 'chr' || inode.type === 'blk') e.rdev = decodeDevice(inode.iBlock);
  if (extra.sha256 !== undefined) e.sha256 = extra.sha256;
  return e;
}
