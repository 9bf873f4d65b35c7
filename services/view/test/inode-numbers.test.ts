import { describe, expect, it } from 'vitest';
import { InodeNumbers } from '../src/fuse/view-fs.js';

describe('InodeNumbers (the FUSE mount\'s st_ino across disks)', () => {
  it('gives the same ext4 inode of two disks two numbers, the same inode of one disk always the same one', () => {
    const n = new InodeNumbers();
    const a2 = n.of('a', 1000, 2);
    const b2 = n.of('b', 5000, 2);
    expect(a2).not.toBe(b2);
    expect(a2).toBeGreaterThan(1); // 1 is the mount's root
    expect(n.of('a', 1000, 2)).toBe(a2);
    expect(n.of('b', 5000, 2)).toBe(b2);
    // Every inode of a disk maps into its range, disjoint from the other disk's.
    const a = new Set(Array.from({ length: 2000 }, (_, i) => n.of('a', 1000, i + 1)));
    const b = new Set(Array.from({ length: 10_000 }, (_, i) => n.of('b', 5000, i + 1)));
    expect(a.size).toBe(2000);
    expect(b.size).toBe(10_000);
    for (const x of a) expect(b.has(x)).toBe(false);
    for (const x of [...a, ...b]) expect(x).toBeLessThan(2 ** 32);
  });

  it('numbers a bootstrapping disk\'s directory apart from every inode and from other disks', () => {
    const n = new InodeNumbers();
    const w = n.waiting('a');
    expect(n.waiting('a')).toBe(w);
    expect(n.waiting('b')).not.toBe(w);
    const inos = Array.from({ length: 1000 }, (_, i) => n.of('a', 100, i + 1));
    expect(inos).not.toContain(w);
    expect(inos).not.toContain(n.waiting('b'));
  });

  it('stays within 32 bits when the disks need more than 2^32 numbers', () => {
    const n = new InodeNumbers();
    const big = 2 ** 31; // ranges are twice the inode count: the first disk takes the whole space
    expect(n.of('a', big, big)).toBeLessThan(2 ** 32);
    expect(n.of('b', big, big)).toBeLessThan(2 ** 32);
    expect(n.of('b', big, 2 ** 32 - 1)).toBeLessThan(2 ** 32);
  });
});
