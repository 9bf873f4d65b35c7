/**
 * The nodes of the tree by inode number, in a dense array indexed by slot (see ino-index.ts) rather than a Map.
 */
import { SlotAllocator } from './ino-index.js';
import type { FsNode } from './node.js';

/** Inode number -> node: the part of `Map` the engine and its readers use. */
export class NodeTable {
  private readonly slots = new SlotAllocator();
  private readonly nodes: (FsNode | undefined)[] = [];

  /** Nodes held. */
  get size(): number {
    return this.slots.size;
  }

  get(ino: number): FsNode | undefined {
    const s = this.slots.get(ino);
    return s < 0 ? undefined : this.nodes[s];
  }

  has(ino: number): boolean {
    return this.slots.get(ino) >= 0;
  }

  set(ino: number, node: FsNode): this {
    const s = this.slots.take(ino);
    if (s === this.nodes.length) this.nodes.push(node);
    else this.nodes[s] = node;
    return this;
  }

  delete(ino: number): boolean {
    const s = this.slots.release(ino);
    if (s < 0) return false;
    this.nodes[s] = undefined;
    return true;
  }

  /** Every node (in slot order). */
  *values(): IterableIterator<FsNode> {
    for (const n of this.nodes) if (n !== undefined) yield n;
  }
}
