import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CorruptError, CorruptKind, Ext4Error, IncompatibleError, IoError, LookupError } from '../src/index.js';

describe('error classes', () => {
  it('CorruptError carries kind and location, and says both in its message', () => {
    const cause = new Error('inner');
    const e = new CorruptError(CorruptKind.ExtentLoop, 'block 7 twice', { inode: 5, group: 1, block: 7, field: 'ei_leaf_lo' }, { cause });
    expect(e).toBeInstanceOf(Ext4Error);
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('CorruptError');
    expect({ kind: e.kind, inode: e.inode, group: e.group, block: e.block, field: e.field }).toEqual({
      kind: 'ExtentLoop',
      inode: 5,
      group: 1,
      block: 7,
      field: 'ei_leaf_lo',
    });
    expect(e.message).toBe('ExtentLoop: block 7 twice (inode 5, group 1, block 7, field ei_leaf_lo)');
    expect(e.cause).toBe(cause);
  });

  it('CorruptError leaves unknown locations undefined and out of the message', () => {
    const e = new CorruptError(CorruptKind.SuperblockMagic, 'no superblock');
    expect(e.message).toBe('SuperblockMagic: no superblock');
    expect([e.inode, e.group, e.block, e.field]).toEqual([undefined, undefined, undefined, undefined]);
    expect(new CorruptError(CorruptKind.InodeNumber, 'x', { inode: 0 }).message).toBe('InodeNumber: x (inode 0)');
  });

  it('IncompatibleError keeps a frozen copy of the feature names', () => {
    const feats = ['compression'];
    const e = new IncompatibleError('unsupported: compression', feats);
    feats.push('later');
    expect(e.features).toEqual(['compression']);
    expect(Object.isFrozen(e.features)).toBe(true);
    expect(e.name).toBe('IncompatibleError');
    expect(e).toBeInstanceOf(Ext4Error);
  });

  it('IoError chains its cause; LookupError carries a code', () => {
    const cause = new Error('EIO');
    const io = new IoError('read failed', { cause });
    expect([io.name, io.cause]).toEqual(['IoError', cause]);
    const l = new LookupError('ENOENT', '/x: no such file or directory');
    expect([l.name, l.code, l.message]).toEqual(['LookupError', 'ENOENT', '/x: no such file or directory']);
    expect(l).toBeInstanceOf(Ext4Error);
  });

  it('CorruptKind is a closed set whose values are their names', () => {
    for (const [k, v] of Object.entries(CorruptKind)) expect(v).toBe(k);
  });
});

describe('corrupt-kind coverage', () => {
  it('has a test named "... Corrupt(Kind)" for every CorruptKind', () => {
    const dir = fileURLToPath(new URL('.', import.meta.url));
    const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.test.ts') && !f.endsWith('errors.test.ts'));
    const named = new Set<string>();
    for (const f of files) {
      const src = readFileSync(join(dir, f), 'utf8');
      for (const m of src.matchAll(/it(?:\.each\([\s\S]*?\))?\(\s*['"`]([^'"`]*Corrupt\((\w+)\)[^'"`]*)['"`]/g)) named.add(m[2]!); // ok: group 2 always matches
    }
    const missing = Object.values(CorruptKind).filter((k) => !named.has(k));
    expect(missing).toEqual([]);
  });
});
