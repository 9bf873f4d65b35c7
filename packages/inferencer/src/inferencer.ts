/**
 * The inference engine for one disk: applies write records in stream order to its view of the file system's
 * metadata and derives file-level events.
 *
 * Consistency points: with a jbd2 journal, each committed transaction (its commit block written); without one
 * (ext2), each flush. At a consistency point the inodes whose metadata changed are derived again from the
 * blocks and compared with what the tree held: directory entries become create/delete/rename/link/unlink,
 * attributes become attr/truncate, and data blocks written before the metadata that maps them (held in a
 * bounded pending buffer) become write events. Data written over blocks already mapped below end of file is
 * reported at once.
 */
import { copyBytes, trimmedCopy, trimmedLength, trimmedView, widen } from './bytes.js';
import {
  CorruptError,
  CorruptKind,
  Ext4Error,
  Ext4Volume,
  FileType,
  IncompatibleError,
  InodeFlags,
  JOURNAL_INO,
  ROOT_INO,
  EXT4_SUPER_MAGIC,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  bytesEqual,
  decodeDevice,
  decodeName,
  decodeSuperblock,
  inodeInUse,
  majorMinor,
  type Extent,
  type Ext4Inode,
  type Ext4GroupDesc,
  type Ext4Superblock,
  type TreeEntry,
} from '@gammaray/ext4';
import type { BlockSource } from '@gammaray/disk';
import type { WriteRecord } from '@gammaray/wire';
import { CHECKPOINT_VERSION, decodeCheckpoint, encodeCheckpointParts, type HeldBlock } from './checkpoint.js';
import { DataIndex, type MappedRun } from './data-index.js';
import { EVENT_VERSION, EventKind, type AttrChange, type FsEvent, type FsStat } from './events.js';
import { JournalFollower, type CommittedTx, type JournalState } from './journal.js';
import {
  DEFAULT_INLINE_LIMIT,
  DEFAULT_PENDING_BYTES,
  MAX_CORRUPT_EVENTS_PER_RECORD,
  MAX_INODES_PER_SETTLE,
  MAX_LOGGED_DATA_BYTES,
  MAX_ORDER_DEPTH,
  MAX_OMITTED_BLOCKS,
  MAX_PATH_DEPTH,
  MAX_PREALLOC_FILES,
  MAX_PREALLOC_WRITTEN,
  MAX_TAILS,
  MAX_UNREADABLE,
  RECENT_DATA_BYTES,
  NO_JOURNAL_RETRIES,
  MAX_WRITE_RUN_BYTES,
  PENDING_MAX_COMMITS,
  UNWRITTEN_MAX_COMMITS,
  UNWRITTEN_MIN_MS,
} from './limits.js';
import { TimeCache, isDevice, makeNode, nodeOfInode, nodeRdev, runAt, sameRunsObject, sameTime, statOf, treeEntryOf, type FsNode } from './node.js';
import { LinkTable } from './links.js';
import { NodeTable } from './node-table.js';
import { OldestKey } from './oldest-key.js';
import { BlockStore, type BlockFetcher } from './store.js';
import { NoVolumeError, clipRecord, locateVolume, sameWindow, wholeDisk, windowed, type VolumeWindow } from './volume-window.js';

/** Options of a {@link DiskInferencer}. */
export interface InferencerOptions {
  /** Disk id (events carry it). */
  readonly disk: string;
  /** Largest write carried inline in an event (default 64 KiB). */
  readonly inlineLimit?: number;
  /** Bytes of unattributed data held for later attribution (default 64 MiB). */
  readonly pendingBytes?: number;
  /**
   * The partition to follow on a partitioned disk (Linux numbering; 0: the whole disk). Default: the whole disk
   * when a file system starts at byte 0, else the largest partition holding one (see locateVolume).
   */
  readonly partition?: number;
}

/** A data block written before anything mapped it. */
interface PendingBlock {
  /** The block's bytes without its trailing zeros (most blocks of small files are mostly zeros). */
  data: Uint8Array;
  seq: number;
  ts: Date;
  commits: number;
}

/** The block of a file that holds its end: its latest bytes and what events have reported of it. */
interface Tail {
  readonly logical: number;
  readonly block: number;
  /** The block's latest bytes; trailing zeros may be cut off (widened to a whole block before it is changed). */
  data: Uint8Array;
  /** Bytes consumers know (zeros past end of file); undefined: see `reportedLim`. */
  reported: Uint8Array | undefined;
  /** With `reported` undefined: consumers know `data` below this offset and zeros above; -1: nothing reported. */
  reportedLim: number;
}

/** An entry change found at a consistency point. */
interface EntryChange {
  readonly dir: number;
  readonly name: string;
  readonly ino: number;
}

/** Emission context: the record being applied. */
interface Ctx {
  readonly seq: number;
  readonly ts: Date;
  readonly out: FsEvent[];
  /** `corrupt` events of this record (or crawl) so far, and those left out past MAX_CORRUPT_EVENTS_PER_RECORD. */
  readonly problems: { reported: number; dropped: number };
  /** The write event last made for data written to mapped blocks, while later blocks may extend it. */
  run?: WriteRun;
}

/** A write event being extended by the blocks of one large write that follow it (see DiskInferencer.writeRun). */
interface WriteRun {
  readonly node: FsNode;
  readonly event: FsEvent;
  end: number;
  length: number;
  /** The bytes, while the run is short enough to carry them (the inline limit). */
  parts: Uint8Array[] | undefined;
}

type Derived = FsNode | null | CorruptError;

/** Shared empty values of derived nodes (makeNode keeps them shared). */
const NO_XATTRS: Record<string, string> = {};
const NOTHING: readonly number[] = [];
/** deriveHeld's answer when the inode cannot be derived without a read. */
const NEEDS_READ = Symbol('needs a read');

/** A node's xattrs as events carry them (values in hex), without the inline-data pseudo-attribute. */
function xattrsOf(list: readonly { name: string; value: Uint8Array }[]): Record<string, string> {
  let xattrs: Record<string, string> = NO_XATTRS;
  for (const x of list) {
    if (x.name === 'system.data') continue;
    if (xattrs === NO_XATTRS) xattrs = {};
    xattrs[x.name] = Buffer.from(x.value).toString('hex');
  }
  return xattrs;
}

/**
 * Zeros that write events of unmapped ranges are viewed from (see zeroUnmapped); allocated on first use, never
 * written (emitWrites copies what it carries).
 */
let zeroBuffer: Uint8Array | undefined;

/**
 * A file's mapped runs from its extents. Preallocated (unwritten) extents are kept, marked: they read as zeros,
 * whatever their blocks hold (fallocate does not clear them), but a write the guest makes into one is still its
 * file's (with dioread_nolock ext4 writes every new block so, then marks it written in a later commit). Data
 * written before the commit that maps the block waits until ext4 marks it written (see resolvePending).
 */
function runsOf(ino: number, map: readonly Extent[]): MappedRun[] {
  return map.map((e) => (e.initialized ? { ino, logical: e.logical, physical: e.physical, length: e.length } : { ino, logical: e.logical, physical: e.physical, length: e.length, unwritten: true }));
}

/** The blocks a derivation read, sorted (the shared empty list when none). */
function ownedOf(tracker: ReadonlySet<number>): readonly number[] {
  return tracker.size === 0 ? NOTHING : [...tracker].sort((a, b) => a - b);
}

/**
 * The disk holds no ext2/3/4 superblock at all (a blank disk before the guest formats it, or another file system):
 * nothing to crawl yet. A service waits and tries again; it is not damage.
 */
export class NoFileSystemError extends CorruptError {
  constructor(message: string) {
    super(CorruptKind.SuperblockMagic, message, { field: 's_magic' });
    this.name = 'NoFileSystemError';
  }
}

/** See the module comment. */
export class DiskInferencer {
  readonly disk: string;
  private readonly inlineLimit: number;
  private readonly pendingLimit: number;
  /** Nodes reachable from the root. */
  readonly nodes = new NodeTable();
  /** Where each node appears: its (directory, name) links. */
  private readonly links = new LinkTable();
  /** Metadata block -> inodes whose derivation read it. */
  private readonly owners = new Map<number, Set<number>>();
  /**
   * Inodes whose node or links changed since the last checkpoint taken (see {@link deltaCheckpointParts});
   * undefined until the first full one, so an engine that never checkpoints (a view's) tracks nothing.
   */
  private changedNodes: Set<number> | undefined;
  /** The changes the last checkpoint taken covered, until it is known to be stored (see {@link checkpointFailed}). */
  private lastTaken: { readonly nodes: Set<number>; readonly blocks: Set<number> } | undefined;
  private readonly dataIndex = new DataIndex();
  /** Times shared by the nodes derived lately (see TimeCache). */
  private readonly times = new TimeCache();
  /** The blocks one derivation read (one set, cleared for each). */
  private readonly tracker = new Set<number>();
  private readonly pending = new Map<number, PendingBlock>();
  private readonly pendingOldest = new OldestKey(this.pending);
  private pendingBytes = 0;
  /** Blocks pushed out of the pending buffer: block -> the sequence that wrote them. */
  private readonly omitted = new Map<number, { seq: number; ts: Date }>();
  private readonly omittedOldest = new OldestKey(this.omitted);
  private readonly dirty = new Set<number>();
  /** Files whose data map was adopted since the last pending resolution. */
  private readonly remapped = new Set<number>();
  /** Without a journal: inodes whose derivation failed, and how many flushes in a row. */
  private readonly retries = new Map<number, number>();
  /**
   * Without a journal: data blocks written lately, whole. ext2 may reuse a block freed since the last flush
   * for metadata before any flush says so; a read of it must see what was written, not the disk's old bytes.
   */
  private readonly recent = new Map<number, Uint8Array>();
  private readonly recentOldest = new OldestKey(this.recent);
  private recentBytes = 0;
  /**
   * data=journal: file-data blocks reported from a commit that logged them, as reported, until the checkpoint
   * writes them home (that write is the same data, not news). Bounded (MAX_LOGGED_DATA_BYTES, oldest dropped).
   */
  private readonly logged = new Map<number, { ino: number; logical: number; data: Uint8Array }>();
  private readonly loggedOldest = new OldestKey(this.logged);
  private loggedBytes = 0;
  /** Without a journal: a new inode that failed to derive -> the directory that names it. */
  private readonly namedBy = new Map<number, number>();
  /**
   * Inodes a directory names that could not be read (damaged, or free), left out of the tree and out of the
   * directory's entries: child -> directory. When the child's inode or blocks change, the directory is looked at
   * again, so a repaired inode joins the tree (as `create` events). Bounded (MAX_UNREADABLE, oldest dropped).
   */
  private readonly unreadable = new Map<number, number>();
  /** Per file, the last block written that held end of file: ino -> (logical block, physical block, bytes). */
  private readonly tails = new Map<number, Tail>();
  /** Iterator over `tails` in insertion order, at its oldest entry (see setTail). */
  private readonly tailsOldest = new OldestKey(this.tails);
  /** Files whose remembered block has bytes held back until the next consistency point. */
  private readonly heldTails = new Set<number>();
  /**
   * Files with preallocated (unwritten) blocks that consumers hold as zeros, all but the logical blocks listed:
   * ino -> the preallocated blocks written (and reported) since they were preallocated. Zeros written into one of
   * the others tell nothing (ext4 zeroes a small preallocated extent out when part of it is written), and are
   * not reported. A file is followed from the consistency point at which it gets preallocated blocks (created with
   * them, or its first ones; not after a crawl, when nothing says what consumers hold) until it has none; a
   * file not followed (beyond MAX_PREALLOC_FILES, or with more than MAX_PREALLOC_WRITTEN blocks written) has every
   * write reported.
   */
  private readonly prealloc = new Map<number, Set<number>>();
  /**
   * Files whose size grew at a consistency point past the data seen so far: ino -> [bytes known to hold data,
   * consistency points left, capture time (ms) of the commit]. ext4 may commit an append's new size before the
   * data block reaches the disk (an append inside an allocated block is not ordered data): until the data arrives,
   * or both UNWRITTEN_MAX_COMMITS commits and UNWRITTEN_MIN_MS of capture time have passed, readers are better
   * served the old end of file than zeros.
   */
  private readonly unwritten = new Map<number, [number, number, number]>();
  /** Inode-table runs: [first block, block count, first inode], sorted by block. */
  private itables: [number, number, number][] = [];
  private geometryDirty = false;
  /**
   * The file system has a journal this engine could not read at its crawl (a damaged journal superblock, or one
   * not written yet: an image still being copied over the disk), so it follows the disk at flushes. At each
   * flush it looks at the journal superblock again; once it reads back, the disk is crawled again (resync) to
   * follow the journal from then on.
   */
  private journalUnread = false;
  /** The journal superblock bytes {@link journalReadable} last looked at (not checkpointed: one more look after a restore). */
  private journalLooked: Uint8Array | undefined;
  /**
   * The superblock the geometry comes from (SUPERBLOCK_SIZE raw bytes): the last one written that opened and kept
   * the geometry. A guest can write anything over its superblock while its kernel goes on from the copy in memory;
   * following such bytes (or failing on them) would blind the monitor, so they give one `corrupt` event instead.
   */
  private superBytes: Uint8Array = new Uint8Array(0);
  /** Damaged blocks the crawl's last directory read skipped, reported once the directory has a path. */
  private partialErrors: Ext4Error[] = [];
  /** The last rejected superblock reported, so that one bad superblock gives one event. */
  private badSuper: Uint8Array | undefined;
  /** Set when a valid superblock of another file system (a new UUID: mkfs) was written: see {@link resyncReason}. */
  private resync: string | undefined;
  private journal: JournalFollower | undefined;
  /**
   * Blocks of the transaction being applied that were mapped as file data when it was walked (see committed):
   * what a read of them as metadata during its settle must see. Cleared after each transaction.
   */
  private readonly txData = new Map<number, Uint8Array>();
  /** Where each block of txData was mapped when the transaction was walked. */
  private readonly txMapped = new Map<number, { ino: number; logical: number }>();
  /**
   * Blocks of the transaction being applied that no file mapped when it was walked (taken as metadata images):
   * those its settle maps as file data are that file's data. data=journal logs a new block's data in the
   * transaction that allocates it; the block reaches its home only at a later checkpoint.
   */
  private readonly txUnmapped = new Map<number, Uint8Array>();
  private applied: number;
  private idx = 0;
  private idxSeq = -1;

  private constructor(
    opts: InferencerOptions,
    readonly store: BlockStore,
    private volume: Ext4Volume,
    appliedSeq: number,
    /** Where the file system lies on the disk; the store reads through it. */
    readonly window: VolumeWindow,
    /** Block reads of the whole disk (the store's fetcher is this one seen through the window). */
    private readonly diskFetcher: BlockFetcher,
  ) {
    this.disk = opts.disk;
    this.inlineLimit = opts.inlineLimit ?? DEFAULT_INLINE_LIMIT;
    this.pendingLimit = opts.pendingBytes ?? DEFAULT_PENDING_BYTES;
    this.applied = appliedSeq;
    store.fallback = (b) => {
      const logged = this.txData.get(b);
      if (logged) return logged;
      const p = this.pending.get(b);
      return p ? widen(p.data, this.store.blockSize) : this.recent.get(b);
    };
  }

  /**
   * Why this state no longer describes the disk, once the guest made a new file system on it (mkfs writes a
   * superblock with a new UUID, and a new journal this engine would never follow): the disk must be crawled
   * again (the inferencer publishes a `resync` event, then the crawl's snapshot). Undefined while it does.
   */
  get resyncReason(): string | undefined {
    return this.resync;
  }

  /** Last stream sequence applied. */
  get appliedSeq(): number {
    return this.applied;
  }

  /**
   * The size a reader should see for `node`: its size, or less while an append's new size is committed but its
   * data has not reached the disk yet (ext4 can order them that way): the end of the data seen, so a reader
   * never takes zeros for content that is still on its way. Not part of events or checkpoints.
   */
  visibleSize(node: FsNode): number {
    const u = this.unwritten.get(node.ino);
    return u === undefined ? node.size : Math.min(node.size, u[0]);
  }

  /** Inodes in the tree (nodes held). */
  get trackedInodes(): number {
    return this.nodes.size;
  }

  /** Bytes of the metadata blocks held, as kept (most of them packed or deflated), and how many blocks. */
  heldBlocks(): { blocks: number; bytes: number } {
    let bytes = 0;
    for (const s of this.store.blocks.values()) bytes += s.keptBytes;
    return { blocks: this.store.blocks.size, bytes };
  }

  /** Bytes of data blocks waiting in the pending buffer for the metadata that maps them. */
  get pendingDataBytes(): number {
    return this.pendingBytes;
  }

  /** The file system's superblock as last read. */
  get superblock(): Ext4Superblock {
    return this.volume.superblock;
  }

  /** Free blocks as the group descriptors count them (as of the last consistency point); damaged ones count none. */
  freeBlocks(): number {
    const sb = this.volume.superblock;
    return Math.min(this.sumGroups((g) => g.freeBlocks) * (sb.clusterSize / sb.blockSize), sb.blocksCount);
  }

  /** Blocks of the internal journal being followed (its superblock's s_maxlen); 0 without one. */
  journalBlocks(): number {
    return this.journal?.superblock.maxLen ?? 0;
  }

  /** Free inodes as the group descriptors count them (what the kernel's statfs reports). */
  freeInodes(): number {
    return Math.min(this.sumGroups((g) => g.freeInodes), this.volume.superblock.inodesCount);
  }

  /** A field of every group descriptor, summed; a damaged descriptor (reported where it is used) counts 0. */
  private sumGroups(field: (gd: Ext4GroupDesc) => number): number {
    let sum = 0;
    for (let g = 0; g < this.volume.superblock.groupCount; g++) {
      try {
        sum += field(this.volume.groupDesc(g));
      } catch {
        // a damaged descriptor
      }
    }
    return sum;
  }

  /**
   * Crawls the disk through `fetcher` (block reads) and builds the tree. `fromSeq` is the last stream sequence
   * of the disk's writes before the crawl began: records after it are applied on top (a block's read already
   * includes the records up to the sequence it was read at). Returns the snapshot event first.
   */
  static async bootstrap(fetcher: BlockFetcher, opts: InferencerOptions, fromSeq: number, ts: Date, firstIdx = 0): Promise<{ inferencer: DiskInferencer; events: FsEvent[] }> {
    const { inf } = await DiskInferencer.openStore(fetcher, opts, fromSeq);
    // Events of record fromSeq already published (before a resync) keep their msg ids: the crawl's come after.
    if (firstIdx > 0) {
      inf.idxSeq = fromSeq;
      inf.idx = firstIdx;
    }
    const ctx: Ctx = { seq: fromSeq, ts, out: [], problems: { reported: 0, dropped: 0 } };
    const corrupt: FsEvent[] = [];
    let replay: CommittedTx[] = [];
    try {
      replay = await inf.openJournal();
    } catch (err) {
      if (!(err instanceof Ext4Error)) throw err;
      // Without the journal the disk is still followed: its flushes become the consistency points (as on ext2),
      // so changes show when the kernel writes metadata home rather than when it commits. A crawl that threw
      // here was retried forever: a guest could keep its journal superblock damaged and go unmonitored.
      inf.journal = undefined;
      inf.journalUnread = true;
      inf.corrupt({ ...ctx, out: corrupt }, `journal: ${err.message}; followed without it until the next crawl (changes show when written home)`, { ino: inf.volume.superblock.journalInum, kind: err instanceof CorruptError ? err.kind : 'Journal' });
    }
    for (const tx of replay) for (const b of tx.blocks) inf.store.setJournal(b.fsBlock, b.data, fromSeq);
    if (replay.length > 0) inf.volume = await Ext4Volume.open(inf.store);
    inf.superBytes = await inf.store.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
    inf.buildItables();
    await inf.crawl({ ...ctx, out: corrupt });
    inf.reportDropped({ ...ctx, out: corrupt });
    inf.store.compact();
    const counts = inf.counts();
    const snapshot = inf.event(ctx, { kind: EventKind.Snapshot, path: '', ino: 0, type: '', files: counts.files, dirs: counts.dirs, ...(inf.window.partition !== 0 ? { partition: inf.window.partition } : {}), ...(inf.window.lv !== undefined ? { lv: inf.window.lv } : {}) });
    return { inferencer: inf, events: [snapshot, ...corrupt.map((e) => ({ ...e, idx: inf.nextIdx(fromSeq) }))] };
  }

  private static async openStore(disk: BlockFetcher, opts: InferencerOptions, seq: number): Promise<{ inf: DiskInferencer }> {
    let window: VolumeWindow;
    try {
      window = await locateVolume(disk, opts.partition);
    } catch (err) {
      if (err instanceof NoVolumeError) throw new NoFileSystemError(err.message);
      throw err;
    }
    const fetcher = windowed(disk, window);
    // The block size is not known before the superblock: read it raw first.
    const head = await fetcher.read(0, Math.min(fetcher.size, 4096));
    const magicAt = SUPERBLOCK_OFFSET + 0x38; // s_magic
    if (head.data.length < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE || (head.data[magicAt]! | (head.data[magicAt + 1]! << 8)) !== EXT4_SUPER_MAGIC) { // ok: length checked
      throw new NoFileSystemError(`the disk holds no ext2/3/4 file system (no superblock magic at byte ${magicAt}): blank, not formatted yet, or another file system`);
    }
    const bs = 1024 << new DataView(head.data.buffer, head.data.byteOffset + 1024 + 0x18, 4).getUint32(0, true);
    const store = new BlockStore(fetcher, bs >= 1024 && bs <= 65536 ? bs : 1024);
    const volume = await Ext4Volume.open(store);
    if (volume.superblock.blockSize !== store.blockSize) throw new IncompatibleError('block size changed while reading the superblock', []);
    return { inf: new DiskInferencer(opts, store, volume, seq, window, disk) };
  }

  /** The journal follower (replaying what the log still holds). */
  private async openJournal(): Promise<CommittedTx[]> {
    const found = await this.readJournal();
    if (!found) return [];
    this.journal = found;
    return found.recover();
  }

  /** A follower of the journal the superblock names, as its blocks are now; undefined without one. Throws Ext4Error. */
  private async readJournal(): Promise<JournalFollower | undefined> {
    const sb = this.volume.superblock;
    if (!sb.has.journal || sb.journalInum === 0) return undefined;
    const map = await this.volume.blockMap(await this.volume.readInode(sb.journalInum || JOURNAL_INO));
    const first = map[0];
    if (!first) return undefined;
    return this.journalFollower(await this.store.read(first.physical * sb.blockSize, sb.blockSize), map);
  }

  /**
   * Whether the journal reads back now, as a crawl's openJournal would take it (its superblock, then the log it
   * would replay), so that a crawl started on the strength of this does not end without the journal again
   * (see `journalUnread`). The log is read again only when the journal superblock changed since the last look:
   * a guest flushing often does not make every flush re-read a damaged log. Never throws for bad disk data.
   */
  private async journalReadable(): Promise<boolean> {
    try {
      const j = await this.readJournal();
      if (!j) return false;
      const jsb = j.superblockBytes;
      if (this.journalLooked !== undefined && bytesEqual(jsb, this.journalLooked)) return false;
      this.journalLooked = copyBytes(jsb);
      await j.recover();
      return true;
    } catch (err) {
      if (err instanceof Ext4Error) return false;
      throw err;
    }
  }

  /**
   * After a write to the partition table's area: notes a resync when the followed partition moved, changed size,
   * or no longer holds a file system (the guest repartitioned the disk, or grew the partition to resize into it).
   */
  private async checkWindow(): Promise<void> {
    if (this.resync !== undefined) return;
    const was = this.window;
    let now: VolumeWindow;
    try {
      now = await locateVolume(this.diskFetcher, was.partition);
    } catch (err) {
      if (!(err instanceof NoVolumeError)) throw err;
      this.resync = `the partition table changed: ${err.message}`;
      return;
    }
    if (!sameWindow(was, now)) {
      this.resync = `the partition table changed: partition ${was.partition} was ${was.size} bytes at byte ${was.start}, is ${now.size} bytes at byte ${now.start}`;
    }
  }

  /** Notes a resync when `raw` is a valid superblock of another file system than the one followed. */
  private checkIdentity(raw: Uint8Array): void {
    if (this.resync !== undefined || this.superBytes.length !== SUPERBLOCK_SIZE) return;
    const was = this.superBytes.subarray(UUID_AT, UUID_AT + 16);
    const now = raw.subarray(UUID_AT, UUID_AT + 16);
    if (bytesEqual(was, now)) return;
    try {
      decodeSuperblock(raw);
    } catch (err) {
      if (err instanceof Ext4Error) return; // garbage, not a new file system: reopenVolume reports it
      throw err;
    }
    this.resync = `a new file system was made on the disk (UUID ${uuidText(was)} became ${uuidText(now)})`;
  }

  /** Follows the journal whose superblock is `jsb` and whose blocks lie at `map`. */
  private followJournal(jsb: Uint8Array, map: readonly Extent[]): void {
    this.journal = this.journalFollower(jsb, map);
  }

  /** A follower of the journal whose superblock is `jsb` and whose blocks lie at `map`, reading through the fetcher. */
  private journalFollower(jsb: Uint8Array, map: readonly Extent[]): JournalFollower {
    const bs = this.volume.superblock.blockSize;
    const follower: JournalFollower = new JournalFollower(jsb, map, async (j: number): Promise<Uint8Array> => {
      const p = follower.physicalOf(j);
      if (p === undefined) throw new CorruptError('JournalBlock', `journal block ${j} is not mapped`, {});
      return (await this.store.fetcher.read(p * bs, bs)).data;
    });
    return follower;
  }

  /**
   * Opens the volume again at a consistency point (group descriptors and inode tables may have changed). A
   * superblock that changed is taken when it opens and keeps the geometry (block, inode and group sizes, the
   * journal inode: what no mounted ext4 changes; a resize may add groups); otherwise the last valid one stays in
   * force and the rejected one is reported once as `corrupt`.
   */
  private async reopenVolume(ctx: Ctx): Promise<void> {
    const raw = await this.store.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
    if (bytesEqual(raw, this.superBytes)) {
      this.volume = await Ext4Volume.open(this.store);
      this.badSuper = undefined;
      return;
    }
    let problem: string;
    let kind = 'Superblock';
    try {
      const next = await Ext4Volume.open(this.store);
      this.checkIdentity(raw);
      const changed = this.resync ?? geometryChange(this.volume.superblock, next.superblock);
      if (changed === undefined) {
        this.volume = next;
        this.superBytes = raw;
        this.badSuper = undefined;
        return;
      }
      problem = changed;
    } catch (err) {
      if (!(err instanceof Ext4Error)) throw err;
      problem = err.message;
      if (err instanceof CorruptError) kind = err.kind;
    }
    if (this.badSuper === undefined || !bytesEqual(raw, this.badSuper)) {
      this.badSuper = raw;
      this.corrupt(ctx, `superblock: ${problem}; the last valid superblock stays in force`, { block: Math.floor(SUPERBLOCK_OFFSET / this.store.blockSize), kind });
    }
    this.volume = await Ext4Volume.open(withSuperblock(this.store, this.superBytes));
  }

  private buildItables(): void {
    const sb = this.volume.superblock;
    const per = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / sb.blockSize);
    const out: [number, number, number][] = [];
    for (let g = 0; g < sb.groupCount; g++) {
      try {
        out.push([this.volume.groupDesc(g).inodeTable, per, g * sb.inodesPerGroup + 1]);
      } catch {
        // A damaged descriptor: its inodes are never tracked.
      }
    }
    out.sort((a, b) => a[0] - b[0]);
    this.itables = out;
  }

  /** The first inode whose slot lies in block `b`, or undefined when `b` is not an inode-table block. */
  private itableSlot(b: number): number | undefined {
    const t = this.itables;
    let lo = 0;
    let hi = t.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [start, count, firstIno] = t[mid]!; // ok: in range
      if (b < start) hi = mid - 1;
      else if (b >= start + count) lo = mid + 1;
      // ok: a uint32 (inode numbers are 32-bit), so it stays a small integer: a division's result is a double,
      // and one double stored in a field makes V8 box that field in every object of the shape (nodes, links).
      else return (firstIno + ((b - start) * this.volume.superblock.blockSize) / this.volume.superblock.inodeSize) >>> 0;
    }
    return undefined;
  }

  /** The inode-table block holding inode `ino`'s slot, or undefined when no tracked inode table has it. */
  private itableBlock(ino: number): number | undefined {
    const { blockSize, inodeSize } = this.volume.superblock;
    for (const [start, count, firstIno] of this.itables) {
      const byte = (ino - firstIno) * inodeSize;
      if (byte >= 0 && byte < count * blockSize) return start + Math.floor(byte / blockSize);
    }
    return undefined;
  }

  /**
   * Builds the tree from the root. Damage does not stop it: a directory with damaged blocks keeps the names of
   * the others; an unreadable root stands in as an empty directory with no attributes (see
   * {@link unreadableRoot}) until it reads back. Either way a `corrupt` event says so, and the tree fills in
   * when the guest rewrites the damaged blocks. (A crawl that threw here was retried forever, and a guest that
   * kept its root damaged, then made a new file system to force a crawl, went unmonitored.)
   */
  private async crawl(ctx: Ctx): Promise<void> {
    this.tracker.clear();
    this.partialErrors = [];
    this.links.set(ROOT_INO, []); // first, so that what is reported about the root carries its path, "/"
    this.changedNodes?.add(ROOT_INO);
    let root = await this.derive(ROOT_INO, ctx, false, true);
    if (root === null || root instanceof CorruptError) {
      if (root === null) this.corrupt(ctx, 'the root directory (inode 2) is not in use; the tree is empty until it is', { ino: ROOT_INO, kind: 'InodeField' });
      root = unreadableRoot(ownedOf(this.tracker));
    }
    this.adopt(root);
    this.reportPartial(ctx, ROOT_INO);
    const todo: number[] = [ROOT_INO];
    let n = 0;
    while (todo.length > 0 && n++ < MAX_INODES_PER_SETTLE) {
      const dir = this.nodes.get(todo.pop()!)!; // ok: queued only after adopt
      for (const [name, ino] of dir.entries ?? []) {
        const known = this.nodes.get(ino);
        if (known) {
          if (known.type === FileType.dir) {
            this.corrupt(ctx, `directory ${ino} is linked more than once`, { ino });
            continue;
          }
          this.addLink(ino, dir.ino, name);
          continue;
        }
        this.partialErrors = [];
        let d = this.derive(ino, ctx, false, true);
        if (d instanceof Promise) d = await d;
        if (d === null || d instanceof CorruptError) {
          if (d === null) this.corrupt(ctx, `entry ${JSON.stringify(name)} of directory ${dir.ino} names free inode ${ino}`, { ino: dir.ino });
          // Out of the directory's entries as well, so that the name counts as new when the inode is repaired.
          (dir.entries as Map<string, number>).delete(name);
          this.changedNodes?.add(dir.ino);
          this.noteUnreadable(ino, dir.ino);
          continue;
        }
        this.adopt(d);
        this.addLink(ino, dir.ino, name);
        this.reportPartial(ctx, ino);
        if (d.type === FileType.dir) todo.push(ino);
      }
    }
  }

  /** Remembers that directory `dir` names `child`, which could not be read (see `unreadable`). */
  private noteUnreadable(child: number, dir: number): void {
    this.unreadable.delete(child);
    if (this.unreadable.size >= MAX_UNREADABLE) this.unreadable.delete(this.unreadable.keys().next().value!); // ok: not empty
    this.unreadable.set(child, dir);
  }

  /** Reports the damaged blocks the crawl's last read of directory `ino` skipped (see deriveRead's `partial`). */
  private reportPartial(ctx: Ctx, ino: number): void {
    for (const err of this.partialErrors) {
      this.corrupt(ctx, `${err.message}; the directory's other blocks are listed`, { ino, kind: err instanceof CorruptError ? err.kind : err.name, block: err instanceof CorruptError ? err.block : undefined });
    }
    this.partialErrors = [];
  }

  /** Files and directories in the tree (the root counts as a directory). */
  counts(): { files: number; dirs: number } {
    let dirs = 0;
    let files = 0;
    for (const n of this.nodes.values()) {
      if (n.type === FileType.dir) dirs++;
      else files += this.links.count(n.ino);
    }
    return { files, dirs };
  }

  /** The current tree in the tree-entry JSON shape, one entry per path, sorted by path. */
  tree(): TreeEntry[] {
    const out: TreeEntry[] = [];
    const walk = (ino: number, path: string, depth: number) => {
      const n = this.nodes.get(ino);
      if (!n || depth > MAX_PATH_DEPTH) return;
      out.push(treeEntryOf(path, n));
      if (n.entries) for (const [name, child] of n.entries) if (this.links.includes(child, ino, name)) walk(child, path === '/' ? `/${name}` : `${path}/${name}`, depth + 1);
    };
    walk(ROOT_INO, '/', 0);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  // ---------------------------------------------------------------- records

  /**
   * Applies the record with stream sequence `seq` (records must come in stream order; one at or below the
   * applied sequence is ignored). Returns the events it completed, in order.
   */
  async apply(seq: number, rec: WriteRecord): Promise<FsEvent[]> {
    if (seq <= this.applied) return [];
    const ctx: Ctx = { seq, ts: rec.ts, out: [], problems: { reported: 0, dropped: 0 } };
    const { ops, tableTouched } = clipRecord(rec, this.window, this.diskFetcher.size);
    // The superblock as written by this record (whole in one write, as the kernel and mkfs write it), if it was.
    let superWrite: Uint8Array | undefined;
    let superTouched = false;
    for (const op of ops) {
      if (op.op === 'write' && op.offset < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE && op.offset + op.data.length > SUPERBLOCK_OFFSET) {
        const at = SUPERBLOCK_OFFSET - op.offset;
        superWrite = at >= 0 && at + SUPERBLOCK_SIZE <= op.data.length ? op.data.subarray(at, at + SUPERBLOCK_SIZE) : undefined;
        superTouched = superWrite === undefined;
      }
      if (op.op === 'write') await this.write(op.offset, op.data, ctx);
      else if (op.op === 'zero') await this.zero(op.offset, op.length, ctx);
      else if (op.op === 'flush') {
        if (!this.journal) await this.settle(ctx);
      }
      // trim: the capture leaves the image's bytes as they are (reads are unchanged), so nothing to do.
    }
    closeRun(ctx);
    if (superTouched) superWrite = await this.store.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE);
    if (superWrite) this.checkIdentity(superWrite);
    if (tableTouched) await this.checkWindow();
    this.tailsOldest.release();
    this.pendingOldest.release();
    this.omittedOldest.release();
    this.recentOldest.release();
    this.loggedOldest.release();
    this.applied = seq;
    this.reportDropped(ctx);
    return ctx.out;
  }

  private async zero(offset: number, length: number, ctx: Ctx): Promise<void> {
    const bs = this.store.blockSize;
    const end = Math.min(offset + length, this.store.size);
    const zeros = new Uint8Array(bs);
    for (let b = Math.floor(offset / bs); b * bs < end; b++) {
      // A zeroed block nothing maps or holds is not kept as pending data (a guest zeroing gigabytes would
      // otherwise fill the buffer with zero blocks); what it held before is stale now.
      if (!this.store.get(b) && !this.dataIndex.lookup(b) && this.journal?.journalBlockOf(b) === undefined) {
        this.pendingDelete(b);
        this.omitted.delete(b);
        continue;
      }
      const from = Math.max(offset, b * bs);
      const to = Math.min(end, (b + 1) * bs);
      if (from === b * bs && to === (b + 1) * bs) await this.writeBlock(b, 0, zeros, ctx);
      else await this.writeBlock(b, from - b * bs, zeros.subarray(0, to - from), ctx);
    }
  }

  private async write(offset: number, bytes: Uint8Array, ctx: Ctx): Promise<void> {
    const bs = this.store.blockSize;
    // A plain view: Buffer's own subarray (records decode to Buffers) costs far more than the typed array's.
    const data = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    const end = Math.min(offset + data.length, this.store.size);
    for (let b = Math.floor(offset / bs); b * bs < end; b++) {
      const from = Math.max(offset, b * bs);
      const to = Math.min(end, (b + 1) * bs);
      await this.writeBlock(b, from - b * bs, data.subarray(from - offset, to - offset), ctx);
    }
  }

  /** `bytes` written at byte `at` of block `b`. */
  private async writeBlock(b: number, at: number, bytes: Uint8Array, ctx: Ctx): Promise<void> {
    const bs = this.store.blockSize;
    const full = at === 0 && bytes.length === bs;
    const j = this.journal?.journalBlockOf(b);
    if (j !== undefined) {
      if (!full) return; // jbd2 writes whole blocks; a partial one cannot complete a transaction
      let txs;
      try {
        txs = await this.journal!.written(j, bytes); // ok: j defined only with a journal
      } catch (err) {
        if (!(err instanceof Ext4Error)) throw err;
        this.corrupt(ctx, `journal: ${err.message}`, { block: b, kind: err instanceof CorruptError ? err.kind : 'Journal' });
        return;
      }
      for (const tx of txs) {
        if (tx.torn) {
          // Committed, but its log never read back whole: nothing of it is applied.
          this.corrupt(ctx, `journal: ${tx.torn.message}`, { block: b, kind: tx.torn.kind });
          continue;
        }
        try {
          for (const blk of tx.blocks) this.committed(blk.fsBlock, blk.data, ctx);
          await this.settle(ctx);
        } finally {
          this.txData.clear();
          this.txMapped.clear();
          this.txUnmapped.clear();
        }
      }
      return;
    }
    const mapped = this.dataIndex.lookup(b);
    if (mapped) {
      const logged = this.logged.get(b);
      if (logged) {
        this.dropLogged(b, logged.data.length);
        // The checkpoint of a block a commit logged and this engine reported then: the same bytes, not news.
        if (full && logged.ino === mapped.ino && logged.logical === mapped.logical && logged.data.length === bs && sliceEqual(logged.data, bytes, 0, bs)) return;
      }
      this.dataWrite(b, at, bytes, mapped, ctx);
      return;
    }
    const held = this.store.get(b);
    if (held) {
      const old = held.data;
      const changed = full ? this.store.setHome(b, bytes, ctx.seq) : this.store.patchHome(b, at, bytes, ctx.seq);
      if (changed) this.blockChanged(b, old);
      // Held is not the same as metadata: a read of a whole inode-table chunk also holds its neighbours. A
      // block nothing is known to be derived from may be file data the next commit maps.
      if (this.itableSlot(b) !== undefined || this.owners.has(b)) return;
    }
    this.hold(b, at, bytes, ctx);
  }

  /** A block image from a committed transaction. */
  private committed(b: number, data: Uint8Array, ctx: Ctx): void {
    const mapped = this.dataIndex.lookup(b);
    if (mapped) {
      // data=journal: file data logged like metadata, reported after the settle. Or a data block the same
      // transaction freed and made metadata (data=writeback frees data blocks for reuse at once): the settle
      // reads it from txData, and it is not reported as the file's.
      this.txData.set(b, data);
      this.txMapped.set(b, mapped);
      return;
    }
    const old = this.store.get(b)?.data;
    // The transaction's block images belong to it alone (the follower forgets the log blocks it walked).
    if (this.store.setJournal(b, data, ctx.seq, true)) this.blockChanged(b, old);
    this.txUnmapped.set(b, data);
  }

  /** A held metadata block changed: mark the inodes it describes or that were derived from it. */
  private blockChanged(b: number, old: Uint8Array | undefined): void {
    const sb = this.volume.superblock;
    const firstIno = this.itableSlot(b);
    if (firstIno !== undefined) {
      const now = this.store.get(b)!.data; // ok: just set
      const isz = sb.inodeSize;
      for (let k = 0; k < sb.blockSize / isz; k++) {
        const ino = firstIno + k;
        if (old === undefined || !sliceEqual(old, now, k * isz, isz)) this.dirty.add(ino);
      }
      return;
    }
    const owners = this.owners.get(b);
    if (owners) for (const ino of owners) this.dirty.add(ino);
    const gdtEnd = Math.floor(SUPERBLOCK_OFFSET / sb.blockSize) + 1 + Math.ceil((sb.groupCount * sb.descSize) / sb.blockSize);
    if (b <= gdtEnd) this.geometryDirty = true;
  }

  /**
   * Data written to a mapped block: reported at once, clipped to the size the tree holds. The block holding
   * end of file is remembered with what consumers were told of it (`reported`): a later write reports only the
   * bytes that differ, bytes past the size wait for the commit that grows it (ext4 may commit an append's size
   * before or after writing its data), and zeros written up to end of file (how a shrinking truncate clears
   * its last block) wait for the next commit, which usually makes them moot.
   */
  private dataWrite(b: number, at: number, bytes: Uint8Array, mapped: { ino: number; logical: number }, ctx: Ctx): void {
    const node = this.nodes.get(mapped.ino);
    if (!node) {
      this.hold(b, at, bytes, ctx);
      return;
    }
    const bs = this.store.blockSize;
    const parked = this.pending.get(b);
    if (parked !== undefined && !(at === 0 && bytes.length === bs)) {
      // Part of a preallocated block whose earlier data waits in the pending buffer (see resolvePending): the
      // write goes out with that data, as the block will read once ext4 marks it written.
      const whole = new Uint8Array(bs);
      whole.set(parked.data);
      whole.set(bytes, at);
      at = 0;
      bytes = whole;
    }
    this.pendingDelete(b);
    this.unwritten.delete(node.ino);
    if (!this.journal && at === 0 && bytes.length === bs) this.keepRecent(b, bytes);
    let tail = this.tails.get(node.ino);
    const held = this.prealloc.get(node.ino);
    if (held !== undefined && unwrittenAt(node, mapped.logical)) {
      // Zeros into a preallocated block consumers hold as zeros (nothing written there since): not news.
      if (!held.has(mapped.logical) && tail?.logical !== mapped.logical && trimmedLength(bytes) === 0) return;
      this.notePreallocWritten(node.ino, held, mapped.logical);
    }
    if (tail && tail.logical !== mapped.logical) tail = undefined;
    const eof = (mapped.logical + 1) * bs > node.size;
    if (!tail && eof && at === 0 && bytes.length === bs) {
      tail = { logical: mapped.logical, block: b, data: copyBytes(bytes), reported: undefined, reportedLim: -1 };
      this.setTail(node.ino, tail);
    } else if (tail) {
      materialize(tail, bs);
      tail.data = widen(tail.data, bs);
      tail.data.set(bytes, at);
    }
    if (!tail) {
      this.writeRun(ctx, node, mapped.logical * bs + at, bytes);
      return;
    }
    this.flushTail(ctx, node, tail, true);
  }

  /**
   * Data written to mapped blocks of `node` at `offset`: extends the write event made just before when it
   * continues it (a large write arrives block by block), else makes a new one. Like the runs emitWrites makes:
   * up to MAX_WRITE_RUN_BYTES, with the bytes when the whole run fits the inline limit.
   */
  private writeRun(ctx: Ctx, node: FsNode, offset: number, bytes: Uint8Array): void {
    const end = Math.min(offset + bytes.length, node.size);
    if (end <= offset) return;
    const data = bytes.subarray(0, end - offset);
    const r = ctx.run;
    if (r && r.node === node && r.end === offset && ctx.out[ctx.out.length - 1] === r.event && r.length + data.length <= MAX_WRITE_RUN_BYTES) {
      r.length += data.length;
      r.end = end;
      if (r.parts && r.length <= this.inlineLimit) r.parts.push(copyBytes(data));
      else r.parts = undefined;
      (r.event as { length?: number }).length = r.length;
      return;
    }
    closeRun(ctx);
    const before = ctx.out.length;
    this.emitWrites(ctx, node, [{ offset, data, omitted: false }]);
    const event = ctx.out[ctx.out.length - 1];
    if (ctx.out.length === before + 1 && event) ctx.run = { node, event, end, length: data.length, parts: event.data ? [event.data] : undefined };
  }

  /**
   * Logged file data (data=journal) of the transaction being settled, reported once its metadata is in (with
   * the data its metadata maps, so that sizes and times see it): only what is still that file's block
   * (data=writeback may have freed it and made it metadata in the same transaction), and blocks no file had
   * when the transaction was walked that it made a file's (a new block's data is logged with its allocation).
   */
  private resolveLogged(ctx: Ctx, wroteTo: Map<number, number>): void {
    const bs = this.store.blockSize;
    const note = (b: number, data: Uint8Array, m: { ino: number; logical: number }) => {
      const events = ctx.out.length;
      const run = ctx.run;
      const runLength = run?.length;
      this.loggedWrite(b, data, m, ctx);
      // Only a write event made or extended counts: a block logged again with the bytes already reported (a file
      // rewritten the same) tells nothing, and its new times must still come out as an `attr`.
      if (ctx.out.length === events && (ctx.run !== run || run?.length === runLength)) return;
      const node = this.nodes.get(m.ino);
      if (node) wroteTo.set(m.ino, Math.max(wroteTo.get(m.ino) ?? 0, Math.min(node.size, (m.logical + 1) * bs)));
    };
    for (const [b, data] of this.txData) {
      const was = this.txMapped.get(b);
      const now = this.dataIndex.lookup(b);
      if (was && now && now.ino === was.ino && now.logical === was.logical) note(b, data, now);
    }
    for (const [b, data] of this.txUnmapped) {
      const now = this.dataIndex.lookup(b);
      if (now) note(b, data, now);
    }
  }

  /** A file-data block from a commit (data=journal): reported, and remembered until its checkpoint. */
  private loggedWrite(b: number, data: Uint8Array, m: { ino: number; logical: number }, ctx: Ctx): void {
    this.dataWrite(b, 0, data, m, ctx);
    this.keepLogged(b, m.ino, m.logical, copyBytes(data));
  }

  /** Remembers a logged block as reported (bounded: the oldest go beyond MAX_LOGGED_DATA_BYTES). */
  private keepLogged(b: number, ino: number, logical: number, data: Uint8Array): void {
    const prev = this.logged.get(b);
    if (prev) this.dropLogged(b, prev.data.length);
    this.logged.set(b, { ino, logical, data });
    this.loggedBytes += data.length;
    while (this.loggedBytes > MAX_LOGGED_DATA_BYTES) {
      const oldest = this.loggedOldest.next()!; // ok: over the limit, so not empty
      this.dropLogged(oldest, this.logged.get(oldest)!.data.length); // ok: a key of the map
    }
  }

  private dropLogged(b: number, length: number): void {
    if (this.logged.delete(b)) this.loggedBytes -= length;
  }

  private keepRecent(b: number, bytes: Uint8Array): void {
    if (this.recent.delete(b)) this.recentBytes -= bytes.length;
    this.recent.set(b, copyBytes(bytes));
    this.recentBytes += bytes.length;
    while (this.recentBytes > RECENT_DATA_BYTES) {
      const oldest = this.recentOldest.next()!; // ok: over the limit, so not empty
      this.recentBytes -= this.recent.get(oldest)!.length; // ok: a key of the map
      this.recent.delete(oldest);
    }
  }

  /**
   * After `node` grew to its size with data seen up to `reached`: if the bytes past `reached` in its (mapped)
   * end-of-file block are zeros as far as this engine knows, the data is probably still on its way.
   */
  private noteUnwritten(node: FsNode, reached: number, ts: Date): void {
    if (reached >= node.size || this.unwritten.size >= MAX_TAILS) return;
    const bs = this.store.blockSize;
    const eof = Math.floor((node.size - 1) / bs);
    if (Math.floor(reached / bs) !== eof || !mapsBlock(node, eof)) return;
    // Without a remembered end-of-file block no write to it was seen: nothing says the data is there.
    const tail = this.tails.get(node.ino);
    if (tail && tail.logical === eof) {
      for (let i = reached - eof * bs; i < node.size - eof * bs; i++) if ((tail.data[i] ?? 0) !== 0) return;
    }
    this.unwritten.set(node.ino, [reached, UNWRITTEN_MAX_COMMITS, ts.getTime()]);
  }

  /** A preallocated block of followed file `ino` was written: consumers no longer hold it as zeros. */
  private notePreallocWritten(ino: number, held: Set<number>, logical: number): void {
    held.add(logical);
    // No longer followed (nothing is suppressed for it) rather than unbounded.
    if (held.size > MAX_PREALLOC_WRITTEN) this.prealloc.delete(ino);
  }

  /**
   * A consistency point adopted `now` for file `before` (undefined: a new file): follows its preallocated blocks
   * (see `prealloc`). A block stays written-since only while it is still preallocated, the same block: one written
   * (converted) or freed no longer is, and one zeroed in place again (written before, preallocated now) is reported
   * as zeros by zeroUnmapped.
   */
  private trackPrealloc(before: FsNode | undefined, now: FsNode): void {
    const held = this.prealloc.get(now.ino);
    if (!hasUnwritten(now)) {
      if (held !== undefined) this.prealloc.delete(now.ino);
      return;
    }
    if (held !== undefined) {
      if (held.size === 0 || before === undefined) return;
      for (const l of [...held]) {
        const was = runAt(before, l);
        const is = runAt(now, l);
        if (!was?.unwritten || !is?.unwritten || was.physical - was.logical !== is.physical - is.logical) held.delete(l);
      }
      return;
    }
    // Preallocated blocks a file had before it was followed may hold data consumers were told.
    if ((before === undefined || !hasUnwritten(before)) && this.prealloc.size < MAX_PREALLOC_FILES) this.prealloc.set(now.ino, new Set());
  }

  private setTail(ino: number, tail: Tail): void {
    this.tails.delete(ino);
    if (this.tails.size >= MAX_TAILS) {
      const oldest = this.tailsOldest.next();
      if (oldest !== undefined) this.tails.delete(oldest);
    }
    this.tails.set(ino, tail);
  }

  /**
   * Reports the bytes of a remembered block that consumers have not been told, inside the file's size.
   * `deferZeros`: hold back a change that is all zeros up to end of file (a truncate's clearing).
   * Returns the end offset reported (0 when nothing was).
   */
  private flushTail(ctx: Ctx, node: FsNode, tail: Tail, deferZeros: boolean): number {
    const bs = this.store.blockSize;
    const base = tail.logical * bs;
    const lim = Math.max(0, Math.min(bs, node.size - base));
    const data = tail.data;
    const dl = data.length;
    const rep = tail.reported;
    // What consumers know, without making it concrete: `reported`, or `data` below `reportedLim` and zeros above.
    const rlim = tail.reportedLim;
    let first = -1;
    let last = -1;
    if (rep === undefined && rlim < 0) {
      if (lim > 0) {
        first = 0;
        last = lim - 1;
      }
    } else {
      for (let i = rep === undefined ? Math.min(rlim, lim) : 0; i < lim; i++) {
        const d = i < dl ? data[i]! : 0; // ok: in range
        if (rep === undefined ? d !== 0 : rep[i] !== d) {
          if (first < 0) first = i;
          last = i;
        }
      }
    }
    if (first < 0) return 0;
    let zeros = deferZeros && last === lim - 1;
    for (let i = first; zeros && i < Math.min(lim, dl); i++) if (data[i] !== 0) zeros = false;
    if (zeros) {
      this.heldTails.add(node.ino);
      return 0;
    }
    const bytes = widen(data, last + 1).subarray(first, last + 1);
    if (rep === undefined) {
      // Consumers now know `data` below the last byte reported (see the loop above: nothing differs past it).
      tail.reportedLim = Math.max(rlim, last + 1);
    } else rep.set(bytes, first);
    return this.emitWrites(ctx, node, [{ offset: base + first, data: bytes, omitted: false }]);
  }

  /**
   * Reports as zeros the bytes below `limit` of the blocks `before` mapped and `after` does not, or maps
   * preallocated (unwritten) where `before` had them written (each map in logical order, as the decoders return
   * them); a remembered end-of-file block among them is forgotten. Returns the end of the last byte reported (0
   * when nothing was). Work is linear in the two maps; the zeros go out in runs of up to MAX_WRITE_RUN_BYTES,
   * viewed from one shared buffer (bytes carried only up to the inline limit).
   */
  private zeroUnmapped(ctx: Ctx, node: FsNode, before: readonly MappedRun[], after: readonly MappedRun[], limit: number): number {
    const bs = this.store.blockSize;
    const lastBlock = Math.ceil(limit / bs);
    const holes: [number, number][] = [];
    const hole = (from: number, to: number) => {
      const prev = holes[holes.length - 1];
      if (prev && prev[1] === from) prev[1] = to;
      else holes.push([from, to]);
    };
    let j = 0;
    // Unwritten runs count as mapped on both sides: the guest's data in one is reported as the file's (see
    // runsOf), and zeros reported over it would undo that. But a block written before and unwritten now reads as
    // zeros: a range zeroed in place (FALLOC_FL_ZERO_RANGE marks its extents unwritten without freeing or clearing
    // them), or freed and preallocated again. (Data written into it before this commit waits in the pending
    // buffer until ext4 marks it written: see resolvePending.)
    const zeroed = (r: MappedRun, a: MappedRun, from: number, to: number) => {
      if (!r.unwritten && a.unwritten && from < to) hole(from, to);
    };
    for (const r of before) {
      const e = Math.min(r.logical + r.length, lastBlock);
      // Each pass either ends or moves `s` past the next run of `after` (and `j` on): linear in both maps.
      for (let s = r.logical; s < e; ) {
        while (j < after.length && after[j]!.logical + after[j]!.length <= s) j++; // ok: j in range
        const a = after[j];
        if (!a || a.logical >= e) {
          hole(s, e);
          break;
        }
        if (a.logical > s) hole(s, a.logical);
        zeroed(r, a, Math.max(s, a.logical), Math.min(e, a.logical + a.length));
        s = a.logical + a.length;
      }
    }
    let reached = 0;
    for (const [from, to] of holes) {
      const tail = this.tails.get(node.ino);
      if (tail && tail.logical >= from && tail.logical < to) this.tails.delete(node.ino);
      const stop = Math.min(to * bs, limit);
      for (let at = from * bs; at < stop; at += MAX_WRITE_RUN_BYTES) {
        zeroBuffer ??= new Uint8Array(MAX_WRITE_RUN_BYTES);
        reached = Math.max(reached, this.emitWrites(ctx, node, [{ offset: at, data: zeroBuffer.subarray(0, Math.min(MAX_WRITE_RUN_BYTES, stop - at)), omitted: false }]));
      }
    }
    return reached;
  }

  /** After a size change: bytes past the new end of file of the remembered block read as zeros from now on. */
  private shrinkTail(node: FsNode): void {
    const tail = this.tails.get(node.ino);
    if (!tail) return;
    const bs = this.store.blockSize;
    const lim = node.size - tail.logical * bs;
    if (lim <= 0) {
      this.tails.delete(node.ino);
      return;
    }
    if (lim >= bs) return;
    materialize(tail, bs);
    tail.data = widen(tail.data, bs);
    tail.data.fill(0, lim);
    tail.reported?.fill(0, lim);
  }

  /** Keeps a written block for later attribution (bounded; the oldest are pushed out, remembered without bytes). */
  private hold(b: number, at: number, bytes: Uint8Array, ctx: Ctx): void {
    const bs = this.store.blockSize;
    const prev = this.pending.get(b);
    let data: Uint8Array;
    if (at === 0 && bytes.length === bs) data = trimmedCopy(bytes);
    else {
      data = new Uint8Array(bs);
      if (prev) data.set(prev.data);
      data.set(bytes, at);
    }
    this.pendingDelete(b);
    this.omitted.delete(b);
    this.pending.set(b, { data, seq: ctx.seq, ts: ctx.ts, commits: 0 });
    this.pendingBytes += bs;
    while (this.pendingBytes > this.pendingLimit && this.pending.size > 0) {
      const oldest = this.pendingOldest.next()!; // ok: not empty
      const p = this.pending.get(oldest)!; // ok: a key of the map
      this.pendingDelete(oldest);
      if (this.omitted.size >= MAX_OMITTED_BLOCKS) this.omitted.delete(this.omittedOldest.next()!); // ok: full
      this.omitted.set(oldest, { seq: p.seq, ts: p.ts });
    }
  }

  private pendingDelete(b: number): void {
    if (this.pending.delete(b)) this.pendingBytes -= this.store.blockSize;
  }

  // ---------------------------------------------------------------- consistency points

  /** A consistency point: derive what changed, emit its events. */
  private async settle(ctx: Ctx): Promise<void> {
    const now = ctx.ts.getTime();
    for (const [ino, u] of this.unwritten) if (--u[1] <= 0 && now - u[2] >= UNWRITTEN_MIN_MS) this.unwritten.delete(ino);
    await this.reopenVolume(ctx);
    if (this.journalUnread && this.resync === undefined && (await this.journalReadable())) {
      this.resync = 'the journal superblock reads back now: crawling again to follow the journal';
    }
    if (this.geometryDirty) {
      this.geometryDirty = false;
      this.buildItables();
    }
    const derived = new Map<number, Derived>();
    for (const ino of [...this.dirty]) {
      const parent = this.namedBy.get(ino) ?? this.unreadable.get(ino);
      if (parent !== undefined && !this.nodes.has(ino)) this.dirty.add(parent);
    }
    this.namedBy.clear();
    const dirty = [...this.dirty].filter((ino) => this.nodes.has(ino)).sort((a, b) => a - b);
    this.dirty.clear();
    for (const ino of dirty) {
      let d = this.derive(ino, ctx, !this.journal);
      if (d instanceof Promise) d = await d;
      derived.set(ino, d);
    }

    // Directory entry changes; inodes newly named are derived as they are found.
    const removed: EntryChange[] = [];
    const added: EntryChange[] = [];
    const queue = [...dirty];
    for (let qi = 0; qi < queue.length && qi < MAX_INODES_PER_SETTLE; qi++) {
      const ino = queue[qi]!; // ok: in range
      const now = derived.get(ino);
      if (now instanceof CorruptError) continue;
      if (now === undefined) continue;
      const before = this.nodes.get(ino);
      // Every name a directory had is gone when it was freed, or when its inode is another one now (a new
      // generation or type: removed and allocated again in the same interval, as `rm -rf a; mkdir n` may do):
      // its entries are compared with the new ones only while it is the same directory.
      const oldEntries = before?.type === FileType.dir ? before.entries : undefined;
      const sameDir = oldEntries !== undefined && now !== null && (isUnreadableRoot(before!) ? now.type === FileType.dir : sameInode(before!, now)); // ok: oldEntries implies before
      const newEntries = now?.type === FileType.dir ? now.entries : undefined;
      if (oldEntries === newEntries) continue;
      const base = sameDir ? oldEntries : undefined;
      // forEach, not for..of: no [name, ino] pair per entry (a directory's entries are all walked at each change).
      oldEntries?.forEach((child, name) => {
        if (!sameDir || newEntries?.get(name) !== child) removed.push({ dir: ino, name, ino: child });
      });
      if (newEntries) {
        const names: string[] = [];
        const children: number[] = [];
        newEntries.forEach((child, name) => {
          if (base?.get(name) === child) {
            // The same name, decoded again: the link takes this copy, so the old directory's goes with it.
            this.links.shareName(child, ino, name);
            return;
          }
          names.push(name);
          children.push(child);
        });
        for (let k = 0; k < names.length; k++) {
          const name = names[k]!; // ok: in range
          const child = children[k]!; // ok: same length
          if (!this.nodes.has(child) && !derived.has(child)) {
            let d = this.derive(child, ctx, !this.journal);
            if (d instanceof Promise) d = await d;
            derived.set(child, d);
            if (d !== null && !(d instanceof CorruptError) && d.type === FileType.dir) queue.push(child);
          }
          const d = derived.get(child);
          if (d === null) {
            if (this.journal || (this.retries.get(-child) ?? 0) + 1 >= NO_JOURNAL_RETRIES) {
              this.retries.delete(-child);
              this.corrupt(ctx, `entry ${JSON.stringify(name)} of directory ${ino} names free inode ${child}`, { ino });
            } else {
              this.retries.set(-child, (this.retries.get(-child) ?? 0) + 1);
              this.dirty.add(ino);
            }
            (newEntries as Map<string, number>).delete(name);
            this.noteUnreadable(child, ino);
            continue;
          }
          if (d instanceof CorruptError) {
            // Not in the tree until it reads back whole: the directory is looked at again next time.
            (newEntries as Map<string, number>).delete(name);
            if (!this.journal) {
              this.dirty.add(ino);
              this.namedBy.set(child, ino);
            }
            this.noteUnreadable(child, ino);
            continue;
          }
          if (this.unreadable.size > 0) this.unreadable.delete(child);
          added.push({ dir: ino, name, ino: child });
        }
      }
    }

    // An inode freed and allocated again in the interval keeps its number but is another file (a new generation or
    // type): `rm y; echo x > y` may leave the entry as it was. Each name it kept is removed and added again, so the
    // pairing below makes it a delete and a create.
    let removedKeys: Set<string> | undefined;
    for (const ino of dirty) {
      const now = derived.get(ino);
      const before = this.nodes.get(ino);
      if (!before || now === null || now === undefined || now instanceof CorruptError || ino === ROOT_INO || isUnreadableRoot(before)) continue;
      if (sameInode(before, now)) continue;
      for (const l of this.links.all(ino)) {
        const parentNow = derived.get(l.dir);
        const entries = parentNow === undefined ? this.nodes.get(l.dir)?.entries : parentNow !== null && !(parentNow instanceof CorruptError) ? parentNow.entries : undefined;
        if (entries?.get(l.name) !== ino) continue; // the name went: the comparison above has its removal
        removedKeys ??= new Set(removed.map((r) => `${r.dir}:${r.name}`));
        if (removedKeys.has(`${l.dir}:${l.name}`)) continue; // its directory was replaced: every name is removed and added
        removed.push({ dir: l.dir, name: l.name, ino });
        added.push({ dir: l.dir, name: l.name, ino });
      }
    }

    // Pair removals and additions per inode.
    // Arrays made for the first change of an inode hold just it (one grown by push() reserves 17 slots), and the
    // side an inode has no change on shares one empty array that is never written.
    const none: EntryChange[] = [];
    const byIno = new Map<number, { rem: EntryChange[]; add: EntryChange[] }>();
    for (const r of removed) {
      const s = byIno.get(r.ino);
      if (!s) byIno.set(r.ino, { rem: [r], add: none });
      else s.rem.push(r);
    }
    for (const a of added) {
      const s = byIno.get(a.ino);
      if (!s) byIno.set(a.ino, { rem: none, add: [a] });
      else if (s.add === none) s.add = [a];
      else s.add.push(a);
    }
    const renames: { rem: EntryChange; add: EntryChange }[] = [];
    const removals: EntryChange[] = [];
    const additions: EntryChange[] = [];
    const replaced = new Set<number>();
    for (const [ino, change] of byIno) {
      const before = this.nodes.get(ino);
      const now = derived.has(ino) ? derived.get(ino) : before;
      const same = before !== undefined && now instanceof Object && !(now instanceof CorruptError) && sameInode(before, now);
      const { rem } = change;
      let { add } = change;
      if (before?.type === FileType.dir) {
        // A directory named inside its own subtree (no kernel does that: EINVAL) would make a cycle cut off from
        // the root: the name is left out, and the directory is gone from where it was.
        const kept = add.filter((a) => {
          if (!this.inSubtree(a.dir, ino)) return true;
          this.corrupt(ctx, `entry ${JSON.stringify(a.name)} of directory ${a.dir} names directory ${ino}, which is that directory or above it`, { ino: a.dir, kind: 'DirectoryLink' });
          return false;
        });
        if (kept.length !== add.length) add = kept;
      }
      rem.sort(cmpChange);
      add.sort(cmpChange);
      if (same) {
        const pairs = Math.min(rem.length, add.length);
        for (let i = 0; i < pairs; i++) renames.push({ rem: rem[i]!, add: add[i]! }); // ok: i < both lengths
        removals.push(...rem.slice(pairs));
        additions.push(...add.slice(pairs));
      } else {
        if (before && add.length > 0) replaced.add(ino);
        removals.push(...rem);
        additions.push(...add);
      }
    }

    const addedFirst = new Map<number, EntryChange>();
    for (const a of additions) if (!addedFirst.has(a.ino)) addedFirst.set(a.ino, a);
    const renamedTo = new Map<number, EntryChange>();
    for (const r of renames) if (!renamedTo.has(r.add.ino)) renamedTo.set(r.add.ino, r.add);
    const touchedParents = new Set<number>();
    const evented = new Set<number>();
    const finalOf = (ino: number): FsNode | undefined => {
      const d = derived.get(ino);
      return d instanceof Object && !(d instanceof CorruptError) ? d : this.nodes.get(ino);
    };

    const emitRename = (r: EntryChange, a: EntryChange, now: FsNode): void => {
      const parentNode = finalOf(a.dir);
      const parent = parentNode ? { ino: a.dir, stat: statOf(parentNode) } : undefined;
      touchedParents.add(a.dir);
      evented.add(a.ino);
      const from = join(this.pathOf(r.dir), r.name);
      this.removeLink(a.ino, r.dir, r.name);
      this.addLink(a.ino, a.dir, a.name);
      touchedParents.add(r.dir);
      const fromNode = finalOf(r.dir);
      const fromParent = r.dir !== a.dir && fromNode ? { ino: r.dir, stat: statOf(fromNode) } : undefined;
      // The name it was moved to: a file with other links (`ln a b; rm c`, c another link of a) has several paths.
      this.event(ctx, { kind: EventKind.Rename, path: this.pathOf(a.ino, a.dir, a.name), from, ino: a.ino, type: now.type, stat: statOf(now), parent, fromParent });
    };

    // A0: names moved out of a directory that is removed (`mv d/x .; rm -rf d`), first, while their old paths
    // exist: a consumer applying the directory's delete first would lose them. Here only those moved to a name
    // that is free now in a directory that stays, so that nothing else has to move before; A2 below takes the
    // others.
    const doomed = new Set<number>();
    for (const r of removals) if (this.nodes.get(r.ino)?.type === FileType.dir) doomed.add(r.ino);
    // Each directory's answer is kept for the rest of the walk: many renames out of one deep subtree cost one
    // walk up, not one each.
    const doomedAbove = new Map<number, boolean>();
    const underDoomed = (dir: number): boolean => {
      const path: number[] = [];
      let found = false;
      for (let d = 0, cur: number | undefined = dir; cur !== undefined && d <= MAX_PATH_DEPTH; d++) {
        const known = doomedAbove.get(cur);
        if (known !== undefined) {
          found = known;
          break;
        }
        path.push(cur);
        if (doomed.has(cur)) {
          found = true;
          break;
        }
        if (cur === ROOT_INO) break;
        cur = this.links.firstDir(cur);
      }
      for (const p of path) doomedAbove.set(p, found);
      return found;
    };
    const stays = (dir: number): boolean => {
      const n = this.nodes.get(dir);
      const d = derived.get(dir);
      return n?.type === FileType.dir && (d === undefined || (d !== null && !(d instanceof CorruptError) && sameInode(n, d))) && !underDoomed(dir);
    };
    const early = new Set<EntryChange>();
    if (doomed.size > 0) {
      for (const { rem, add } of renames) {
        if (!underDoomed(rem.dir) || !stays(add.dir) || this.nodes.get(add.dir)?.entries?.has(add.name)) continue;
        const now = finalOf(add.ino);
        if (!now) continue;
        early.add(rem);
        emitRename(rem, add, now);
      }
    }
    // What is linked or renamed elsewhere in this interval stays, when a directory that held it is forgotten.
    const keep = new Set<number>();
    for (const a of additions) keep.add(a.ino);
    for (const r of renames) keep.add(r.add.ino);
    // A2: a directory removed while names under it still move elsewhere (into a new directory, over a name:
    // `mkdir n; mv d/* n; rmdir d`) is removed after the moves, while their old paths exist. Unless a create or
    // rename takes its name in this interval, or its inode is named again (reused): then it goes first, as the rest.
    const keyOf = (c: EntryChange): string => `${c.dir}:${c.name}`;
    const taken = new Set<string>();
    for (const a of additions) taken.add(keyOf(a));
    for (const r of renames) taken.add(keyOf(r.add));
    const holdsMoved = new Set<number>();
    for (const r of renames) {
      if (early.has(r.rem)) continue;
      for (let d = 0, cur: number | undefined = r.rem.dir; cur !== undefined && cur !== ROOT_INO && d <= MAX_PATH_DEPTH && !holdsMoved.has(cur); d++) {
        holdsMoved.add(cur);
        cur = this.links.firstDir(cur);
      }
    }

    const emitRemoval = (r: EntryChange): void => {
      const node = this.nodes.get(r.ino);
      if (!node) return;
      const path = join(this.pathOf(r.dir), r.name);
      this.removeLink(r.ino, r.dir, r.name);
      touchedParents.add(r.dir);
      const remaining = this.links.count(r.ino);
      const stillAdded = !replaced.has(r.ino) && addedFirst.has(r.ino);
      const parentNode = finalOf(r.dir);
      const parent = parentNode ? { ino: r.dir, stat: statOf(parentNode) } : undefined;
      if (remaining === 0 && !stillAdded) {
        this.event(ctx, { kind: EventKind.Delete, path, ino: r.ino, type: node.type, parent });
        this.forget(node, keep);
      } else {
        const now = finalOf(r.ino) ?? node;
        this.event(ctx, { kind: EventKind.Unlink, path, ino: r.ino, type: node.type, stat: statOf(now), parent });
        evented.add(r.ino);
      }
    };

    // A: removals, deepest first, with the paths they had.
    const depthNow = (ino: number) => this.depthOf(ino);
    removals.sort((a, b) => depthNow(b.dir) - depthNow(a.dir) || cmpChange(a, b));
    const later: EntryChange[] = [];
    for (const r of removals) {
      if (holdsMoved.has(r.ino) && this.nodes.get(r.ino)?.type === FileType.dir && !taken.has(keyOf(r)) && !addedFirst.has(r.ino)) later.push(r);
      else emitRemoval(r);
    }

    // B: creates, links and renames, shallowest destination first.
    const depthNew = (dir: number): number => {
      let d = 0;
      let cur = dir;
      for (; cur !== ROOT_INO && d < MAX_PATH_DEPTH; d++) {
        const moved = renamedTo.get(cur) ?? addedFirst.get(cur);
        const next = moved?.dir ?? this.links.firstDir(cur);
        if (next === undefined) break;
        cur = next;
      }
      return d;
    };
    type Op = { kind: 'add' | 'rename'; add: EntryChange; rem?: EntryChange; depth: number };
    const ops: Op[] = [
      ...additions.map((a) => ({ kind: 'add' as const, add: a, depth: depthNew(a.dir) })),
      ...renames.filter((r) => !early.has(r.rem)).map((r) => ({ kind: 'rename' as const, add: r.add, rem: r.rem, depth: depthNew(r.add.dir) })),
    ];
    ops.sort((a, b) => a.depth - b.depth || cmpChange(a.add, b.add));
    const emitOp = (op: Op): void => {
      const a = op.add;
      const now = finalOf(a.ino);
      if (!now) return;
      if (op.kind === 'rename') {
        emitRename(op.rem!, a, now); // ok: renames carry their removal
        return;
      }
      const parentNode = finalOf(a.dir);
      const parent = parentNode ? { ino: a.dir, stat: statOf(parentNode) } : undefined;
      touchedParents.add(a.dir);
      evented.add(a.ino);
      if (this.nodes.has(a.ino)) {
        if (now.type === FileType.dir && (a.ino === ROOT_INO || this.links.count(a.ino) > 0)) {
          // A second name for a directory is a loop in the making: it stays out of the tree.
          this.corrupt(ctx, `entry ${JSON.stringify(a.name)} of directory ${a.dir} links directory ${a.ino}, which already has a name`, { ino: a.dir, kind: 'DirectoryLink' });
          return;
        }
        this.addLink(a.ino, a.dir, a.name);
        this.event(ctx, { kind: EventKind.Link, path: this.pathOf(a.ino, a.dir, a.name), ino: a.ino, type: now.type, stat: statOf(now), parent });
        return;
      }
      replaced.delete(a.ino);
      this.adopt(now);
      this.trackPrealloc(undefined, now);
      this.addLink(a.ino, a.dir, a.name);
      // Built in place (the most common events with writes): the same fields in the same order as event() gives.
      const create = this.identity(ctx, EventKind.Create);
      create['path'] = this.pathOf(a.ino, a.dir, a.name);
      create['ino'] = a.ino;
      create['type'] = now.type;
      create['stat'] = statOf(now);
      if (parent !== undefined) create['parent'] = parent;
      if (now.target !== undefined) create['target'] = now.target;
      if (isDevice(now.type)) create['rdev'] = majorMinor(now.rdev);
      ctx.out.push(create as unknown as FsEvent); // ok: a create event's fields
      if (now.inline && now.inline.length > 0) this.emitWrites(ctx, now, [{ offset: 0, data: now.inline, omitted: false }]);
    };
    // The order above, except that an op waits for the create of its destination directory and for the
    // rename that moves the old holder of its destination name away (`mv a b; mv c a`: a's rename first, or a
    // consumer would replace it with c). Renames that go round in a cycle (`mv a t; mv b a; mv t b`: a swap) are
    // published as exchanges (`exchange: true`, what renameat2(RENAME_EXCHANGE) does), which a consumer applies
    // as they come. Chains deeper than MAX_ORDER_DEPTH keep the order above.
    const renameAway = new Map<string, Op>();
    const intoDir = new Map<number, Op>();
    for (const op of ops) {
      if (op.kind === 'rename') renameAway.set(keyOf(op.rem!), op); // ok: renames carry their removal
      // Only a directory that does not exist yet must wait to be named: one renamed is at its old path meanwhile,
      // and waiting for it could close a cycle that is not a swap.
      if (op.kind === 'add' && !intoDir.has(op.add.ino)) intoDir.set(op.add.ino, op);
    }
    const done = new Set<Op>();
    const stack: Op[] = [];
    const onStack = new Map<Op, number>();
    const visit = (op: Op): void => {
      if (done.has(op)) return;
      onStack.set(op, stack.length);
      stack.push(op);
      const away = renameAway.get(keyOf(op.add));
      for (const dep of [intoDir.get(op.add.dir), away]) {
        if (!dep || dep === op || done.has(dep) || stack.length > MAX_ORDER_DEPTH) continue;
        const at = onStack.get(dep);
        if (at === undefined) {
          visit(dep);
          continue;
        }
        // A cycle: an exchange round when every op in it is a rename waiting for the next one's.
        const cycle = stack.slice(at);
        const exchangeable = dep === away && cycle.every((c, i) => c.kind === 'rename' && (i === cycle.length - 1 || renameAway.get(keyOf(c.add)) === cycle[i + 1]));
        if (exchangeable && cycle.every((c) => !done.has(c))) {
          emitExchanges(cycle);
          for (const c of cycle) done.add(c);
        }
      }
      stack.pop();
      onStack.delete(op);
      if (!done.has(op)) {
        done.add(op);
        emitOp(op);
      }
    };
    /**
     * Renames c0..cm where each one's destination is the next one's source and cm's is c0's: exchanges of c0's
     * source with each other source in turn put every inode where its rename takes it.
     */
    const emitExchanges = (cycle: readonly Op[]): void => {
      const s0 = cycle[0]!.rem!; // ok: a cycle holds renames
      let atS0 = cycle[0]!.add.ino; // ok: as above
      for (let j = 1; j < cycle.length; j++) {
        const sj = cycle[j]!.rem!; // ok: in range, a rename
        const other = cycle[j]!.add.ino; // ok: in range
        const now = finalOf(atS0);
        const path = join(this.pathOf(sj.dir), sj.name);
        const from = join(this.pathOf(s0.dir), s0.name);
        this.removeLink(atS0, s0.dir, s0.name);
        this.removeLink(other, sj.dir, sj.name);
        this.addLink(atS0, sj.dir, sj.name);
        this.addLink(other, s0.dir, s0.name);
        touchedParents.add(sj.dir);
        touchedParents.add(s0.dir);
        // `other` carries its stat as the next round's inode; the last one's new ctime comes as an `attr` below.
        evented.add(atS0);
        if (now) {
          const parentNode = finalOf(sj.dir);
          const fromNode = finalOf(s0.dir);
          const parent = parentNode ? { ino: sj.dir, stat: statOf(parentNode) } : undefined;
          const fromParent = s0.dir !== sj.dir && fromNode ? { ino: s0.dir, stat: statOf(fromNode) } : undefined;
          this.event(ctx, { kind: EventKind.Rename, path, from, ino: atS0, type: now.type, stat: statOf(now), parent, fromParent, exchange: true });
        }
        atS0 = other;
      }
    };
    for (const op of ops) visit(op);
    // A2: the directories the moves above left.
    for (const r of later) emitRemoval(r);

    // C: attributes of inodes that stayed the same file.
    const writes: { node: FsNode; before: FsNode | undefined }[] = [];
    for (const ino of [...derived.keys()].sort((x, y) => x - y)) {
      const d = derived.get(ino);
      if (d instanceof CorruptError || d === null || d === undefined) continue;
      const before = this.nodes.get(ino);
      if (!before) continue;
      if (before === d) {
        writes.push({ node: d, before: undefined });
        continue;
      }
      if (isUnreadableRoot(before)) {
        // The root reads back: its names came out as creates above; its attributes are news to no one.
        if (d.type === FileType.dir) this.adopt(d);
        continue;
      }
      if (!sameInode(before, d)) continue;
      this.adopt(d);
      this.trackPrealloc(before, d);
      writes.push({ node: d, before });
    }
    // D: data that the new metadata maps, then sizes, then attributes.
    const wroteTo = new Map<number, number>();
    this.resolvePending(ctx, wroteTo);
    this.resolveLogged(ctx, wroteTo);
    const bs = this.store.blockSize;
    for (const { node, before } of writes) {
      if (!before) continue;
      // The path only when an event needs it (most nodes here only grew, and their data events find it).
      let pathMemo: string | undefined;
      const pathNow = (): string => (pathMemo ??= this.pathOf(node.ino));
      const changes: Record<string, AttrChange> = {};
      let changed = 0;
      if (before.mode !== node.mode) changes['mode'] = { old: before.mode, new: node.mode };
      if (before.uid !== node.uid) changes['uid'] = { old: before.uid, new: node.uid };
      if (before.gid !== node.gid) changes['gid'] = { old: before.gid, new: node.gid };
      if (before.flags !== node.flags) changes['flags'] = { old: before.flags, new: node.flags };
      // Not through a syscall (mknod makes a new inode), but a raw write to i_block can repoint a device node.
      if (before.rdev !== node.rdev) changes['rdev'] = { old: majorMinor(before.rdev), new: majorMinor(node.rdev) };
      if (before.xattrs !== node.xattrs) {
        const names = new Set([...Object.keys(before.xattrs), ...Object.keys(node.xattrs)]);
        for (const n of [...names].sort()) if (before.xattrs[n] !== node.xattrs[n]) changes[`xattr.${n}`] = { old: before.xattrs[n] ?? null, new: node.xattrs[n] ?? null };
      }
      for (const _ in changes) changed++;
      if (node.size < before.size) {
        this.shrinkTail(node);
        this.event(ctx, { kind: EventKind.Truncate, path: pathNow(), ino: node.ino, type: node.type, stat: statOf(node), oldSize: before.size, size: node.size });
        evented.add(node.ino);
      }
      if (node.type === FileType.file && before.runs && node.runs && before.runs.length > 0) {
        // Blocks the file had, below both sizes, that it no longer maps read as zeros now: a truncate that shrank
        // and grew again in one commit (`truncate -s 100 f; truncate -s 20000 f`: only 30000->20000 shows), a
        // punched hole. No write tells; the size alone would leave the old bytes.
        const end = this.zeroUnmapped(ctx, node, before.runs, node.runs, Math.min(before.size, node.size));
        if (end > 0) wroteTo.set(node.ino, Math.max(wroteTo.get(node.ino) ?? 0, end));
      }
      if (node.inline && (!before.inline || !Buffer.from(before.inline).equals(Buffer.from(node.inline)))) {
        this.emitWrites(ctx, node, [{ offset: 0, data: node.inline, omitted: false }]);
        wroteTo.set(node.ino, Math.max(wroteTo.get(node.ino) ?? 0, node.inline.length));
      }
      const tail = this.tails.get(node.ino);
      if (tail) {
        const end = this.flushTail(ctx, node, tail, false);
        if (end > 0) wroteTo.set(node.ino, Math.max(wroteTo.get(node.ino) ?? 0, end));
      }
      // An earlier commit's size whose data has not arrived yet stays hidden: a later commit that touches the inode
      // again (another append's size, a time) does not make its bytes count as seen.
      const waiting = this.unwritten.get(node.ino);
      this.unwritten.delete(node.ino);
      const wrote = wroteTo.get(node.ino) ?? 0;
      if (node.size > before.size && node.type === FileType.file) this.noteUnwritten(node, waiting ? Math.max(waiting[0], wrote) : Math.max(before.size, wrote), ctx.ts);
      else if (waiting && node.size >= before.size && Math.max(waiting[0], wrote) < node.size) this.unwritten.set(node.ino, [Math.max(waiting[0], wrote), waiting[1], waiting[2]]);
      if (node.size > before.size) {
        const reached = wroteTo.get(node.ino) ?? -1;
        const lastMapped = mapsBlock(node, Math.floor((node.size - 1) / bs));
        if (reached < node.size && !lastMapped) {
          this.event(ctx, { kind: EventKind.Truncate, path: pathNow(), ino: node.ino, type: node.type, stat: statOf(node), oldSize: before.size, size: node.size });
          evented.add(node.ino);
        }
      }
      if (changed === 0 && !(evented.has(node.ino) || touchedParents.has(node.ino) || wroteTo.has(node.ino))) {
        if (!sameTime(before.atime, node.atime)) changes['atime'] = { old: before.atime, new: node.atime };
        if (!sameTime(before.mtime, node.mtime)) changes['mtime'] = { old: before.mtime, new: node.mtime };
        if (!sameTime(before.ctime, node.ctime)) changes['ctime'] = { old: before.ctime, new: node.ctime };
        for (const _ in changes) changed++;
      }
      if (changed > 0) this.event(ctx, { kind: EventKind.Attr, path: pathNow(), ino: node.ino, type: node.type, stat: statOf(node), changes });
    }
    // Held-back bytes of files whose metadata did not change (zeros written inside the file).
    for (const ino of [...this.heldTails].sort((x, y) => x - y)) {
      const node = this.nodes.get(ino);
      const tail = this.tails.get(ino);
      if (node && tail && !derived.has(ino)) this.flushTail(ctx, node, tail, false);
    }
    this.heldTails.clear();
    if (this.journal) this.agePending();
    this.store.compact();
  }

  /** Pending blocks the tree now maps become write events (coalesced per file, in file order). */
  private resolvePending(ctx: Ctx, wroteTo: Map<number, number>): void {
    const bs = this.store.blockSize;
    const perFile = new Map<number, { offset: number; data: Uint8Array | undefined; omitted: boolean }[]>();
    // Only blocks the maps adopted at this consistency point cover can have become mapped; when there are more
    // of those than held blocks, walking the held blocks is cheaper.
    let mapped = 0;
    for (const ino of this.remapped) for (const r of this.nodes.get(ino)?.runs ?? []) mapped += r.length;
    const candidates: number[] = [];
    if (mapped < this.pending.size + this.omitted.size) {
      for (const ino of this.remapped) {
        for (const r of this.nodes.get(ino)?.runs ?? []) {
          for (let b = r.physical; b < r.physical + r.length; b++) if (this.pending.has(b) || this.omitted.has(b)) candidates.push(b);
        }
      }
    } else {
      candidates.push(...this.pending.keys(), ...this.omitted.keys());
    }
    this.remapped.clear();
    // Data in a preallocated (unwritten) block reads as zeros until ext4 marks the block written: it waits here
    // until then, never aged out while the block is mapped (see agePending). The guest's data written before the
    // commit that preallocates (dioread_nolock writes every new block so) comes out with the commit that marks it
    // written; bytes that never will be the file's do not come out: data of a range zeroed in place that reaches
    // the disk before the file's inode does (without a journal), stale bytes of a freed block preallocated again.
    for (const b of candidates) {
      const p = this.pending.get(b);
      if (!p) continue;
      const m = this.dataIndex.lookup(b);
      if (!m) continue;
      const node = this.nodes.get(m.ino);
      if (!node || unwrittenAt(node, m.logical)) continue;
      this.pendingDelete(b);
      if ((m.logical + 1) * bs > node.size) {
        // The end of file moved on to this block: what the remembered block of the old end of file holds past
        // the old size and inside the new one (`dd seek=1000` over a 200-byte file: bytes 1000-4095 of block
        // 0) is reported now, or the new tail would drop it.
        const old = this.tails.get(node.ino);
        if (old && old.logical !== m.logical) {
          const end = this.flushTail(ctx, node, old, false);
          if (end > 0) wroteTo.set(node.ino, Math.max(wroteTo.get(node.ino) ?? 0, end));
        }
        // The held bytes become the tail as they are; what is reported is "the same, up to the size", made
        // concrete only if the block is written again (most files never are).
        this.setTail(node.ino, { logical: m.logical, block: b, data: p.data, reported: undefined, reportedLim: Math.max(0, node.size - m.logical * bs) });
      }
      let list = perFile.get(m.ino);
      if (!list) perFile.set(m.ino, (list = []));
      list.push({ offset: m.logical * bs, data: widen(p.data, Math.max(0, Math.min(bs, node.size - m.logical * bs))), omitted: false });
    }
    for (const b of candidates) {
      if (!this.omitted.has(b)) continue;
      const m = this.dataIndex.lookup(b);
      const node = m && this.nodes.get(m.ino);
      if (!m || !node || unwrittenAt(node, m.logical)) continue;
      this.omitted.delete(b);
      let list = perFile.get(m.ino);
      if (!list) perFile.set(m.ino, (list = []));
      list.push({ offset: m.logical * bs, data: undefined, omitted: true });
    }
    for (const ino of [...perFile.keys()].sort((a, b) => a - b)) {
      const node = this.nodes.get(ino)!; // ok: checked above
      const pieces = perFile.get(ino)!.sort((a, b) => a.offset - b.offset); // ok: key from the map
      const reached = this.emitWrites(ctx, node, pieces.map((p) => ({ offset: p.offset, data: p.data ?? new Uint8Array(bs), omitted: p.omitted })));
      wroteTo.set(ino, Math.max(wroteTo.get(ino) ?? 0, reached));
    }
  }

  /** Drops pending blocks that several commits never mapped (they were not file data). */
  private agePending(): void {
    // Not the blocks mapped preallocated (their data waits for ext4 to mark them written: see resolvePending).
    for (const [b, p] of [...this.pending]) if (++p.commits > PENDING_MAX_COMMITS && !this.dataIndex.lookup(b)) this.pendingDelete(b);
  }

  /**
   * Emits write events for `pieces` (sorted by offset) of `node`, clipped to its size and coalesced into runs
   * of contiguous bytes. Returns the end of the last byte reported.
   */
  private emitWrites(ctx: Ctx, node: FsNode, pieces: { offset: number; data: Uint8Array; omitted: boolean }[]): number {
    let reached = 0;
    let run: { offset: number; parts: Uint8Array[]; length: number; omitted: boolean } | undefined;
    const flush = () => {
      if (!run || run.length === 0) return;
      const carry = !run.omitted && run.length <= this.inlineLimit;
      // A copy: the bytes may be a view of a remembered block that changes later.
      const data = !carry ? undefined : run.parts.length === 1 ? copyBytes(run.parts[0]!) : Buffer.concat(run.parts, run.length); // ok: one part
      const write = this.identity(ctx, EventKind.Write);
      write['path'] = this.pathOf(node.ino);
      write['ino'] = node.ino;
      write['type'] = node.type;
      write['stat'] = statOf(node);
      write['offset'] = run.offset;
      write['length'] = run.length;
      if (data !== undefined) write['data'] = data instanceof Buffer ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data;
      else write['dataOmitted'] = true;
      ctx.out.push(write as unknown as FsEvent); // ok: a write event's fields
      reached = Math.max(reached, run.offset + run.length);
      run = undefined;
    };
    for (const p of pieces) {
      const end = Math.min(p.offset + p.data.length, node.size);
      if (end <= p.offset) continue;
      const data = p.data.subarray(0, end - p.offset);
      if (run && run.offset + run.length === p.offset && run.length + data.length <= MAX_WRITE_RUN_BYTES && run.omitted === p.omitted) {
        run.parts.push(data);
        run.length += data.length;
        continue;
      }
      flush();
      run = { offset: p.offset, parts: [data], length: data.length, omitted: p.omitted };
    }
    flush();
    return reached;
  }

  // ---------------------------------------------------------------- deriving one inode

  /**
   * {@link deriveRead}, answered synchronously when nothing has to be read (a regular file or special inode
   * whose inode-table slot, xattr block and extent blocks the store holds, as at nearly every consistency
   * point): no promise and no microtask turn per inode. Callers await the result only when it is a promise.
   * `partial` (the crawl): a directory with damaged blocks keeps the names of its readable blocks, each damaged
   * block reported, instead of failing whole.
   */
  private derive(ino: number, ctx: Ctx, retry = false, partial = false): Derived | Promise<Derived> {
    let inode: Ext4Inode | undefined;
    try {
      inode = this.volume.readInodeCached(ino);
    } catch (err) {
      return this.derivedError(err, ctx, ino, retry);
    }
    if (inode === undefined) return this.deriveRead(ino, ctx, retry, undefined, partial);
    if (!inodeInUse(inode)) return null;
    const fast = this.deriveHeld(inode, ctx, retry);
    // The inode decoded here is handed on: its slot is not read and checksummed twice.
    return fast !== NEEDS_READ ? fast : this.deriveRead(ino, ctx, retry, inode, partial);
  }

  /** What {@link deriveRead} gives for an inode in use, from held blocks alone; NEEDS_READ when anything would have to be read. */
  private deriveHeld(inode: Ext4Inode, ctx: Ctx, retry: boolean): Derived | typeof NEEDS_READ {
    const ino = inode.ino;
    // Directories, symlinks and inline data are read through promises: the full path.
    if (inode.type === FileType.dir || inode.type === FileType.symlink) return NEEDS_READ;
    if (inode.type === FileType.file && inode.flags & InodeFlags.inlineData) return NEEDS_READ;
    const tracker = this.tracker;
    tracker.clear();
    this.store.tracker = tracker;
    try {
      const list = this.volume.readXattrsCached(inode);
      if (list === undefined) return NEEDS_READ;
      const xattrs = xattrsOf(list);
      if (inode.fileAcl !== 0) tracker.add(inode.fileAcl);
      let runs: MappedRun[] | undefined;
      if (inode.type === FileType.file) {
        const map = this.volume.blockMapCached(inode);
        if (map === undefined) return NEEDS_READ;
        runs = runsOf(ino, map);
      }
      return nodeOfInode(inode, this.times, undefined, xattrs, runs, undefined, undefined, ownedOf(tracker));
    } catch (err) {
      if (retry) for (const b of tracker) this.watch(b, ino);
      return this.derivedError(err, ctx, ino, retry);
    } finally {
      this.store.tracker = undefined;
    }
  }

  /**
   * Reads inode `ino` (unless `known`, already decoded) and what hangs off it; null when it is not in use; a
   * CorruptError (also emitted) when damaged.
   */
  private async deriveRead(ino: number, ctx: Ctx, retry = false, known?: Ext4Inode, partial = false): Promise<Derived> {
    let inode: Ext4Inode;
    try {
      // The synchronous forms answer when no read is needed (no promise per inode); they read nothing, so
      // what the tracker below sees is the same either way.
      inode = known ?? this.volume.readInodeCached(ino) ?? (await this.volume.readInode(ino));
    } catch (err) {
      return this.derivedError(err, ctx, ino, retry);
    }
    if (!inodeInUse(inode)) return null;
    const tracker = this.tracker;
    tracker.clear();
    this.store.tracker = tracker;
    try {
      const xattrs = xattrsOf(this.volume.readXattrsCached(inode) ?? (await this.volume.readXattrs(inode)));
      if (inode.fileAcl !== 0) tracker.add(inode.fileAcl);
      let target: string | undefined;
      let runs: MappedRun[] | undefined;
      let inline: Uint8Array | undefined;
      let entries: Map<string, number> | undefined;
      if (inode.type === FileType.dir) {
        const listing = await this.volume.readDir(inode);
        if (listing.errors.length > 0 && !partial) throw listing.errors[0]!; // ok: non-empty
        // The crawl: the names the readable blocks hold are better than none; it reports the damaged blocks once
        // the directory has its path. They are owned (the tracker saw them), so rewriting them makes the directory
        // dirty and it is read again whole.
        for (const err of listing.errors) this.partialErrors.push(err);
        entries = new Map<string, number>();
        for (const e of listing.entries) {
          const name = decodeName(e.name);
          if (name === '.' || name === '..') continue;
          entries.set(name, e.ino);
        }
      } else if (inode.type === FileType.file) {
        if (inode.flags & InodeFlags.inlineData) inline = await this.volume.inlineData(inode);
        else {
          const map = this.volume.blockMapCached(inode) ?? (await this.volume.blockMap(inode));
          runs = runsOf(ino, map);
        }
      } else if (inode.type === FileType.symlink) {
        target = decodeName(await this.volume.readLink(inode));
      }
      return nodeOfInode(inode, this.times, target, xattrs, runs, inline, entries, ownedOf(tracker));
    } catch (err) {
      // Watch what it read: a later write to those blocks makes the inode (and whoever named it) dirty again.
      if (retry) for (const b of tracker) this.watch(b, ino);
      return this.derivedError(err, ctx, ino, retry);
    } finally {
      this.store.tracker = undefined;
    }
  }

  private watch(b: number, ino: number): void {
    const set = this.owners.get(b);
    if (!set) this.owners.set(b, new Set([ino]));
    else set.add(ino);
  }

  /**
   * A derivation failed. Without a journal the blocks of one change reach the disk in any order, even across
   * a flush (ext2 writes its buffer cache after the flush that ends inode writeback): the first failures of
   * an inode are retried at the next flush, and only a failure that persists is reported.
   */
  private derivedError(err: unknown, ctx: Ctx, ino: number, retry = false): CorruptError {
    if (retry && err instanceof Ext4Error) {
      const n = (this.retries.get(ino) ?? 0) + 1;
      if (n < NO_JOURNAL_RETRIES) {
        this.retries.set(ino, n);
        this.dirty.add(ino);
        return err instanceof CorruptError ? err : new CorruptError('InodeField', err.message, { inode: ino });
      }
    }
    this.retries.delete(ino);
    if (err instanceof CorruptError) {
      this.corrupt(ctx, err.message, { ino, kind: err.kind, block: err.block });
      return err;
    }
    if (err instanceof Ext4Error) {
      this.corrupt(ctx, err.message, { ino, kind: err.name });
      return new CorruptError('InodeField', err.message, { inode: ino });
    }
    throw err;
  }

  // ---------------------------------------------------------------- tree bookkeeping

  /** Takes `n` as the current state of its inode: owners and the data index follow. */
  private adopt(n: FsNode): void {
    const before = this.nodes.get(n.ino);
    if (before) this.unindex(before);
    this.nodes.set(n.ino, n);
    this.changedNodes?.add(n.ino);
    // A set per block: a guest can make any number of inodes share one xattr block (the kernel stops at 1,024).
    for (const b of n.owned) this.watch(b, n.ino);
    if (n.runs) {
      for (const r of n.runs) this.dataIndex.add(r);
      if (n.runs.length > 0 && !sameRunsObject(n, before)) this.remapped.add(n.ino);
    }
  }

  private unindex(n: FsNode): void {
    for (const b of n.owned) {
      const set = this.owners.get(b);
      if (set?.delete(n.ino) && set.size === 0) this.owners.delete(b);
    }
    if (n.runs) for (const r of n.runs) this.dataIndex.remove(r);
  }

  /**
   * Removes a node that left the tree, and whatever only it still held (a directory freed with entries), but not
   * the inodes in `keep` (named elsewhere in this interval).
   */
  private forget(n: FsNode, keep?: ReadonlySet<number>): void {
    this.unwritten.delete(n.ino);
    // Its remembered end-of-file block too: a file that takes the inode number next (in this very commit, often
    // with the same block) starts with nothing reported, or its first bytes equal to the old file's go unsaid.
    this.tails.delete(n.ino);
    this.prealloc.delete(n.ino);
    this.unindex(n);
    this.nodes.delete(n.ino);
    this.links.delete(n.ino);
    this.changedNodes?.add(n.ino);
    if (n.entries) {
      for (const [name, child] of n.entries) {
        this.removeLink(child, n.ino, name);
        const c = this.nodes.get(child);
        // The root has no name to lose (an entry naming it was refused as corrupt, but stays in the listing).
        if (c && child !== ROOT_INO && this.links.count(child) === 0 && !keep?.has(child)) this.forget(c, keep);
      }
    }
  }

  private addLink(ino: number, dir: number, name: string): void {
    this.links.add(ino, dir, name);
    this.changedNodes?.add(ino);
  }

  private removeLink(ino: number, dir: number, name: string): void {
    this.links.remove(ino, dir, name);
    this.changedNodes?.add(ino);
  }

  /** Links from the root to `ino` (0 for the root). */
  private depthOf(ino: number): number {
    let d = 0;
    for (let cur = ino; cur !== ROOT_INO && d <= MAX_PATH_DEPTH; d++) {
      const up = this.links.firstDir(cur);
      if (up === undefined) break;
      cur = up;
    }
    return d;
  }

  /** The path of `ino` by its first link (or by the given link). */
  /** Whether directory `dir` is `top` or lies below it (or too deep to tell: taken as a loop). */
  private inSubtree(dir: number, top: number): boolean {
    let cur = dir;
    for (let d = 0; d <= MAX_PATH_DEPTH; d++) {
      if (cur === top) return true;
      if (cur === ROOT_INO) return false;
      const up = this.links.firstDir(cur);
      if (up === undefined) return false;
      cur = up;
    }
    return true;
  }

  pathOf(ino: number, dir?: number, name?: string): string {
    // Built from the leaf up by concatenation ("/a/b" so far): no array to reverse and join per event.
    let below = '';
    let cur = ino;
    if (dir !== undefined && name !== undefined) {
      below = `/${name}`;
      cur = dir;
    }
    for (let d = 0; cur !== ROOT_INO; d++) {
      const up = this.links.firstDir(cur);
      if (up === undefined || d > MAX_PATH_DEPTH) return `/<detached:${cur}>${below === '' ? '/' : below}`;
      below = `/${this.links.firstName(cur)!}${below}`; // ok: it has a first link
      cur = up;
    }
    return below === '' ? '/' : below;
  }

  // ---------------------------------------------------------------- events

  /** The index the next event completed by record `seq` would take (events of one record count from 0). */
  peekIdx(seq: number): number {
    return seq === this.idxSeq ? this.idx : 0;
  }

  private nextIdx(seq: number): number {
    if (seq !== this.idxSeq) {
      this.idxSeq = seq;
      this.idx = 0;
    }
    return this.idx++;
  }

  /** An event's identity fields and kind, the start of every event (the encoded order follows key order). */
  private identity(ctx: Ctx, kind: EventKind): Record<string, unknown> {
    return { v: EVENT_VERSION, disk: this.disk, seq: ctx.seq, idx: this.nextIdx(ctx.seq), ts: ctx.ts, kind };
  }

  private event(ctx: Ctx, e: Omit<FsEvent, 'v' | 'disk' | 'seq' | 'idx' | 'ts'>): FsEvent {
    const full: Record<string, unknown> = { v: EVENT_VERSION, disk: this.disk, seq: ctx.seq, idx: this.nextIdx(ctx.seq), ts: ctx.ts };
    for (const k in e) {
      const v = (e as Record<string, unknown>)[k];
      if (v !== undefined) full[k] = v;
    }
    ctx.out.push(full as unknown as FsEvent); // ok: the fields of `e` plus the identity
    return full as unknown as FsEvent;
  }

  private corrupt(ctx: Ctx, message: string, where: { ino?: number; block?: number; kind?: string }): void {
    // A guest can make one record name a million broken things (a directory of entries naming free inodes): the
    // first MAX_CORRUPT_EVENTS_PER_RECORD are reported, then one event says how many more there were.
    if (++ctx.problems.reported > MAX_CORRUPT_EVENTS_PER_RECORD) {
      ctx.problems.dropped++;
      return;
    }
    const path = where.ino !== undefined && this.links.has(where.ino) ? this.pathOf(where.ino) : '';
    this.event(ctx, { kind: EventKind.Corrupt, path, ino: where.ino ?? 0, type: '', corruptKind: where.kind ?? 'Corrupt', message, block: where.block });
  }

  /** The one `corrupt` event that counts the problems of this record (or crawl) left out, if there were any. */
  private reportDropped(ctx: Ctx): void {
    const n = ctx.problems.dropped;
    if (n === 0) return;
    ctx.problems.dropped = 0;
    this.event(ctx, {
      kind: EventKind.Corrupt,
      path: '',
      ino: 0,
      type: '',
      corruptKind: 'TooManyProblems',
      message: `${n} more problems in this write record were not reported one by one (at most ${MAX_CORRUPT_EVENTS_PER_RECORD} per record)`,
    });
  }

  // ---------------------------------------------------------------- checkpoints

  /** The whole state as checkpoint bytes (a sequence of BSON documents; may exceed 1 MiB). */
  checkpoint(): Uint8Array {
    return Buffer.concat(this.checkpointParts());
  }

  /**
   * {@link checkpoint}'s bytes as the documents that make them, for a store that writes them one after the
   * other: the held blocks are read (unpacked) one at a time as they are encoded, and the whole is never copied
   * into one array.
   */
  checkpointParts(): Uint8Array[] {
    const store = this.store;
    function* held(): Iterable<HeldBlock> {
      for (const [b, s] of store.blocks) yield [b, s.peek(), s.seq, s.journal];
    }
    const parts = encodeCheckpointParts(this.exportState(false), CHECKPOINT_VERSION, held());
    this.cutChanges();
    return parts;
  }

  /**
   * The changes since the last checkpoint taken ({@link checkpointParts} or this), as a delta that
   * {@link restore} applies over the checkpoints before it: the nodes (with their links, entries and runs) and
   * held blocks that changed, the inodes that left the tree, and the rest of the state (head, journal, pending
   * data) whole. Undefined when this engine has taken no full checkpoint yet (nothing to be a delta of). A
   * checkpoint that then cannot be stored is reported with {@link checkpointFailed}, so the next delta covers
   * its changes too.
   */
  deltaCheckpointParts(): Uint8Array[] | undefined {
    const changed = this.changedNodes;
    const blocks = this.store.changed;
    if (!changed || !blocks) return undefined;
    const nodes: FsNode[] = [];
    const links: [number, [number, string][]][] = [];
    const gone: number[] = [];
    for (const ino of changed) {
      const n = this.nodes.get(ino);
      if (!n) {
        gone.push(ino);
        continue;
      }
      nodes.push(n);
      links.push([ino, this.links.all(ino).map((x) => [x.dir, x.name] as [number, string])]);
    }
    const store = this.store;
    function* held(): Iterable<HeldBlock> {
      for (const b of blocks!) { // ok: checked above
        const s = store.get(b);
        if (s) yield [b, s.peek(), s.seq, s.journal];
      }
    }
    const parts = encodeCheckpointParts({ ...this.exportState(false, false), nodes, links }, CHECKPOINT_VERSION, held(), { gone });
    this.cutChanges();
    return parts;
  }

  /**
   * Starts tracking changes without taking a full checkpoint: for an engine restored from a chain of checkpoints
   * that goes on adding deltas to that chain (the next delta holds the changes from here on).
   */
  trackChanges(): void {
    if (this.changedNodes && this.store.changed) return;
    this.changedNodes = new Set();
    this.store.changed = new Set();
  }

  /** The last checkpoint taken was not stored: the next delta covers its changes as well as those since. */
  checkpointFailed(): void {
    const taken = this.lastTaken;
    this.lastTaken = undefined;
    if (!taken || !this.changedNodes || !this.store.changed) return;
    for (const ino of taken.nodes) this.changedNodes.add(ino);
    for (const b of taken.blocks) this.store.changed.add(b);
  }

  /** Starts a new set of changes (the first full checkpoint starts the tracking). */
  private cutChanges(): void {
    this.lastTaken = this.changedNodes && this.store.changed ? { nodes: this.changedNodes, blocks: this.store.changed } : undefined;
    this.changedNodes = new Set();
    this.store.changed = new Set();
  }

  /**
   * Rebuilds an inferencer from {@link checkpoint} bytes and the deltas ({@link deltaCheckpointParts}) taken
   * after them, in order; CheckpointError when they cannot be read.
   */
  static async restore(checkpoint: Uint8Array, fetcher: BlockFetcher, opts: InferencerOptions, deltas: readonly Uint8Array[] = []): Promise<DiskInferencer> {
    return DiskInferencer.importState(decodeCheckpoint(checkpoint, deltas), fetcher, opts);
  }

  /**
   * Everything needed to resume at the applied sequence exactly as this engine would (see checkpoint.ts). That
   * includes every block the store holds, as of the applied sequence: a restored engine reads the capture only
   * for blocks this one never held, because the capture answers with the image as it is now, which may already
   * include writes the restored engine has yet to apply (and metadata read ahead of the records would mix
   * future directory entries, inodes and extents into the events of past consistency points). Without
   * `withBlocks`, `blocks` is left empty (checkpointParts reads them as it encodes); without `withTree`, so are
   * `nodes` and `links` (a delta takes only the changed ones).
   */
  exportState(withBlocks = true, withTree = true): InferencerState {
    const blocks: [number, Uint8Array, number, boolean][] = [];
    if (withBlocks) for (const [b, s] of this.store.blocks) blocks.push([b, s.peek(), s.seq, s.journal]);
    // Blocks watched for inodes whose derivation failed (not part of any node's owned blocks).
    const watched: [number, number][] = [];
    for (const [b, inos] of this.owners) {
      for (const ino of inos) if (!ownsBlock(this.nodes.get(ino), b)) watched.push([b, ino]);
    }
    return {
      disk: this.disk,
      appliedSeq: this.applied,
      blockSize: this.store.blockSize,
      nodes: withTree ? [...this.nodes.values()] : [],
      links: withTree ? [...this.links.entries()].map(([ino, l]) => [ino, l.map((x) => [x.dir, x.name] as [number, string])]) : [],
      blocks,
      itables: this.itables,
      geometryDirty: this.geometryDirty,
      journalUnread: this.journalUnread,
      watched,
      remapped: [...this.remapped],
      // Data without its trailing zeros (a small file's block is mostly zeros): the engine keeps it so, and reads
      // a short block as zero-filled.
      pending: [...this.pending].map(([b, p]) => [b, trimmedView(p.data), p.seq, p.ts, p.commits]),
      omitted: [...this.omitted].map(([b, o]) => [b, o.seq, o.ts]),
      dirty: [...this.dirty],
      tails: [...this.tails].map(([ino, t]) => {
        // What consumers were told of it, without making the engine's copy concrete (see Tail), trailing zeros
        // left out: restore widens it to a block again.
        const told = t.reported ?? (t.reportedLim >= 0 ? t.data.subarray(0, t.reportedLim) : undefined);
        return [ino, t.logical, t.block, trimmedView(t.data), told ? trimmedView(told) : null];
      }),
      heldTails: [...this.heldTails],
      prealloc: [...this.prealloc].map(([ino, held]) => [ino, [...held]]),
      recent: [...this.recent],
      logged: [...this.logged].map(([b, l]) => [b, l.ino, l.logical, l.data]),
      retries: [...this.retries],
      namedBy: [...this.namedBy],
      unreadable: [...this.unreadable],
      journal: this.journal?.state(),
      journalMap: this.journal ? this.journal.extents.map((e) => [e.logical, e.physical, e.length] as [number, number, number]) : undefined,
      superblock: this.superBytes,
      idxSeq: this.idxSeq,
      idx: this.idx,
      window: this.window,
    };
  }

  /**
   * Rebuilds an inferencer from {@link exportState}'s value. The fetcher is read only for blocks the state does
   * not hold (blocks the engine never read); a stream write to a block it holds applies when newer than the block.
   */
  static async importState(state: InferencerState, disk: BlockFetcher, opts: InferencerOptions): Promise<DiskInferencer> {
    const window = state.window ?? wholeDisk(disk.size);
    if (window.start + window.size > disk.size) throw new IncompatibleError(`the checkpoint's partition ${window.partition} ends past the disk (${disk.size} bytes)`, []);
    const store = new BlockStore(windowed(disk, window), state.blockSize);
    for (const [b, data, seq, journal] of state.blocks) store.put(b, data, seq, journal);
    // The superblock in force, which is not the one held when the guest wrote an invalid one (see reopenVolume).
    const volume = await Ext4Volume.open(state.superblock ? withSuperblock(store, state.superblock) : store);
    if (volume.superblock.blockSize !== store.blockSize) throw new IncompatibleError('the superblock held disagrees with the checkpoint\'s block size', []);
    const inf = new DiskInferencer(opts, store, volume, state.appliedSeq, window, disk);
    inf.superBytes = state.superblock ?? (await store.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
    if (state.journal && state.journalMap) {
      // The journal as followed: its inode may have been overwritten since it was read.
      inf.followJournal(state.journal.sb, state.journalMap.map(([logical, physical, length]) => ({ logical, physical, length, initialized: true })));
    } else {
      await inf.openJournal();
    }
    if (state.journal) inf.journal?.restore(state.journal);
    inf.itables = state.itables;
    inf.geometryDirty = state.geometryDirty;
    inf.journalUnread = state.journalUnread === true;
    for (const n of state.nodes) inf.adopt(n.rdev === 0 && isDevice(n.type) ? await inf.heldRdev(n) : n);
    inf.remapped.clear();
    for (const ino of state.remapped) inf.remapped.add(ino);
    for (const [b, ino] of state.watched) inf.watch(b, ino);
    for (const [ino, l] of state.links) inf.links.set(ino, l.map(([dir, name]) => ({ dir, name })));
    for (const [b, data, seq, ts, commits] of state.pending) {
      inf.pending.set(b, { data, seq, ts, commits });
      inf.pendingBytes += inf.store.blockSize;
    }
    for (const [b, seq, ts] of state.omitted) inf.omitted.set(b, { seq, ts });
    for (const ino of state.dirty) inf.dirty.add(ino);
    for (const [ino, logical, block, data, reported] of state.tails) inf.tails.set(ino, { logical, block, data, reported: reported ? widen(reported, state.blockSize) : undefined, reportedLim: -1 });
    for (const ino of state.heldTails) inf.heldTails.add(ino);
    for (const [ino, held] of state.prealloc ?? []) inf.prealloc.set(ino, new Set(held));
    for (const [b, data] of state.recent) inf.keepRecent(b, data);
    for (const [b, ino, logical, data] of state.logged ?? []) inf.keepLogged(b, ino, logical, data);
    for (const [ino, n] of state.retries) inf.retries.set(ino, n);
    for (const [ino, dir] of state.namedBy) inf.namedBy.set(ino, dir);
    for (const [ino, dir] of state.unreadable ?? []) inf.unreadable.set(ino, dir);
    inf.idxSeq = state.idxSeq;
    inf.idx = state.idx;
    return inf;
  }

  /**
   * A device node restored without its device number (checkpoints from before nodes carried one) with the number
   * its inode holds, when the inode-table block is held and still holds that inode (same type and generation);
   * else the node as it was. A device really numbered 0,0 reads back the same.
   */
  private async heldRdev(n: FsNode): Promise<FsNode> {
    const block = this.itableBlock(n.ino);
    // Only from a held block: the capture answers with the disk as it is now, past the checkpoint.
    if (block === undefined || this.store.get(block) === undefined) return n;
    let inode: Ext4Inode;
    try {
      inode = await this.volume.readInode(n.ino);
    } catch (err) {
      if (err instanceof Ext4Error) return n;
      throw err;
    }
    if (inode.type !== n.type || (inode.generation | 0) !== n.generation) return n; // nodes keep it signed
    const rdev = nodeRdev(decodeDevice(inode.iBlock));
    return rdev === 0 ? n : makeNode({ ...n, rdev }, n, n.xattrs, n.owned);
  }
}

/** The plain value of an inferencer's state. */
export interface InferencerState {
  readonly disk: string;
  readonly appliedSeq: number;
  readonly blockSize: number;
  readonly nodes: FsNode[];
  readonly links: [number, [number, string][]][];
  /** Every block held: [block, bytes, sequence its content includes, from a journal commit not yet home]. */
  readonly blocks: [number, Uint8Array, number, boolean][];
  /** Inode-table runs: [first block, block count, first inode]. */
  readonly itables: [number, number, number][];
  readonly geometryDirty: boolean;
  /** Followed at flushes because the journal could not be read at the crawl (absent before 2026-11-27 18:10). */
  readonly journalUnread?: boolean;
  /** [block, inode] read by failed derivations, watched for a retry. */
  readonly watched: [number, number][];
  readonly remapped: number[];
  readonly pending: [number, Uint8Array, number, Date, number][];
  readonly omitted: [number, number, Date][];
  readonly dirty: number[];
  readonly tails: [number, number, number, Uint8Array, Uint8Array | null][];
  readonly heldTails: number[];
  /** Followed preallocated files: [inode, logical blocks written since] (absent before 2026-11-28 10:00: none followed). */
  readonly prealloc?: [number, number[]][];
  readonly recent: [number, Uint8Array][];
  /** data=journal: [block, inode, logical block, bytes] reported from a commit, not yet home (absent before 2026-11-28). */
  readonly logged?: [number, number, number, Uint8Array][];
  readonly retries: [number, number][];
  readonly namedBy: [number, number][];
  /** Unreadable inodes and the directories naming them (absent in checkpoints made before 2026-11-27 18:00). */
  readonly unreadable?: [number, number][];
  readonly journal: JournalState | undefined;
  /** The followed journal's extents: [logical, physical, length] (absent in checkpoints before 2026-11-27 15:30). */
  readonly journalMap?: [number, number, number][] | undefined;
  /** The superblock in force (raw; absent in older checkpoints: the held one is). */
  readonly superblock?: Uint8Array | undefined;
  readonly idxSeq: number;
  readonly idx: number;
  /** Where the file system lies on the disk (absent before 2026-11-28: the whole disk). */
  readonly window?: VolumeWindow;
}

/** Turns a tail's "reported = data below reportedLim" into bytes of its own (before `data` changes). */
function materialize(tail: Tail, bs: number): void {
  if (tail.reported !== undefined || tail.reportedLim < 0) return;
  const r = new Uint8Array(bs);
  r.set(tail.data.subarray(0, tail.reportedLim));
  tail.reported = r;
  tail.reportedLim = -1;
}

/** Whether block `b` is among the blocks `node` was derived from (`owned` is sorted). */
function ownsBlock(node: FsNode | undefined, b: number): boolean {
  if (!node) return false;
  const o = node.owned;
  let lo = 0;
  let hi = o.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = o[mid]!; // ok: in range
    if (v === b) return true;
    if (v < b) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** Whether `node` maps any preallocated (unwritten) extent. */
function hasUnwritten(node: FsNode): boolean {
  return node.runs?.some((r) => r.unwritten === true) ?? false;
}

/** Whether logical block `logical` of `node` lies in a preallocated (unwritten) extent. */
function unwrittenAt(node: FsNode, logical: number): boolean {
  return runAt(node, logical)?.unwritten === true;
}

/** Whether `node`'s data map covers logical block `logical`. */
function mapsBlock(node: FsNode, logical: number): boolean {
  return runAt(node, logical) !== undefined;
}

function cmpChange(a: EntryChange, b: EntryChange): number {
  return a.dir - b.dir || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

function join(dirPath: string, name: string): string {
  return dirPath === '/' ? `/${name}` : `${dirPath}/${name}`;
}

function sliceEqual(a: Uint8Array, b: Uint8Array, at: number, len: number): boolean {
  for (let i = at; i < at + len; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** `store` with the superblock's bytes answered from `sb` (the one in force) instead of the disk's. */
function withSuperblock(store: BlockSource, sb: Uint8Array): BlockSource {
  return {
    size: store.size,
    read: async (offset, length) => {
      const data = await store.read(offset, length);
      const from = Math.max(offset, SUPERBLOCK_OFFSET);
      const to = Math.min(offset + length, SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE);
      if (from >= to) return data;
      const out = Uint8Array.from(data);
      out.set(sb.subarray(from - SUPERBLOCK_OFFSET, to - SUPERBLOCK_OFFSET), from - offset);
      return out;
    },
  };
}

/** What a superblock written over `was` changes that a mounted ext2/3/4 never changes, or undefined. */
function geometryChange(was: Ext4Superblock, now: Ext4Superblock): string | undefined {
  const fields = ['blockSize', 'clusterSize', 'inodeSize', 'inodesPerGroup', 'blocksPerGroup', 'clustersPerGroup', 'firstDataBlock', 'descSize', 'journalInum'] as const;
  for (const f of fields) if (was[f] !== now[f]) return `${f} changed from ${was[f]} to ${now[f]}`;
  if (was.has.journal !== now.has.journal) return `the journal feature changed to ${now.has.journal}`;
  if (now.groupCount < was.groupCount) return `the group count fell from ${was.groupCount} to ${now.groupCount}`;
  return undefined;
}

/** Byte offset of s_uuid in the superblock. */
const UUID_AT = 0x68;

function uuidText(u: Uint8Array): string {
  const h = Buffer.from(u).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Gives the write event being extended its bytes in one piece (or none past the inline limit), and ends it. */
function closeRun(ctx: Ctx): void {
  const r = ctx.run;
  if (!r) return;
  ctx.run = undefined;
  const e = r.event as { data?: Uint8Array; dataOmitted?: boolean };
  if (!r.parts) {
    if (e.data === undefined) return;
    delete e.data;
    e.dataOmitted = true;
  } else if (r.parts.length > 1) {
    const all = Buffer.concat(r.parts, r.length);
    e.data = new Uint8Array(all.buffer, all.byteOffset, all.byteLength);
  }
}

/**
 * The stand-in for a root directory the crawl could not read: no names, and every attribute 0 (nlink 0 marks
 * it: an inode in use never has it). Its owned blocks are what the failed read looked at, so rewriting them, or
 * the root's inode, makes the root dirty and it is read again; when it reads back, its names come out as
 * `create` events. The marker survives checkpoints (it is in the node itself).
 */
function unreadableRoot(owned: readonly number[]): FsNode {
  const zero = { sec: 0, nsec: 0 };
  return makeNode(
    { ino: ROOT_INO, generation: 0, type: FileType.dir, mode: 0, uid: 0, gid: 0, size: 0, nlink: 0, atime: zero, mtime: zero, ctime: zero, flags: 0, rdev: 0 },
    { entries: new Map() },
    {},
    owned,
  );
}

/** Whether `n` is the stand-in of {@link unreadableRoot}. */
function isUnreadableRoot(n: FsNode): boolean {
  return n.ino === ROOT_INO && n.nlink === 0 && n.mode === 0 && n.generation === 0;
}

/**
 * Whether `now` is still the inode `before` was: the same type and generation, or a directory given a new
 * generation over the very same names (FS_IOC_SETVERSION, `chattr -v`), not one freed and allocated again.
 */
function sameInode(before: FsNode, now: FsNode): boolean {
  return now.type === before.type && (now.generation === before.generation || (now.type === FileType.dir && sameEntries(before.entries, now.entries)));
}

/** Whether two directories hold the same names for the same inodes. */
function sameEntries(a: ReadonlyMap<string, number> | undefined, b: ReadonlyMap<string, number> | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.size !== b.size) return false;
  for (const [name, ino] of a) if (b.get(name) !== ino) return false;
  return true;
}
