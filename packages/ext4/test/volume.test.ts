import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryBlockSource } from '@gammaray/disk';
import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptKind, Ext4Volume, FileType, IoError, LookupError, limits, walk, type Ext4Inode } from '../src/index.js';
import {
  SB,
  SLOW_TARGET,
  SPARSE_ISLANDS,
  ZeroTailSource,
  buildImage,
  debugfs,
  direntOffset,
  flip,
  inodeOffset,
  openDamaged,
  openImage,
  physicalBlock,
  rd32,
  rejectsCorrupt,
  resealInode,
  standardTree,
  wr32,
} from './fixtures.js';

async function lookupError(p: Promise<unknown>): Promise<LookupError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(LookupError);
  expect((err as LookupError).name).toBe('LookupError');
  return err as LookupError;
}

const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');

let img: Uint8Array;
let vol: Ext4Volume;

beforeAll(async () => {
  img = buildImage({ populate: standardTree });
  vol = await openImage(img);
});

describe('Ext4Volume.open and kind', () => {
  it('tells ext2, ext3 and ext4 apart by their features', async () => {
    const populate = (root: string) => void root;
    expect((await openImage(buildImage({ mkfs: 'mkfs.ext2', populate }))).kind).toBe('ext2');
    expect((await openImage(buildImage({ mkfs: 'mkfs.ext3', populate }))).kind).toBe('ext3');
    expect(vol.kind).toBe('ext4');
    expect(vol.groupCount).toBe(vol.superblock.groupCount);
  });

  it('reports reads past the end of a truncated image as IoError', async () => {
    const sparse = await vol.lookup('/sparse');
    const last = (await vol.blockMap(sparse)).at(-1)!; // ok: the file has data
    const cut = await Ext4Volume.open(new MemoryBlockSource(img.slice(0, last.physical * 4096)));
    const err = await cut.readFile(await cut.readInode(sparse.ino), last.logical * 4096, 10).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(IoError);
    expect((err as IoError).name).toBe('IoError');
  });
});

describe('Ext4Volume.lookup', () => {
  const ino = async (path: string, follow = false) => (await vol.lookup(path, follow)).ino;

  it('resolves absolute paths, ignoring empty and "." components', async () => {
    expect(await ino('/')).toBe(2);
    expect(await ino('')).toBe(2);
    const a = await vol.lookup('/dir/a.txt');
    expect(a.type).toBe(FileType.file);
    expect(await ino('//dir/./a.txt')).toBe(a.ino);
    expect((await lookupError(vol.lookup('/dir/a.txt/'))).code).toBe('ENOTDIR');
    expect(await ino('dir/a.txt')).toBe(a.ino);
  });

  it('resolves ".." to the parent and stops at the root', async () => {
    const dir = await ino('/dir');
    expect(await ino('/dir/sub/..')).toBe(dir);
    expect(await ino('/dir/sub/deep/../../a.txt')).toBe(await ino('/dir/a.txt'));
    expect(await ino('/..')).toBe(2);
    expect(await ino('/../../dir/..')).toBe(2);
  });

  it('refuses ".." after a component that is not a directory (ENOTDIR)', async () => {
    expect((await lookupError(vol.lookup('/dir/a.txt/..'))).code).toBe('ENOTDIR');
  });

  it('follows symlinks in the middle of a path, relative and absolute', async () => {
    const deep = await ino('/dir/sub/deep');
    expect(await ino('/lnkdir/deep')).toBe(deep);
    expect(await ino('/abs/..')).toBe(await ino('/dir/sub'));
    expect(await ino('/lnkdir/deep/..')).toBe(await ino('/dir/sub'));
    expect(await ino('/lnkdir/..')).toBe(await ino('/dir'));
  });

  it('follows a final symlink named with a trailing "/" or "/." (it must be a directory)', async () => {
    const deep = await ino('/dir/sub/deep');
    expect(await ino('/abs/')).toBe(deep);
    expect(await ino('/abs/.')).toBe(deep);
  });

  it('follows a final symlink only when asked', async () => {
    const link = await vol.lookup('/fast');
    expect(link.type).toBe(FileType.symlink);
    expect(await ino('/fast', true)).toBe(await ino('/dir/a.txt'));
    expect(await ino('/abs', true)).toBe(await ino('/dir/sub/deep'));
  });

  it('gives ELOOP for symlink cycles', async () => {
    expect((await lookupError(vol.lookup('/loop1', true))).code).toBe('ELOOP');
    expect((await lookupError(vol.lookup('/loop2/x'))).code).toBe('ELOOP');
    expect((await lookupError(vol.lookup('/self', true))).code).toBe('ELOOP');
    expect((await vol.lookup('/loop1')).type).toBe(FileType.symlink);
  });

  it('gives ENOENT for a missing path', async () => {
    for (const p of ['/nope', '/dir/nope', '/dir/sub/deep/x', '/lnkdir/nope']) {
      const e = await lookupError(vol.lookup(p));
      expect(e.code).toBe('ENOENT');
      expect(e.message).toContain(p);
    }
  });

  it('gives ENOTDIR for a path through a file', async () => {
    expect((await lookupError(vol.lookup('/dir/a.txt/x'))).code).toBe('ENOTDIR');
    expect((await lookupError(vol.lookup('/fast/x'))).code).toBe('ENOTDIR');
  });

  it('gives EINVAL for a component longer than 255 bytes', async () => {
    expect((await lookupError(vol.lookup(`/${'x'.repeat(256)}`))).code).toBe('EINVAL');
  });

  it('throws the directory damage instead of ENOENT when the name may be in a bad block', async () => {
    const dirBlk = await physicalBlock(vol, '/dir');
    const v = await openDamaged(img, (b) => flip(b, direntOffset(b, dirBlk * 4096, 4096, 'a.txt') + 8));
    await rejectsCorrupt(v.lookup('/dir/a.txt'), CorruptKind.DirBlockChecksum, { block: dirBlk });
  });

  it('rejects an entry naming a free inode as Corrupt(DirEntryInode)', async () => {
    const plain = buildImage({ populate: standardTree, features: '^metadata_csum' });
    const pv = await openImage(plain);
    const pBlk = await physicalBlock(pv, '/dir');
    const free = pv.superblock.inodesCount - 1;
    const v = await openDamaged(plain, (b) => wr32(b, direntOffset(b, pBlk * 4096, 4096, 'a.txt'), free));
    await rejectsCorrupt(v.lookup('/dir/a.txt'), CorruptKind.DirEntryInode, { inode: (await pv.lookup('/dir')).ino });
  });
});

describe('Ext4Volume.readLink', () => {
  it('reads a fast symlink from i_block and a slow one from its data block', async () => {
    expect(text(await vol.readLink(await vol.lookup('/fast')))).toBe('dir/a.txt');
    const slow = await vol.lookup('/slow');
    expect(slow.blocks512).toBeGreaterThan(0);
    expect(text(await vol.readLink(slow))).toBe(SLOW_TARGET);
  });

  it('gives EINVAL for a non-symlink', async () => {
    expect((await lookupError(vol.readLink(await vol.lookup('/dir/a.txt')))).code).toBe('EINVAL');
  });

  it('rejects a fast symlink whose i_size does not fit i_block as Corrupt(Symlink)', async () => {
    const fast = await vol.lookup('/fast');
    const v = await openDamaged(img, (b) => {
      wr32(b, inodeOffset(vol, fast.ino) + 0x4, 60);
      resealInode(b, vol, fast.ino);
    });
    await rejectsCorrupt(v.readLink(await v.readInode(fast.ino)), CorruptKind.Symlink, { inode: fast.ino, field: 'i_size' });
  });

  it('rejects a symlink longer than 64 KiB as Corrupt(Symlink)', async () => {
    const slow = await vol.lookup('/slow');
    const v = await openDamaged(img, (b) => {
      wr32(b, inodeOffset(vol, slow.ino) + 0x4, limits.MAX_SYMLINK_BYTES + 1);
      resealInode(b, vol, slow.ino);
    });
    await rejectsCorrupt(v.readLink(await v.readInode(slow.ino)), CorruptKind.Symlink, { inode: slow.ino, field: 'i_size' });
  });
});

describe('Ext4Volume.readFile', () => {
  it('reads a small file and clips ranges to its size', async () => {
    const f = await vol.lookup('/small.txt');
    expect(text(await vol.readFile(f, 0, 100))).toBe('0123456789');
    expect(text(await vol.readFile(f, 3, 4))).toBe('3456');
    expect(await vol.readFile(f, 10, 5)).toHaveLength(0);
    expect(await vol.readFile(f, 50, 5)).toHaveLength(0);
  });

  it('reads a sparse file with zeros in the holes', async () => {
    const f = await vol.lookup('/sparse');
    const data = await vol.readFile(f, 0, f.size);
    const want = Buffer.alloc((SPARSE_ISLANDS * 2 - 1) * 4096);
    for (let i = 0; i < SPARSE_ISLANDS; i++) want.fill(0x78, i * 8192, i * 8192 + 4096);
    expect(createHash('sha256').update(data).digest('hex')).toBe(createHash('sha256').update(want).digest('hex'));
  });

  it.each([
    [-1, 10],
    [0, -1],
    [0.5, 10],
    [0, Number.POSITIVE_INFINITY],
  ])('gives EINVAL for the range %s+%s', async (offset, length) => {
    expect((await lookupError(vol.readFile(await vol.lookup('/small.txt'), offset, length))).code).toBe('EINVAL');
  });
});

describe('Ext4Volume.readDir', () => {
  it('gives ENOTDIR for a file', async () => {
    expect((await lookupError(vol.readDir(await vol.lookup('/small.txt')))).code).toBe('ENOTDIR');
  });

  it('rejects a directory i_size over 2 GiB as Corrupt(DirTooLarge)', async () => {
    const dir = await vol.lookup('/dir');
    const v = await openDamaged(img, (b) => {
      wr32(b, inodeOffset(vol, dir.ino) + 0x6c, 1); // i_size_high
      resealInode(b, vol, dir.ino);
    });
    await rejectsCorrupt(v.readDir(await v.readInode(dir.ino)), CorruptKind.DirTooLarge, { inode: dir.ino, field: 'i_size' });
  });
});

describe('inline data', () => {
  let inl: Uint8Array;
  let iv: Ext4Volume;

  beforeAll(async () => {
    inl = buildImage({
      features: 'inline_data',
      populate: (root) => {
        writeFileSync(join(root, 'tiny'), 'tiny');
        writeFileSync(join(root, 'mid'), 'b'.repeat(100));
        standardTree(root);
      },
    });
    iv = await openImage(inl);
  });

  it('reads files stored in i_block and the system.data xattr', async () => {
    expect(text(await iv.readFile(await iv.lookup('/tiny'), 0, 100))).toBe('tiny');
    const mid = await iv.lookup('/mid');
    expect(await iv.blockMap(mid)).toEqual([]);
    expect(text(await iv.readFile(mid, 0, 1000))).toBe('b'.repeat(100));
    expect(text(await iv.readFile(mid, 58, 4))).toBe('bbbb');
    expect(await iv.readXattrs(mid)).toEqual([]);
  });

  it('lists an inline directory, its parent as ".."', async () => {
    const sub = await iv.lookup('/dir/sub');
    const listing = await iv.readDir(sub);
    expect(listing.errors).toEqual([]);
    expect(listing.entries.map((e) => [text(e.name), e.ino])).toEqual([
      ['..', (await iv.lookup('/dir')).ino],
      ['deep', (await iv.lookup('/dir/sub/deep')).ino],
    ]);
    expect(text(await iv.readLink(await iv.lookup('/fast')))).toBe('dir/a.txt');
  });

  it('reads an i_size beyond the stored inline data as zeros, as the kernel does (mkfs -d makes such files from all-hole sources)', async () => {
    const mid = await iv.lookup('/mid');
    const stored = await iv.readFile(mid, 0, mid.size);
    const v = await openDamaged(inl, (b) => {
      wr32(b, inodeOffset(iv, mid.ino) + 0x4, 5000);
      resealInode(b, iv, mid.ino);
    });
    const grown = await v.readFile(await v.readInode(mid.ino), 0, 5000);
    expect(grown.length).toBe(5000);
    expect([...grown.subarray(0, stored.length)]).toEqual([...stored]);
    expect(grown.subarray(stored.length).every((x) => x === 0)).toBe(true);
  });

  it('rejects an inline directory too short for its parent pointer as Corrupt(InlineData)', async () => {
    const sub = await iv.lookup('/dir/sub');
    const v = await openDamaged(inl, (b) => {
      wr32(b, inodeOffset(iv, sub.ino) + 0x4, 2);
      resealInode(b, iv, sub.ino);
    });
    await rejectsCorrupt(v.readDir(await v.readInode(sub.ino)), CorruptKind.InlineData, { inode: sub.ino });
  });
});

describe('indirect block maps (ext2)', () => {
  const SIZE = 300 * 1024; // 300 one-KiB blocks: direct, single and double indirect
  const pattern = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 7 + (i >> 10)) & 0xff));
  let e2: Uint8Array;
  let ev: Ext4Volume;
  let f: Ext4Inode;

  beforeAll(async () => {
    e2 = buildImage({ mkfs: 'mkfs.ext2', blockSize: 1024, size: '8M', populate: (root) => writeFileSync(join(root, 'f'), pattern) });
    ev = await openImage(e2);
    f = await ev.lookup('/f');
  });

  const iblock = (i: number) => inodeOffset(ev, f.ino) + 0x28 + 4 * i;

  it('maps direct, single and double indirect blocks as debugfs bmap does', async () => {
    const map = await ev.blockMap(f);
    const phys = (logical: number) => {
      const e = map.find((x) => x.logical <= logical && logical < x.logical + x.length)!; // ok: the file has no holes
      return e.physical + logical - e.logical;
    };
    for (const logical of [0, 11, 12, 267, 268, 299]) expect(phys(logical)).toBe(Number(debugfs(e2, `bmap /f ${logical}`).trim()));
    expect(Buffer.from(await ev.readFile(f, 0, SIZE)).equals(pattern)).toBe(true);
  });

  it('rejects a double indirect pointer to the single indirect block as Corrupt(BlockMapLoop)', async () => {
    const ind = rd32(e2, iblock(12));
    const v = await openDamaged(e2, (b) => wr32(b, iblock(13), ind));
    await rejectsCorrupt(v.blockMap(await v.readInode(f.ino)), CorruptKind.BlockMapLoop, { inode: f.ino, block: ind });
  });

  it('rejects a direct pointer past the end of the file system as Corrupt(BlockNumber)', async () => {
    const end = ev.superblock.blocksCount;
    const v = await openDamaged(e2, (b) => wr32(b, iblock(3), end));
    await rejectsCorrupt(v.blockMap(await v.readInode(f.ino)), CorruptKind.BlockNumber, { inode: f.ino, block: end, field: 'i_block' });
  });

  it('rejects an indirect block pointer past the end of the file system as Corrupt(BlockNumber)', async () => {
    const end = ev.superblock.blocksCount;
    const v = await openDamaged(e2, (b) => wr32(b, iblock(13), end + 1));
    await rejectsCorrupt(v.blockMap(await v.readInode(f.ino)), CorruptKind.BlockNumber, { inode: f.ino, block: end + 1 });
  });

  it('stops a triple-indirect map after MAX_MAP_BLOCKS_PER_INODE blocks as Corrupt(BlockMapBudget)', async () => {
    // A 2 KiB-block ext2 whose superblock claims 2^18 blocks (the tail reads as zeros). One triple indirect block
    // points at 256 double indirect blocks of 512 distinct (zero-filled) indirect blocks each: 131,329 map blocks.
    const bs = 2048;
    const per = bs / 4;
    const total = 1 << 18;
    const small = buildImage({ mkfs: 'mkfs.ext2', blockSize: bs, populate: (root) => writeFileSync(join(root, 'f'), 'x') });
    const sv = await openImage(small);
    const file = await sv.lookup('/f');
    const tind = 7000;
    const b = small.slice();
    wr32(b, SB + 0x4, total); // s_blocks_count_lo
    for (let d = 0; d < 256; d++) {
      wr32(b, tind * bs + d * 4, tind + 1 + d);
      for (let j = 0; j < per; j++) wr32(b, (tind + 1 + d) * bs + j * 4, 10_000 + d * per + j);
    }
    const off = inodeOffset(sv, file.ino);
    wr32(b, off + 0x28 + 14 * 4, tind); // i_block[TIND]
    const size = bs * (12 + per + per ** 2 + per ** 3);
    wr32(b, off + 0x4, size % 2 ** 32);
    wr32(b, off + 0x6c, Math.floor(size / 2 ** 32));
    const v = await Ext4Volume.open(new ZeroTailSource(b, total * bs), { cacheBytes: 1 << 20 });
    expect(limits.MAX_MAP_BLOCKS_PER_INODE).toBeLessThan(1 + 256 + 256 * per);
    await rejectsCorrupt(v.blockMap(await v.readInode(file.ino)), CorruptKind.BlockMapBudget, { inode: file.ino });
  });
});

describe('escaped names', () => {
  it('looks up the file a walk path names, even when the name contains a backslash', async () => {
    // Two files: "A" and the four characters `\x41`. walk() reports the second as "/\x5cx41" (its backslash
    // escaped, as it would read as an escape); looking that path up must give the second file back, not "A".
    const esc = buildImage({
      populate: (root) => {
        writeFileSync(join(root, 'A'), 'upper a');
        writeFileSync(join(root, '\\x41'), 'literal');
      },
    });
    const v = await openImage(esc);
    const paths = new Map<string, number>();
    for await (const item of walk(v)) paths.set(item.path, item.ino);
    expect(paths.has('/\\x5cx41')).toBe(true);
    expect((await v.lookup('/\\x5cx41')).ino).toBe(paths.get('/\\x5cx41'));
    expect(text(await v.readFile(await v.lookup('/\\x5cx41'), 0, 20))).toBe('literal');
    expect(text(await v.readFile(await v.lookup('/A'), 0, 20))).toBe('upper a');
  });

  it('looks up a non-UTF-8 name by the \\xNN path walk() reports', async () => {
    const esc = buildImage({ populate: (root) => writeFileSync(Buffer.concat([Buffer.from(`${root}/`), Buffer.from([0xff, 0x41])]), 'x') });
    const v = await openImage(esc);
    const paths: string[] = [];
    for await (const item of walk(v)) paths.push(item.path);
    expect(paths).toContain('/\\xffA');
    expect((await v.lookup('/\\xffA')).type).toBe(FileType.file);
  });
});
