import { describe, expect, it } from 'vitest';
import { InoIndex, SlotAllocator } from '../src/ino-index.js';
import { NodeTable } from '../src/node-table.js';
import type { FsNode } from '../src/node.js';

describe('InoIndex', () => {
  it('maps inode numbers over the whole 32-bit range to slots, drops a page with its last inode, and lists every pair', () => {
    const idx = new InoIndex();
    const inos = [2, 11, 12, 255, 256, 257, 65_536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
    inos.forEach((ino, i) => idx.set(ino, i));
    inos.forEach((ino, i) => expect(idx.get(ino), String(ino)).toBe(i));
    expect(idx.get(13)).toBe(-1);
    expect(idx.get(2 ** 32 - 2)).toBe(-1);
    expect([...idx.entries()].sort((a, b) => a[0] - b[0])).toEqual(inos.map((ino, i) => [ino, i]));
    expect(idx.delete(12)).toBe(2);
    expect(idx.delete(12)).toBe(-1);
    expect(idx.get(11)).toBe(1);
    for (const ino of inos) idx.delete(ino);
    expect([...idx.entries()]).toEqual([]);
    expect((idx as unknown as { pages: Map<number, unknown> }).pages.size).toBe(0);
  });
});

describe('SlotAllocator and NodeTable', () => {
  it('reuse freed slots, so the arrays stay as long as the most inodes held at once', () => {
    const slots = new SlotAllocator();
    for (let ino = 100; ino < 200; ino++) slots.take(ino);
    for (let ino = 100; ino < 150; ino++) slots.release(ino);
    for (let ino = 1000; ino < 1050; ino++) slots.take(ino);
    expect(slots.high).toBe(100);
    expect(slots.size).toBe(100);
    expect(slots.take(1000)).toBe(slots.get(1000));
  });

  it('answers get, has, set, delete and size as a Map of nodes does', () => {
    const t = new NodeTable();
    const n = (ino: number) => ({ ino }) as FsNode;
    t.set(12, n(12)).set(13, n(13)).set(12, n(12));
    expect(t.size).toBe(2);
    expect(t.get(12)?.ino).toBe(12);
    expect(t.has(14)).toBe(false);
    expect(t.delete(12)).toBe(true);
    expect(t.delete(12)).toBe(false);
    expect(t.get(12)).toBeUndefined();
    t.set(99, n(99));
    expect([...t.values()].map((x) => x.ino).sort()).toEqual([13, 99]);
  });
});
