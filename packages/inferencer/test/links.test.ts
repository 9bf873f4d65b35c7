import { describe, expect, it } from 'vitest';
import { LinkTable } from '../src/links.js';

describe('LinkTable', () => {
  it('keeps links sorted by directory then name, one or many, and an entry with none left', () => {
    const t = new LinkTable();
    t.add(12, 5, 'b');
    expect(t.count(12)).toBe(1);
    expect(t.first(12)).toEqual({ dir: 5, name: 'b' });
    t.add(12, 5, 'b');
    t.add(12, 5, 'a');
    t.add(12, 2, 'z');
    expect(t.all(12)).toEqual([{ dir: 2, name: 'z' }, { dir: 5, name: 'a' }, { dir: 5, name: 'b' }]);
    expect(t.includes(12, 5, 'a')).toBe(true);
    t.remove(12, 2, 'z');
    t.remove(12, 5, 'b');
    expect(t.all(12)).toEqual([{ dir: 5, name: 'a' }]);
    t.remove(12, 5, 'a');
    expect(t.has(12)).toBe(true);
    expect(t.count(12)).toBe(0);
    expect(t.first(12)).toBeUndefined();
    t.add(12, 7, 'c');
    expect([...t.entries()]).toEqual([[12, [{ dir: 7, name: 'c' }]]]);
    t.delete(12);
    expect(t.has(12)).toBe(false);
  });

  it('keeps a hostile number of names of one inode cheap: each added, tested and removed in constant time, first the smallest', () => {
    // A guest can write a directory of a million entries naming one inode; a sorted array copied per name took
    // 5 s for 16,000 and would take hours here. The test's timeout is the bound.
    const t = new LinkTable();
    const n = 300_000;
    const t0 = performance.now();
    for (let i = n - 1; i >= 0; i--) {
      t.add(12, 3 + (i % 7), `n${i}`);
      // Fails in bounded time rather than hang (a synchronous loop outlives the test's timeout).
      if (i % 1000 === 0 && performance.now() - t0 > 10_000) throw new Error(`${n - i} names took over 10 s: adding a name is not constant time`);
    }
    t.add(12, 3, 'n0');
    expect(t.count(12)).toBe(n);
    expect(t.first(12)).toEqual({ dir: 3, name: 'n0' });
    expect(t.includes(12, 3 + (12_345 % 7), 'n12345')).toBe(true);
    expect(t.includes(12, 3, 'n12345')).toBe(12_345 % 7 === 0);
    const all = t.all(12);
    expect(all.length).toBe(n);
    for (let i = 1; i < all.length; i++) expect(all[i - 1]!.dir < all[i]!.dir || (all[i - 1]!.dir === all[i]!.dir && all[i - 1]!.name < all[i]!.name)).toBe(true); // ok: in range
    t.remove(12, 3, 'n0');
    const next = Array.from({ length: n }, (_, i) => i).filter((i) => i > 0 && i % 7 === 0).map((i) => `n${i}`).sort()[0];
    expect(t.first(12)).toEqual({ dir: 3, name: next }); // the next in (dir, name) order, names compared as strings
    for (let i = 0; i < n; i++) t.remove(12, 3 + (i % 7), `n${i}`);
    expect(t.count(12)).toBe(0);
    expect(t.has(12)).toBe(true);
  }, 20_000);

  it('shareName changes nothing a caller can see: the same name in the same directory only', () => {
    const t = new LinkTable();
    t.add(12, 5, 'b');
    t.shareName(12, 5, ['b'].join(''));
    t.shareName(12, 6, 'b');
    t.shareName(12, 5, 'c');
    t.shareName(99, 5, 'b');
    expect(t.all(12)).toEqual([{ dir: 5, name: 'b' }]);
    expect(t.has(99)).toBe(false);
  });
});
