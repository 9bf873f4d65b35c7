/**
 * One disk's file-system state, rebuilt from what NATS replicates: the inferencer's latest checkpoint (Object
 * Store `gammaray-state`) restored into a {@link DiskInferencer}, then the disk's write stream applied from the
 * checkpoint's sequence on. The engine is deterministic, so the state equals the one the owning inferencer has
 * at the same sequence — without asking it anything: views survive any inferencer's death and any number can run.
 */
import { DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { DiskInferencer, treeEntryOf, withSize, type FsNode, type VolumeWindow } from '@gammaray/inferencer';
import { FileType, ROOT_INO, metadataOverhead, type TreeEntry } from '@gammaray/ext4';
import { CorruptError, STREAM_WRITES, decodeWriteRecord, writesSubject, type DiskRegistryEntry } from '@gammaray/wire';
import type { Logger } from 'pino';
import { NatsBlockFetcher } from './block-fetcher.js';
import { ConsumerGuard, type Stall } from './stall-watch.js';
import type { CheckpointStore } from './checkpoints.js';
import { readUntorn, type UntornRead } from './content.js';
import { ReplicaError, ReplicaErrorCode } from './errors.js';
import { compareNames, joinPath, sortDepthFirst, sortNames, splitRequestPath } from './paths.js';

/** Where a replica is. */
export const ReplicaPhase = {
  /** No checkpoint yet: the disk's inferencer has not finished its first crawl. */
  Waiting: 'waiting',
  /** Restored, following the write stream. */
  Following: 'following',
  /** Stopped. */
  Stopped: 'stopped',
} as const;
/** See {@link ReplicaPhase}. */
export type ReplicaPhase = (typeof ReplicaPhase)[keyof typeof ReplicaPhase];

/** Options of {@link DiskReplica}. */
export interface DiskReplicaOptions {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly checkpoints: CheckpointStore;
  readonly entry: DiskRegistryEntry;
  readonly log: Logger;
  /** How often a replica without a checkpoint looks again, and the first back-off after a failure. Default 1 s. */
  readonly retryMs?: number;
}

/** A node and the path it was found at. */
export interface Located {
  readonly path: string;
  readonly node: FsNode;
  /** The write-stream sequence of the state it was found in. */
  readonly seq: number;
}

/** A directory entry: name and node. */
export interface ListedEntry {
  readonly name: string;
  readonly node: FsNode;
}

/** What a replica reports about itself. */
export interface ReplicaStatus {
  readonly disk: string;
  readonly phase: ReplicaPhase;
  /** The last write-stream sequence applied (-1 before the first restore). */
  readonly appliedSeq: number;
  /** Records of the disk still to apply, as JetStream reported with the last one delivered. */
  readonly pending: number;
  /** Restores so far (1 + restarts after failures). */
  readonly restores: number;
  readonly files: number;
  readonly dirs: number;
  /** Where on the disk the followed file system lies (a partition, or the whole disk), once restored. */
  readonly window?: VolumeWindow;
}

const MAX_BACKOFF_MS = 15_000;

/**
 * Entry names per directory node in the guest's byte order, as `gammaray ls` lists them (nodes are immutable
 * values, replaced when the directory changes).
 */
const SORTED_NAMES = new WeakMap<FsNode, readonly string[]>();

function sortedNames(dir: FsNode): readonly string[] {
  let names = SORTED_NAMES.get(dir);
  if (!names) {
    names = sortNames([...(dir.entries?.keys() ?? [])]);
    SORTED_NAMES.set(dir, names);
  }
  return names;
}

/** Index of the first name that sorts after `name`. */
function firstAfter(sorted: readonly string[], name: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareNames(sorted[mid]!, name) <= 0) lo = mid + 1; // ok: mid < hi <= length
    else hi = mid;
  }
  return lo;
}

/**
 * Keeps one disk's state. Reads never see a record half applied: every read and every record go through one
 * queue, reads take what they need synchronously (nodes are immutable values: a node taken stays as it was) and
 * do their block reads after leaving the queue.
 */
export class DiskReplica {
  readonly disk: string;
  readonly size: number;
  readonly #o: DiskReplicaOptions;
  readonly #log: Logger;
  #engine: DiskInferencer | undefined;
  #fetcher: NatsBlockFetcher;
  readonly #source: string;
  #phase: ReplicaPhase = ReplicaPhase.Waiting;
  #pending = 0;
  #restores = 0;
  /** The stream sequence at which the guest made a new file system; checkpoints from before it are not restored. */
  #resyncAt: number | undefined;
  #serial: Promise<unknown> = Promise.resolve();
  #messages: ConsumerMessages | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;
  readonly #listeners = new Set<(seq: number) => void>();
  readonly #ready: Promise<void>;
  #markReady!: () => void;

  constructor(opts: DiskReplicaOptions) {
    this.#o = opts;
    this.disk = opts.entry.disk;
    this.size = opts.entry.size;
    this.#log = opts.log.child({ disk: this.disk });
    // A volume (registry `source`) reads its captured disk's writes and blocks.
    this.#source = opts.entry.source ?? opts.entry.disk;
    this.#fetcher = new NatsBlockFetcher(opts.nc, this.#source, this.size, { log: this.#log });
    this.#ready = new Promise((r) => (this.#markReady = r));
  }

  /** Starts restoring and following in the background. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops following; reads made afterwards fail with Unavailable. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#messages?.stop();
    this.#wake?.();
    await this.#loop;
    this.#phase = ReplicaPhase.Stopped;
    this.#listeners.clear();
  }

  status(): ReplicaStatus {
    const counts = this.#engine?.counts() ?? { files: 0, dirs: 0 };
    return { disk: this.disk, phase: this.#phase, appliedSeq: this.#engine?.appliedSeq ?? -1, pending: this.#pending, restores: this.#restores, ...counts, window: this.#engine?.window };
  }

  /** Whether the replica has a state to answer from. */
  get ready(): boolean {
    return this.#engine !== undefined;
  }

  /** Resolves when the replica has a state (or rejects with NotReady after `timeoutMs`). */
  async whenReady(timeoutMs: number): Promise<void> {
    if (this.#engine) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.#notReady()), timeoutMs);
    });
    try {
      await Promise.race([this.#ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Calls `listener(seq)` after every record applied (and after a restore), outside the read queue. Returns the
   * function that removes it.
   */
  onApplied(listener: (seq: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The block size of the file system (from the restored superblock). */
  async blockSize(): Promise<number> {
    return this.#read((e) => e.superblock.blockSize);
  }

  /**
   * File-system totals for statfs: block size, blocks (less the metadata, as Linux counts them), inodes, and the free counts of the group descriptors the
   * state holds (what the guest's kernel last wrote; it updates them at each commit), and the blocks a user other
   * than root cannot have (df's "available" leaves them out).
   */
  async fsStats(): Promise<{ blockSize: number; blocks: number; inodes: number; freeInodes: number; freeBlocks: number; reservedBlocks: number }> {
    return this.#read((e) => {
      const sb = e.superblock;
      // What Linux's ext4 holds back from "available": the superblock's root reservation, plus (with extents) 2% of
      // the clusters, at most 4096, that it keeps for itself (ext4_calculate_resv_clusters, not on the disk).
      const ratio = sb.clusterSize / sb.blockSize;
      const kernel = sb.has.extents ? Math.min(Math.floor(Math.floor(sb.blocksCount / ratio) / 50), 4096) * ratio : 0;
      // `df`'s size, as the kernel's statfs gives it: the blocks less the metadata (with bigalloc and no stored count,
      // the whole file system).
      const blocks = Math.max(0, sb.blocksCount - (metadataOverhead(sb, e.journalBlocks()) ?? 0));
      return { blockSize: sb.blockSize, blocks, inodes: sb.inodesCount, freeInodes: e.freeInodes(), freeBlocks: e.freeBlocks(), reservedBlocks: sb.reservedBlocks + kernel };
    });
  }

  /** The node at `path` (symlinks are not followed: lstat semantics). Throws ReplicaError. */
  async resolve(path: string): Promise<Located> {
    const names = splitRequestPath(path);
    // As POSIX path resolution: a path that ends with a slash (or "/.") names a directory.
    const dirOnly = names.length > 0 && /\/\.?$/.test(path);
    return this.#read((e) => {
      const at = this.#walk(e, names);
      if (dirOnly && at.node.type !== FileType.dir) {
        throw new ReplicaError(ReplicaErrorCode.NotADirectory, `${at.path} on disk ${this.disk} is not a directory (it is a ${at.node.type}): give the path without the trailing slash`);
      }
      return at;
    });
  }

  /**
   * The node of inode `ino` as it is now, if it is still in the tree (NotFound otherwise): what an open file
   * handle follows when the guest renames the file under it.
   */
  async node(ino: number): Promise<FsNode> {
    return this.#read((e) => {
      const n = e.nodes.get(ino);
      if (!n) throw new ReplicaError(ReplicaErrorCode.NotFound, `inode ${ino} is no longer in the tree of disk ${this.disk}`);
      return visible(e, n);
    });
  }

  /** The entries of the directory at `path`, sorted by name (without "." and ".."). */
  async list(path: string): Promise<{ dir: Located; entries: ListedEntry[] }> {
    const { dir, entries } = await this.listPage(path, undefined, Number.MAX_SAFE_INTEGER);
    return { dir, entries };
  }

  /**
   * One page of the directory at `path`: up to `limit` entries whose names sort after `after` (from the first when
   * undefined), and whether more follow. Costs O(page + log n) once the directory's sorted names are known (they
   * are kept per directory node, and a node is replaced whenever its directory changes).
   */
  async listPage(path: string, after: string | undefined, limit: number): Promise<{ dir: Located; entries: ListedEntry[]; more: boolean }> {
    const names = splitRequestPath(path);
    return this.#read((e) => {
      const dir = this.#walk(e, names);
      if (dir.node.type !== FileType.dir) throw new ReplicaError(ReplicaErrorCode.NotADirectory, `${dir.path} on disk ${this.disk} is not a directory (it is a ${dir.node.type})`);
      const sorted = sortedNames(dir.node);
      let i = after === undefined ? 0 : firstAfter(sorted, after);
      const entries: ListedEntry[] = [];
      for (; i < sorted.length && entries.length < limit; i++) {
        const name = sorted[i]!; // ok: i < length
        const node = e.nodes.get(dir.node.entries!.get(name)!); // ok: names come from this map
        if (node) entries.push({ name, node: visible(e, node) });
      }
      return { dir, entries, more: i < sorted.length };
    });
  }

  /** The whole tree in the tree-entry shape (in the order of `gammaray ls -R`), and the sequence it is at. */
  async tree(): Promise<{ seq: number; entries: TreeEntry[] }> {
    return this.#read((e) => ({ seq: e.appliedSeq, entries: sortDepthFirst(e.tree()) }));
  }

  /**
   * The tree below `path` (the entry at `path` first, then everything under it, in the order of `gammaray ls -R`:
   * depth first, names by their bytes), each entry with
   * its node (so file content can be read as of the same state), and the sequence it is at. Throws ReplicaError
   * (NotFound when `path` does not exist).
   */
  async subtree(path: string): Promise<{ seq: number; items: { entry: TreeEntry; node: FsNode }[] }> {
    const names = splitRequestPath(path);
    return this.#read((e) => {
      const top = this.#walk(e, names);
      const prefix = top.path === '/' ? '/' : `${top.path}/`;
      const items: { path: string; entry: TreeEntry; node: FsNode }[] = [];
      for (const entry of e.tree()) {
        if (entry.path !== top.path && !entry.path.startsWith(prefix)) continue;
        const node = e.nodes.get(entry.ino);
        if (node) items.push({ path: entry.path, entry, node });
      }
      return { seq: e.appliedSeq, items: sortDepthFirst(items) };
    });
  }

  /**
   * Up to `length` bytes of the regular file `node` at `offset`, untorn (see {@link readUntorn}); holes read
   * as zeros. Throws ReplicaError (IsADirectory, InvalidArgument, Unavailable).
   */
  async read(node: FsNode, offset: number, length: number): Promise<UntornRead> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `offset ${offset} and length ${length} must be non-negative integers`);
    }
    if (node.type === FileType.dir) throw new ReplicaError(ReplicaErrorCode.IsADirectory, `inode ${node.ino} on disk ${this.disk} is a directory`);
    if (node.type !== FileType.file) return { data: new Uint8Array(0), seq: 0, rounds: 0, unsettled: false };
    const blockSize = await this.blockSize();
    try {
      return await readUntorn(node, blockSize, this.#engine?.store.fetcher ?? this.#fetcher, offset, length);
    } catch (cause) {
      throw new ReplicaError(ReplicaErrorCode.Unavailable, `block reads of disk ${this.disk} failed (is its capture running?): ${(cause as Error).message}`, { cause });
    }
  }

  /** The entry of one node in the tree-entry JSON shape. */
  entryOf(located: Located): TreeEntry {
    return treeEntryOf(located.path, located.node);
  }

  // ------------------------------------------------------------------------------------------------

  #notReady(): ReplicaError {
    return new ReplicaError(ReplicaErrorCode.NotReady, `disk ${this.disk} has no state yet: its inferencer has not finished the first crawl, or the disk holds no file system yet (a blank disk is crawled once its guest formats it; is a gammaray inferencer running?); try again shortly`);
  }

  /** Runs `f` on the engine between two records. */
  #read<T>(f: (e: DiskInferencer) => T): Promise<T> {
    if (this.#phase === ReplicaPhase.Stopped) return Promise.reject(new ReplicaError(ReplicaErrorCode.Unavailable, `the replica of disk ${this.disk} is stopped`));
    return this.#enqueue(async () => {
      const e = this.#engine;
      if (!e) throw this.#notReady();
      return f(e);
    });
  }

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    const p = this.#serial.then(task);
    this.#serial = p.catch(() => undefined);
    return p;
  }

  #walk(e: DiskInferencer, names: readonly string[]): Located {
    const root = e.nodes.get(ROOT_INO);
    if (!root) throw new ReplicaError(ReplicaErrorCode.NotFound, `disk ${this.disk} has no root directory in its state`);
    let node: FsNode = root;
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!; // ok: i < length
      if (node.type !== FileType.dir) throw new ReplicaError(ReplicaErrorCode.NotADirectory, `${joinPath(names.slice(0, i))} on disk ${this.disk} is not a directory`);
      const ino: number | undefined = node.entries?.get(name);
      const next: FsNode | undefined = ino === undefined ? undefined : e.nodes.get(ino);
      if (!next) throw new ReplicaError(ReplicaErrorCode.NotFound, `${joinPath(names.slice(0, i + 1))} does not exist on disk ${this.disk}`);
      node = next;
    }
    return { path: joinPath(names), node: visible(e, node), seq: e.appliedSeq };
  }

  async #run(): Promise<void> {
    const base = this.#o.retryMs ?? 1_000;
    let backoff = base;
    while (!this.#stopping) {
      try {
        const restored = await this.#restore();
        if (!restored) {
          await this.#sleep(base);
          continue;
        }
        backoff = base;
        await this.#follow();
      } catch (err) {
        if (this.#stopping) break;
        this.#log.warn({ err, appliedSeq: this.#engine?.appliedSeq }, 'replica failed; restoring from the latest checkpoint');
        await this.#sleep(backoff);
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      }
    }
  }

  /** Restores the latest checkpoint; false when there is none yet. The old state serves until the new one is in. */
  async #restore(): Promise<boolean> {
    const ck = await this.#o.checkpoints.load(this.disk);
    if (!ck) {
      if (this.#phase !== ReplicaPhase.Waiting) this.#log.info('no checkpoint for the disk; waiting for its inferencer');
      return false;
    }
    if (ck.size !== undefined && ck.size !== this.size) {
      this.#log.info({ checkpointSize: ck.size, size: this.size }, 'the checkpoint is of a disk of another size; waiting for a new one');
      return false;
    }
    const resyncAt = this.#resyncAt;
    if (resyncAt !== undefined && (ck.appliedSeq ?? 0) < resyncAt) {
      // The old state (still served) ends where the guest made a new file system: wait for the crawl's.
      return false;
    }
    const engine = await DiskInferencer.restore(ck.state, this.#fetcher, { disk: this.disk }, ck.deltas);
    const want = this.#o.entry.partition;
    if (want !== undefined && engine.window.partition !== want) {
      // The inferencer is yet to crawl the partition the registry names: wait for its checkpoint.
      if (this.#phase !== ReplicaPhase.Waiting) this.#log.info({ partition: engine.window.partition, want }, 'the checkpoint follows another partition than the registry names; waiting for a new one');
      return false;
    }
    await this.#enqueue(async () => {
      this.#engine = engine;
    });
    this.#restores++;
    this.#phase = ReplicaPhase.Following;
    this.#log.info({ appliedSeq: engine.appliedSeq, bytes: ck.state.length, deltas: ck.deltas?.length ?? 0 }, 'replica restored from checkpoint');
    this.#markReady();
    this.#notify(engine.appliedSeq);
    return true;
  }

  async #follow(): Promise<void> {
    const engine = this.#engine!; // ok: #restore set it
    let from = engine.appliedSeq + 1;
    for (;;) {
      const stalled = await this.#followFrom(engine, from);
      if (!stalled) break;
      // The state in hand is right up to what was handled: only the consumer is replaced.
      this.#log.warn({ appliedSeq: engine.appliedSeq, lastSeq: stalled.lastSeq, silentMs: stalled.silentMs }, 'the write-stream consumer went quiet while records wait; following with a new one');
      from = stalled.handledSeq + 1;
    }
    if (!this.#stopping) throw new Error('the write-stream consumer ended');
  }

  /** Follows the disk's records from `from` until stopped, the consumer ends, or a stall (returned). */
  async #followFrom(engine: DiskInferencer, from: number): Promise<Stall | undefined> {
    const consumer = await this.#o.js.consumers.get(STREAM_WRITES, {
      filter_subjects: writesSubject(this.#source),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
    });
    const messages = await consumer.consume({ max_messages: 64 });
    this.#messages = messages;
    if (this.#stopping) messages.stop();
    let handled = from - 1; // records skipped (corrupt, another disk's) count as handled
    const guard = new ConsumerGuard(messages, { jsm: this.#o.jsm, stream: STREAM_WRITES, subject: writesSubject(this.#source), handledSeq: () => handled });
    try {
      for await (const m of messages) {
        if (this.#stopping || guard.stalled) break;
        guard.watch.delivered();
        await guard.watch.busy(() => this.#enqueue(() => this.#apply(engine, m)));
        handled = m.seq;
        this.#notify(engine.appliedSeq);
      }
    } finally {
      guard.close();
      messages.stop();
    }
    return this.#stopping ? undefined : guard.stalled;
  }

  async #apply(engine: DiskInferencer, m: JsMsg): Promise<void> {
    this.#pending = m.info.pending;
    if (m.seq <= engine.appliedSeq) return;
    let rec;
    try {
      rec = decodeWriteRecord(m.data);
    } catch (err) {
      // The inferencer publishes a `corrupt` event for it; the engine skips it the same way.
      if (err instanceof CorruptError) return;
      throw err;
    }
    if (rec.disk !== this.#source) return;
    await engine.apply(m.seq, rec);
    const why = engine.resyncReason;
    if (why !== undefined) {
      this.#resyncAt = m.seq;
      throw new Error(`disk ${this.disk} must be crawled again (${why}): waiting for its inferencer's new checkpoint`);
    }
  }

  #notify(seq: number): void {
    for (const l of this.#listeners) {
      try {
        l(seq);
      } catch (err) {
        this.#log.warn({ err }, 'a replica listener failed');
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, ms);
      this.#wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }
}

/**
 * The node as readers should see it: while an append's new size is committed but its data has not reached the
 * disk yet, with the size of the data seen (see DiskInferencer.visibleSize), so `tail -f` never reads zeros for
 * lines still on their way.
 */
function visible(e: DiskInferencer, node: FsNode): FsNode {
  const size = e.visibleSize(node);
  return size === node.size ? node : withSize(node, size);
}
