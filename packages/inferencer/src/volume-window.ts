/**
 * Where on a disk the followed file system lies: the whole disk, one partition of an MBR or GPT table, or a linear
 * LVM logical volume (on the whole disk or in a partition). The
 * engine works in the file system's own byte offsets; a window translates the disk's (write records, block reads)
 * to them, and notices when the guest rewrites the partition table or the LVM metadata.
 */
import { DiskError, IoError, PartitionScheme, SliceBlockSource, isExtendedPartition, readLvmPv, readPartitions, type BlockSource, type LvmPv, type Partition, type PartitionTable } from '@gammaray/disk';
import { EXT4_SUPER_MAGIC, SUPERBLOCK_OFFSET } from '@gammaray/ext4';
import type { WriteOp, WriteRecord } from '@gammaray/wire';
import type { BlockFetcher } from './store.js';

/** The part of a disk that holds the followed file system. */
export interface VolumeWindow {
  /** The partition's number as Linux counts it (`vda1` is 1); 0: the file system starts at byte 0 of the disk. */
  readonly partition: number;
  /** First byte of the file system on the disk. */
  readonly start: number;
  /** Bytes of the volume (the partition's size, the logical volume's, or the disk's). */
  readonly size: number;
  /** An LVM logical volume (`vg/lv`) on the PV that is `partition` (or the whole disk). */
  readonly lv?: string;
  /** The LVM PV's label and metadata on the disk, [start, end): a write there may have moved the LV. */
  readonly meta?: readonly [number, number];
}

/** How far into the disk, and from its end, a write may change the partition table (GPT: 34 sectors of 512 B, or 6 of 4 KiB). */
export const TABLE_AREA_BYTES = 64 * 1024;

const MAGIC_AT = SUPERBLOCK_OFFSET + 0x38; // s_magic
/** Partitions of one table looked into for a file system (a hostile table may list thousands). */
export const MAX_CANDIDATES = 64;

/** The whole disk as the volume. */
export function wholeDisk(size: number): VolumeWindow {
  return { partition: 0, start: 0, size };
}

/** A partitioned disk offers no ext2/3/4 file system to follow (yet): see {@link locateVolume}. */
export class NoVolumeError extends Error {
  override name = 'NoVolumeError';
}

/** `fetcher`'s bytes as a BlockSource (the partition-table reader's input). */
function sourceOf(fetcher: BlockFetcher): BlockSource {
  return { size: fetcher.size, read: async (offset, length) => (await fetcher.read(offset, length)).data };
}

async function hasExtMagic(fetcher: BlockFetcher, start: number, size: number): Promise<boolean> {
  if (size < MAGIC_AT + 2 || start + MAGIC_AT + 2 > fetcher.size) return false;
  const { data } = await fetcher.read(start + MAGIC_AT, 2);
  return (data[0]! | (data[1]! << 8)) === EXT4_SUPER_MAGIC; // ok: 2 bytes read
}

function describe(table: PartitionTable): string {
  const kind = table.scheme === PartitionScheme.Gpt ? 'a GPT' : 'an MBR';
  const n = table.partitions.filter((p) => !isExtendedPartition(p)).length;
  return `${kind} partition table with ${n} partition${n === 1 ? '' : 's'}`;
}

/**
 * Finds the file system to follow on the disk `fetcher` reads:
 * - an ext2/3/4 superblock at byte 1024 of the disk: the whole disk;
 * - else the disk's MBR or GPT partition table, or an LVM2 PV on the whole disk: partition `prefer` when given
 *   (for an LVM PV, its largest logical volume holding ext), else the largest volume holding an ext2/3/4
 *   superblock among the partitions and the linear logical volumes of the LVM PVs (the lowest partition number
 *   among equals): a boot disk's root file system, not its /boot or EFI partitions.
 *
 * Throws NoVolumeError when there is none (a blank disk, a table whose partitions are not formatted yet, another
 * file system), with what was found; a damaged table is NoVolumeError too (the guest may be rewriting it).
 */
export async function locateVolume(fetcher: BlockFetcher, prefer?: number): Promise<VolumeWindow> {
  if (prefer === undefined || prefer === 0) {
    if (await hasExtMagic(fetcher, 0, fetcher.size)) return wholeDisk(fetcher.size);
    if (prefer === 0) {
      const lv = await largestLv(fetcher, 0, 0, fetcher.size);
      if (lv) return lv;
      throw new NoVolumeError(`the disk holds no ext2/3/4 file system at its start (no superblock magic at byte ${MAGIC_AT})`);
    }
  }
  let table: PartitionTable;
  try {
    table = await readPartitions(sourceOf(fetcher));
  } catch (err) {
    if (!(err instanceof DiskError) || err instanceof IoError) throw err;
    throw new NoVolumeError(`the disk's partition table is unreadable (${err.message}); looking again later`, { cause: err });
  }
  if (table.scheme === PartitionScheme.None) {
    const lv = await largestLv(fetcher, 0, 0, fetcher.size);
    if (lv) return lv;
    // A partition named on a disk whose file system fills it: saying it holds none would be false.
    if (prefer !== undefined && (await hasExtMagic(fetcher, 0, fetcher.size))) {
      throw new NoVolumeError(`the disk has no partition table, so no partition ${prefer}: its ext2/3/4 file system is the whole disk (partition 0)`);
    }
    throw new NoVolumeError(`the disk holds no ext2/3/4 file system (no superblock magic at byte ${MAGIC_AT}) and no partition table: blank, not formatted yet, or another file system`);
  }
  const parts = table.partitions.filter((p) => !isExtendedPartition(p));
  if (prefer !== undefined) {
    const p = parts.find((x) => x.index === prefer);
    if (!p) throw new NoVolumeError(`the disk has ${describe(table)} but no partition ${prefer}`);
    if (await hasExtMagic(fetcher, p.start, p.size)) return windowOf(p);
    const lv = await largestLv(fetcher, p.index, p.start, p.size);
    if (lv) return lv;
    throw new NoVolumeError(`partition ${prefer} holds no ext2/3/4 file system (yet), nor an LVM PV with one`);
  }
  // Largest first (the lowest number among equals). A table may list thousands of partitions; only the
  // MAX_CANDIDATES largest are looked into (one block read each, a few more for an LVM PV).
  const bySize = [...parts].sort((a, b) => b.size - a.size || a.index - b.index).slice(0, MAX_CANDIDATES);
  let best: VolumeWindow | undefined;
  for (const p of bySize) {
    if (best && p.size <= best.size) break; // nothing in a smaller partition is larger
    if (await hasExtMagic(fetcher, p.start, p.size)) {
      best = windowOf(p);
      break;
    }
    const lv = await largestLv(fetcher, p.index, p.start, p.size);
    if (lv && (!best || lv.size > best.size)) best = lv;
  }
  if (best) return best;
  const more = parts.length > MAX_CANDIDATES ? ` (the ${MAX_CANDIDATES} largest were looked into)` : '';
  throw new NoVolumeError(`the disk has ${describe(table)}, none holding an ext2/3/4 file system (yet)${more}`);
}

/**
 * The largest linear LVM logical volume holding ext2/3/4 on the PV at `start` (partition `partition`, 0: the
 * whole disk), or undefined when there is no PV there (or a damaged one, or none of its LVs holds ext).
 */
async function largestLv(fetcher: BlockFetcher, partition: number, start: number, size: number): Promise<VolumeWindow | undefined> {
  let pv: LvmPv | undefined;
  try {
    pv = await readLvmPv(new SliceBlockSource(sourceOf(fetcher), start, size));
  } catch (err) {
    if (!(err instanceof DiskError) || err instanceof IoError) throw err;
    return undefined;
  }
  if (!pv) return undefined;
  const lvs = [...pv.lvs].sort((a, b) => b.size - a.size || (a.name < b.name ? -1 : 1)).slice(0, MAX_CANDIDATES);
  for (const lv of lvs) {
    if (await hasExtMagic(fetcher, start + lv.start, lv.size)) {
      return { partition, start: start + lv.start, size: lv.size, lv: lv.name, meta: [start, start + pv.metadataEnd] };
    }
  }
  return undefined;
}

function windowOf(p: Partition): VolumeWindow {
  return { partition: p.index, start: p.start, size: p.size };
}

/** Block reads of the window's bytes only, at the file system's offsets. */
export class WindowFetcher implements BlockFetcher {
  readonly size: number;
  constructor(
    readonly disk: BlockFetcher,
    readonly window: VolumeWindow,
  ) {
    this.size = window.size;
  }

  read(offset: number, length: number): Promise<{ data: Uint8Array; seq: number }> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      return Promise.reject(new RangeError(`read ${offset}+${length} is outside partition ${this.window.partition} (${this.size} bytes)`));
    }
    return this.disk.read(this.window.start + offset, length);
  }
}

/** `fetcher` seen through `window` (itself for the whole disk). */
export function windowed(fetcher: BlockFetcher, window: VolumeWindow): BlockFetcher {
  return window.partition === 0 && window.start === 0 ? fetcher : new WindowFetcher(fetcher, window);
}

/** A record's ops as the window sees them, and whether one may have changed the partition table. */
export interface WindowedRecord {
  readonly ops: readonly WriteOp[];
  /** A write, zero or trim outside the window reached the disk's first or last TABLE_AREA_BYTES. */
  readonly tableTouched: boolean;
}

/**
 * The ops of `rec` clipped to `window` and moved to the file system's offsets (flushes kept, ops wholly outside
 * dropped). For the whole disk the ops are returned as they are.
 */
export function clipRecord(rec: WriteRecord, window: VolumeWindow, diskSize: number): WindowedRecord {
  if (window.partition === 0 && window.start === 0) return { ops: rec.ops, tableTouched: false };
  const lo = window.start;
  const hi = window.start + window.size;
  const meta = window.meta;
  const ops: WriteOp[] = [];
  let tableTouched = false;
  for (const op of rec.ops) {
    if (op.op === 'flush') {
      ops.push(op);
      continue;
    }
    const end = op.offset + op.length;
    if (op.offset < lo || end > hi) {
      if (op.offset < TABLE_AREA_BYTES || end > diskSize - TABLE_AREA_BYTES) tableTouched = true;
      else if (meta && op.offset < meta[1] && end > meta[0]) tableTouched = true;
    }
    const from = Math.max(op.offset, lo);
    const to = Math.min(end, hi);
    if (from >= to) continue;
    if (op.op === 'write') {
      ops.push({ op: 'write', offset: from - lo, length: to - from, data: op.data.subarray(from - op.offset, to - op.offset), fua: op.fua });
    } else {
      ops.push({ ...op, offset: from - lo, length: to - from });
    }
  }
  return { ops, tableTouched };
}

/** Whether two windows are the same part of the disk. */
export function sameWindow(a: VolumeWindow, b: VolumeWindow): boolean {
  return a.partition === b.partition && a.start === b.start && a.size === b.size && a.lv === b.lv;
}
