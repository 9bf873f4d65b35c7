/**
 * Compact per-inode tables. A `Map<number, V>` costs ~36 bytes per entry in its hash table alone (three 8-byte
 * slots per entry plus buckets, at a power-of-two capacity), which was a tenth of what the engine kept per tracked
 * inode. ext4 hands out inode numbers densely within each block group, so an index of 4-byte slots in pages of
 * 256 inode numbers costs ~5 bytes per inode, and the values sit in dense arrays indexed by slot. Pages stay this
 * small so that a guest spreading its inodes one per page costs ~1.2 KB per inode per table (pages of 1,024 made
 * it 4.5 KB, nine times what a node costs); pages of 64 cost ~7 bytes per inode in the common dense case.
 */

const PAGE_BITS = 8;
const PAGE_MASK = (1 << PAGE_BITS) - 1;

/**
 * Inode number (32-bit unsigned) -> slot (a small integer), in pages allocated on first use and dropped when
 * empty. Slots are handed out and taken back by the table using the index.
 */
export class InoIndex {
  /** Page number -> slot + 1 per inode of the page (0: none). */
  private readonly pages = new Map<number, Int32Array>();
  /** Page number -> inodes it holds. */
  private readonly used = new Map<number, number>();

  /** The slot of `ino`, or -1. */
  get(ino: number): number {
    const p = this.pages.get(ino >>> PAGE_BITS);
    return p === undefined ? -1 : p[ino & PAGE_MASK]! - 1; // ok: in range
  }

  /** Records `ino` at `slot` (which must be new for it). */
  set(ino: number, slot: number): void {
    const k = ino >>> PAGE_BITS;
    let p = this.pages.get(k);
    if (p === undefined) this.pages.set(k, (p = new Int32Array(PAGE_MASK + 1)));
    if (p[ino & PAGE_MASK] === 0) this.used.set(k, (this.used.get(k) ?? 0) + 1);
    p[ino & PAGE_MASK] = slot + 1;
  }

  /** Forgets `ino`; returns its slot, or -1. */
  delete(ino: number): number {
    const k = ino >>> PAGE_BITS;
    const p = this.pages.get(k);
    if (p === undefined) return -1;
    const slot = p[ino & PAGE_MASK]! - 1; // ok: in range
    if (slot < 0) return -1;
    p[ino & PAGE_MASK] = 0;
    const left = this.used.get(k)! - 1; // ok: the page holds ino
    if (left === 0) {
      this.pages.delete(k);
      this.used.delete(k);
    } else {
      this.used.set(k, left);
    }
    return slot;
  }

  /** Every inode with its slot. */
  *entries(): IterableIterator<[number, number]> {
    for (const [k, p] of this.pages) {
      for (let i = 0; i <= PAGE_MASK; i++) if (p[i] !== 0) yield [k * (PAGE_MASK + 1) + i, p[i]! - 1]; // ok: in range
    }
  }
}

/** Slots for one table: an {@link InoIndex} and a free list, so slots stay dense under churn. */
export class SlotAllocator {
  private readonly index = new InoIndex();
  private readonly free: number[] = [];
  /** Slots ever handed out (the length a table's arrays need). */
  high = 0;
  /** Inodes holding a slot. */
  size = 0;

  /** The slot of `ino`, or -1. */
  get(ino: number): number {
    return this.index.get(ino);
  }

  /** The slot of `ino`, given one if it had none. */
  take(ino: number): number {
    const s = this.index.get(ino);
    if (s >= 0) return s;
    const slot = this.free.length > 0 ? this.free.pop()! : this.high++; // ok: not empty
    this.index.set(ino, slot);
    this.size++;
    return slot;
  }

  /** Gives back the slot of `ino`; returns it, or -1 if it had none. */
  release(ino: number): number {
    const s = this.index.delete(ino);
    if (s < 0) return -1;
    this.free.push(s);
    this.size--;
    return s;
  }

  /** Every inode holding a slot, with it. */
  entries(): IterableIterator<[number, number]> {
    return this.index.entries();
  }
}
