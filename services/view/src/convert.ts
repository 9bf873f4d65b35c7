/**
 * Between the replica's shapes (FsNode, TreeEntry, FsEvent) and the gammaray.v1 messages.
 */
import type { FileType, TreeEntry } from '@gammaray/ext4';
import type { FsEvent, FsNode, FsStat } from '@gammaray/inferencer';
import type { EntryMessage, EventMessage, EventStatMessage, FileTypeName } from './proto.js';

const TO_PROTO: Readonly<Record<FileType, FileTypeName>> = {
  file: 'FILE_TYPE_FILE',
  dir: 'FILE_TYPE_DIR',
  symlink: 'FILE_TYPE_SYMLINK',
  chr: 'FILE_TYPE_CHR',
  blk: 'FILE_TYPE_BLK',
  fifo: 'FILE_TYPE_FIFO',
  sock: 'FILE_TYPE_SOCK',
};
const FROM_PROTO: ReadonlyMap<string, FileType> = new Map(Object.entries(TO_PROTO).map(([k, v]) => [v, k as FileType]));

/** The proto enum name of a file type. */
export function fileTypeName(t: FileType): FileTypeName {
  return TO_PROTO[t];
}

/** The file type of a proto enum name (`FILE_TYPE_FILE` -> `file`); undefined for UNSPECIFIED or unknown. */
export function fileTypeOf(name: string): FileType | undefined {
  return FROM_PROTO.get(name);
}

/** The last component of an absolute path ("/" for the root). */
export function baseName(path: string): string {
  return path === '/' ? '/' : path.slice(path.lastIndexOf('/') + 1);
}

/** An `Entry` from a tree entry and its node; `xattrs` only when asked for (Stat). */
export function entryMessage(entry: TreeEntry, node: FsNode, opts: { xattrs?: boolean; sha256?: string } = {}): EntryMessage {
  const xattrs: Record<string, Buffer> = {};
  if (opts.xattrs) for (const [name, hex] of Object.entries(node.xattrs)) xattrs[name] = Buffer.from(hex, 'hex');
  return {
    path: entry.path,
    name: baseName(entry.path),
    ino: entry.ino,
    type: TO_PROTO[entry.type],
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    size: entry.size,
    nlink: entry.nlink,
    mtime: entry.mtime,
    mtimeNsec: entry.mtimeNsec,
    atime: entry.atime,
    atimeNsec: entry.atimeNsec,
    ctime: entry.ctime,
    ctimeNsec: entry.ctimeNsec,
    target: entry.target ?? '',
    sha256: opts.sha256 ?? '',
    xattrs,
    flags: node.flags,
    rdev: entry.rdev ? { major: entry.rdev.major, minor: entry.rdev.minor } : null,
  };
}

/**
 * The CLI's tree-entry JSON shape (CLI.md) of an `Entry`: `target` only for symlinks, `rdev` only for devices,
 * `sha256` only when set.
 * Unknown file types (a newer server) throw.
 */
export function treeEntryOfMessage(m: EntryMessage): TreeEntry {
  const type = fileTypeOf(m.type);
  if (!type) throw new Error(`entry ${m.path} has an unknown type ${m.type}`);
  const e: TreeEntry = {
    path: m.path,
    ino: m.ino,
    type,
    mode: m.mode,
    uid: m.uid,
    gid: m.gid,
    size: m.size,
    nlink: m.nlink,
    mtime: m.mtime,
    mtimeNsec: m.mtimeNsec,
    atime: m.atime,
    atimeNsec: m.atimeNsec,
    ctime: m.ctime,
    ctimeNsec: m.ctimeNsec,
  };
  if (type === 'symlink') e.target = m.target;
  if ((type === 'chr' || type === 'blk') && m.rdev) e.rdev = { major: m.rdev.major, minor: m.rdev.minor };
  if (m.sha256 !== '') e.sha256 = m.sha256;
  return e;
}

function statMessage(s: FsStat): EventStatMessage {
  return {
    mode: s.mode,
    uid: s.uid,
    gid: s.gid,
    size: s.size,
    nlink: s.nlink,
    atime: s.atime.sec,
    atimeNsec: s.atime.nsec,
    mtime: s.mtime.sec,
    mtimeNsec: s.mtime.nsec,
    ctime: s.ctime.sec,
    ctimeNsec: s.ctime.nsec,
    flags: s.flags,
  };
}

/** JSON of an attr change value; bigint (never produced by the codec, but cheap to allow) as a number string. */
const json = (v: unknown): string => JSON.stringify(v === undefined ? null : v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));

/** An `Event` from a decoded event. */
export function eventMessage(e: FsEvent): EventMessage {
  const changes: Record<string, { oldJson: string; newJson: string }> = {};
  for (const [k, c] of Object.entries(e.changes ?? {})) changes[k] = { oldJson: json(c.old), newJson: json(c.new) };
  return {
    disk: e.disk,
    kind: e.kind,
    path: e.path,
    ino: e.ino,
    type: e.type,
    writeSeq: e.seq,
    idx: e.idx,
    tsMs: e.ts.getTime(),
    stat: e.stat ? statMessage(e.stat) : null,
    parentIno: e.parent?.ino ?? 0,
    from: e.from ?? '',
    fromParentIno: e.fromParent?.ino ?? 0,
    exchange: e.exchange ?? false,
    target: e.target ?? '',
    offset: e.offset ?? 0,
    length: e.length ?? 0,
    data: e.data ? Buffer.from(e.data.buffer, e.data.byteOffset, e.data.length) : Buffer.alloc(0),
    dataOmitted: e.dataOmitted ?? false,
    oldSize: e.oldSize ?? 0,
    size: e.size ?? 0,
    changes,
    files: e.files ?? 0,
    dirs: e.dirs ?? 0,
    corruptKind: e.corruptKind ?? '',
    message: e.message ?? '',
    block: e.block ?? 0,
    reason: e.reason ?? '',
    partition: e.partition ?? 0,
    lv: e.lv ?? '',
    rdev: e.rdev ? { major: e.rdev.major, minor: e.rdev.minor } : null,
  };
}
