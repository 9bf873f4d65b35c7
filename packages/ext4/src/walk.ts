import { CorruptError, CorruptKind, Ext4Error } from './errors.js';
import { MAX_PATH_BYTES, MAX_TREE_DEPTH } from './limits.js';
import { decodeName } from './names.js';
import { FileType, inodeInUse, ROOT_INO, type Ext4Inode } from './ondisk/inode.js';
import type { Ext4Volume } from './volume.js';

/** One path met while walking a tree. */
export interface WalkItem {
  /** Absolute path, decoded with {@link decodeName} ("/" for the root). */
  readonly path: string;
  readonly ino: number;
  /** Depth below the walk's start (0 for the start itself). */
  readonly depth: number;
  /** The inode, unless reading it failed (then `errors` says why). */
  readonly inode: Ext4Inode | undefined;
  /** Problems met at this path: an unreadable inode, or a partially readable directory. */
  readonly errors: readonly Ext4Error[];
}

/** Options for {@link walk}. */
export interface WalkOptions {
  /** Where to start (default the root inode). */
  readonly startIno?: number;
  /** Path of the start (default "/"). */
  readonly startPath?: string;
  /** Descend into subdirectories (default true). */
  readonly recursive?: boolean;
  /** Sort each directory's entries by name bytes (default true). */
  readonly sort?: boolean;
  /** Called with the number of items yielded so far, now and then. */
  readonly onProgress?: (items: number) => void;
}

interface Pending {
  readonly path: string;
  readonly pathBytes: number;
  readonly ino: number;
  readonly depth: number;
}

const DOT = 0x2e;

function isDotOrDotDot(n: Uint8Array): boolean {
  return (n.length === 1 && n[0] === DOT) || (n.length === 2 && n[0] === DOT && n[1] === DOT);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/**
 * Walks the tree depth-first, directories before their contents, yielding
 * every path with its inode. Damage never stops the walk: an unreadable
 * entry is yielded with its error and the walk goes on. A directory reached
 * twice (impossible in a sound file system) is reported once as a
 * DirectoryLoop and not entered again, so the walk always ends.
 */
export async function* walk(vol: Ext4Volume, opts: WalkOptions = {}): AsyncGenerator<WalkItem> {
  for await (const batch of walkBatches(vol, opts)) yield* batch;
}

/** Items per batch of {@link walkBatches}. */
const BATCH = 512;
const NO_ERRORS: readonly Ext4Error[] = Object.freeze([]);

/**
 * {@link walk} in batches of up to 512 items, in the same order: one promise
 * per batch instead of one per item, for callers that handle many thousands
 * of entries (a crawl).
 */
export async function* walkBatches(vol: Ext4Volume, opts: WalkOptions = {}): AsyncGenerator<WalkItem[]> {
  let batch: WalkItem[] = [];
  const recursive = opts.recursive ?? true;
  const sort = opts.sort ?? true;
  const startPath = opts.startPath ?? '/';
  const seenDirs = new Set<number>();
  const stack: Pending[] = [{ path: startPath, pathBytes: Buffer.byteLength(startPath), ino: opts.startIno ?? ROOT_INO, depth: 0 }];
  let count = 0;
  while (stack.length > 0) {
    if (batch.length >= BATCH) {
      yield batch;
      batch = [];
    }
    const item = stack.pop()!; // ok: non-empty
    let inode: Ext4Inode;
    try {
      inode = vol.readInodeCached(item.ino) ?? (await vol.readInode(item.ino));
    } catch (err) {
      if (!(err instanceof Ext4Error)) throw err;
      batch.push({ path: item.path, ino: item.ino, depth: item.depth, inode: undefined, errors: [err] });
      continue;
    }
    if (!inodeInUse(inode)) {
      const err = new CorruptError(CorruptKind.DirEntryInode, `${item.path} names free inode ${item.ino}`, { inode: item.ino });
      batch.push({ path: item.path, ino: item.ino, depth: item.depth, inode: undefined, errors: [err] });
      continue;
    }
    if (++count % 4096 === 0) opts.onProgress?.(count);
    const descend = inode.type === FileType.dir && (recursive || item.depth === 0);
    if (!descend) {
      batch.push({ path: item.path, ino: item.ino, depth: item.depth, inode, errors: NO_ERRORS });
      continue;
    }
    if (seenDirs.has(item.ino)) {
      const err = new CorruptError(CorruptKind.DirectoryLoop, `directory inode ${item.ino} is reachable twice (at ${item.path})`, { inode: item.ino });
      batch.push({ path: item.path, ino: item.ino, depth: item.depth, inode, errors: [err] });
      continue;
    }
    seenDirs.add(item.ino);
    const errors: Ext4Error[] = [];
    let entries: { ino: number; name: Uint8Array }[] = [];
    try {
      const listing = await vol.readDir(inode);
      errors.push(...listing.errors);
      entries = listing.entries.filter((e) => !isDotOrDotDot(e.name));
    } catch (err) {
      if (!(err instanceof Ext4Error)) throw err;
      errors.push(err);
    }
    const children: Pending[] = [];
    if (entries.length > 0 && item.depth + 1 > MAX_TREE_DEPTH) {
      errors.push(new CorruptError(CorruptKind.TreeBudget, `nesting deeper than ${MAX_TREE_DEPTH} below ${item.path}`, { inode: item.ino }));
      entries = [];
    }
    if (sort) entries.sort((a, b) => compareBytes(a.name, b.name));
    const prefix = item.path === '/' ? '/' : `${item.path}/`;
    const prefixBytes = item.path === '/' ? 1 : item.pathBytes + 1;
    let tooLong = 0;
    for (const e of entries) {
      const pathBytes = prefixBytes + e.name.length;
      if (pathBytes > MAX_PATH_BYTES) {
        tooLong++;
        continue;
      }
      children.push({ path: prefix + decodeName(e.name), pathBytes, ino: e.ino, depth: item.depth + 1 });
    }
    if (tooLong > 0) {
      errors.push(new CorruptError(CorruptKind.PathTooLong, `${tooLong} entries under ${item.path} would have paths longer than ${MAX_PATH_BYTES} bytes`, { inode: item.ino }));
    }
    batch.push({ path: item.path, ino: item.ino, depth: item.depth, inode, errors });
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]!); // ok: in range
  }
  if (batch.length > 0) yield batch;
}
