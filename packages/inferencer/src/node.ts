/**
 * What the inferencer knows about one inode of the tree, and how it becomes the shapes users see.
 */
import { FileType, decodeDevice, decodeName, majorMinor, makedev, type DeviceNumber, type Ext4Inode, type TreeEntry } from '@gammaray/ext4';
import type { MappedRun } from './data-index.js';
import type { FsStat, FsTime } from './events.js';

/** One inode reachable from the root. */
export interface FsNode {
  readonly ino: number;
  readonly generation: number;
  readonly type: FileType;
  /** Permission bits (07777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  readonly atime: FsTime;
  readonly mtime: FsTime;
  readonly ctime: FsTime;
  readonly flags: number;
  /**
   * Character and block devices: the device number as {@link nodeRdev} keeps it (the Linux `dev_t` as a signed
   * 32-bit integer); 0 for every other type. A plain number rather than a {major, minor} object: one slot, never
   * a second object per node.
   */
  readonly rdev: number;
  /** Symlinks: the target, decoded like a name. */
  readonly target?: string;
  /** Extended attributes: name -> value as lowercase hex. */
  readonly xattrs: Readonly<Record<string, string>>;
  /** Regular files: where the data lives. */
  readonly runs?: readonly MappedRun[];
  /** Regular files with inline data: the content. */
  readonly inline?: Uint8Array;
  /** Directories: name -> inode (without "." and ".."). */
  readonly entries?: ReadonlyMap<string, number>;
  /** Metadata blocks read to derive it (extent and indirect blocks, directory blocks, xattr block, symlink block). */
  readonly owned: readonly number[];
}

const NO_XATTRS: Readonly<Record<string, string>> = Object.freeze({});
const NOTHING_OWNED: readonly number[] = Object.freeze([]);

/**
 * Builds a node with every field present in one fixed order, so all nodes share one hidden class (objects
 * built by spreading differently shaped parts get one each, which costs hundreds of bytes per node), and the
 * common empty xattr set and owned-block list are shared.
 */
export function makeNode(
  base: Omit<FsNode, 'xattrs' | 'owned' | 'target' | 'runs' | 'inline' | 'entries'>,
  extra: { target?: string; runs?: readonly MappedRun[]; inline?: Uint8Array; entries?: ReadonlyMap<string, number> },
  xattrs: Readonly<Record<string, string>>,
  owned: readonly number[],
): FsNode {
  return build(
    base.ino,
    base.generation,
    base.type,
    base.mode,
    base.uid,
    base.gid,
    base.size,
    base.nlink,
    base.atime,
    base.mtime,
    base.ctime,
    base.flags,
    base.rdev,
    extra.target,
    xattrs,
    extra.runs,
    extra.inline,
    extra.entries,
    owned,
  );
}

/** A node straight from its decoded inode and what hangs off it (what makeNode gives, without the parts); `times` shares the times. */
export function nodeOfInode(
  inode: Ext4Inode,
  times: TimeCache,
  target: string | undefined,
  xattrs: Readonly<Record<string, string>>,
  runs: readonly MappedRun[] | undefined,
  inline: Uint8Array | undefined,
  entries: ReadonlyMap<string, number> | undefined,
  owned: readonly number[],
): FsNode {
  return build(
    inode.ino,
    inode.generation,
    inode.type,
    inode.mode & 0o7777,
    inode.uid,
    inode.gid,
    inode.size,
    inode.linksCount,
    times.get(inode.atime.sec, inode.atime.nsec),
    times.get(inode.mtime.sec, inode.mtime.nsec),
    times.get(inode.ctime.sec, inode.ctime.nsec),
    inode.flags,
    isDevice(inode.type) ? nodeRdev(decodeDevice(inode.iBlock)) : 0,
    target,
    xattrs,
    runs,
    inline,
    entries,
    owned,
  );
}

/** The one place nodes are made (one allocation site, one hidden class). */
function build(
  ino: number,
  generation: number,
  type: FileType,
  mode: number,
  uid: number,
  gid: number,
  size: number,
  nlink: number,
  atime: FsTime,
  mtime: FsTime,
  ctime: FsTime,
  flags: number,
  rdev: number,
  target: string | undefined,
  xattrs: Readonly<Record<string, string>>,
  runs: readonly MappedRun[] | undefined,
  inline: Uint8Array | undefined,
  entries: ReadonlyMap<string, number> | undefined,
  owned: readonly number[],
): FsNode {
  return {
    ino,
    generation,
    type,
    mode,
    uid,
    gid,
    size,
    nlink,
    atime,
    mtime: sameTime(mtime, atime) ? atime : mtime,
    ctime: sameTime(ctime, mtime) ? (sameTime(mtime, atime) ? atime : mtime) : ctime,
    flags,
    rdev,
    target,
    xattrs: Object.keys(xattrs).length === 0 ? NO_XATTRS : xattrs,
    runs,
    inline,
    entries,
    owned: owned.length === 0 ? NOTHING_OWNED : owned,
  };
}

/**
 * The attributes events carry, as the engine makes them: always these nine fields in this order, so the event
 * encoder writes them without walking the object (see event-codec.ts). Otherwise an ordinary {@link FsStat}.
 */
export class NodeStat implements FsStat {
  constructor(
    readonly mode: number,
    readonly uid: number,
    readonly gid: number,
    readonly size: number,
    readonly nlink: number,
    readonly atime: FsTime,
    readonly mtime: FsTime,
    readonly ctime: FsTime,
    readonly flags: number,
  ) {}
}

/** Attributes of a node as carried by events. */
export function statOf(n: FsNode): FsStat {
  return new NodeStat(n.mode, n.uid, n.gid, n.size, n.nlink, n.atime, n.mtime, n.ctime, n.flags);
}

/** Distinct times remembered by a {@link TimeCache}. */
const TIME_CACHE_SIZE = 16;

/**
 * Hands out one frozen {@link FsTime} object per recent distinct time. Files made in a burst share their times
 * (the kernel's clock for them ticks in jiffies): one object and one boxed second count for many nodes.
 */
export class TimeCache {
  private readonly recent: FsTime[] = [];
  private next = 0;

  get(sec: number, nsec: number): FsTime {
    const r = this.recent;
    for (let i = 0; i < r.length; i++) {
      const t = r[i]!; // ok: in range
      if (t.nsec === nsec && t.sec === sec) return t;
    }
    const t: FsTime = Object.freeze({ sec, nsec });
    if (r.length < TIME_CACHE_SIZE) r.push(t);
    else r[this.next] = t;
    this.next = (this.next + 1) % TIME_CACHE_SIZE;
    return t;
  }
}

/** The tree-entry JSON shape (CLI.md) of a node at `path`. */
export function treeEntryOf(path: string, n: FsNode): TreeEntry {
  const e: TreeEntry = {
    path,
    ino: n.ino,
    type: n.type,
    mode: n.mode,
    uid: n.uid,
    gid: n.gid,
    size: n.size,
    nlink: n.nlink,
    mtime: n.mtime.sec,
    mtimeNsec: n.mtime.nsec,
    atime: n.atime.sec,
    atimeNsec: n.atime.nsec,
    ctime: n.ctime.sec,
    ctimeNsec: n.ctime.nsec,
  };
  if (n.target !== undefined) e.target = n.target;
  if (isDevice(n.type)) e.rdev = majorMinor(n.rdev);
  return e;
}

/**
 * A device number as {@link FsNode.rdev} keeps it: makedev's `dev_t` (`>>> 0` gives it back) as a signed 32-bit
 * integer, always a small integer to V8. Kept unsigned, a guest's one device numbered past 2^31 (major 2048 and
 * up, or a minor past 2^19) would make the field a double in every node of the shape: a 16-byte box per node.
 */
export function nodeRdev(d: DeviceNumber): number {
  return makedev(d) | 0;
}

/** Whether nodes of type `t` carry a device number (character and block devices). */
export function isDevice(t: FileType): boolean {
  return t === FileType.chr || t === FileType.blk;
}

/** Whether two times are equal. */
export function sameTime(a: FsTime, b: FsTime): boolean {
  return a.sec === b.sec && a.nsec === b.nsec;
}

/** Name bytes to the string used as a directory key and in paths. */
export function nameOf(bytes: Uint8Array): string {
  return decodeName(bytes);
}
