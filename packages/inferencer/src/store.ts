/**
 * The inferencer's view of a disk's metadata blocks: every block it has read (through block reads, tagged with
 * the stream sequence the read included) or learnt from the write stream. A read of a block it does not hold
 * goes to the capture; a stream write to a block whose read already included it is skipped (bootstrap rule).
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { copyBytes } from './bytes.js';
import type { BlockSource } from '@gammaray/disk';
import { IoError } from '@gammaray/ext4';
import { DEFLATE_AFTER_ROUNDS, MAX_FETCH_BLOCKS } from './limits.js';

/** Reads the disk through the capture: the bytes and the last stream sequence whose writes they include. */
export interface BlockFetcher {
  /** Disk size in bytes. */
  readonly size: number;
  read(offset: number, length: number): Promise<{ data: Uint8Array; seq: number }>;
}

/**
 * One held block. Its bytes are kept packed while nothing uses them: first without their zero words (see
 * {@link packBlock}: cheap both ways, for blocks used again soon), then, once unused for
 * {@link DEFLATE_AFTER_ROUNDS} more consistency points, deflated (see {@link deflateBlock}: an eighth of the
 * size, for the inode-table and directory blocks of files nobody touches any more, most of what a store holds).
 * `data` unpacks on use and keeps the bytes until the store's next {@link BlockStore.compact} that finds them
 * unused.
 */
export class StoredBlock {
  #raw: Uint8Array | undefined;
  #packed: Uint8Array | undefined;
  /** Whether `#packed` is deflated (otherwise zero words dropped). */
  #deflated = false;
  /** The store's round in which the bytes were last used. */
  used: number;

  constructor(
    private readonly store: BlockStore,
    data: Uint8Array,
    /** Stream sequence its content includes. */
    public seq: number,
    /** Content came from a committed journal transaction and has not been seen at its home location yet. */
    public journal: boolean,
  ) {
    this.#raw = data;
    this.used = store.round;
    store.unpacked.add(this);
  }

  /** The block's bytes (never changed in place: a new content is a new array). */
  get data(): Uint8Array {
    this.used = this.store.round;
    if (this.#raw === undefined) {
      this.#raw = this.unpacked();
      this.store.unpacked.add(this);
    }
    return this.#raw;
  }

  set data(bytes: Uint8Array) {
    this.used = this.store.round;
    this.#raw = bytes;
    this.#packed = undefined;
    this.#deflated = false;
    this.store.unpacked.add(this);
    this.store.shallow.delete(this);
  }

  /** Bytes this block takes as kept now (unpacked, packed or deflated; both while a packed copy is in use). */
  get keptBytes(): number {
    return (this.#raw?.length ?? 0) + (this.#packed?.length ?? 0);
  }

  /** The bytes without keeping them unpacked (a checkpoint reads every block once). */
  peek(): Uint8Array {
    return this.#raw ?? this.unpacked();
  }

  /** Drops the unpacked bytes (packing them first unless a packed copy of them exists). */
  pack(): void {
    if (this.#raw === undefined) return;
    if (this.#packed === undefined) {
      this.#packed = packBlock(this.#raw);
      this.store.shallow.add(this);
    }
    this.#raw = undefined;
  }

  /** Deflates the packed bytes (a block left unused for long). */
  deflate(): void {
    if (this.#packed === undefined || this.#deflated) return;
    this.#packed = deflateBlock(unpackBlock(this.#packed, this.store.blockSize));
    this.#deflated = true;
  }

  private unpacked(): Uint8Array {
    const p = this.#packed!; // ok: one of the two is always set
    return this.#deflated ? inflateBlock(p, this.store.blockSize) : unpackBlock(p, this.store.blockSize);
  }
}

/**
 * A block deflated (raw deflate, level 1) into an array of its own. On bench/infer's recording the held blocks
 * average 470 bytes so, against 1,595 with zero words dropped, for ~40 microseconds per block (~11 back).
 */
export function deflateBlock(raw: Uint8Array): Uint8Array {
  // zlib hands back a view of its 16 KiB output chunk: copied, or each held block would keep the whole chunk.
  return new Uint8Array(deflateRawSync(raw, { level: 1 }));
}

/** The block {@link deflateBlock} deflated, as `size` bytes (anything else is a bug: it fails loudly). */
export function inflateBlock(packed: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(inflateRawSync(packed, { chunkSize: Math.max(size, 64) }));
  if (out.length !== size) throw new Error(`a held block inflated to ${out.length} bytes, not ${size}`);
  return out;
}

/**
 * A block without its zero 32-bit words: a bitmap of the words that are not zero, then those words. Inode-table
 * blocks, most of what the store holds, shrink to about 40% (unused fields, extent slots and inode tails are
 * zeros), for a few microseconds either way.
 */
export function packBlock(raw: Uint8Array): Uint8Array {
  const words = raw.length >>> 2;
  const src = raw.byteOffset % 4 === 0 ? new Uint32Array(raw.buffer, raw.byteOffset, words) : new Uint32Array(copyBytes(raw).buffer, 0, words);
  const mapBytes = (words + 7) >>> 3;
  let nz = 0;
  for (let i = 0; i < words; i++) if (src[i] !== 0) nz++;
  const out = new Uint8Array(mapBytes + 4 * nz + (raw.length & 3));
  const view = new DataView(out.buffer);
  let at = mapBytes;
  for (let i = 0; i < words; i++) {
    const w = src[i]!; // ok: in range
    if (w === 0) continue;
    out[i >>> 3] = out[i >>> 3]! | (1 << (i & 7)); // ok: in range
    view.setUint32(at, w, true);
    at += 4;
  }
  // A block size is a multiple of 4; any tail bytes are kept as they are.
  for (let i = words * 4; i < raw.length; i++) out[at++] = raw[i]!; // ok: in range
  return out;
}

/** The block {@link packBlock} packed, as `size` bytes. */
export function unpackBlock(packed: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  const words = size >>> 2;
  const dst = new Uint32Array(out.buffer, 0, words);
  const view = new DataView(packed.buffer, packed.byteOffset, packed.byteLength);
  let at = (words + 7) >>> 3;
  for (let i = 0; i < words; i++) {
    if ((packed[i >>> 3]! & (1 << (i & 7))) === 0) continue; // ok: in range
    dst[i] = view.getUint32(at, true);
    at += 4;
  }
  for (let i = words * 4; i < size; i++) out[i] = packed[at++]!; // ok: in range
  return out;
}

/** Where a store read goes when the block is not held: the pending data buffer, before the capture. */
export type Fallback = (block: number) => Uint8Array | undefined;

/** Held blocks, keyed by file-system block number. */
export class BlockStore implements BlockSource {
  readonly blocks = new Map<number, StoredBlock>();
  /** Blocks whose bytes are unpacked (see compact). */
  readonly unpacked = new Set<StoredBlock>();
  /** Blocks packed without their zero words only (see compact). */
  readonly shallow = new Set<StoredBlock>();
  /** Incremented by each compact(). */
  round = 0;
  /** When set, every block read is added to it (which blocks an inode's derivation used). */
  tracker: Set<number> | undefined;
  fallback: Fallback = () => undefined;
  readonly size: number;
  /** Blocks put or changed (bytes, sequence or journal flag) since it was set (see DiskInferencer.deltaCheckpointParts). */
  changed: Set<number> | undefined;

  constructor(
    readonly fetcher: BlockFetcher,
    readonly blockSize: number,
  ) {
    this.size = fetcher.size;
  }

  get(block: number): StoredBlock | undefined {
    return this.blocks.get(block);
  }

  /** Holds `data` (given up by the caller) as block `block`. */
  put(block: number, data: Uint8Array, seq: number, journal: boolean): void {
    this.blocks.set(block, new StoredBlock(this, data, seq, journal));
    this.changed?.add(block);
  }

  /**
   * Packs the bytes of blocks nothing used since the last call (the engine calls it at consistency points):
   * what a consistency point reads stays unpacked for the next, the rest of the held metadata is kept small, and
   * what stayed unused for {@link DEFLATE_AFTER_ROUNDS} more calls is deflated.
   */
  compact(): void {
    const round = this.round;
    for (const b of this.unpacked) {
      if (b.used >= round) continue;
      b.pack();
      this.unpacked.delete(b);
    }
    for (const b of this.shallow) {
      if (b.used + DEFLATE_AFTER_ROUNDS >= round) continue;
      b.deflate();
      this.shallow.delete(b);
    }
    this.round++;
  }

  /** Sets a block's content from a home-location write at `seq`; true when its content changed. */
  setHome(block: number, data: Uint8Array, seq: number): boolean {
    const hit = this.blocks.get(block);
    if (hit === undefined) {
      this.put(block, copyBytes(data), seq, false);
      return true;
    }
    if (seq <= hit.seq && !hit.journal) return false;
    this.changed?.add(block);
    const same = equal(hit.data, data);
    if (hit.journal) {
      // A checkpoint repeating the committed content: the home location has caught up.
      if (same) hit.journal = false;
      return false;
    }
    hit.seq = seq;
    if (same) return false;
    hit.data = copyBytes(data);
    return true;
  }

  /**
   * Sets a block's content from a committed journal transaction at `seq`; true when its content changed.
   * `handOver`: the caller gives up `data` (nothing else holds or changes it), so it is kept without a copy.
   */
  setJournal(block: number, data: Uint8Array, seq: number, handOver = false): boolean {
    const hit = this.blocks.get(block);
    if (hit === undefined) {
      this.put(block, handOver ? data : copyBytes(data), seq, true);
      return true;
    }
    this.changed?.add(block);
    const same = equal(hit.data, data);
    hit.seq = Math.max(hit.seq, seq);
    hit.journal = true;
    if (same) return false;
    hit.data = handOver ? data : copyBytes(data);
    return true;
  }

  /** Patches part of a held block (a write smaller than a block); true when it changed. */
  patchHome(block: number, at: number, bytes: Uint8Array, seq: number): boolean {
    const hit = this.blocks.get(block);
    if (hit === undefined || (seq <= hit.seq && !hit.journal)) return false;
    const next = copyBytes(hit.data);
    next.set(bytes, at);
    return this.setHome(block, next, seq);
  }


  /** Makes sure blocks `first .. first+count-1` are held, fetching the missing ones in runs. */
  async ensure(first: number, count: number): Promise<void> {
    let b = first;
    const end = first + count;
    while (b < end) {
      if (this.blocks.has(b)) {
        b++;
        continue;
      }
      const fb = this.fallback(b);
      if (fb !== undefined) {
        this.put(b, copyBytes(fb), 0, false);
        b++;
        continue;
      }
      let n = 1;
      while (b + n < end && n < MAX_FETCH_BLOCKS && !this.blocks.has(b + n) && this.fallback(b + n) === undefined) n++;
      const bs = this.blockSize;
      const len = Math.min(n * bs, this.size - b * bs);
      const { data, seq } = await this.fetcher.read(b * bs, len);
      for (let i = 0; i < n; i++) {
        if (this.blocks.has(b + i)) continue; // filled while the fetch was in flight
        const slice = new Uint8Array(bs);
        slice.set(data.subarray(i * bs, Math.min((i + 1) * bs, data.length)));
        this.put(b + i, slice, seq, false);
      }
      b += n;
    }
  }

  /** BlockSource: bytes at `offset`, from held blocks (fetched when missing). */
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new IoError(`read of ${length} bytes at ${offset} is outside the ${this.size}-byte disk`);
    }
    const bs = this.blockSize;
    if (length === 0) return new Uint8Array(0);
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    await this.ensure(first, last - first + 1);
    if (this.tracker) for (let b = first; b <= last; b++) this.tracker.add(b);
    if (first === last) {
      const at = offset - first * bs;
      return copyBytes(this.blocks.get(first)!.data.subarray(at, at + length)); // ok: ensured
    }
    const out = new Uint8Array(length);
    for (let b = first; b <= last; b++) {
      const data = this.blocks.get(b)!.data; // ok: ensured
      const base = b * bs;
      const from = Math.max(offset, base);
      const to = Math.min(offset + length, base + bs);
      out.set(data.subarray(from - base, to - base), from - offset);
    }
    return out;
  }
}

/** Whether two byte arrays hold the same bytes. */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
