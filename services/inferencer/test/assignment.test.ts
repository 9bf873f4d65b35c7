import { describe, expect, it } from 'vitest';
import { assignDisks } from '../src/assignment.js';

const disks = (n: number): string[] => Array.from({ length: n }, (_, i) => `vm${i}`);
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `inferencer-host-${1000 + i}-${(i * 7919).toString(16)}`);
const counts = (a: Map<string, string>): number[] => {
  const c = new Map<string, number>();
  for (const owner of a.values()) c.set(owner, (c.get(owner) ?? 0) + 1);
  return [...c.values()];
};

describe('assignDisks', () => {
  it.each([
    [6, 3],
    [7, 3],
    [12, 5],
    [2, 3],
    [100, 7],
    [1, 1],
  ])('gives every one of %i disks to exactly one of %i instances, within ±1 of even', (d, n) => {
    const a = assignDisks(disks(d), ids(n));
    expect([...a.keys()].sort()).toEqual(disks(d).sort());
    for (const owner of a.values()) expect(ids(n)).toContain(owner);
    const c = counts(a);
    const used = Math.min(d, n);
    expect(c).toHaveLength(used);
    expect(Math.max(...c) - Math.min(...c)).toBeLessThanOrEqual(1);
  });

  it('is the same whatever the order of its inputs', () => {
    const a = assignDisks(disks(20), ids(4));
    const b = assignDisks([...disks(20)].reverse(), [...ids(4)].reverse());
    expect([...b].sort()).toEqual([...a].sort());
  });

  it('moves only about a share of the disks when an instance joins or leaves', () => {
    const before = assignDisks(disks(60), ids(3));
    const after = assignDisks(disks(60), ids(4));
    const moved = [...before].filter(([d, o]) => after.get(d) !== o).length;
    expect(moved).toBeGreaterThanOrEqual(15); // the newcomer's share must move to it
    expect(moved).toBeLessThanOrEqual(24); // a naive modulo would move ~45
    const left = assignDisks(disks(60), ids(3).slice(1));
    // Disks of the instances that stay mostly stay put: only the leaver's 20 must move, plus a few to rebalance.
    const stayed = [...before].filter(([d, o]) => o !== ids(3)[0] && left.get(d) === o).length;
    expect(stayed).toBeGreaterThanOrEqual(34);
  });

  it('assigns nothing without instances', () => {
    expect(assignDisks(disks(3), []).size).toBe(0);
  });
});
