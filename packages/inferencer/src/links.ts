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
 * The names of an inode that has several: keyed, so adding, removing and testing one costs the same however many
 * there are (a guest can make a directory of a million entries naming one inode; a sorted array copied and sorted
 * per name took minutes for 16,000), with the sorted list and the first link computed when asked and kept until a
 * change.
 */
class ManyLinks {
  private readonly byKey = new Map<string, Link>();
  private sorted: Link[] | undefined;
  private min: Link | undefined;

  constructor(links: readonly Link[]) {
    for (const l of links) this.byKey.set(keyOf(l.dir, l.name), l);
  }

  get size(): number {
    return this.byKey.size;
  }

  has(dir: number, name: string): boolean {
    return this.byKey.has(keyOf(dir, name));
  }

  add(l: Link): void {
    const key = keyOf(l.dir, l.name);
    if (this.byKey.has(key)) return;
    this.byKey.set(key, l);
    this.sorted = undefined;
    if (this.min !== undefined && cmpLink(l, this.min) < 0) this.min = l;
  }

  /** Removes a name; whether it was there. */
  remove(dir: number, name: string): boolean {
    if (!this.byKey.delete(keyOf(dir, name))) return false;
    this.sorted = undefined;
    if (this.min !== undefined && this.min.dir === dir && this.min.name === name) this.min = undefined;
    return true;
  }

  first(): Link | undefined {
    if (this.min === undefined) {
      if (this.sorted) this.min = this.sorted[0];
      else for (const l of this.byKey.values()) if (this.min === undefined || cmpLink(l, this.min) < 0) this.min = l;
    }
    return this.min;
  }

  /** The names, sorted (the same array until a change: callers copy). */
  list(): readonly Link[] {
    return (this.sorted ??= [...this.byKey.values()].sort(cmpLink));
  }
}

/** A (directory, name) pair as one string: the name never holds NUL, a directory number never does. */
function keyOf(dir: number, name: string): string {
  return `${dir}\u0000${name}`;
}

/**
 * ino -> links. Nearly every inode has exactly one name, which is kept in two columns indexed by the inode's
 * slot (its directory in a Uint32Array, its name in an array of strings: ~12 bytes, where a `{dir, name}` object
 * and its Map entry took ~76); several are a {@link ManyLinks} in a side map.
 */
export class LinkTable {
  private readonly slots = new SlotAllocator();
  private dirs = new Uint32Array(1024);
  /** The one name of a singly linked inode; undefined with none or several. */
  private readonly names: (string | undefined)[] = [];
  /** Slot -> links, for inodes with two or more. */
  private readonly many = new Map<number, ManyLinks>();

  /** Whether `ino` has an entry (even with no link left: the root). */
  has(ino: number): boolean {
    return this.slots.get(ino) >= 0;
  }

  /** How many names `ino` has. */
  count(ino: number): number {
    const s = this.slots.get(ino);
    return s < 0 ? 0 : this.countAt(s);
  }

  /** Its first link (the one paths follow). */
  first(ino: number): Link | undefined {
    const s = this.slots.get(ino);
    if (s < 0) return undefined;
    const name = this.names[s];
    return name !== undefined ? { dir: this.dirs[s]!, name } : this.many.get(s)?.first(); // ok: in range
  }

  /** The directory of its first link (what walks up the tree need, without a link object per step). */
  firstDir(ino: number): number | undefined {
    const s = this.slots.get(ino);
    if (s < 0) return undefined;
    if (this.names[s] !== undefined) return this.dirs[s]!; // ok: in range
    return this.many.get(s)?.first()?.dir;
  }

  /** The name of its first link, or undefined. */
  firstName(ino: number): string | undefined {
    const s = this.slots.get(ino);
    if (s < 0) return undefined;
    return this.names[s] ?? this.many.get(s)?.first()?.name;
  }

  /**
   * When `ino`'s one name is `name` in `dir`, keeps this string object for it (a directory read again decodes
   * its names anew: holding the old copies kept every name twice).
   */
  shareName(ino: number, dir: number, name: string): void {
    const s = this.slots.get(ino);
    if (s >= 0 && this.names[s] === name && this.dirs[s] === dir) this.names[s] = name;
  }

  /** Whether `ino` is named `name` in `dir`. */
  includes(ino: number, dir: number, name: string): boolean {
    const s = this.slots.get(ino);
    if (s < 0) return false;
    const one = this.names[s];
    if (one !== undefined) return one === name && this.dirs[s] === dir;
    return this.many.get(s)?.has(dir, name) ?? false;
  }

  /** Its links, sorted (a new array). */
  all(ino: number): Link[] {
    const s = this.slots.get(ino);
    return s < 0 ? [] : [...this.linksAt(s)];
  }

  /** Sets the links of `ino` (an entry even when empty). */
  set(ino: number, links: readonly Link[]): void {
    this.put(this.slot(ino), links);
  }

  add(ino: number, dir: number, name: string): void {
    const s = this.slot(ino);
    const one = this.names[s];
    if (one !== undefined) {
      if (one === name && this.dirs[s] === dir) return;
      this.put(s, [{ dir: this.dirs[s]!, name: one }, { dir, name }]); // ok: in range
      return;
    }
    const many = this.many.get(s);
    if (many) many.add({ dir, name });
    else this.put(s, [{ dir, name }]);
  }

  remove(ino: number, dir: number, name: string): void {
    const s = this.slots.get(ino);
    if (s < 0) return;
    const one = this.names[s];
    if (one !== undefined) {
      if (one === name && this.dirs[s] === dir) this.put(s, []);
      return;
    }
    const many = this.many.get(s);
    if (!many?.remove(dir, name)) return;
    if (many.size === 1) this.put(s, many.list());
    else if (many.size === 0) this.many.delete(s);
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
    for (const [ino, s] of this.slots.entries()) yield [ino, [...this.linksAt(s)]];
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
    return this.names[s] !== undefined ? 1 : (this.many.get(s)?.size ?? 0);
  }

  private linksAt(s: number): readonly Link[] {
    const one = this.names[s];
    if (one !== undefined) return [{ dir: this.dirs[s]!, name: one }]; // ok: in range
    return this.many.get(s)?.list() ?? [];
  }

  /** Stores `links` at slot `s`. */
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
    else this.many.set(s, new ManyLinks(links));
  }
}
