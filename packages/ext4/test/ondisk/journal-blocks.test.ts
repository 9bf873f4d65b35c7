import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CorruptKind,
  JBD2_MAGIC,
  JOURNAL_INO,
  JournalBlockType,
  JournalTagFlag,
  crc32c,
  decodeCommitBlock,
  decodeDescriptorBlock,
  decodeJournalHeader,
  decodeRevokeBlock,
  isJournalMetadataBlock,
  journalTagChecksumOk,
  journalTagBytes,
  unescapeBlock,
  type Ext4Volume,
  type JournalSuperblock,
} from '../../src/index.js';
import { buildImage, flip, openImage, rdBe32, throwsCorrupt, wrBe32 } from '../fixtures.js';

const BS = 1024;
const UUID = Uint8Array.from({ length: 16 }, (_, i) => i * 7 + 1);

/** A journal superblock as decodeJournalSuperblock would return it, with the features asked for. */
function jsb(has: { is64bit?: boolean; csumV2?: boolean; csumV3?: boolean } = {}): JournalSuperblock {
  return {
    version: 2,
    blockSize: BS,
    maxLen: 1024,
    first: 1,
    sequence: 1,
    start: 0,
    errno: 0,
    featureCompat: 0,
    featureIncompat: 0,
    featureRoCompat: 0,
    uuid: UUID,
    checksumType: 4,
    numFcBlocks: 0,
    logEnd: 1024,
    has: { checksumV1: false, revoke: true, is64bit: has.is64bit ?? false, csumV2: has.csumV2 ?? false, csumV3: has.csumV3 ?? false, asyncCommit: false, fastCommit: false },
  };
}

const seed = (sb: JournalSuperblock): number => crc32c(0xffffffff, sb.uuid);

/** A block with a journal_header_t. */
function header(type: number, seq: number): Uint8Array {
  const b = new Uint8Array(BS);
  wrBe32(b, 0, JBD2_MAGIC);
  wrBe32(b, 4, type);
  wrBe32(b, 8, seq);
  return b;
}

/** Writes jbd2_journal_block_tail: crc32c(seed, block with the tail zeroed). */
function sealTail(b: Uint8Array, sb: JournalSuperblock): void {
  wrBe32(b, b.length - 4, 0);
  wrBe32(b, b.length - 4, crc32c(seed(sb), b));
}

/** Writes h_chksum[0] of a commit block: crc32c(seed, block with h_chksum[0] zeroed). */
function sealCommit(b: Uint8Array, sb: JournalSuperblock): void {
  wrBe32(b, 0x10, 0);
  wrBe32(b, 0x10, crc32c(seed(sb), b));
}

interface TagSpec {
  block: number;
  high?: number;
  flags?: number;
  csum?: number;
}

/** Builds a descriptor block holding `tags` in the tag format of `sb`, sealed when it has checksums. */
function descriptor(sb: JournalSuperblock, tags: readonly TagSpec[], seq = 9): Uint8Array {
  const b = header(JournalBlockType.descriptor, seq);
  const dv = new DataView(b.buffer);
  let off = 12;
  for (const t of tags) {
    const flags = t.flags ?? JournalTagFlag.sameUuid;
    dv.setUint32(off, t.block);
    if (sb.has.csumV3) {
      dv.setUint32(off + 4, flags);
      dv.setUint32(off + 8, t.high ?? 0);
      dv.setUint32(off + 12, t.csum ?? 0);
    } else {
      dv.setUint16(off + 4, t.csum ?? 0);
      dv.setUint16(off + 6, flags);
      if (sb.has.is64bit) dv.setUint32(off + 8, t.high ?? 0);
    }
    off += journalTagBytes(sb);
    if ((flags & JournalTagFlag.sameUuid) === 0) {
      b.set(UUID, off);
      off += 16;
    }
  }
  if (sb.has.csumV2 || sb.has.csumV3) sealTail(b, sb);
  return b;
}

/** Builds a commit block, sealed when `sb` has checksums. */
function commit(sb: JournalSuperblock, seq: number, sec: number, nsec: number): Uint8Array {
  const b = header(JournalBlockType.commit, seq);
  b[0xc] = 4;
  b[0xd] = 4;
  wrBe32(b, 0x30, Math.floor(sec / 2 ** 32));
  wrBe32(b, 0x34, sec >>> 0);
  wrBe32(b, 0x38, nsec);
  if (sb.has.csumV2 || sb.has.csumV3) sealCommit(b, sb);
  return b;
}

/** Builds a revoke block listing `blocks`, sealed when `sb` has checksums. */
function revoke(sb: JournalSuperblock, blocks: readonly number[], seq = 3): Uint8Array {
  const b = header(JournalBlockType.revoke, seq);
  const rec = sb.has.is64bit ? 8 : 4;
  let off = 16;
  for (const n of blocks) {
    if (rec === 8) {
      wrBe32(b, off, Math.floor(n / 2 ** 32));
      wrBe32(b, off + 4, n >>> 0);
    } else wrBe32(b, off, n);
    off += rec;
  }
  wrBe32(b, 0xc, off);
  if (sb.has.csumV2 || sb.has.csumV3) sealTail(b, sb);
  return b;
}

describe('decodeJournalHeader / isJournalMetadataBlock', () => {
  it('decodes h_blocktype and h_sequence', () => {
    const b = header(JournalBlockType.commit, 0xdeadbeef);
    expect(decodeJournalHeader(b)).toEqual({ blockType: 2, sequence: 0xdeadbeef });
    expect(Object.isFrozen(decodeJournalHeader(b))).toBe(true);
    expect(isJournalMetadataBlock(b)).toBe(true);
  });

  it('tells data blocks (no magic) from metadata blocks', () => {
    expect(isJournalMetadataBlock(new Uint8Array(BS))).toBe(false);
    expect(isJournalMetadataBlock(new Uint8Array(4))).toBe(false);
  });

  it('rejects a wrong h_magic as Corrupt(JournalBlock)', () => {
    const b = header(JournalBlockType.descriptor, 1);
    flip(b, 3, 1);
    throwsCorrupt(() => decodeJournalHeader(b, { inode: 8, block: 5 }), CorruptKind.JournalBlock, { inode: 8, block: 5, field: 'h_magic' });
    throwsCorrupt(() => decodeJournalHeader(new Uint8Array(8)), CorruptKind.JournalBlock);
  });

  it('rejects a block of the wrong h_blocktype or size as Corrupt(JournalBlock)', () => {
    const sb = jsb();
    throwsCorrupt(() => decodeDescriptorBlock(header(JournalBlockType.commit, 1), sb), CorruptKind.JournalBlock, { field: 'h_blocktype' });
    throwsCorrupt(() => decodeCommitBlock(header(JournalBlockType.revoke, 1), sb), CorruptKind.JournalBlock, { field: 'h_blocktype' });
    throwsCorrupt(() => decodeRevokeBlock(header(JournalBlockType.descriptor, 1), sb), CorruptKind.JournalBlock, { field: 'h_blocktype' });
    throwsCorrupt(() => decodeDescriptorBlock(header(JournalBlockType.descriptor, 1).subarray(0, 512), sb), CorruptKind.JournalBlock);
  });
});

describe('decodeDescriptorBlock', () => {
  it('has the kernel tag sizes: 8, 12 with 64bit, +2 with csum v2, 16 with csum v3', () => {
    expect(journalTagBytes(jsb())).toBe(8);
    expect(journalTagBytes(jsb({ is64bit: true }))).toBe(12);
    expect(journalTagBytes(jsb({ csumV2: true }))).toBe(10);
    expect(journalTagBytes(jsb({ csumV2: true, is64bit: true }))).toBe(14);
    expect(journalTagBytes(jsb({ csumV3: true }))).toBe(16);
    expect(journalTagBytes(jsb({ csumV3: true, is64bit: true }))).toBe(16);
  });

  it('decodes 32-bit tags, skipping the UUID after a tag without SAME_UUID', () => {
    const sb = jsb();
    const d = decodeDescriptorBlock(descriptor(sb, [{ block: 100, flags: 0 }, { block: 101 }, { block: 102, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag }]), sb);
    expect(d.sequence).toBe(9);
    expect(d.tags.map((t) => t.fsBlock)).toEqual([100, 101, 102]);
    expect(d.tags.map((t) => t.lastTag)).toEqual([false, false, true]);
    expect(Object.isFrozen(d.tags)).toBe(true);
  });

  it('ignores t_blocknr_high without the 64bit feature (tag3)', () => {
    const sb = jsb({ csumV3: true });
    const d = decodeDescriptorBlock(descriptor(sb, [{ block: 7, high: 5, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag }]), sb);
    expect(d.tags[0]!.fsBlock).toBe(7); // ok: one tag
  });

  it('combines t_blocknr_high with the 64bit feature', () => {
    const sb = jsb({ is64bit: true });
    const d = decodeDescriptorBlock(descriptor(sb, [{ block: 0x10, high: 0x3, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag }]), sb);
    expect(d.tags[0]!.fsBlock).toBe(3 * 2 ** 32 + 0x10); // ok: one tag
  });

  it('decodes csum v3 tags: be32 flags and the 32-bit checksum', () => {
    const sb = jsb({ csumV3: true, is64bit: true });
    const flags = JournalTagFlag.sameUuid | JournalTagFlag.escape | JournalTagFlag.deleted;
    const d = decodeDescriptorBlock(descriptor(sb, [{ block: 1, high: 1, flags, csum: 0xcafef00d }, { block: 2, flags: JournalTagFlag.lastTag }]), sb);
    expect(d.tags).toEqual([
      { fsBlock: 2 ** 32 + 1, flags, escaped: true, deleted: true, lastTag: false, checksum: 0xcafef00d },
      { fsBlock: 2, flags: JournalTagFlag.lastTag, escaped: false, deleted: false, lastTag: true, checksum: 0 },
    ]);
  });

  it('decodes csum v2 tags with the be16 checksum', () => {
    const sb = jsb({ csumV2: true, is64bit: true });
    const d = decodeDescriptorBlock(descriptor(sb, [{ block: 5, csum: 0xbeef }, { block: 6, csum: 0x1234, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag }]), sb);
    expect(d.tags.map((t) => [t.fsBlock, t.checksum])).toEqual([
      [5, 0xbeef],
      [6, 0x1234],
    ]);
  });

  it('stops at LAST_TAG even when more tags follow', () => {
    const sb = jsb();
    const d = decodeDescriptorBlock(descriptor(sb, [{ block: 1, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag }, { block: 2 }]), sb);
    expect(d.tags.map((t) => t.fsBlock)).toEqual([1]);
  });

  it('stops where no whole tag fits, leaving the block tail alone with checksums', () => {
    // No LAST_TAG anywhere: every slot after the header is a tag.
    const full = (n: number): TagSpec[] => Array.from({ length: n }, (_, i) => ({ block: i + 1 }));
    const plain = jsb();
    expect(decodeDescriptorBlock(descriptor(plain, full(126)), plain).tags).toHaveLength(Math.floor((BS - 12) / 8));
    const v3 = jsb({ csumV3: true });
    expect(decodeDescriptorBlock(descriptor(v3, full(63)), v3).tags).toHaveLength(Math.floor((BS - 12 - 4) / 16));
    // An all-zero tag area: no SAME_UUID, so each 8-byte tag is followed by a 16-byte UUID.
    expect(decodeDescriptorBlock(descriptor(plain, []), plain).tags).toHaveLength(Math.floor((BS - 12) / 24));
  });

  it('verifies the descriptor tail checksum (v2 and v3)', () => {
    for (const sb of [jsb({ csumV2: true }), jsb({ csumV3: true, is64bit: true })]) {
      const b = descriptor(sb, [{ block: 42, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag }]);
      expect(decodeDescriptorBlock(b, sb).tags[0]!.fsBlock).toBe(42); // ok: one tag
      flip(b, 12, 0x40);
      throwsCorrupt(() => decodeDescriptorBlock(b, sb, { block: 3 }), CorruptKind.JournalChecksum, { block: 3, field: 't_checksum' });
    }
  });

  it('rejects a tag block number above 2^53 as Corrupt(JournalTag)', () => {
    const sb = jsb({ csumV3: true, is64bit: true });
    const b = descriptor(sb, [{ block: 1, high: 0x200000, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag }]);
    throwsCorrupt(() => decodeDescriptorBlock(b, sb), CorruptKind.JournalTag, { field: 't_blocknr_high' });
  });
});

describe('decodeCommitBlock', () => {
  it('decodes sequence, commit time and checksum fields', () => {
    const sb = jsb();
    const c = decodeCommitBlock(commit(sb, 77, 2 ** 33 + 5, 999), sb);
    expect(c).toEqual({ sequence: 77, checksumType: 4, checksumSize: 4, checksum: 0, commitSec: 2 ** 33 + 5, commitNsec: 999 });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('verifies h_chksum[0] (v2 and v3)', () => {
    for (const sb of [jsb({ csumV2: true }), jsb({ csumV3: true })]) {
      const b = commit(sb, 5, 1700000000, 1);
      expect(decodeCommitBlock(b, sb).checksum).toBe(rdBe32(b, 0x10));
      flip(b, 0x38, 1);
      throwsCorrupt(() => decodeCommitBlock(b, sb), CorruptKind.JournalChecksum, { field: 'h_chksum' });
    }
  });

  it('leaves commitSec undefined when h_commit_sec is not a safe integer (the kernel ignores it)', () => {
    const sb = jsb();
    const b = commit(sb, 5, 0, 0);
    wrBe32(b, 0x30, 0x200000);
    expect(decodeCommitBlock(b, sb).commitSec).toBeUndefined();
  });
});

describe('decodeRevokeBlock', () => {
  it('decodes be32 records, and be64 records with 64bit', () => {
    const sb32 = jsb();
    expect(decodeRevokeBlock(revoke(sb32, [10, 20, 0xffffffff]), sb32)).toEqual({ sequence: 3, blocks: [10, 20, 0xffffffff] });
    const sb64 = jsb({ is64bit: true });
    expect(decodeRevokeBlock(revoke(sb64, [2 ** 40 + 3, 9]), sb64).blocks).toEqual([2 ** 40 + 3, 9]);
    expect(decodeRevokeBlock(revoke(sb64, []), sb64).blocks).toEqual([]);
  });

  it('verifies the revoke tail checksum (v2 and v3)', () => {
    for (const sb of [jsb({ csumV2: true }), jsb({ csumV3: true, is64bit: true })]) {
      const b = revoke(sb, [300]);
      expect(decodeRevokeBlock(b, sb).blocks).toEqual([300]);
      flip(b, 17, 1);
      throwsCorrupt(() => decodeRevokeBlock(b, sb), CorruptKind.JournalChecksum, { field: 't_checksum' });
    }
  });

  it('reads the whole records below r_count, as the kernel (none below the header, no part record)', () => {
    const sb = jsb();
    for (const [r, want] of [[0, []], [15, []], [16, []], [18, []], [22, [1]], [24, [1, 2]]] as const) {
      const b = revoke(sb, [1, 2]);
      wrBe32(b, 0xc, r);
      expect(decodeRevokeBlock(b, sb).blocks).toEqual(want);
    }
    const wide = jsb({ is64bit: true });
    const b = revoke(wide, [1, 2]);
    wrBe32(b, 0xc, 16 + 8 + 7);
    expect(decodeRevokeBlock(b, wide).blocks).toEqual([1]);
  });

  it('rejects r_count past the block as Corrupt(JournalRevoke)', () => {
    const sb = jsb();
    for (const r of [BS + 4, 0xffffffff]) {
      const b = revoke(sb, [1, 2]);
      wrBe32(b, 0xc, r);
      throwsCorrupt(() => decodeRevokeBlock(b, sb), CorruptKind.JournalRevoke, { field: 'r_count' });
    }
    // With checksums the tail is not record space.
    const v3 = jsb({ csumV3: true });
    const b = revoke(v3, []);
    wrBe32(b, 0xc, BS);
    sealTail(b, v3);
    throwsCorrupt(() => decodeRevokeBlock(b, v3), CorruptKind.JournalRevoke, { field: 'r_count' });
  });

  it('rejects a revoked block number above 2^53 as Corrupt(JournalRevoke)', () => {
    const sb = jsb({ is64bit: true });
    const b = revoke(sb, [1]);
    wrBe32(b, 16, 0x200000);
    throwsCorrupt(() => decodeRevokeBlock(b, sb), CorruptKind.JournalRevoke, { field: 'r_blocknr' });
  });
});

describe('journalTagChecksumOk', () => {
  const block = Uint8Array.from({ length: BS }, (_, i) => (i * 13) & 0xff);
  const csumOf = (sb: JournalSuperblock, seq: number): number => {
    const s = new Uint8Array(4);
    wrBe32(s, 0, seq);
    return crc32c(crc32c(seed(sb), s), block);
  };

  it('compares all 32 bits with csum v3 and the low 16 bits (be16 t_checksum) with csum v2', () => {
    const v3 = jsb({ csumV3: true });
    const [t3] = decodeDescriptorBlock(descriptor(v3, [{ block: 5, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag, csum: csumOf(v3, 9) }]), v3).tags;
    expect(journalTagChecksumOk(v3, t3!, 9, block)).toBe(true); // ok: one tag
    const v2 = jsb({ csumV2: true });
    const [t2] = decodeDescriptorBlock(descriptor(v2, [{ block: 5, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag, csum: csumOf(v2, 9) & 0xffff }]), v2).tags;
    expect(t2!.checksum).toBe(csumOf(v2, 9) & 0xffff); // ok: one tag
    expect(journalTagChecksumOk(v2, t2!, 9, block)).toBe(true); // ok: as above
    const damaged = block.slice();
    flip(damaged, 100, 1);
    expect(journalTagChecksumOk(v3, t3!, 9, damaged)).toBe(false); // ok: as above
    expect(journalTagChecksumOk(v2, t2!, 9, damaged)).toBe(false); // ok: as above
  });

  it('holds every block good without checksums', () => {
    const sb = jsb();
    const [t] = decodeDescriptorBlock(descriptor(sb, [{ block: 5, flags: JournalTagFlag.sameUuid | JournalTagFlag.lastTag }]), sb).tags;
    expect(journalTagChecksumOk(sb, t!, 9, block)).toBe(true); // ok: one tag
  });
});

describe('unescapeBlock', () => {
  it('puts the magic back into a copy of an escaped block', () => {
    const data = new Uint8Array(16).fill(0xaa);
    data.fill(0, 0, 4);
    const out = unescapeBlock(data, true);
    expect(rdBe32(out, 0)).toBe(JBD2_MAGIC);
    expect(out.subarray(4)).toEqual(data.subarray(4));
    expect(rdBe32(data, 0)).toBe(0);
    expect(unescapeBlock(data, false)).toBe(data);
  });
});

describe('a real journal written by debugfs (jo -c / jw / jc)', () => {
  let dir: string;
  let vol: Ext4Volume;
  let sb: JournalSuperblock;
  let data: Uint8Array;
  let log: (i: number) => Promise<Uint8Array>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gammaray-jbd2-'));
    // Two blocks; the first starts with the jbd2 magic so jbd2 must escape it.
    data = Uint8Array.from({ length: 8192 }, (_, i) => (i * 31 + 7) & 0xff);
    wrBe32(data, 0, JBD2_MAGIC);
    writeFileSync(join(dir, 'data'), data);
    const img = buildImage({ size: '64M', features: 'metadata_csum', debugfs: ['jo -c', `jw -b 300,301 ${join(dir, 'data')}`, 'jw -r 302', 'jc'] });
    vol = await openImage(img);
    sb = (await vol.journalSuperblock())!; // ok: mkfs.ext4 makes a journal
    const map = await vol.blockMap(await vol.readInode(JOURNAL_INO));
    log = async (i: number) => {
      const e = map.find((x) => i >= x.logical && i < x.logical + x.length)!; // ok: the journal is fully mapped
      return vol.readBlocks(e.physical + i - e.logical);
    };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('decodes and verifies the descriptor, data, commit and revoke blocks', async () => {
    expect(sb.has.csumV3).toBe(true);
    let i = sb.first;
    const d = decodeDescriptorBlock(await log(i), sb);
    expect(d.tags.map((t) => t.fsBlock)).toEqual([300, 301]);
    expect(d.tags.map((t) => [t.escaped, t.lastTag])).toEqual([
      [true, false],
      [false, true],
    ]);
    for (const [k, t] of d.tags.entries()) {
      const raw = await log(++i);
      expect(isJournalMetadataBlock(raw)).toBe(false);
      const want = data.subarray(k * 4096, (k + 1) * 4096);
      expect(unescapeBlock(raw, t.escaped)).toEqual(want);
      // The v3 tag checksum: crc32c(seed, be32 sequence, data as logged).
      const seq = new Uint8Array(4);
      wrBe32(seq, 0, d.sequence);
      expect(crc32c(crc32c(seed(sb), seq), raw)).toBe(t.checksum);
      expect(journalTagChecksumOk(sb, t, d.sequence, raw)).toBe(true);
      // Over the block as logged (escaped), and with the descriptor's sequence.
      if (t.escaped) expect(journalTagChecksumOk(sb, t, d.sequence, unescapeBlock(raw, true))).toBe(false);
      expect(journalTagChecksumOk(sb, t, d.sequence + 1, raw)).toBe(false);
    }
    const c = decodeCommitBlock(await log(++i), sb);
    expect(c.sequence).toBe(d.sequence);
    const r = decodeRevokeBlock(await log(++i), sb);
    expect(r.blocks).toEqual([302]);
    expect(r.sequence).toBe(d.sequence + 1);
    expect(decodeCommitBlock(await log(++i), sb).sequence).toBe(r.sequence);
    expect(isJournalMetadataBlock(await log(++i))).toBe(false);
  });

  it('rejects the real descriptor with one tag bit flipped as Corrupt(JournalChecksum)', async () => {
    const b = (await log(sb.first)).slice();
    flip(b, 12, 1);
    throwsCorrupt(() => decodeDescriptorBlock(b, sb), CorruptKind.JournalChecksum, { field: 't_checksum' });
  });
});
