/**
 * jbd2 transactions written as a guest's kernel would, for tests that feed an inference engine journalled changes.
 */
import { crc32Be, crc32c, JBD2_MAGIC, JournalBlockType, journalChecksumSeed, journalTagBytes, JournalTagFlag, type JournalSuperblock } from '@gammaray/ext4';

/** A journal: its superblock and the disk block of each journal block (index = journal block number). */
export interface Jbd2Layout {
  readonly sb: JournalSuperblock;
  readonly blocks: readonly number[];
}

/** Where {@link Jbd2Writer} may lie: a seeded generator in the fuzz test, never in {@link ORDERLY}. */
export interface Jbd2Chaos {
  chance(p: number): boolean;
  int(n: number): number;
  extreme(bits: 16 | 32): number;
}

/** Well-formed transactions only. */
export const ORDERLY: Jbd2Chaos = { chance: () => false, int: () => 0, extreme: () => 0 };

/**
 * Writes a guest's next jbd2 transactions, as jbd2 lays them out (revoke, descriptor with tags, escaped data
 * blocks, commit; checksums v2/v3 when the journal has them), at the log position the guest would use.
 * `chaos` makes some fields lies (the fuzz test); without it every transaction is well formed.
 */
export class Jbd2Writer {
  #pos: number;
  #seq: number;
  /** `maxTags`: tags per descriptor block (jbd2 starts another descriptor when one is full). */
  constructor(
    readonly lay: Jbd2Layout,
    readonly maxTags = Infinity,
  ) {
    this.#pos = lay.sb.start !== 0 ? lay.sb.start : lay.sb.first;
    this.#seq = lay.sb.sequence;
  }

  /** Journal block the next transaction starts at. */
  get position(): number {
    return this.#pos;
  }

  /** Sequence of the next transaction. */
  get sequence(): number {
    return this.#seq;
  }

  #next(): number {
    const j = this.#pos;
    // The regular log ends before the fast-commit area (logEnd), where jbd2 wraps to s_first.
    this.#pos = this.#pos + 1 >= this.lay.sb.logEnd ? this.lay.sb.first : this.#pos + 1;
    return j;
  }

  /** t_checksum of a logged (escaped) block: crc32c(seed, be32 sequence, block), as jbd2_block_tag_csum_set(). */
  #tagChecksum(seq: number, logged: Buffer): number {
    const s = Buffer.alloc(4);
    s.writeUInt32BE(seq >>> 0, 0);
    return crc32c(crc32c(journalChecksumSeed(this.lay.sb), s), logged) >>> 0;
  }

  #header(block: Buffer, type: number, seq: number): void {
    block.writeUInt32BE(JBD2_MAGIC, 0);
    block.writeUInt32BE(type, 4);
    block.writeUInt32BE(seq >>> 0, 8);
  }

  #tail(block: Buffer): void {
    const sb = this.lay.sb;
    if (!sb.has.csumV2 && !sb.has.csumV3) return;
    const at = block.length - 4;
    block.writeUInt32BE(0, at);
    block.writeUInt32BE(crc32c(journalChecksumSeed(sb), block, 0, block.length) >>> 0, at);
  }

  /**
   * One transaction logging `images` (fs block -> bytes) and optionally revoking `revoke`; `broken` leaves out
   * the commit block, or gives it the wrong sequence. Returns the (journal block, bytes) writes in log order.
   */
  transaction(images: readonly [number, Buffer][], revoke: readonly number[] = [], r: Jbd2Chaos = ORDERLY, broken = false): [number, Buffer][] {
    const sb = this.lay.sb;
    const bs = sb.blockSize;
    const seq = this.#seq;
    const out: [number, Buffer][] = [];
    if (revoke.length > 0) {
      const rb = Buffer.alloc(bs);
      this.#header(rb, JournalBlockType.revoke, seq);
      const wide = sb.has.is64bit ? 8 : 4;
      let off = 16;
      for (const b of revoke) {
        if (off + wide > bs - 4) break;
        if (wide === 8) rb.writeBigUInt64BE(BigInt(b), off);
        else rb.writeUInt32BE(b >>> 0, off);
        off += wide;
      }
      // r_count: bytes used; sometimes a lie.
      rb.writeUInt32BE(r.chance(0.2) ? r.extreme(32) : off, 12);
      this.#tail(rb);
      out.push([this.#next(), rb]);
    }
    const tagBytes = journalTagBytes(sb);
    let sum = 0xffffffff;
    const chunks: (readonly [number, Buffer])[][] = [];
    for (let i = 0; i < images.length || i === 0; i += this.maxTags) chunks.push(images.slice(i, i + this.maxTags));
    for (const chunk of chunks) {
      const d = Buffer.alloc(bs);
      this.#header(d, JournalBlockType.descriptor, seq);
      let off = 12;
      const data: Buffer[] = [];
      chunk.forEach(([fsBlock, image], i) => {
        if (off + tagBytes + 16 > bs - 4) return;
        const last = i === chunk.length - 1;
        const escaped = image.readUInt32BE(0) === JBD2_MAGIC;
        let flags = (i > 0 ? JournalTagFlag.sameUuid : 0) | (last ? JournalTagFlag.lastTag : 0) | (escaped ? JournalTagFlag.escape : 0);
        if (r.chance(0.05)) flags = r.extreme(16);
        const logged = Buffer.from(image);
        if (escaped) logged.writeUInt32BE(0, 0);
        const csum = this.#tagChecksum(seq, logged);
        d.writeUInt32BE(fsBlock >>> 0, off);
        if (sb.has.csumV3) {
          d.writeUInt32BE(flags, off + 4);
          d.writeUInt32BE(r.chance(0.03) ? r.extreme(32) : 0, off + 8);
          d.writeUInt32BE(csum, off + 12);
        } else {
          if (sb.has.csumV2) d.writeUInt16BE(csum & 0xffff, off + 4);
          d.writeUInt16BE(flags & 0xffff, off + 6);
          if (sb.has.is64bit) d.writeUInt32BE(r.chance(0.03) ? r.extreme(32) : 0, off + 8);
        }
        off += tagBytes;
        if ((flags & JournalTagFlag.sameUuid) === 0) off += 16;
        data.push(logged);
      });
      this.#tail(d);
      out.push([this.#next(), d]);
      for (const b of data) out.push([this.#next(), b]);
      sum = crc32Be(sum, d);
      for (const b of data) sum = crc32Be(sum, b);
    }
    if (!broken || r.chance(0.5)) {
      const c = Buffer.alloc(bs);
      this.#header(c, JournalBlockType.commit, broken ? seq + 1 + r.int(3) : seq);
      if (sb.has.checksumV1) {
        // v1: crc32_be over the descriptor and data blocks (JBD2_CRC32_CHKSUM, 4 bytes).
        c.writeUInt8(1, 0xc);
        c.writeUInt8(4, 0xd);
        c.writeUInt32BE(sum >>> 0, 0x10);
      } else if (sb.has.csumV2 || sb.has.csumV3) {
        c.writeUInt8(4, 0xc);
        c.writeUInt8(4, 0xd);
        c.writeUInt32BE(crc32c(journalChecksumSeed(sb), c, 0, bs) >>> 0, 0x10);
      }
      out.push([this.#next(), c]);
    }
    if (!broken) this.#seq = (this.#seq + 1) >>> 0;
    return out;
  }
}

