import { MemoryBlockSource } from '@gammaray/disk';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CorruptKind,
  EXT4_SUPER_MAGIC,
  Ext4Volume,
  FeatureIncompat,
  FeatureRoCompat,
  IncompatibleError,
  SUPERBLOCK_SIZE,
  crc32c,
  decodeSuperblock,
  groupHasSuper,
} from '../../src/index.js';
import { SB, buildImage, dumpe2fsHeader, flip, openDamaged, openImage, rd32, rejectsCorrupt, resealSuperblock, throwsCorrupt, wr16, wr32, wr8 } from '../fixtures.js';

let ext4: Uint8Array;
let ext2: Uint8Array;
let small: Uint8Array;

beforeAll(() => {
  const populate = (root: string) => void root;
  ext4 = buildImage({ populate, args: ['-L', 'gammaray'] });
  ext2 = buildImage({ mkfs: 'mkfs.ext2', populate });
  small = buildImage({ blockSize: 1024, size: '8M', populate });
});

const sbBytes = (img: Uint8Array) => img.slice(SB, SB + SUPERBLOCK_SIZE);

describe('decodeSuperblock', () => {
  it('decodes what dumpe2fs reports for a metadata_csum ext4', () => {
    const sb = decodeSuperblock(sbBytes(ext4));
    const d = dumpe2fsHeader(ext4);
    expect(sb.blockSize).toBe(Number(d.get('Block size')));
    expect(sb.blocksCount).toBe(Number(d.get('Block count')));
    expect(sb.inodesCount).toBe(Number(d.get('Inode count')));
    expect(sb.blocksPerGroup).toBe(Number(d.get('Blocks per group')));
    expect(sb.inodesPerGroup).toBe(Number(d.get('Inodes per group')));
    expect(sb.inodeSize).toBe(Number(d.get('Inode size')));
    expect(sb.firstIno).toBe(Number(d.get('First inode')));
    expect(sb.firstDataBlock).toBe(Number(d.get('First block')));
    expect(sb.journalInum).toBe(Number(d.get('Journal inode')));
    expect(sb.volumeName).toBe(d.get('Filesystem volume name'));
    expect(sb.reservedGdtBlocks).toBe(Number(d.get('Reserved GDT blocks')));
    expect(sb.descSize).toBe(64);
    expect([...sb.features].sort()).toEqual(d.get('Filesystem features')!.split(' ').sort());
    expect(Buffer.from(sb.uuid).toString('hex')).toBe(d.get('Filesystem UUID')!.replace(/-/g, ''));
    expect(sb.metadataCsum).toBe(true);
    expect(sb.csumSeed).toBe(crc32c(0xffffffff, sb.uuid));
    expect(sb.has).toMatchObject({ journal: true, extents: true, is64bit: true, flexBg: true, fileType: true, metaBg: false, gdtCsum: false });
    expect(Object.isFrozen(sb)).toBe(true);
  });

  it('decodes an ext2 with 32-byte descriptors and no checksums', () => {
    const sb = decodeSuperblock(sbBytes(ext2));
    expect(sb.descSize).toBe(32);
    expect(sb.metadataCsum).toBe(false);
    expect(sb.has).toMatchObject({ journal: false, extents: false, is64bit: false });
  });

  it('decodes a 1 KiB-block file system whose superblock is in block 1', () => {
    const sb = decodeSuperblock(sbBytes(small));
    expect(sb.blockSize).toBe(1024);
    expect(sb.firstDataBlock).toBe(1);
    expect(sb.groupCount).toBe(Math.ceil((sb.blocksCount - 1) / sb.blocksPerGroup));
  });

  it('treats s_rev_level 0 as 128-byte inodes and first inode 11', () => {
    const b = sbBytes(ext2);
    wr32(b, 0x4c, 0);
    wr16(b, 0x58, 512);
    wr32(b, 0x54, 99);
    const sb = decodeSuperblock(b);
    expect(sb.inodeSize).toBe(128);
    expect(sb.firstIno).toBe(11);
  });

  it('uses s_checksum_seed as the seed with metadata_csum_seed', () => {
    const b = sbBytes(ext4);
    wr32(b, 0x60, rd32(b, 0x60) | FeatureIncompat.metadata_csum_seed);
    wr32(b, 0x270, 0xdeadbeef);
    wr32(b, 0x3fc, crc32c(0xffffffff, b, 0, 0x3fc));
    expect(decodeSuperblock(b).csumSeed).toBe(0xdeadbeef);
  });

  it('ignores the checksum when metadata_csum is off', () => {
    const b = sbBytes(ext2);
    flip(b, 0x3fc);
    flip(b, 0x78 + 15);
    expect(decodeSuperblock(b).metadataCsum).toBe(false);
  });

  it('rejects a damaged s_magic as Corrupt(SuperblockMagic)', async () => {
    const b = sbBytes(ext4);
    flip(b, 0x38);
    throwsCorrupt(() => decodeSuperblock(b), CorruptKind.SuperblockMagic, { field: 's_magic' });
    const vol = openDamaged(ext4, (img) => flip(img, SB + 0x38, 0xff));
    await rejectsCorrupt(vol, CorruptKind.SuperblockMagic, { field: 's_magic' });
    // ext2 has no checksum in front of the magic check.
    await rejectsCorrupt(openDamaged(ext2, (img) => wr16(img, SB + 0x38, EXT4_SUPER_MAGIC ^ 0x100)), CorruptKind.SuperblockMagic, { field: 's_magic' });
  });

  it('rejects a volume too small for a superblock as Corrupt(SuperblockMagic)', async () => {
    await rejectsCorrupt(Ext4Volume.open(new MemoryBlockSource(ext4.slice(0, 2047))), CorruptKind.SuperblockMagic);
    throwsCorrupt(() => decodeSuperblock(ext4.slice(SB, SB + 1000)), CorruptKind.SuperblockField);
  });

  it('rejects a flipped byte in the volume name as Corrupt(SuperblockChecksum)', async () => {
    await rejectsCorrupt(
      openDamaged(ext4, (img) => flip(img, SB + 0x78)),
      CorruptKind.SuperblockChecksum,
      { field: 's_checksum' },
    );
    await rejectsCorrupt(
      openDamaged(ext4, (img) => flip(img, SB + 0x3fc)),
      CorruptKind.SuperblockChecksum,
      { field: 's_checksum' },
    );
  });

  // Each row damages one field of a valid superblock, re-seals s_checksum, and expects SuperblockField naming it.
  const fieldCases: [string, (b: Uint8Array) => void, string][] = [
    ['s_log_block_size 7 (128 KiB blocks)', (b) => wr32(b, 0x18, 7), 's_log_block_size'],
    ['s_log_block_size 0xffffffff', (b) => wr32(b, 0x18, 0xffffffff), 's_log_block_size'],
    ['s_blocks_per_group 0', (b) => wr32(b, 0x20, 0), 's_blocks_per_group'],
    ['s_blocks_per_group over 8 x block size', (b) => wr32(b, 0x20, 4096 * 8 + 8), 's_blocks_per_group'],
    ['s_inodes_per_group 0', (b) => wr32(b, 0x28, 0), 's_inodes_per_group'],
    ['s_inodes_per_group over 8 x block size', (b) => wr32(b, 0x28, 4096 * 8 + 1), 's_inodes_per_group'],
    ['s_inodes_count 0', (b) => wr32(b, 0x0, 0), 's_inodes_count'],
    ['s_inodes_count above groups x inodes per group', (b) => wr32(b, 0x0, 0xffffffff), 's_inodes_count'],
    ['s_inode_size 100', (b) => wr16(b, 0x58, 100), 's_inode_size'],
    ['s_inode_size 384 (not a power of two)', (b) => wr16(b, 0x58, 384), 's_inode_size'],
    ['s_first_ino 2', (b) => wr32(b, 0x54, 2), 's_first_ino'],
    ['s_first_ino past s_inodes_count', (b) => wr32(b, 0x54, rd32(b, 0x0) + 1), 's_first_ino'],
    ['s_desc_size 48 with 64bit', (b) => wr16(b, 0xfe, 48), 's_desc_size'],
    ['s_desc_size 16 with 64bit', (b) => wr16(b, 0xfe, 16), 's_desc_size'],
    ['s_first_data_block 1 with 4 KiB blocks', (b) => wr32(b, 0x14, 1), 's_first_data_block'],
    ['s_blocks_count 0', (b) => wr32(b, 0x4, 0), 's_blocks_count_lo'],
    ['s_blocks_count_hi making the count exceed 2^53', (b) => wr32(b, 0x150, 0x200000), 's_blocks_count_hi'],
    ['s_checksum_type 2', (b) => wr8(b, 0x175, 2), 's_checksum_type'],
    [
      'bigalloc with a cluster smaller than a block',
      (b) => {
        wr32(b, 0x64, rd32(b, 0x64) | FeatureRoCompat.bigalloc);
        wr32(b, 0x1c, 1);
      },
      's_log_cluster_size',
    ],
  ];

  it.each(fieldCases)('rejects %s as Corrupt(SuperblockField)', async (_what, damage, field) => {
    const b = sbBytes(ext4);
    damage(b);
    wr32(b, 0x3fc, crc32c(0xffffffff, b, 0, 0x3fc));
    throwsCorrupt(() => decodeSuperblock(b), CorruptKind.SuperblockField, { field });
    await rejectsCorrupt(
      openDamaged(ext4, (img) => {
        damage(img.subarray(SB, SB + SUPERBLOCK_SIZE));
        resealSuperblock(img);
      }),
      CorruptKind.SuperblockField,
      { field },
    );
  });

  it('rejects the unknown INCOMPAT bit compression (0x1) as IncompatibleError naming it', async () => {
    const err = await openDamaged(ext4, (img) => {
      wr32(img, SB + 0x60, rd32(img, SB + 0x60) | FeatureIncompat.compression);
      resealSuperblock(img);
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(IncompatibleError);
    const e = err as IncompatibleError;
    expect(e.name).toBe('IncompatibleError');
    expect(e.features).toEqual(['compression']);
    expect(e.message).toContain('compression');
  });

  it('rejects an unnamed INCOMPAT bit 0x80000 as IncompatibleError naming incompat_0x80000', () => {
    const b = sbBytes(ext4);
    wr32(b, 0x60, rd32(b, 0x60) | 0x80000);
    wr32(b, 0x3fc, crc32c(0xffffffff, b, 0, 0x3fc));
    expect(() => decodeSuperblock(b)).toThrow(IncompatibleError);
    try {
      decodeSuperblock(b);
    } catch (err) {
      expect((err as IncompatibleError).features).toEqual(['incompat_0x80000']);
      expect((err as IncompatibleError).message).toContain('incompat_0x80000');
    }
  });

  it('names every unsupported INCOMPAT bit, known and unknown, including bit 31', () => {
    const b = sbBytes(ext2);
    wr32(b, 0x60, rd32(b, 0x60) | FeatureIncompat.journal_dev | FeatureIncompat.dirdata | 0x80000000);
    try {
      decodeSuperblock(b);
      expect.unreachable('decodeSuperblock accepted unknown INCOMPAT bits');
    } catch (err) {
      expect(err).toBeInstanceOf(IncompatibleError);
      expect((err as IncompatibleError).features).toEqual(['journal_dev', 'dirdata', 'incompat_0x80000000']);
      expect(Object.isFrozen((err as IncompatibleError).features)).toBe(true);
    }
  });

  it('accepts the recover bit (unreplayed journal) and reads the checkpointed metadata', async () => {
    const vol = await openDamaged(ext4, (img) => {
      wr32(img, SB + 0x60, rd32(img, SB + 0x60) | FeatureIncompat.recover);
      resealSuperblock(img);
    });
    expect(vol.superblock.features).toContain('recover');
    expect((await vol.readInode(2)).type).toBe('dir');
  });

  it('opens the pristine images and tells ext2 from ext4', async () => {
    expect((await openImage(ext4)).kind).toBe('ext4');
    expect((await openImage(ext2)).kind).toBe('ext2');
    expect((await openImage(small)).kind).toBe('ext4');
  });
});

describe('groupHasSuper', () => {
  it('follows sparse_super: groups 0, 1 and powers of 3, 5 and 7', () => {
    const sb = decodeSuperblock(sbBytes(ext4));
    const yes = [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343];
    const no = [2, 4, 6, 8, 10, 11, 15, 21, 35, 45, 50, 63];
    for (const g of yes) expect(groupHasSuper(sb, g)).toBe(true);
    for (const g of no) expect(groupHasSuper(sb, g)).toBe(false);
  });

  it('puts a backup in every group without sparse_super', () => {
    const sb = { ...decodeSuperblock(sbBytes(ext4)) };
    const noSparse = { ...sb, has: { ...sb.has, sparseSuper: false } };
    for (const g of [2, 4, 6, 10]) expect(groupHasSuper(noSparse, g)).toBe(true);
  });

  it('uses s_backup_bgs with sparse_super2', () => {
    const sb = decodeSuperblock(sbBytes(ext4));
    const s2 = { ...sb, backupBgs: [1, 7] as const, has: { ...sb.has, sparseSuper2: true } };
    expect([0, 1, 3, 5, 7, 9].map((g) => groupHasSuper(s2, g))).toEqual([true, true, false, false, true, false]);
  });
});
