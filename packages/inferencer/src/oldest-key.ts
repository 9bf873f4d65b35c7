/**
 * The oldest key of a Map (in insertion order), found by a live iterator kept across calls. A fresh
 * `map.keys().next()` walks past every slot deleted since the map's table was last rebuilt, so evicting the
 * oldest of a map that many deletions pass through, one key at a time, costs more and more; a Map iterator is
 * live (it skips what was deleted and reaches what was added since), so the one kept here stays at the oldest
 * live key, provided that each key it hands out is deleted before the next call (what evicting does).
 *
 * An iterator also keeps the table it was made on, and every table the map moved to since, until it is advanced:
 * {@link release} drops it (the engine does after each record), so an iterator idle for long pins nothing.
 */
export class OldestKey<K> {
  private it: Iterator<K> | undefined;

  constructor(private readonly map: Map<K, unknown>) {}

  /** The oldest key, or undefined when the map is empty. The caller deletes it. */
  next(): K | undefined {
    let r = (this.it ??= this.map.keys()).next();
    if (r.done) {
      // An iterator that reached the end stays there: start again.
      this.it = this.map.keys();
      r = this.it.next();
    }
    return r.done ? undefined : r.value;
  }

  /** Forgets the iterator (the next call makes a fresh one). */
  release(): void {
    this.it = undefined;
  }
}
