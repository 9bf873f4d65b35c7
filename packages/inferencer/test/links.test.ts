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
});
