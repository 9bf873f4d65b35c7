/**
 * What the inferencer knows about one inode of the tree, and how it becomes the shapes users see.
 */
import { FileType, decodeDevice, decodeName, majorMinor, makedev, type DeviceNumber, type Ext4Inode, type TreeEntry } from '@gammaray/ext4';
import type { MappedRun } from './data-index.js';
import type { FsStat, FsTime } from './events.js';

/** One inode reachable from the root. */
export interface FsNode {
  readonly ino: number;
  /**
   * i_generation as a signed 32-bit integer (only ever compared): as an unsigned one, half of all generations
   * are above 2^31, which made the field a boxed double in every node (~19 bytes per node).
   */
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
   * 32-bit integer); 0 for every other type. A plain number rather than a {major, minor} object, kept in the
   * field other types use for their contents: nothing more per node.
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

/** The one place nodes are made. */
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
  const body = entries ?? target ?? inline ?? (runs !== undefined && runs.length === 1 ? runs[0]! : runs) ?? (rdev !== 0 ? rdev | 0 : undefined); // ok: length 1
  const noXattrs = Object.keys(xattrs).length === 0;
  const more = noXattrs && owned.length === 0 ? undefined : new More(noXattrs ? NO_XATTRS : xattrs, owned.length === 0 ? NOTHING_OWNED : owned);
  return new Node(
    ino,
    generation | 0,
    type,
    mode,
    uid,
    gid,
    size,
    nlink,
    atime,
    sameTime(mtime, atime) ? atime : mtime,
    sameTime(ctime, mtime) ? (sameTime(mtime, atime) ? atime : mtime) : ctime,
    flags,
    body,
    more,
  );
}

/** What few nodes have: extended attributes, metadata blocks of their own. */
class More {
  constructor(
    readonly xattrs: Readonly<Record<string, string>>,
    readonly owned: readonly number[],
  ) {}
}

/**
 * What a node holds beyond its attributes, by type: a directory's entries, a symlink's target, an inline file's
 * content, a file's runs, the one run itself when there is only one (nearly every small file: an array around it
 * cost as much as the run), a device's number (as {@link nodeRdev} keeps it).
 */
type Body = ReadonlyMap<string, number> | string | Uint8Array | readonly MappedRun[] | MappedRun | number | undefined;

/**
 * A node as the engine keeps it: 14 fields, all nodes of one hidden class. The type-specific parts share one
 * field and the rarely set ones another; the getters give the {@link FsNode} view of them.
 */
class Node implements FsNode {
  constructor(
    readonly ino: number,
    readonly generation: number,
    readonly type: FileType,
    readonly mode: number,
    readonly uid: number,
    readonly gid: number,
    readonly size: number,
    readonly nlink: number,
    readonly atime: FsTime,
    readonly mtime: FsTime,
    readonly ctime: FsTime,
    readonly flags: number,
    readonly body: Body,
    readonly more: More | undefined,
  ) {}

  get target(): string | undefined {
    return typeof this.body === 'string' ? this.body : undefined;
  }

  get entries(): ReadonlyMap<string, number> | undefined {
    return this.body instanceof Map ? this.body : undefined;
  }

  get inline(): Uint8Array | undefined {
    return this.body instanceof Uint8Array ? this.body : undefined;
  }

  get runs(): readonly MappedRun[] | undefined {
    const b = this.body;
    if (b === undefined || typeof b === 'string' || typeof b === 'number' || b instanceof Map || b instanceof Uint8Array) return undefined;
    return Array.isArray(b) ? (b as readonly MappedRun[]) : [b as MappedRun];
  }

  get rdev(): number {
    return typeof this.body === 'number' ? this.body : 0;
  }

  get xattrs(): Readonly<Record<string, string>> {
    return this.more?.xattrs ?? NO_XATTRS;
  }

  get owned(): readonly number[] {
    return this.more?.owned ?? NOTHING_OWNED;
  }
}

/**
 * The run of `node`'s data map that covers logical block `logical`, if any: a binary search (maps are sorted and
 * non-overlapping, up to MAX_EXTENTS_PER_INODE runs; this is asked per data block written), without the array a
 * one-run node's `runs` makes.
 */
export function runAt(node: FsNode, logical: number): MappedRun | undefined {
  const b = node instanceof Node ? node.body : node.runs;
  if (b === undefined || typeof b === 'string' || typeof b === 'number' || b instanceof Map || b instanceof Uint8Array) return undefined;
  if (!Array.isArray(b)) {
    const r = b as MappedRun;
    return logical >= r.logical && logical < r.logical + r.length ? r : undefined;
  }
  const runs = b as readonly MappedRun[];
  let lo = 0;
  let hi = runs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const r = runs[mid]!; // ok: mid < hi <= length
    if (logical < r.logical) hi = mid;
    else if (logical >= r.logical + r.length) lo = mid + 1;
    else return r;
  }
  return undefined;
}

/** Whether `a` and `b` hold the very same runs (the same derivation), not merely equal ones. */
export function sameRunsObject(a: FsNode, b: FsNode | undefined): boolean {
  if (b === undefined) return false;
  if (a instanceof Node && b instanceof Node) return a.body === b.body;
  return a.runs === b.runs;
}

/** `node` with another size (what readers see while an append's data is on its way). */
export function withSize(node: FsNode, size: number): FsNode {
  return build(node.ino, node.generation, node.type, node.mode, node.uid, node.gid, size, node.nlink, node.atime, node.mtime, node.ctime, node.flags, node.rdev, node.target, node.xattrs, node.runs, node.inline, node.entries, node.owned);
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
