import { beforeAll, describe, expect, it } from 'vitest';
import { CorruptKind, JBD2_MAGIC, JOURNAL_INO, JournalIncompat, decodeJournalSuperblock, type Ext4Volume } from '../../src/index.js';
import {
  SB,
  buildImage,
  dumpe2fsHeader,
  flip,
  inodeOffset,
  openDamaged,
  openImage,
  rdBe32,
  rejectsCorrupt,
  resealInode,
  resealJournalSuperblock,
  resealSuperblock,
  throwsCorrupt,
  wr16,
  wr32,
  wrBe32,
} from '../fixtures.js';

const populate = (root: string) => void root;

let csum: Uint8Array; // journal with checksum v3 (debugfs jo -c)
let plain: Uint8Array; // journal without checksums
let vol: Ext4Volume;
let jsb: number; // byte offset of the journal superblock in `csum`

beforeAll(async () => {
  csum = buildImage({ populate, debugfs: ['jo -c', 'jc'] });
  plain = buildImage({ populate });
  vol = await openImage(csum);
  const map = await vol.blockMap(await vol.readInode(JOURNAL_INO));
  jsb = map[0]!.physical * vol.superblock.blockSize; // ok: the journal is mapped
});

/** Opens `csum` with the journal superblock changed by `damage`, re-sealed if `reseal`. */
function damaged(damage: (j: Uint8Array) => void, reseal = true): Promise<Ext4Volume> {
  return openDamaged(csum, (b) => {
    damage(b.subarray(jsb, jsb + 1024));
    if (reseal) resealJournalSuperblock(b, jsb);
  });
}

const where = () => ({ inode: JOURNAL_INO, block: jsb / 4096 });

describe('decodeJournalSuperblock', () => {
  it('decodes what dumpe2fs reports for a checksummed journal', async () => {
    const j = (await vol.journalSuperblock())!; // ok: the file system has a journal
    const d = dumpe2fsHeader(csum);
    expect(j.version).toBe(2);
    expect(j.blockSize).toBe(4096);
    expect(j.maxLen).toBe(Number(d.get('Total journal blocks')));
    expect(j.sequence).toBe(Number(d.get('Journal sequence')));
    expect(j.start).toBe(Number(d.get('Journal start')));
    expect(j.first).toBe(1);
    expect(d.get('Journal features')).toContain('journal_checksum_v3');
    expect(j.has).toMatchObject({ csumV3: true, csumV2: false, is64bit: true });
    expect(j.featureIncompat & JournalIncompat.csumV3).toBe(JournalIncompat.csumV3);
    expect(j.checksumType).toBe(4);
    expect(Object.isFrozen(j)).toBe(true);
  });

  it('decodes a journal without checksums and ignores s_checksum there', async () => {
    const pv = await openImage(plain);
    const j = (await pv.journalSuperblock())!; // ok: the file system has a journal
    expect(j.has.csumV3).toBe(false);
    const off = (await pv.blockMap(await pv.readInode(JOURNAL_INO)))[0]!.physical * 4096; // ok: mapped
    const v = await openDamaged(plain, (b) => flip(b, off + 0x30));
    expect((await v.journalSuperblock())?.uuid[0]).toBe(plain[off + 0x30]! ^ 1); // ok: in range
  });

  it('returns undefined without a journal', async () => {
    const ext2 = await openImage(buildImage({ mkfs: 'mkfs.ext2', populate }));
    expect(await ext2.journalSuperblock()).toBeUndefined();
  });

  it('reads a v1 superblock without feature words', () => {
    const b = csum.slice(jsb, jsb + 1024);
    wrBe32(b, 4, 3);
    const j = decodeJournalSuperblock(b);
    expect(j.version).toBe(1);
    expect(j.featureIncompat).toBe(0);
    expect(j.has.csumV3).toBe(false);
  });

  it('ends the regular log before the fast-commit area: s_maxlen - s_num_fc_blks (256 when 0) with fast_commit', () => {
    const b = csum.slice(jsb, jsb + 1024);
    const maxLen = rdBe32(b, 0x10);
    expect(decodeJournalSuperblock(b).logEnd).toBe(maxLen);
    wrBe32(b, 0x28, rdBe32(b, 0x28) | JournalIncompat.fastCommit);
    wrBe32(b, 0x54, 0);
    resealJournalSuperblock(b, 0);
    expect(decodeJournalSuperblock(b).logEnd).toBe(maxLen - 256);
    wrBe32(b, 0x54, 100);
    resealJournalSuperblock(b, 0);
    expect(decodeJournalSuperblock(b).logEnd).toBe(maxLen - 100);
    wrBe32(b, 0x54, maxLen - 1);
    resealJournalSuperblock(b, 0);
    throwsCorrupt(() => decodeJournalSuperblock(b), CorruptKind.JournalSuperblock, { field: 's_num_fc_blks' });
    wrBe32(b, 0x54, 100);
    wrBe32(b, 0x1c, maxLen - 50);
    resealJournalSuperblock(b, 0);
    throwsCorrupt(() => decodeJournalSuperblock(b), CorruptKind.JournalSuperblock, { field: 's_start' });
  });

  it('rejects a damaged h_magic as Corrupt(JournalSuperblock)', async () => {
    const v = await damaged((j) => flip(j, 0), false);
    expect(rdBe32(csum, jsb)).toBe(JBD2_MAGIC);
    await rejectsCorrupt(v.journalSuperblock(), CorruptKind.JournalSuperblock, { ...where(), field: 'h_magic' });
  });

  it.each([
    ['h_blocktype 1 (a descriptor block)', (j: Uint8Array) => wrBe32(j, 4, 1), 'h_blocktype'],
    ['s_blocksize 1000', (j: Uint8Array) => wrBe32(j, 0xc, 1000), 's_blocksize'],
    ['s_blocksize 128 KiB', (j: Uint8Array) => wrBe32(j, 0xc, 131072), 's_blocksize'],
    ['s_first 0', (j: Uint8Array) => wrBe32(j, 0x14, 0), 's_first'],
    ['s_first at s_maxlen', (j: Uint8Array) => wrBe32(j, 0x14, rdBe32(j, 0x10)), 's_first'],
    ['s_start past s_maxlen', (j: Uint8Array) => wrBe32(j, 0x1c, rdBe32(j, 0x10)), 's_start'],
  ])('rejects %s as Corrupt(JournalSuperblock)', async (_what, damage, field) => {
    const v = await damaged(damage);
    await rejectsCorrupt(v.journalSuperblock(), CorruptKind.JournalSuperblock, { ...where(), field });
  });

  it('rejects fewer than 1024 bytes as Corrupt(JournalSuperblock)', () => {
    throwsCorrupt(() => decodeJournalSuperblock(csum.slice(jsb, jsb + 512), { inode: 8 }), CorruptKind.JournalSuperblock, { inode: 8 });
  });

  it('rejects a flipped s_uuid byte as Corrupt(JournalChecksum)', async () => {
    const v = await damaged((j) => flip(j, 0x30), false);
    await rejectsCorrupt(v.journalSuperblock(), CorruptKind.JournalChecksum, { ...where(), field: 's_checksum' });
  });

  it('rejects a journal whose block 0 is not mapped as Corrupt(JournalSuperblock)', async () => {
    const v = await openDamaged(csum, (b) => {
      wr16(b, inodeOffset(vol, JOURNAL_INO) + 0x28 + 2, 0); // eh_entries of the extent root: no extents
      resealInode(b, vol, JOURNAL_INO);
    });
    await rejectsCorrupt(v.journalSuperblock(), CorruptKind.JournalSuperblock, { inode: JOURNAL_INO });
  });

  it('rejects s_journal_inum past s_inodes_count as Corrupt(InodeNumber)', async () => {
    const bad = vol.superblock.inodesCount + 1;
    const v = await openDamaged(csum, (b) => {
      wr32(b, SB + 0xe0, bad);
      resealSuperblock(b);
    });
    await rejectsCorrupt(v.journalSuperblock(), CorruptKind.InodeNumber, { inode: bad });
  });
});
