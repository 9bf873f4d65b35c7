import { SlotAllocator } from './ino-index.js';

/**
 * Where each node of the tree appears: its (directory, name) links, sorted by directory then name.
 */

/** One name of a node: the directory holding the entry, and the entry's name. */
export interface Link {
  readonly dir: number;
  readonly name: string;
}

function cmpLink(a: Link, b: Link): number {
  return a.dir - b.dir || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/**
 * ino -> links. Nearly every inode has exactly one name, which is kept in two columns indexed by the inode's
 * slot (its directory in a Uint32Array, its name in an array of strings: ~12 bytes, where a `{dir, name}` object
 * and its Map entry took ~76); none or several are an array in a side map.
 */
export class LinkTable {
  private readonly slots = new SlotAllocator();
  private dirs = new Uint32Array(1024);
  /** The one name of a singly linked inode; undefined with none or several. */
  private readonly names: (string | undefined)[] = [];
  /** Slot -> links, for inodes with two or more. */
  private readonly many = new Map<number, Link[]>();

  /** Whether `ino` has an entry (even with no link left: the root). */
  has(ino: number): boolean {
    return this.slots.get(ino) >= 0;
  }

  /** How many names `ino` has. */
  count(ino: number): number {
    const s = this.slots.get(ino);
    if (s < 0) return 0;
    return this.names[s] !== undefined ? 1 : (this.many.get(s)?.length ?? 0);
  }

  /** Its first link (the one paths follow). */
  first(ino: number): Link | undefined {
    const s = this.slots.get(ino);
    if (s < 0) return undefined;
    const name = this.names[s];
    return name !== undefined ? { dir: this.dirs[s]!, name } : this.many.get(s)?.[0]; // ok: in range
  }

  /** The directory of its first link (what walks up the tree need, without a link object per step). */
  firstDir(ino: number): number | undefined {
    const s = this.slots.get(ino);
    if (s < 0) return undefined;
    if (this.names[s] !== undefined) return this.dirs[s]!; // ok: in range
    return this.many.get(s)?.[0]?.dir;
  }

  /** The name of its first link, or undefined. */
  firstName(ino: number): string | undefined {
    const s = this.slots.get(ino);
    if (s < 0) return undefined;
    return this.names[s] ?? this.many.get(s)?.[0]?.name;
  }

  /** Whether `ino` is named `name` in `dir`. */
  includes(ino: number, dir: number, name: string): boolean {
    const s = this.slots.get(ino);
    if (s < 0) return false;
    const one = this.names[s];
    if (one !== undefined) return one === name && this.dirs[s] === dir;
    return this.many.get(s)?.some((x) => x.dir === dir && x.name === name) ?? false;
  }

  /** Its links, sorted (a new array). */
  all(ino: number): Link[] {
    const s = this.slots.get(ino);
    if (s < 0) return [];
    const one = this.names[s];
    if (one !== undefined) return [{ dir: this.dirs[s]!, name: one }]; // ok: in range
    return [...(this.many.get(s) ?? [])];
  }

  /** Sets the links of `ino` (an entry even when empty). */
  set(ino: number, links: readonly Link[]): void {
    this.put(this.slot(ino), links.length <= 1 ? links : [...links].sort(cmpLink));
  }

  add(ino: number, dir: number, name: string): void {
    const s = this.slot(ino);
    const n = this.countAt(s);
    if (n === 0) {
      this.put(s, [{ dir, name }]);
      return;
    }
    if (this.includes(ino, dir, name)) return;
    this.put(s, [...this.linksAt(s), { dir, name }].sort(cmpLink));
  }

  remove(ino: number, dir: number, name: string): void {
    const s = this.slots.get(ino);
    if (s < 0) return;
    const l = this.linksAt(s);
    const rest = l.filter((x) => x.dir !== dir || x.name !== name);
    if (rest.length !== l.length) this.put(s, rest);
  }

  delete(ino: number): void {
    const s = this.slots.release(ino);
    if (s < 0) return;
    this.names[s] = undefined;
    this.many.delete(s);
  }

  /** Every inode with its links. */
  *entries(): IterableIterator<[number, Link[]]> {
    // Slots do not know their inode: walk the links by the inodes holding a slot.
    for (const [ino, s] of this.slots.entries()) yield [ino, this.linksAt(s)];
  }

  private slot(ino: number): number {
    const s = this.slots.take(ino);
    if (s >= this.dirs.length) {
      const grown = new Uint32Array(this.dirs.length * 2);
      grown.set(this.dirs);
      this.dirs = grown;
    }
    return s;
  }

  private countAt(s: number): number {
    return this.names[s] !== undefined ? 1 : (this.many.get(s)?.length ?? 0);
  }

  private linksAt(s: number): Link[] {
    const one = this.names[s];
    if (one !== undefined) return [{ dir: this.dirs[s]!, name: one }]; // ok: in range
    return this.many.get(s) ?? [];
  }

  /** Stores `links` (sorted) at slot `s`. */
  private put(s: number, links: readonly Link[]): void {
    if (links.length === 1) {
      const l = links[0]!; // ok: length 1
      this.dirs[s] = l.dir;
      this.names[s] = l.name;
      this.many.delete(s);
      return;
    }
    this.names[s] = undefined;
    if (links.length === 0) this.many.delete(s);
    else this.many.set(s, [...links]);
  }
}
