/**
 * Physical block -> (inode, logical block) for the data blocks of regular files, so a write to the disk can be
 * attributed to the file it lands in. Extents are kept in fixed-width buckets of physical blocks; an extent
 * spanning several buckets is listed in each.
 */
import { DATA_INDEX_BUCKET_BLOCKS, MAX_RUNS_PER_DATA_BUCKET } from './limits.js';

/** One mapped run: `length` blocks at `physical` hold logical blocks `logical..` of inode `ino`. */
export interface MappedRun {
  readonly ino: number;
  readonly logical: number;
  readonly physical: number;
  readonly length: number;
  /**
   * A preallocated (ext4 unwritten) extent: its blocks read as zeros, whatever they hold; writes to them are
   * still attributed to the file (ext4 writes data there before it marks the extent written).
   */
  readonly unwritten?: boolean;
}

/** The reverse map. */
export class DataIndex {
  private readonly buckets = new Map<number, MappedRun[]>();

  add(run: MappedRun): void {
    if (run.length <= 0) return;
    const first = Math.floor(run.physical / DATA_INDEX_BUCKET_BLOCKS);
    const last = Math.floor((run.physical + run.length - 1) / DATA_INDEX_BUCKET_BLOCKS);
    for (let k = first; k <= last; k++) {
      let list = this.buckets.get(k);
      if (!list) this.buckets.set(k, (list = []));
      if (list.length < MAX_RUNS_PER_DATA_BUCKET) list.push(run);
    }
  }

  remove(run: MappedRun): void {
    if (run.length <= 0) return;
    const first = Math.floor(run.physical / DATA_INDEX_BUCKET_BLOCKS);
    const last = Math.floor((run.physical + run.length - 1) / DATA_INDEX_BUCKET_BLOCKS);
    for (let k = first; k <= last; k++) {
      const list = this.buckets.get(k);
      if (!list) continue;
      const i = list.indexOf(run);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.buckets.delete(k);
    }
  }

  /** The file block at physical block `block`, if any (the most recently added run wins on overlap). */
  lookup(block: number): { ino: number; logical: number } | undefined {
    const list = this.buckets.get(Math.floor(block / DATA_INDEX_BUCKET_BLOCKS));
    if (!list) return undefined;
    for (let i = list.length - 1; i >= 0; i--) {
      const r = list[i]!; // ok: in range
      if (block >= r.physical && block < r.physical + r.length) return { ino: r.ino, logical: r.logical + (block - r.physical) };
    }
    return undefined;
  }
}
