/**
 * Which instance should own which disk: a pure function of the set of disks and the set of live instance ids, so
 * every instance that sees the same two sets computes the same owners without talking to the others.
 */
import { createHash } from 'node:crypto';

/** The rendezvous (highest random weight) score of an instance for a disk: the first 8 bytes of a SHA-256. */
export function rendezvousScore(instance: string, disk: string): bigint {
  const h = createHash('sha256').update(instance).update('\0').update(disk).digest();
  return h.readBigUInt64BE(0);
}

/**
 * Assigns every disk to one instance, evenly (each instance gets ⌊d/n⌋ or ⌈d/n⌉ disks) and with little movement
 * when an instance joins or leaves: each disk goes to the instance that ranks highest for it by rendezvous
 * hashing among those with room left. Room: first every instance up to ⌊d/n⌋; the d mod n disks left over then
 * go, one each, to their highest-ranked instance that has not taken an extra one yet.
 *
 * Deterministic: the result depends only on the two sets (their order does not matter). Empty when there is no
 * instance.
 */
export function assignDisks(disks: Iterable<string>, instances: Iterable<string>): Map<string, string> {
  const ds = [...new Set(disks)].sort();
  const is = [...new Set(instances)].sort();
  const out = new Map<string, string>();
  if (is.length === 0) return out;
  const base = Math.floor(ds.length / is.length);
  const count = new Map<string, number>(is.map((i) => [i, 0]));
  // Each disk's instances, best first (ties, which need a SHA-256 collision, broken by id).
  const ranking = new Map<string, string[]>();
  for (const d of ds) {
    const scored = is.map((i) => ({ i, s: rendezvousScore(i, d) }));
    scored.sort((a, b) => (a.s === b.s ? (a.i < b.i ? -1 : 1) : a.s > b.s ? -1 : 1));
    ranking.set(
      d,
      scored.map((x) => x.i),
    );
  }
  // Disks are placed in order of how strongly they prefer their first choice, so a contested instance keeps the
  // disks that prefer it most (still deterministic: ties by disk id).
  const order = [...ds].sort((a, b) => {
    const sa = rendezvousScore(ranking.get(a)![0]!, a); // ok: every disk is ranked over >= 1 instance
    const sb = rendezvousScore(ranking.get(b)![0]!, b); // ok: as above
    return sa === sb ? (a < b ? -1 : 1) : sa > sb ? -1 : 1;
  });
  const place = (cap: number, left: string[]): string[] => {
    const rest: string[] = [];
    for (const d of left) {
      const to = ranking.get(d)!.find((i) => count.get(i)! < cap); // ok: ranked above; every instance counted
      if (to === undefined) {
        rest.push(d);
        continue;
      }
      out.set(d, to);
      count.set(to, count.get(to)! + 1); // ok: counted above
    }
    return rest;
  };
  const extra = place(base, order);
  place(base + 1, extra); // at most d mod n disks, each to a distinct instance still at base
  return out;
}
