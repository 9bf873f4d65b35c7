/**
 * What the FUSE mount answers, without FUSE: `/` lists the attached disks, `/<disk>/...` is that disk's tree as
 * its replica has it now. Every path is resolved inside a replica (which refuses `..`), symlinks are never
 * followed here, and nothing about the tree is cached: each call asks the replica, so the mount is as live as the
 * replica. The one thing kept is read-ahead for sequential readers, served only while the replica has applied
 * nothing since it was read (see AHEAD_WINDOW).
 */
import { FileType } from '@gammaray/ext4';
import type { FsNode } from '@gammaray/inferencer';
import type { DiskReplica, ReplicaSet } from '@gammaray/replica';
import { Errno, FsError } from './errno.js';

/** Attributes as fuse-native takes them (times in ms since the epoch). */
export interface FuseStat {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  readonly ino: number;
  readonly blksize: number;
  readonly blocks: number;
  readonly atime: number;
  readonly mtime: number;
  readonly ctime: number;
  /** Character and block devices: st_rdev, the Linux dev_t makedev(major, minor); 0 otherwise. */
  readonly rdev?: number;
}

/** File-system totals for statfs. */
export interface FuseStatfs {
  readonly bsize: number;
  readonly frsize: number;
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
  readonly files: number;
  readonly ffree: number;
  readonly favail: number;
  readonly fsid: number;
  readonly flag: number;
  readonly namemax: number;
}

/** S_IF* bits of each file type. */
const TYPE_BITS: Record<FileType, number> = {
  [FileType.file]: 0o100000,
  [FileType.dir]: 0o040000,
  [FileType.symlink]: 0o120000,
  [FileType.chr]: 0o020000,
  [FileType.blk]: 0o060000,
  [FileType.fifo]: 0o010000,
  [FileType.sock]: 0o140000,
};

/** Inode number of the mount's root (the disks' inodes are numbered from 2 on: see {@link InodeNumbers}). */
const MOUNT_ROOT_INO = 1;
/** Inode numbers reach the kernel as uint32 (fuse-native's stat layout). */
const INO_LIMIT = 0x1_0000_0000;
/** Smallest range of inode numbers a disk gets. */
const MIN_INO_RANGE = 1 << 16;
/** Longest name ext4 stores. */
const NAME_MAX = 255;
/** O_ACCMODE, O_RDONLY and O_TRUNC of Linux. */
const O_ACCMODE = 0o3;
const O_RDONLY = 0;
const O_TRUNC = 0o1000;
/** Handles above this wrap around (fuse-native passes them as int32; 0 means "none"). */
const MAX_HANDLE = 0x7fff_ffff;
/** statfs fields travel as uint32. */
const U32_MAX = 0xffff_ffff;

/**
 * Read-ahead: a reader going through a file sequentially gets its next bytes read in windows of this size (four
 * block-read pieces, fetched in parallel) while it consumes the current one. FUSE hands the view at most 128 KiB
 * per request, one request at a time, and a block-read round trip costs about as much as its bytes, so reading
 * ahead is what lets a sequential reader go faster than one round trip per 128 KiB.
 */
const AHEAD_WINDOW = 4 * 960 * 1024;
/** Reads smaller than this do not start read-ahead (tail -f and friends read small pieces at the end). */
const AHEAD_MIN_READ = 16 * 1024;
/** A window is served only this long after it was asked for, and only while the replica applied nothing since. */
const AHEAD_MAX_AGE_MS = 1_000;
/** Bytes of read-ahead windows kept over all handles. */
const AHEAD_MAX_TOTAL = 64 * 1024 * 1024;

/**
 * Bytes of [offset, end) of a file, read in one untorn read while the replica was at `seq` (so `node` is the
 * file as it was then, and still is while the replica stays at `seq`).
 */
interface AheadWindow {
  readonly offset: number;
  readonly end: number;
  readonly seq: number;
  readonly at: number;
  readonly node: FsNode;
  /** The bytes and the disk sequence they are consistent with (see UntornRead). */
  readonly data: Promise<{ data: Uint8Array; seq: number }>;
}

/** An open file: the inode it was opened as, followed across renames in the guest. */
interface Handle {
  readonly replica: DiskReplica;
  readonly ino: number;
  readonly generation: number;
  /** Where the previous read ended (sequential readers ask there next). */
  next: number;
  ahead: AheadWindow[];
}

/** Where a mount path points. */
type Place = { readonly kind: 'root' } | { readonly kind: 'disk'; readonly disk: string; readonly replica: DiskReplica; readonly rest: string };

/**
 * The mount's inode numbers. All disks share one mount (one st_dev), so their ext4 inode numbers would collide:
 * every disk's root is inode 2, and tools that find hard links by (st_dev, st_ino) (`du`, `tar`, `rsync -H`,
 * `cp -a`, `find -samefile`) would take files of different disks for links of one file. Each disk gets a range of
 * its own, the first time it is seen, twice its inode count (room for an online resize), and keeps it for the
 * life of the mount; ext4 inode i of the disk is `base + i - 1`. Inode numbers are 32-bit here, so ranges are
 * handed out until 2^32; a disk that no longer fits, or an inode past its disk's range (the file system grew more
 * than twice), wraps into the whole space and may then share a number with another file: the mount would need
 * 2^32 inodes of ranges (e.g. 500 disks of 4 million inodes) before that happens.
 */
export class InodeNumbers {
  readonly #ranges = new Map<string, { readonly base: number; readonly size: number }>();
  readonly #waiting = new Map<string, number>();
  #next = MOUNT_ROOT_INO + 1;

  /** The mount's number for ext4 inode `ino` of `disk`, whose file system has `inodes` inodes. */
  of(disk: string, inodes: number, ino: number): number {
    let r = this.#ranges.get(disk);
    if (!r) {
      const want = Math.max(MIN_INO_RANGE, Math.min(INO_LIMIT, 2 * inodes));
      const left = INO_LIMIT - this.#next;
      r = left >= want ? { base: this.#next, size: want } : { base: MOUNT_ROOT_INO + 1, size: INO_LIMIT - MOUNT_ROOT_INO - 1 };
      if (left >= want) this.#next += want;
      this.#ranges.set(disk, r);
    }
    return r.base + ((ino - 1) % r.size);
  }

  /** The number of a disk's directory while its replica is still bootstrapping (one per disk, never reused). */
  waiting(disk: string): number {
    let n = this.#waiting.get(disk);
    if (n === undefined) {
      n = this.#next < INO_LIMIT ? this.#next++ : MOUNT_ROOT_INO + 1;
      this.#waiting.set(disk, n);
    }
    return n;
  }
}

/** The file system behind the mount; every method throws {@link FsError} or ReplicaError. */
export class ViewFs {
  readonly #replicas: ReplicaSet;
  readonly #mountedAtMs: number;
  readonly #uid: number;
  readonly #gid: number;
  readonly #handles = new Map<number, Handle>();
  readonly #blockSizes = new WeakMap<DiskReplica, number>();
  readonly #inodeCounts = new WeakMap<DiskReplica, number>();
  readonly #inos = new InodeNumbers();
  #nextHandle = 1;

  constructor(replicas: ReplicaSet, opts: { mountedAtMs?: number; uid?: number; gid?: number } = {}) {
    this.#replicas = replicas;
    this.#mountedAtMs = opts.mountedAtMs ?? Date.now();
    this.#uid = opts.uid ?? process.getuid?.() ?? 0;
    this.#gid = opts.gid ?? process.getgid?.() ?? 0;
  }

  /** Open handles (for tests and metrics). */
  get openHandles(): number {
    return this.#handles.size;
  }

  /** Attributes of the node at `path` (lstat: symlinks are not followed). */
  async getattr(path: string): Promise<FuseStat> {
    const place = this.#place(path);
    if (place.kind === 'root') return this.#rootStat();
    if (place.rest === '/' && !place.replica.ready) return this.#waitingDiskStat(place.disk);
    const { node } = await place.replica.resolve(place.rest);
    return this.#stat(place.replica, node);
  }

  /** getattr of an open file: the inode it was opened as, wherever it is now. */
  async fgetattr(path: string, fh: number): Promise<FuseStat> {
    const h = this.#handles.get(fh);
    if (!h) return this.getattr(path);
    return this.#stat(h.replica, await this.#handleNode(h));
  }

  /** Names with their attributes, "." and ".." first. */
  async readdir(path: string): Promise<{ names: string[]; stats: FuseStat[] }> {
    const place = this.#place(path);
    if (place.kind === 'root') {
      const root = this.#rootStat();
      const names = ['.', '..'];
      const stats = [root, root];
      for (const { entry, replica } of this.#replicas.list()) {
        if (!replica) continue;
        names.push(entry.disk);
        stats.push(replica.ready ? await this.#stat(replica, (await replica.resolve('/')).node) : this.#waitingDiskStat(entry.disk));
      }
      return { names, stats };
    }
    const { dir, entries } = await place.replica.list(place.rest);
    const self = await this.#stat(place.replica, dir.node);
    // ".." of a disk's root is the mount's root; elsewhere only its type matters to readdir's callers.
    const names = ['.', '..'];
    const stats = [self, place.rest === '/' ? this.#rootStat() : self];
    for (const e of entries) {
      // A name the kernel would misread as a path or a special entry cannot be served (ext4 never stores one).
      if (e.name === '.' || e.name === '..' || e.name.includes('/') || e.name.includes('\0')) continue;
      names.push(e.name);
      stats.push(await this.#stat(place.replica, e.node));
    }
    return { names, stats };
  }

  /** The symlink's target exactly as stored: never resolved here. */
  async readlink(path: string): Promise<string> {
    const node = await this.#node(path);
    if (node.type !== FileType.symlink || node.target === undefined) throw new FsError(Errno.EINVAL, `${path} is not a symbolic link`);
    return node.target;
  }

  /** Opens a regular file read-only; returns the handle. */
  async open(path: string, flags: number): Promise<number> {
    if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) throw new FsError(Errno.EROFS, `${path}: the view is read-only`);
    const place = this.#place(path);
    if (place.kind === 'root') throw new FsError(Errno.EISDIR, '/ is a directory');
    const { node } = await place.replica.resolve(place.rest);
    if (node.type === FileType.dir) throw new FsError(Errno.EISDIR, `${path} is a directory`);
    const fh = this.#nextHandle;
    this.#nextHandle = fh >= MAX_HANDLE ? 1 : fh + 1;
    this.#handles.set(fh, { replica: place.replica, ino: node.ino, generation: node.generation, next: 0, ahead: [] });
    return fh;
  }

  /** Forgets handle `fh` and its read-ahead. */
  release(fh: number): void {
    this.#handles.delete(fh);
  }

  /**
   * Up to `length` bytes at `offset` of the file open as `fh` (or at `path` without a handle), short at the end
   * of the file, holes as zeros. Each call's bytes come from one untorn read of the replica: its own, or a
   * read-ahead window read while the replica was in the state it is still in.
   */
  async read(path: string, fh: number, length: number, offset: number): Promise<Uint8Array> {
    const h = this.#handles.get(fh);
    if (!h) {
      const place = this.#place(path);
      if (place.kind === 'root') throw new FsError(Errno.EISDIR, '/ is a directory');
      const { node } = await place.replica.resolve(place.rest);
      return (await place.replica.read(node, offset, length)).data;
    }
    // Taken before the node: if the replica is still here when the bytes are served, nothing changed between.
    const seq = h.replica.status().appliedSeq;
    const sequential = offset === h.next;
    h.next = offset + length;
    const now = Date.now();
    h.ahead = h.ahead.filter((w) => w.seq === seq && now - w.at <= AHEAD_MAX_AGE_MS && w.end > offset);
    const first = h.ahead.find((x) => x.offset <= offset && offset < x.end);
    const node = first ? first.node : await this.#handleNode(h);
    const len = Math.max(0, Math.min(length, node.size - offset));
    if (len === 0) return new Uint8Array(0);
    const end = offset + len;
    if (!first) {
      if (!sequential || length < AHEAD_MIN_READ || h.replica.status().appliedSeq !== seq || !this.#aheadRoom()) {
        return (await h.replica.read(node, offset, len)).data;
      }
      return this.#fromWindows(h, [this.#readAhead(h, node, seq, offset)], offset, end);
    }
    // The windows from the one holding `offset` to the one holding the end (a read that is not page aligned in
    // the caller's memory comes in pieces that straddle windows); a missing next one is asked for now.
    const parts = [first];
    for (let last = first; end > last.end && last.end < last.node.size; ) {
      const at = last.end;
      last = h.ahead.find((x) => x.offset === at) ?? this.#readAhead(h, last.node, last.seq, at);
      parts.push(last);
    }
    return this.#fromWindows(h, parts, offset, end);
  }

  /** Bytes [offset, end) (clipped to the file) out of consecutive windows; asks for the next window when half through. */
  async #fromWindows(h: Handle, parts: readonly AheadWindow[], offset: number, end: number): Promise<Uint8Array> {
    const got = await Promise.all(parts.map((w) => w.data));
    const first = parts[0]!; // ok: callers pass one at least
    const last = parts[parts.length - 1]!; // ok: same
    // Two windows are two reads: together they are untorn only if both were read at the same disk sequence
    // (0: no block read, holes only). Otherwise this request is read afresh.
    const seqs = new Set(got.map((g) => g.seq).filter((s) => s !== 0));
    if (seqs.size > 1) return (await h.replica.read(first.node, offset, end - offset)).data;
    if (end > last.offset + AHEAD_WINDOW / 2 && last.end < last.node.size && !h.ahead.some((x) => x.offset === last.end) && this.#aheadRoom()) {
      this.#readAhead(h, last.node, last.seq, last.end);
    }
    const stop = Math.min(end, last.end);
    if (parts.length === 1) return got[0]!.data.subarray(offset - first.offset, stop - first.offset); // ok: one part
    const out = new Uint8Array(stop - offset);
    parts.forEach((w, i) => {
      const from = Math.max(offset, w.offset);
      const to = Math.min(stop, w.end);
      if (to > from) out.set(got[i]!.data.subarray(from - w.offset, to - w.offset), from - offset); // ok: same index
    });
    return out;
  }

  /** Totals of the disk `path` is on (the mount root and a disk still bootstrapping report none). */
  async statfs(path: string): Promise<FuseStatfs> {
    const place = this.#place(path);
    const base = { fsid: 0, flag: 0, namemax: NAME_MAX, bfree: 0, bavail: 0 };
    if (place.kind === 'root' || !place.replica.ready) return { ...base, bsize: 4096, frsize: 4096, blocks: 0, files: 0, ffree: 0, favail: 0 };
    const s = await place.replica.fsStats();
    // The guest's free space and inodes (df shows its use), less the root reservation for "available", as the
    // kernel's ext4 reports them, and its size less the metadata; the mount itself is read-only.
    const avail = Math.max(0, s.freeBlocks - s.reservedBlocks);
    return { ...base, bsize: s.blockSize, frsize: s.blockSize, blocks: u32(s.blocks), bfree: u32(s.freeBlocks), bavail: u32(avail), files: u32(s.inodes), ffree: u32(s.freeInodes), favail: u32(s.freeInodes) };
  }

  /** The value of extended attribute `name` (ENODATA if the node has none by that name). */
  async getxattr(path: string, name: string): Promise<Buffer> {
    const xattrs = await this.#xattrs(path);
    const hex = Object.hasOwn(xattrs, name) ? xattrs[name] : undefined;
    if (hex === undefined) throw new FsError(Errno.ENODATA, `${path} has no extended attribute ${name}`);
    return Buffer.from(hex, 'hex');
  }

  /** Names of the node's extended attributes. */
  async listxattr(path: string): Promise<string[]> {
    return Object.keys(await this.#xattrs(path));
  }

  // ------------------------------------------------------------------------------------------------

  /** Splits off the disk; a first name that is not an attached disk does not exist. */
  #place(path: string): Place {
    if (path === '/' || path === '') return { kind: 'root' };
    if (!path.startsWith('/')) throw new FsError(Errno.EINVAL, `path ${JSON.stringify(path)} is not absolute`);
    const slash = path.indexOf('/', 1);
    const disk = slash < 0 ? path.slice(1) : path.slice(1, slash);
    const rest = slash < 0 ? '/' : path.slice(slash) || '/';
    let replica: DiskReplica;
    try {
      replica = this.#replicas.get(disk);
    } catch (cause) {
      // Not a disk id, or no replica by that name: either way nothing of that name is at the root.
      throw new FsError(Errno.ENOENT, `no attached disk ${JSON.stringify(disk)}`, { cause });
    }
    return { kind: 'disk', disk, replica, rest };
  }

  async #node(path: string): Promise<FsNode> {
    const place = this.#place(path);
    if (place.kind === 'root') throw new FsError(Errno.EINVAL, '/ is the mount root');
    return (await place.replica.resolve(place.rest)).node;
  }

  async #xattrs(path: string): Promise<Readonly<Record<string, string>>> {
    const place = this.#place(path);
    if (place.kind === 'root' || (place.rest === '/' && !place.replica.ready)) return {};
    return (await place.replica.resolve(place.rest)).node.xattrs;
  }

  async #handleNode(h: Handle): Promise<FsNode> {
    const node = await h.replica.node(h.ino);
    // The inode was freed and reused by another file since the open.
    if (node.generation !== h.generation) throw new FsError(Errno.ESTALE, `inode ${h.ino} of disk ${h.replica.disk} is another file now`);
    return node;
  }

  #readAhead(h: Handle, node: FsNode, seq: number, offset: number): AheadWindow {
    const end = Math.min(node.size, offset + AHEAD_WINDOW);
    const data = h.replica.read(node, offset, end - offset).then((r) => ({ data: r.data, seq: r.seq }));
    const w: AheadWindow = { offset, end, seq, at: Date.now(), node, data };
    // A window that fails is dropped; the read waiting on it (if any) gets the error, nobody else.
    data.catch(() => {
      h.ahead = h.ahead.filter((x) => x !== w);
    });
    h.ahead.push(w);
    return w;
  }

  #aheadRoom(): boolean {
    let total = 0;
    for (const h of this.#handles.values()) for (const w of h.ahead) total += w.end - w.offset;
    return total + AHEAD_WINDOW <= AHEAD_MAX_TOTAL;
  }

  async #blockSize(replica: DiskReplica): Promise<number> {
    let bs = this.#blockSizes.get(replica);
    if (bs === undefined) {
      bs = await replica.blockSize();
      this.#blockSizes.set(replica, bs);
    }
    return bs;
  }

  /** The mount's inode number of `ino` on `replica`'s disk (see {@link InodeNumbers}). */
  async #ino(replica: DiskReplica, ino: number): Promise<number> {
    let inodes = this.#inodeCounts.get(replica);
    if (inodes === undefined) {
      inodes = (await replica.fsStats()).inodes;
      this.#inodeCounts.set(replica, inodes);
    }
    return this.#inos.of(replica.disk, inodes, ino);
  }

  async #stat(replica: DiskReplica, node: FsNode): Promise<FuseStat> {
    const blockSize = await this.#blockSize(replica);
    const ino = await this.#ino(replica, node.ino);
    let blocks = 0;
    if (node.type === FileType.file) for (const r of node.runs ?? []) blocks += (r.length * blockSize) / 512;
    else if (node.type === FileType.dir) blocks = Math.ceil(node.size / 512);
    return {
      mode: TYPE_BITS[node.type] | (node.mode & 0o7777),
      uid: node.uid,
      gid: node.gid,
      size: node.size,
      nlink: node.nlink,
      ino,
      blksize: blockSize,
      blocks,
      atime: toMs(node.atime),
      mtime: toMs(node.mtime),
      ctime: toMs(node.ctime),
      rdev: node.rdev >>> 0,
    };
  }

  #rootStat(): FuseStat {
    const disks = this.#replicas.list().filter((d) => d.replica).length;
    const t = this.#mountedAtMs;
    return { mode: TYPE_BITS.dir | 0o555, uid: this.#uid, gid: this.#gid, size: 0, nlink: 2 + disks, ino: MOUNT_ROOT_INO, blksize: 4096, blocks: 0, atime: t, mtime: t, ctime: t };
  }

  /** A disk's directory before its replica has a state (its content then answers EAGAIN). */
  #waitingDiskStat(disk: string): FuseStat {
    const t = this.#mountedAtMs;
    return { mode: TYPE_BITS.dir | 0o555, uid: this.#uid, gid: this.#gid, size: 0, nlink: 2, ino: this.#inos.waiting(disk), blksize: 4096, blocks: 0, atime: t, mtime: t, ctime: t };
  }
}

/** fuse-native carries times as unsigned milliseconds: earlier than the epoch reads as the epoch. */
function toMs(t: { sec: number; nsec: number }): number {
  return Math.max(0, t.sec * 1000 + Math.floor(t.nsec / 1_000_000));
}

function u32(n: number): number {
  return Math.min(U32_MAX, Math.max(0, Math.floor(n)));
}
