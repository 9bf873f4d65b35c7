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
 * ino -> links. Nearly every inode has exactly one name, so a single link is kept as it is, without an array
 * around it (an array costs more than the link itself); none or several are an array.
 */
export class LinkTable {
  private readonly map = new Map<number, Link | Link[]>();

  /** Whether `ino` has an entry (even with no link left: the root). */
  has(ino: number): boolean {
    return this.map.has(ino);
  }

  /** How many names `ino` has. */
  count(ino: number): number {
    const l = this.map.get(ino);
    return l === undefined ? 0 : Array.isArray(l) ? l.length : 1;
  }

  /** Its first link (the one paths follow). */
  first(ino: number): Link | undefined {
    const l = this.map.get(ino);
    return Array.isArray(l) ? l[0] : l;
  }

  /** Whether `ino` is named `name` in `dir`. */
  includes(ino: number, dir: number, name: string): boolean {
    const l = this.map.get(ino);
    if (l === undefined) return false;
    if (!Array.isArray(l)) return l.dir === dir && l.name === name;
    return l.some((x) => x.dir === dir && x.name === name);
  }

  /** Its links, sorted (a new array). */
  all(ino: number): Link[] {
    const l = this.map.get(ino);
    return l === undefined ? [] : Array.isArray(l) ? [...l] : [l];
  }

  /** Sets the links of `ino` (an entry even when empty). */
  set(ino: number, links: readonly Link[]): void {
    this.map.set(ino, links.length === 1 ? links[0]! : [...links].sort(cmpLink)); // ok: length 1
  }

  add(ino: number, dir: number, name: string): void {
    const l = this.map.get(ino);
    if (l === undefined || (Array.isArray(l) && l.length === 0)) {
      this.map.set(ino, { dir, name });
      return;
    }
    if (this.includes(ino, dir, name)) return;
    this.map.set(ino, [...(Array.isArray(l) ? l : [l]), { dir, name }].sort(cmpLink));
  }

  remove(ino: number, dir: number, name: string): void {
    const l = this.map.get(ino);
    if (l === undefined) return;
    if (!Array.isArray(l)) {
      if (l.dir === dir && l.name === name) this.map.set(ino, []);
      return;
    }
    const rest = l.filter((x) => x.dir !== dir || x.name !== name);
    if (rest.length !== l.length) this.map.set(ino, rest.length === 1 ? rest[0]! : rest); // ok: length 1
  }

  delete(ino: number): void {
    this.map.delete(ino);
  }

  /** Every inode with its links. */
  *entries(): IterableIterator<[number, Link[]]> {
    for (const [ino, l] of this.map) yield [ino, Array.isArray(l) ? l : [l]];
  }
}
