import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptError, CorruptKind, decodeName, limits, walk, type Ext4Volume, type WalkItem, type WalkOptions } from '../src/index.js';
import {
  BIG_DIR_FILES,
  buildImage,
  direntOffset,
  flip,
  inodeOffset,
  isCorrupt,
  openDamaged,
  openImage,
  physicalBlock,
  standardTree,
  wr16,
  wr32,
} from './fixtures.js';

/** Collects a walk, failing instead of hanging if it ever runs away. */
async function collect(vol: Ext4Volume, opts?: WalkOptions, max = 100_000): Promise<WalkItem[]> {
  const out: WalkItem[] = [];
  for await (const item of walk(vol, opts)) {
    out.push(item);
    if (out.length > max) throw new Error(`walk yielded more than ${max} items`);
  }
  return out;
}

/**
 * The paths walk() must yield for a host tree, in its order: pre-order, children sorted by name bytes. mke2fs
 * adds /lost+found, an empty directory.
 */
function expectedPaths(root: string): string[] {
  const out: string[] = [];
  const visit = (host: string | undefined, path: string) => {
    out.push(path);
    if (host === undefined) return;
    const names = readdirSync(host, { encoding: 'buffer' });
    if (path === '/') names.push(Buffer.from('lost+found'));
    for (const n of names.sort(Buffer.compare)) {
      const childPath = `${path === '/' ? '' : path}/${decodeName(n)}`;
      if (path === '/' && n.toString() === 'lost+found') {
        visit(undefined, childPath);
        continue;
      }
      const child = join(host, n.toString('latin1'));
      if (lstatSync(child).isDirectory()) visit(child, childPath);
      else out.push(childPath);
    }
  };
  visit(root, '/');
  return out;
}

let expected: string[] = [];
let img: Uint8Array; // metadata_csum
let plain: Uint8Array; // no metadata_csum: dirent inode numbers can be edited in place
let vol: Ext4Volume;

beforeAll(async () => {
  img = buildImage({
    populate: (root) => {
      standardTree(root);
      expected = expectedPaths(root);
    },
  });
  plain = buildImage({ populate: standardTree, features: '^metadata_csum' });
  vol = await openImage(img);
});

describe('walk', () => {
  it('yields every path once, pre-order, children sorted by name bytes', async () => {
    const items = await collect(vol);
    expect(items.map((i) => i.path)).toEqual(expected);
    expect(items.every((i) => i.errors.length === 0 && i.inode !== undefined)).toBe(true);
    const depthOf = (p: string) => (p === '/' ? 0 : p.split('/').length - 1);
    for (const i of items) expect(i.depth).toBe(depthOf(i.path));
    const big = items.filter((i) => i.path.startsWith('/big/'));
    expect(big).toHaveLength(BIG_DIR_FILES);
    expect(items.find((i) => i.path === '/slow')?.inode?.type).toBe('symlink');
  });

  it('stays in the start directory when not recursive', async () => {
    const items = await collect(vol, { recursive: false });
    expect(items[0]?.path).toBe('/');
    expect(items.slice(1).every((i) => i.depth === 1)).toBe(true);
    expect(items.map((i) => i.path)).toContain('/dir');
    expect(items.map((i) => i.path)).not.toContain('/dir/a.txt');
  });

  it('yields the same set of paths unsorted', async () => {
    const sorted = (await collect(vol)).map((i) => i.path);
    const unsorted = (await collect(vol, { sort: false })).map((i) => i.path);
    expect([...unsorted].sort()).toEqual([...sorted].sort());
  });

  it('starts at a given inode and path', async () => {
    const dir = await vol.lookup('/dir');
    const items = await collect(vol, { startIno: dir.ino, startPath: '/dir' });
    expect(items.map((i) => [i.path, i.depth])).toEqual([
      ['/dir', 0],
      ['/dir/a.txt', 1],
      ['/dir/sub', 1],
      ['/dir/sub/deep', 2],
    ]);
  });

  it('reports a directory entry pointing at an ancestor once as Corrupt(DirectoryLoop) and ends', async () => {
    const pv = await openImage(plain);
    const dir = await pv.lookup('/dir');
    const subBlk = await physicalBlock(pv, '/dir/sub');
    const v = await openDamaged(plain, (b) => wr32(b, direntOffset(b, subBlk * 4096, 4096, 'deep'), dir.ino));
    const items = await collect(v);
    const loop = items.filter((i) => i.errors.some((e) => e instanceof CorruptError && e.kind === CorruptKind.DirectoryLoop));
    expect(loop.map((i) => i.path)).toEqual(['/dir/sub/deep']);
    isCorrupt(loop[0]!.errors[0], CorruptKind.DirectoryLoop, { inode: dir.ino }); // ok: one item
    expect(items.some((i) => i.path.startsWith('/dir/sub/deep/'))).toBe(false);
    expect(items.map((i) => i.path)).toContain('/small.txt');
  });

  it('does not follow "..", wherever it points', async () => {
    const pv = await openImage(plain);
    const blk = await physicalBlock(pv, '/dir/sub/deep');
    const v = await openDamaged(plain, (b) => wr32(b, direntOffset(b, blk * 4096, 4096, '..'), 2));
    const items = await collect(v);
    expect(items).toHaveLength(expected.length);
    expect(items.every((i) => i.errors.length === 0)).toBe(true);
  });

  it('reports an entry naming the root as Corrupt(DirectoryLoop)', async () => {
    const pv = await openImage(plain);
    const subBlk = await physicalBlock(pv, '/dir/sub');
    const v = await openDamaged(plain, (b) => wr32(b, direntOffset(b, subBlk * 4096, 4096, 'deep'), 2));
    const items = await collect(v);
    const bad = items.find((i) => i.path === '/dir/sub/deep')!; // ok: the entry still exists
    isCorrupt(bad.errors[0], CorruptKind.DirectoryLoop, { inode: 2 });
    expect(items.filter((i) => i.errors.length > 0)).toHaveLength(1);
  });

  it('yields an entry naming a free inode with Corrupt(DirEntryInode) and walks on', async () => {
    const pv = await openImage(plain);
    const dirBlk = await physicalBlock(pv, '/dir');
    const free = pv.superblock.inodesCount - 1;
    const v = await openDamaged(plain, (b) => wr32(b, direntOffset(b, dirBlk * 4096, 4096, 'a.txt'), free));
    const items = await collect(v);
    const a = items.find((i) => i.path === '/dir/a.txt')!; // ok: the entry still exists
    expect(a.inode).toBeUndefined();
    expect(a.ino).toBe(free);
    isCorrupt(a.errors[0], CorruptKind.DirEntryInode, { inode: free });
    const paths = items.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['/dir/sub', '/dir/sub/deep', '/small.txt', '/sparse']));
    expect(items.filter((i) => i.errors.length > 0)).toHaveLength(1);
  });

  it('yields an unreadable inode with its error and walks on', async () => {
    const a = await vol.lookup('/dir/a.txt');
    const v = await openDamaged(img, (b) => flip(b, inodeOffset(vol, a.ino) + 0x10));
    const items = await collect(v);
    const item = items.find((i) => i.path === '/dir/a.txt')!; // ok: the entry still exists
    expect(item.inode).toBeUndefined();
    isCorrupt(item.errors[0], CorruptKind.InodeChecksum, { inode: a.ino });
    expect(items).toHaveLength(expected.length);
  });

  it('lists the good blocks of a directory with a corrupt block, and reports the damage there', async () => {
    const big = await vol.lookup('/big');
    const bad = await physicalBlock(vol, '/big', 1);
    const v = await openDamaged(img, (b) => flip(b, bad * 4096 + 8));
    const items = await collect(v);
    const dir = items.find((i) => i.path === '/big')!; // ok: the directory still exists
    expect(dir.errors).toHaveLength(1);
    isCorrupt(dir.errors[0], CorruptKind.DirBlockChecksum, { inode: big.ino, block: bad });
    const children = items.filter((i) => i.path.startsWith('/big/'));
    expect(children.length).toBeGreaterThan(0);
    expect(children.length).toBeLessThan(BIG_DIR_FILES);
    expect(children.every((i) => i.errors.length === 0)).toBe(true);
    expect(items.map((i) => i.path)).toContain('/sparse');
  });

  it('reports rec_len damage in one block and keeps the others (metadata_csum off)', async () => {
    const pv = await openImage(plain);
    const bad = await physicalBlock(pv, '/big', 1);
    const v = await openDamaged(plain, (b) => wr16(b, bad * 4096 + 4, 0));
    const items = await collect(v);
    isCorrupt(items.find((i) => i.path === '/big')!.errors[0], CorruptKind.DirEntryRecLen, { block: bad, field: 'rec_len' }); // ok: exists
    const n = items.filter((i) => i.path.startsWith('/big/')).length;
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(BIG_DIR_FILES);
  });
});

describe('walk limits', () => {
  it('skips entries whose path would pass 4096 bytes with Corrupt(PathTooLong)', async () => {
    // 17 nested directories with 255-byte names: the 16th has a 4096-byte path, its child would need 4352.
    const name = (i: number) => String.fromCharCode(0x61 + i).repeat(255);
    const cmds = Array.from({ length: 17 }, (_, i) => [`mkdir ${name(i)}`, `cd ${name(i)}`]).flat();
    const deep = await openImage(buildImage({ blockSize: 1024, size: '4M', populate: () => undefined, debugfs: cmds }));
    const items = await collect(deep);
    const longest = Math.max(...items.map((i) => Buffer.byteLength(i.path)));
    expect(longest).toBe(limits.MAX_PATH_BYTES);
    const last = items.find((i) => Buffer.byteLength(i.path) === limits.MAX_PATH_BYTES)!; // ok: found above
    expect(last.depth).toBe(16);
    isCorrupt(last.errors[0], CorruptKind.PathTooLong, { inode: last.ino });
    expect(items.filter((i) => i.errors.length > 0)).toHaveLength(1);
  });

  it('stops descending below MAX_TREE_DEPTH with Corrupt(TreeBudget) and reports progress', async () => {
    const depth = limits.MAX_TREE_DEPTH + 1;
    const fifos = 2100;
    const cmds = [...Array.from({ length: fifos }, (_, i) => `mknod p${i} p`), ...Array.from({ length: depth }, () => ['mkdir d', 'cd d']).flat()];
    const deep = await openImage(buildImage({ blockSize: 1024, size: '16M', args: ['-N', '8192'], populate: () => undefined, debugfs: cmds }));
    const seen: number[] = [];
    const items = await collect(deep, { onProgress: (n) => seen.push(n) });
    expect(Math.max(...items.map((i) => i.depth))).toBe(limits.MAX_TREE_DEPTH);
    const bottom = items.find((i) => i.depth === limits.MAX_TREE_DEPTH)!; // ok: found above
    isCorrupt(bottom.errors[0], CorruptKind.TreeBudget, { inode: bottom.ino });
    expect(items.filter((i) => i.errors.length > 0)).toHaveLength(1);
    expect(seen).toEqual([4096]);
  });
});
