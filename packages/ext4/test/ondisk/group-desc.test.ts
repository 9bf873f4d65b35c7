import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptKind, GroupFlags, decodeGroupDesc, descriptorBlock, groupDescChecksum, groupHasSuper, type Ext4Volume } from '../../src/index.js';
import {
  buildImage,
  debugfs,
  dumpe2fs,
  flip,
  groupDescOffset,
  inodeOffset,
  openDamaged,
  openImage,
  rd16,
  rejectsCorrupt,
  resealGroupDesc,
  throwsCorrupt,
  wr16,
  wr32,
} from '../fixtures.js';

/** 40 files, so with 16 inodes per group they spill over into groups 1 and 2. */
const populate = (root: string) => {
  for (let i = 0; i < 40; i++) writeFileSync(join(root, `f${i}`), `file ${i}\n`);
};

let csum: Uint8Array; // metadata_csum: crc32c descriptors
let gdt: Uint8Array; // uninit_bg: crc16 descriptors
let metaBg: Uint8Array;
let ext2: Uint8Array;
let vol: Ext4Volume;

beforeAll(async () => {
  const args = ['-g', '1024', '-N', '64'];
  csum = buildImage({ populate, args });
  gdt = buildImage({ populate, args, features: '^metadata_csum,uninit_bg' });
  metaBg = buildImage({ populate, blockSize: 1024, features: 'meta_bg,^resize_inode', args: ['-g', '256', '-N', '2048'] });
  ext2 = buildImage({ mkfs: 'mkfs.ext2', populate, args });
  vol = await openImage(csum);
});

/** Inode numbers of the files, which live in several groups. */
async function fileInodes(v: Ext4Volume): Promise<number[]> {
  const root = await v.readDir(await v.readInode(2));
  return root.entries.filter((e) => e.name[0] === 0x66).map((e) => e.ino);
}

describe('decodeGroupDesc', () => {
  it('finds every inode where debugfs imap does, across groups', async () => {
    const inos = await fileInodes(vol);
    const groups = new Set(inos.map((i) => Math.floor((i - 1) / vol.superblock.inodesPerGroup)));
    expect(groups.size).toBeGreaterThanOrEqual(3);
    for (const ino of [2, 11, ...inos.filter((_, i) => i % 7 === 0)]) {
      const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(debugfs(csum, `imap <${ino}>`))!; // ok: debugfs prints it
      expect(inodeOffset(vol, ino)).toBe(Number(m[1]) * 4096 + parseInt(m[2]!, 16));
    }
  });

  it('accepts every stored crc32c bg_checksum of a metadata_csum file system', () => {
    const sb = vol.superblock;
    expect(vol.groupCount).toBe(4);
    for (let g = 0; g < vol.groupCount; g++) {
      const off = groupDescOffset(sb, g);
      const bytes = csum.subarray(off, off + sb.descSize);
      expect(groupDescChecksum(bytes, g, sb)).toBe(rd16(bytes, 0x1e));
      expect(vol.groupDesc(g).group).toBe(g);
    }
  });

  it('accepts every stored crc16 bg_checksum of a uninit_bg file system', async () => {
    const v = await openImage(gdt);
    const sb = v.superblock;
    expect(sb.metadataCsum).toBe(false);
    expect(sb.has.gdtCsum).toBe(true);
    for (let g = 0; g < v.groupCount; g++) {
      const off = groupDescOffset(sb, g);
      expect(groupDescChecksum(gdt.subarray(off, off + sb.descSize), g, sb)).toBe(rd16(gdt, off + 0x1e));
    }
    for (const ino of await fileInodes(v)) expect((await v.readInode(ino)).type).toBe('file');
  });

  it('reads each group of a meta_bg file system from its own descriptor block, as dumpe2fs does', async () => {
    const v = await openImage(metaBg);
    expect(v.superblock.has.metaBg).toBe(true);
    const tables = [...dumpe2fs(metaBg).matchAll(/Inode table at (\d+)-/g)].map((m) => Number(m[1]));
    expect(tables).toHaveLength(v.groupCount);
    expect(v.groupCount).toBeGreaterThan(v.superblock.blockSize / v.superblock.descSize);
    for (let g = 0; g < v.groupCount; g++) expect(v.groupDesc(g).inodeTable).toBe(tables[g]);
  });

  it('rejects a flipped bg_free_blocks_count byte as Corrupt(GroupDescriptorChecksum) (crc32c)', async () => {
    const sb = vol.superblock;
    const v = await openDamaged(csum, (img) => flip(img, groupDescOffset(sb, 1) + 0xc));
    throwsCorrupt(() => v.groupDesc(1), CorruptKind.GroupDescriptorChecksum, { group: 1, field: 'bg_checksum' });
    const inGroup1 = (await fileInodes(vol)).find((i) => Math.floor((i - 1) / sb.inodesPerGroup) === 1)!; // ok: asserted above
    await rejectsCorrupt(v.readInode(inGroup1), CorruptKind.GroupDescriptorChecksum, { group: 1 });
    // The other groups stay readable.
    expect((await v.readInode(2)).type).toBe('dir');
    expect(v.groupDesc(2).group).toBe(2);
  });

  it('rejects a flipped bg_flags byte as Corrupt(GroupDescriptorChecksum) (crc16)', async () => {
    const v0 = await openImage(gdt);
    const v = await openDamaged(gdt, (img) => flip(img, groupDescOffset(v0.superblock, 0) + 0x12, 0x04));
    throwsCorrupt(() => v.groupDesc(0), CorruptKind.GroupDescriptorChecksum, { group: 0, field: 'bg_checksum' });
    await rejectsCorrupt(v.readInode(2), CorruptKind.GroupDescriptorChecksum, { group: 0 });
  });

  it('rejects bg_inode_table_lo past the end of the file system as Corrupt(GroupDescriptor)', async () => {
    const sb = vol.superblock;
    const v = await openDamaged(csum, (img) => {
      wr32(img, groupDescOffset(sb, 0) + 0x8, sb.blocksCount);
      resealGroupDesc(img, sb, 0);
    });
    throwsCorrupt(() => v.groupDesc(0), CorruptKind.GroupDescriptor, { group: 0, field: 'bg_inode_table_lo' });
    await rejectsCorrupt(v.readInode(2), CorruptKind.GroupDescriptor, { group: 0, field: 'bg_inode_table_lo' });
  });

  it('rejects bg_inode_table_hi beyond 2^53 as Corrupt(GroupDescriptor)', async () => {
    const sb = vol.superblock;
    const v = await openDamaged(csum, (img) => {
      wr32(img, groupDescOffset(sb, 3) + 0x28, 0x200000);
      resealGroupDesc(img, sb, 3);
    });
    throwsCorrupt(() => v.groupDesc(3), CorruptKind.GroupDescriptor, { group: 3, field: 'bg_inode_table_hi' });
  });

  it('rejects bg_block_bitmap_hi beyond 2^53 as Corrupt(GroupDescriptor)', () => {
    const sb = vol.superblock;
    const off = groupDescOffset(sb, 1);
    const bytes = csum.slice(off, off + sb.descSize);
    wr32(bytes, 0x20, 0xffffffff);
    wr16(bytes, 0x1e, groupDescChecksum(bytes, 1, sb));
    throwsCorrupt(() => decodeGroupDesc(bytes, 1, sb), CorruptKind.GroupDescriptor, { group: 1, field: 'bg_block_bitmap_hi' });
  });

  it('reports descriptor blocks past the end of a truncated image as Corrupt(GroupDescriptor)', async () => {
    const v0 = await openImage(metaBg);
    const lastMeta = v0.groupCount - 1;
    const v = await openImage(metaBg.slice(0, metaBg.length / 2));
    expect(v.groupDesc(0).group).toBe(0);
    throwsCorrupt(() => v.groupDesc(lastMeta), CorruptKind.GroupDescriptor);
  });

  it('trusts descriptors without checksums when neither metadata_csum nor gdt_csum is set', async () => {
    const v0 = await openImage(ext2);
    const v = await openDamaged(ext2, (img) => flip(img, groupDescOffset(v0.superblock, 1) + 0xc));
    expect(v.groupDesc(1).inodeTable).toBe(v0.groupDesc(1).inodeTable);
  });

  it('ignores the high halves of 32-byte descriptors and clamps a bad bg_itable_unused', async () => {
    const v = await openImage(ext2);
    const sb = v.superblock;
    expect(sb.descSize).toBe(32);
    const off = groupDescOffset(sb, 0);
    const bytes = ext2.slice(off, off + 32);
    wr16(bytes, 0x1c, sb.inodesPerGroup + 1);
    const gd = decodeGroupDesc(bytes, 0, sb);
    expect(gd.inodeTable).toBe(v.groupDesc(0).inodeTable);
    expect(gd.itableUnused).toBe(0);
    expect(Object.isFrozen(gd)).toBe(true);
  });

  it('reads never-initialized inode table slots as free without reading them', async () => {
    const sb = vol.superblock;
    const g = vol.groupCount - 1;
    const gd = vol.groupDesc(g);
    expect(gd.itableUnused).toBeGreaterThan(0);
    const ino = (g + 1) * sb.inodesPerGroup; // the last slot of the last group: inside bg_itable_unused
    const v = await openDamaged(csum, (img) => {
      img.fill(0xa5, inodeOffset(vol, ino), inodeOffset(vol, ino) + sb.inodeSize);
    });
    const inode = await v.readInode(ino);
    expect(inode.mode).toBe(0);
    // With INODE_UNINIT the whole group is free.
    const uninit = await openDamaged(csum, (img) => {
      const off = groupDescOffset(sb, g);
      img.fill(0xa5, inodeOffset(vol, g * sb.inodesPerGroup + 1), inodeOffset(vol, g * sb.inodesPerGroup + 1) + sb.inodeSize);
      wr16(img, off + 0x12, gd.flags | GroupFlags.inodeUninit);
      resealGroupDesc(img, sb, g);
    });
    expect((await uninit.readInode(g * sb.inodesPerGroup + 1)).mode).toBe(0);
  });
});

describe('descriptorBlock', () => {
  it('puts the classic table right after the superblock', () => {
    const sb = vol.superblock;
    expect(descriptorBlock(sb, 0, (g) => groupHasSuper(sb, g))).toBe(1);
  });

  it('puts the table after the superblock\'s block with 1 KiB blocks and s_first_data_block 0 (bigalloc)', async () => {
    const img = buildImage({ populate, blockSize: 1024, features: 'bigalloc', args: ['-C', '16384'], size: '64M' });
    const v = await openImage(img);
    const sb = v.superblock;
    expect([sb.blockSize, sb.firstDataBlock, sb.has.bigalloc]).toEqual([1024, 0, true]);
    expect(descriptorBlock(sb, 0, (g) => groupHasSuper(sb, g))).toBe(2);
    expect(v.groupDesc(0).inodeTable).toBeGreaterThan(2); // read from block 2 and checksummed: block 1 is the superblock
    expect((await v.readInode(2)).mode & 0o170000).toBe(0o040000);
  });

  it('puts each meta_bg table in the first group of its meta-group, after a backup superblock', async () => {
    const v = await openImage(metaBg);
    const sb = v.superblock;
    const hasSuper = (g: number) => groupHasSuper(sb, g);
    const per = sb.blockSize / sb.descSize;
    const out = dumpe2fs(metaBg);
    for (let m = 0; m * per < v.groupCount; m++) {
      const g = m * per;
      const at = new RegExp(`^Group ${g}: [^\\n]*\\n[^\\n]*Group descriptor at (\\d+)`, 'm').exec(out);
      expect(at, `group ${g}`).not.toBeNull();
      expect(descriptorBlock(sb, m, hasSuper)).toBe(Number(at![1])); // ok: asserted non-null
    }
  });
});
