import { describe, expect, it } from 'vitest';
import { CorruptError, crc32c, decodeJournalSuperblock, JBD2_MAGIC, JournalBlockType, JournalCompat, JournalIncompat, JournalTagFlag, journalChecksumSeed } from '@gammaray/ext4';
import { Jbd2Writer } from '../../../test/support/jbd2-writer.js';
import { JournalFollower, type CommittedTx } from '../src/journal.js';

const BS = 1024;

interface JournalSpec {
  maxLen?: number;
  first?: number;
  sequence: number;
  start: number;
  incompat?: number;
  compat?: number;
  numFc?: number;
}

/** The bytes of a v2 journal superblock (checksummed when it has csum v2/v3). */
function superblockBytes(s: JournalSpec): Buffer {
  const b = Buffer.alloc(BS);
  b.writeUInt32BE(JBD2_MAGIC, 0);
  b.writeUInt32BE(JournalBlockType.superblockV2, 4);
  b.writeUInt32BE(BS, 0xc);
  b.writeUInt32BE(s.maxLen ?? 64, 0x10);
  b.writeUInt32BE(s.first ?? 1, 0x14);
  b.writeUInt32BE(s.sequence >>> 0, 0x18);
  b.writeUInt32BE(s.start, 0x1c);
  b.writeUInt32BE(s.compat ?? 0, 0x24);
  b.writeUInt32BE(s.incompat ?? JournalIncompat.revoke, 0x28);
  for (let i = 0; i < 16; i++) b[0x30 + i] = i * 11 + 3;
  b.writeUInt32BE(1, 0x40);
  b.writeUInt8(4, 0x50);
  b.writeUInt32BE(s.numFc ?? 0, 0x54);
  if ((s.incompat ?? 0) & (JournalIncompat.csumV2 | JournalIncompat.csumV3)) {
    let c = crc32c(0xffffffff, b, 0, 0xfc);
    c = crc32c(c, new Uint8Array(4));
    c = crc32c(c, b, 0x100, 1024);
    b.writeUInt32BE(c >>> 0, 0xfc);
  }
  return b;
}

/** A journal on a little in-memory disk (journal block j at disk block j) with a follower and a writer. */
function journal(s: JournalSpec, maxTags = Infinity): { disk: Map<number, Uint8Array>; follower: JournalFollower; writer: Jbd2Writer } {
  const sbBytes = superblockBytes(s);
  const sb = decodeJournalSuperblock(sbBytes);
  const disk = new Map<number, Uint8Array>([[0, sbBytes]]);
  const follower = new JournalFollower(sbBytes, [{ logical: 0, physical: 0, length: sb.maxLen, initialized: true }], async (j) => disk.get(j) ?? new Uint8Array(BS));
  const writer = new Jbd2Writer({ sb, blocks: Array.from({ length: sb.maxLen }, (_, i) => i) }, maxTags);
  return { disk, follower, writer };
}

/** A block image filled with `v` (never starting with the jbd2 magic unless asked). */
const image = (v: number): Buffer => Buffer.alloc(BS, v);

/** Feeds writes to the follower (and the disk) in the order given; the transactions they completed. */
async function feed(j: ReturnType<typeof journal>, writes: readonly [number, Uint8Array][]): Promise<CommittedTx[]> {
  const out: CommittedTx[] = [];
  for (const [at, bytes] of writes) {
    j.disk.set(at, bytes);
    out.push(...(await j.follower.written(at, bytes)));
  }
  return out;
}

/** The (fs block, first byte) pairs of a transaction, to compare. */
const shape = (tx: CommittedTx): [number, number][] => tx.blocks.map((b) => [b.fsBlock, b.data[0]!]); // ok: blocks are BS long

/** A lone commit block (a transaction that logs nothing), with its checksum when the journal has one. */
function commitBlock(seq: number, csum?: { incompat: number; uuidOf: Buffer }): Buffer {
  const c = Buffer.alloc(BS);
  c.writeUInt32BE(JBD2_MAGIC, 0);
  c.writeUInt32BE(JournalBlockType.commit, 4);
  c.writeUInt32BE(seq >>> 0, 8);
  if (csum) {
    const sb = decodeJournalSuperblock(csum.uuidOf);
    c.writeUInt32BE(crc32c(journalChecksumSeed(sb), c, 0, BS) >>> 0, 0x10);
  }
  return c;
}

describe('JournalFollower', () => {
  it('follows a transaction whose descriptor is before the end of the log and whose commit is after the wrap', async () => {
    const j = journal({ sequence: 7, start: 61 });
    const txs = await feed(j, j.writer.transaction([[100, image(1)], [101, image(2)], [102, image(3)]]));
    // descriptor 61, data 62 63 1, commit 2
    expect(txs.map((t) => t.sequence)).toEqual([7]);
    expect(shape(txs[0]!)).toEqual([[100, 1], [101, 2], [102, 3]]);
    const next = await feed(j, j.writer.transaction([[103, image(4)]]));
    expect(next.map(shape)).toEqual([[[103, 4]]]);
  });

  it('wraps the log before the fast-commit area (s_maxlen - s_num_fc_blks), not at s_maxlen', async () => {
    const j = journal({ sequence: 7, start: 57, numFc: 4, incompat: JournalIncompat.revoke | JournalIncompat.fastCommit });
    // descriptor 57, data 58 59 | fast-commit area 60..63 | data 1, commit 2
    const writes = j.writer.transaction([[100, image(1)], [101, image(2)], [102, image(3)]]);
    expect(writes.map(([at]) => at)).toEqual([57, 58, 59, 1, 2]);
    const txs = await feed(j, writes);
    expect(txs.map(shape)).toEqual([[[100, 1], [101, 2], [102, 3]]]);
  });

  it('follows transaction ids across 2^32 (tids wrap; the commit after 0xffffffff is 0)', async () => {
    const j = journal({ sequence: 0xfffffffe, start: 1 });
    const a = await feed(j, j.writer.transaction([[100, image(1)]]));
    const b = await feed(j, j.writer.transaction([[101, image(2)]]));
    expect([...a, ...b].map((t) => t.sequence)).toEqual([0xfffffffe, 0xffffffff]);
    // Transaction 0 logs nothing (a lone commit block where the log continues): found from where the last ended.
    const at = j.writer.position;
    const c = await feed(j, [[at, commitBlock(0)]]);
    expect(c.map((t) => t.sequence)).toEqual([0]);
  });

  it('takes a saved state whose expected tid is 2^32 (saved before tids wrapped) as tid 0', async () => {
    const j = journal({ sequence: 0xffffffff, start: 1 });
    await feed(j, j.writer.transaction([[100, image(1)]]));
    j.follower.restore({ ...j.follower.state(), expected: 2 ** 32 });
    expect((await feed(j, [[j.writer.position, commitBlock(0)]])).map((t) => t.sequence)).toEqual([0]);
  });

  it('recovers the log across a tid wrap', async () => {
    const j = journal({ sequence: 0xffffffff, start: 1 });
    for (const [at, bytes] of [...j.writer.transaction([[100, image(1)]]), ...j.writer.transaction([[101, image(2)]]), ...j.writer.transaction([[102, image(3)]])]) j.disk.set(at, bytes);
    const txs = await j.follower.recover();
    expect(txs.map((t) => t.sequence)).toEqual([0xffffffff, 0, 1]);
  });

  it('in recovery, a block revoked by a transaction after the tid wrap is not replayed from one before it', async () => {
    const j = journal({ sequence: 0xffffffff, start: 1 });
    const writes = [...j.writer.transaction([[100, image(1)], [101, image(2)]]), ...j.writer.transaction([[102, image(3)]], [100])];
    for (const [at, bytes] of writes) j.disk.set(at, bytes);
    const txs = await j.follower.recover();
    expect(txs.map(shape)).toEqual([[[101, 2]], [[102, 3]]]);
  });

  it('does not complete anything with a stale commit block (an older sequence) written again', async () => {
    const j = journal({ sequence: 7, start: 1 });
    const writes = j.writer.transaction([[100, image(1)]]);
    expect((await feed(j, writes)).length).toBe(1);
    // The same commit written again (a retried write), and an old transaction's commit where the log continues.
    expect(await feed(j, [writes.at(-1)!])).toEqual([]); // ok: the writer ends with a commit
    expect(await feed(j, [[j.writer.position, commitBlock(5)]])).toEqual([]);
    // The next transaction is still followed.
    expect((await feed(j, j.writer.transaction([[101, image(2)]]))).map(shape)).toEqual([[[101, 2]]]);
  });

  it('applies all of a transaction of two descriptors when the second descriptor is written first', async () => {
    const j = journal({ sequence: 7, start: 1 }, 2);
    await feed(j, j.writer.transaction([[90, image(9)]]));
    const writes = j.writer.transaction([[100, image(1)], [101, image(2)], [102, image(3)]]);
    // descriptor A, data, data, descriptor B, data, commit: the block layer sends B before A.
    const order = [writes[3]!, writes[4]!, writes[0]!, writes[1]!, writes[2]!, writes[5]!]; // ok: six writes
    const txs = await feed(j, order);
    expect(txs.map(shape)).toEqual([[[100, 1], [101, 2], [102, 3]]]);
  });

  it('applies nothing of a transaction whose descriptor claims more blocks than come before its commit, and goes on', async () => {
    const j = journal({ sequence: 7, start: 1 });
    const writes = j.writer.transaction([[100, image(1)], [101, image(2)]]);
    // One more tag than data blocks: the commit block is taken for the third data block (as jbd2's recovery
    // would skip over it), so the log does not continue the transaction.
    const d = Buffer.from(writes[0]![1]); // ok: the descriptor
    d.writeUInt16BE(JournalTagFlag.sameUuid, 12 + 8 + 16 + 6); // the second tag is no longer the last
    d.writeUInt32BE(102, 12 + 8 + 16 + 8);
    d.writeUInt16BE(JournalTagFlag.sameUuid | JournalTagFlag.lastTag, 12 + 8 + 16 + 8 + 6);
    expect(await feed(j, [[writes[0]![0], d], ...writes.slice(1)])).toEqual([]);
    // The next transaction (its descriptor is where the walk of the last stopped) is followed.
    expect((await feed(j, j.writer.transaction([[103, image(4)]]))).map(shape)).toEqual([[[103, 4]]]);
  });

  it('ends the walk of a transaction whose descriptors go round the log without a commit as Corrupt, promptly', async () => {
    const j = journal({ sequence: 7, start: 1 });
    // One descriptor at 1 whose 62 tags take every other block of the log, so the walk comes back to it.
    const d = Buffer.alloc(BS);
    d.writeUInt32BE(JBD2_MAGIC, 0);
    d.writeUInt32BE(JournalBlockType.descriptor, 4);
    d.writeUInt32BE(7, 8);
    for (let i = 0; i < 62; i++) {
      d.writeUInt32BE(1000 + i, 12 + i * 8);
      d.writeUInt16BE(JournalTagFlag.sameUuid | (i === 61 ? JournalTagFlag.lastTag : 0), 12 + i * 8 + 6);
    }
    await feed(j, [[1, d]]);
    // Its commit block lands where the descriptor says a data block is.
    const t0 = Date.now();
    const out = await j.follower.written(5, commitBlock(7));
    expect(out.map((t) => [t.sequence, t.blocks.length])).toEqual([[7, 0]]);
    expect(out[0]!.torn).toBeInstanceOf(CorruptError); // ok: one transaction
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  describe('with checksums (csum v3) and async commit', () => {
    const incompat = JournalIncompat.revoke | JournalIncompat.csumV3 | JournalIncompat.asyncCommit;

    it('holds a transaction whose commit came before its data blocks until they arrive', async () => {
      const j = journal({ sequence: 7, start: 1, incompat });
      const writes = j.writer.transaction([[100, image(1)], [101, image(2)]]);
      // descriptor, commit, then the data blocks (async commit: the commit is not waited for).
      const [desc, d1, d2, commit] = writes as [[number, Buffer], [number, Buffer], [number, Buffer], [number, Buffer]];
      expect(await feed(j, [desc, commit, d1])).toEqual([]);
      const txs = await feed(j, [d2]);
      expect(txs.map(shape)).toEqual([[[100, 1], [101, 2]]]);
      // And the log goes on.
      expect((await feed(j, j.writer.transaction([[102, image(3)]]))).map(shape)).toEqual([[[102, 3]]]);
    });

    it('keeps a held transaction across a checkpoint: restored, it is applied once the rest of its log comes', async () => {
      const j = journal({ sequence: 7, start: 1, incompat });
      const writes = j.writer.transaction([[100, image(1)], [101, image(2)]]);
      const [desc, d1, d2, commit] = writes as [[number, Buffer], [number, Buffer], [number, Buffer], [number, Buffer]];
      expect(await feed(j, [desc, commit, d1])).toEqual([]);
      const state = j.follower.state();
      expect(state.held).toEqual([7, desc[0]]);
      // A follower restored from that state (a worker taking the disk over from its checkpoint).
      const restored = new JournalFollower(state.sb, [{ logical: 0, physical: 0, length: 64, initialized: true }], async (b) => j.disk.get(b) ?? new Uint8Array(BS));
      restored.restore(state);
      j.follower = restored;
      expect((await feed(j, [d2])).map(shape)).toEqual([[[100, 1], [101, 2]]]);
      expect(restored.state().held).toBeUndefined();
      expect((await feed(j, j.writer.transaction([[102, image(3)]]))).map(shape)).toEqual([[[102, 3]]]);
    });

    it('holds a transaction of two descriptors whose commit came first until the first descriptor is written', async () => {
      const j = journal({ sequence: 7, start: 1, incompat }, 2);
      await feed(j, j.writer.transaction([[90, image(9)]]));
      const writes = j.writer.transaction([[100, image(1)], [101, image(2)], [102, image(3)]]);
      // descriptor A, data, data, descriptor B, data, commit: the commit first, then B's part, then A's.
      const [a, a1, a2, b, b1, commit] = writes as [number, Buffer][] as [[number, Buffer], [number, Buffer], [number, Buffer], [number, Buffer], [number, Buffer], [number, Buffer]];
      expect(await feed(j, [commit, b, b1, a1])).toEqual([]);
      expect(await feed(j, [a])).toEqual([]);
      const txs = await feed(j, [a2]);
      expect(txs.map(shape)).toEqual([[[100, 1], [101, 2], [102, 3]]]);
    });

    it('never applies a transaction whose data block does not match its tag checksum', async () => {
      const j = journal({ sequence: 7, start: 1, incompat });
      const writes = j.writer.transaction([[100, image(1)], [101, image(2)]]);
      const bad = Buffer.from(writes[2]![1]); // ok: the second data block
      bad.writeUInt8(bad.readUInt8(100) ^ 1, 100);
      writes[2] = [writes[2]![0], bad]; // ok: as above
      expect(await feed(j, writes)).toEqual([]);
      // The next transaction gives it up (as torn) and is itself applied.
      const next = await feed(j, j.writer.transaction([[102, image(3)]]));
      expect(next.filter((t) => t.torn === undefined).map(shape)).toEqual([[[102, 3]]]);
      expect(next.filter((t) => t.torn !== undefined).map((t) => [t.sequence, t.blocks.length, t.torn?.kind])).toEqual([[7, 0, 'JournalChecksum']]);
    });

    it('skips (as the kernel) a block whose tag checksum does not match in recovery', async () => {
      const j = journal({ sequence: 7, start: 1, incompat });
      const writes = j.writer.transaction([[100, image(1)], [101, image(2)]]);
      const bad = Buffer.from(writes[2]![1]); // ok: the second data block
      bad.writeUInt8(bad.readUInt8(100) ^ 1, 100);
      writes[2] = [writes[2]![0], bad]; // ok: as above
      for (const [at, bytes] of writes) j.disk.set(at, bytes);
      const txs = await j.follower.recover();
      expect(txs.map(shape)).toEqual([[[100, 1]]]);
    });

    it('restores the magic of an escaped block after checking the tag checksum of the logged copy', async () => {
      const j = journal({ sequence: 7, start: 1, incompat });
      const magic = image(5);
      magic.writeUInt32BE(JBD2_MAGIC, 0);
      const txs = await feed(j, j.writer.transaction([[100, magic]]));
      expect(txs.length).toBe(1);
      expect(Buffer.from(txs[0]!.blocks[0]!.data).equals(magic)).toBe(true);
    });
  });

  it('follows the first transaction after a journal flush, logged at the head (not s_first), from its descriptor', async () => {
    // jbd2_journal_flush() leaves s_start 0 and the next tid in s_sequence; the log goes on where it was.
    const sbBytes = superblockBytes({ sequence: 20, start: 0 });
    const j = journal({ sequence: 20, start: 0 });
    const at30 = new Jbd2Writer({ sb: decodeJournalSuperblock(superblockBytes({ sequence: 20, start: 30 })), blocks: [] });
    expect(Buffer.from(j.follower.superblockBytes).equals(sbBytes)).toBe(true);
    const txs = await feed(j, at30.transaction([[100, image(1)]]));
    expect(txs.map(shape)).toEqual([[[100, 1]]]);
  });

  describe('with the v1 transaction checksum (COMPAT_CHECKSUM) and async commit', () => {
    const spec = { sequence: 7, start: 1, incompat: JournalIncompat.revoke | JournalIncompat.asyncCommit, compat: JournalCompat.checksum };

    it('holds a transaction whose commit came before its data until the next transaction logs, then applies it whole', async () => {
      const j = journal(spec);
      const [desc, d1, d2, commit] = j.writer.transaction([[100, image(1)], [101, image(2)]]) as [[number, Buffer], [number, Buffer], [number, Buffer], [number, Buffer]];
      expect(await feed(j, [desc, commit, d1, d2])).toEqual([]);
      const next = j.writer.transaction([[102, image(3)]]);
      expect((await feed(j, next.slice(0, 1))).map(shape)).toEqual([[[100, 1], [101, 2]]]);
      expect((await feed(j, next.slice(1))).map(shape)).toEqual([[[102, 3]]]);
    });

    it('gives up (never applies) a transaction whose log does not match its v1 checksum', async () => {
      const j = journal(spec);
      const writes = j.writer.transaction([[100, image(1)], [101, image(2)]]);
      writes[2] = [writes[2]![0], image(0x22)]; // ok: the second data block, replaced
      expect(await feed(j, writes)).toEqual([]);
      const next = await feed(j, j.writer.transaction([[102, image(3)]]));
      expect(next.map((t) => [t.sequence, t.torn?.kind ?? 'applied', t.blocks.length])).toEqual([
        [7, 'JournalChecksum', 0],
        [8, 'applied', 1],
      ]);
    });

    it('ends recovery before a transaction whose log does not match its v1 checksum', async () => {
      const j = journal(spec);
      const writes = [...j.writer.transaction([[100, image(1)]]), ...j.writer.transaction([[101, image(2)]]), ...j.writer.transaction([[102, image(3)]])];
      writes[4] = [writes[4]![0], image(0x22)]; // ok: the second transaction's data block
      for (const [at, bytes] of writes) j.disk.set(at, bytes);
      expect((await j.follower.recover()).map(shape)).toEqual([[[100, 1]]]);
    });
  });

  it('keeps following while the kernel rewrites the journal superblock (the log tail moving on)', async () => {
    const j = journal({ sequence: 7, start: 1 });
    const txs: CommittedTx[] = [];
    for (let i = 0; i < 40; i++) {
      txs.push(...(await feed(j, j.writer.transaction([[100 + i, image(i + 1)], [200 + i, image(i + 2)]]))));
      // Checkpointed: s_start and s_sequence move to the oldest transaction still needed.
      if (i % 3 === 2) await feed(j, [[0, superblockBytes({ sequence: 7 + i, start: ((i * 4) % 63) + 1 })]]);
    }
    expect(txs.map((t) => t.sequence)).toEqual(Array.from({ length: 40 }, (_, i) => 7 + i));
    expect(txs.every((t) => t.torn === undefined && t.blocks.length === 2)).toBe(true);
  });

  it('reports a damaged transaction as torn, and the one held before it that the same write gives up', async () => {
    const j = journal({ sequence: 7, start: 1, incompat: JournalIncompat.revoke | JournalIncompat.csumV3 | JournalIncompat.asyncCommit });
    const [desc7, , commit7] = j.writer.transaction([[100, image(1)]]) as [[number, Buffer], [number, Buffer], [number, Buffer]];
    const [desc8, data8, commit8] = j.writer.transaction([[101, image(2)]]) as [[number, Buffer], [number, Buffer], [number, Buffer]];
    const bad8 = Buffer.from(commit8[1]);
    bad8.writeUInt32BE((bad8.readUInt32BE(0x10) ^ 1) >>> 0, 0x10);
    // (Out of jbd2's order, as a hostile guest may write.) 7's data block never comes; 8's commit is damaged.
    expect(await feed(j, [desc7, desc8, commit7, data8])).toEqual([]);
    const out = await feed(j, [[commit8[0], bad8]]);
    expect(out.map((t) => [t.sequence, t.torn?.kind ?? 'applied'])).toEqual([
      [7, 'JournalChecksum'],
      [8, 'JournalChecksum'],
    ]);
  });

  it('takes the log position of the first transaction after a mount from the rewritten journal superblock', async () => {
    // A clean journal (s_start 0); the guest mounts and its first commit moves s_start to where it logs.
    const j = journal({ sequence: 20, start: 0 });
    const sb2 = superblockBytes({ sequence: 21, start: 30 });
    await feed(j, [[0, sb2]]);
    const c = await feed(j, [[30, commitBlock(21)]]);
    expect(c.map((t) => t.sequence)).toEqual([21]);
  });
});
