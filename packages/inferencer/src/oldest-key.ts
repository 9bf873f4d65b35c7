/**
 * The oldest key of a Map (in insertion order), found by one live iterator kept across calls. A fresh
 * `map.keys().next()` walks past every slot deleted since the map's table was last rebuilt, so evicting the
 * oldest of a map that many deletions pass through costs more and more; a Map iterator is live (it skips what
 * was deleted and reaches what was added since), so the one kept here is always at the oldest live key, provided
 * that each key it hands out is deleted before the next call (what evicting does).
 */
export class OldestKey<K> {
  private it: Iterator<K>;

  constructor(private readonly map: Map<K, unknown>) {
    this.it = map.keys();
  }

  /** The oldest key, or undefined when the map is empty. The caller deletes it. */
  next(): K | undefined {
    let r = this.it.next();
    if (r.done) {
      // An iterator that reached the end stays there: start again.
      this.it = this.map.keys();
      r = this.it.next();
    }
    return r.done ? undefined : r.value;
  }
}
