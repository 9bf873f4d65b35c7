/**
 * Follows an internal jbd2 journal from the writes to its blocks: remembers log blocks as they are written and,
 * when a commit block arrives, walks its transaction (descriptor tags, escaped blocks, revoke blocks) and hands
 * the committed block images to the caller. Uncommitted transactions never reach the caller. The same walk
 * replays the committed transactions still in the log when the inferencer starts (as recovery would).
 */
import { copyBytes } from './bytes.js';
import {
  CorruptError,
  CorruptKind,
  crc32Be,
  decodeCommitBlock,
  decodeDescriptorBlock,
  decodeJournalHeader,
  decodeJournalSuperblock,
  decodeRevokeBlock,
  isJournalMetadataBlock,
  JournalBlockType,
  journalTagChecksumOk,
  unescapeBlock,
  type Extent,
  type JournalSuperblock,
} from '@gammaray/ext4';
import { MAX_OPEN_JOURNAL_BLOCKS, MAX_RECOVERY_BYTES, MAX_TX_BLOCKS } from './limits.js';

/** A committed transaction: its sequence and the block images it logs, in log order. */
export interface CommittedTx {
  readonly sequence: number;
  readonly blocks: readonly { readonly fsBlock: number; readonly data: Uint8Array }[];
  /**
   * Set when the transaction was given up: its commit block came, but its log never read back whole (a logged
   * block that does not match its tag checksum, or a log block missing) before the next transaction committed.
   * Nothing of it is applied (`blocks` is empty); the error says why, for a `corrupt` report.
   */
  readonly torn?: CorruptError;
}

/** h_chksum_type and h_chksum_size of a v1 (crc32_be) transaction checksum in a commit block. */
const JBD2_CRC32_CHKSUM = 1;
const JBD2_CRC32_CHKSUM_SIZE = 4;

/** Whether transaction id `a` is `b` or after it: tids wrap at 2^32 (the kernel's tid_geq()). */
export function tidGeq(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** A logged block: the file-system block it is the image of, and its bytes (unescaped). */
interface Logged {
  readonly fsBlock: number;
  readonly data: Uint8Array;
}

/** What a walk of one transaction found. */
type Walked =
  /**
   * Its commit block at `end`; `bad`: journal blocks logged that do not match their tag checksums; `sumBad`: the
   * v1 transaction checksum of its commit block does not match its descriptor and data blocks.
   */
  | { readonly done: true; readonly blocks: (Logged & { readonly at: number })[]; readonly revoked: number[]; readonly end: number; readonly used: number[]; readonly bad: number[]; readonly sumBad: boolean }
  /** The log at `at` does not continue the transaction (not written yet, or the transaction is not there). */
  | { readonly done: false; readonly at: number; readonly bad: number[]; readonly sumBad?: undefined };

/** A transaction whose commit block came before the rest of its log (async commit), waited for. */
interface Held {
  readonly sequence: number;
  readonly start: number;
  /** Journal blocks the walk needs written (again) before it can succeed. */
  readonly missing: Set<number>;
  /** Why the last walk failed. */
  readonly why: CorruptError;
}

/** Reads journal block `j` from the disk (used when a log block was written before the inferencer saw it). */
export type JournalReader = (j: number) => Promise<Uint8Array>;

/** The journal's state between records (checkpointed). */
export interface JournalState {
  /** The journal superblock followed (as last written), raw. */
  readonly sb: Uint8Array;
  readonly open: [number, Uint8Array][];
  readonly starts: [number, number][];
  readonly next: number;
  readonly expected: number;
  /** A committed transaction waiting for the rest of its log (see JournalFollower.held): [sequence, start]. */
  readonly held?: readonly [number, number];
}

/** Follows one journal. */
export class JournalFollower {
  private sb: JournalSuperblock;
  /** Log blocks written whose transaction has not committed yet: journal block -> bytes. */
  private open = new Map<number, Uint8Array>();
  /** Transaction sequence -> journal block of its first descriptor or revoke block. */
  private starts = new Map<number, number>();
  /** Journal block after the last committed transaction walked. */
  private next: number;
  /** Sequence expected next. */
  private expected: number;
  /** A committed transaction whose log is not all written yet (at most one: jbd2 commits one at a time). */
  private held: Held | undefined;

  /** Follows the journal whose superblock is `sbBytes`; CorruptError when they are not a journal superblock. */
  constructor(
    private sbBytes: Uint8Array,
    /** The journal inode's extents (logical journal block -> physical). */
    private readonly map: readonly Extent[],
    private readonly read: JournalReader,
  ) {
    this.sb = decodeJournalSuperblock(sbBytes);
    this.next = this.sb.start !== 0 ? this.sb.start : this.sb.first;
    this.expected = this.sb.sequence;
  }

  /** The raw journal superblock this follower started from. */
  get superblockBytes(): Uint8Array {
    return this.sbBytes;
  }

  get superblock(): JournalSuperblock {
    return this.sb;
  }

  /** Journal block of physical block `p`, or undefined when `p` is not in the journal. */
  journalBlockOf(p: number): number | undefined {
    let lo = 0;
    let hi = this.map.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = this.map[mid]!; // ok: in range
      if (p < e.physical) hi = mid - 1;
      else if (p >= e.physical + e.length) lo = mid + 1;
      else return e.logical + (p - e.physical);
    }
    return undefined;
  }

  /** Physical block of journal block `j`. */
  physicalOf(j: number): number | undefined {
    for (const e of this.map) if (j >= e.logical && j < e.logical + e.length) return e.physical + (j - e.logical);
    return undefined;
  }

  /** The physical extents of the journal. */
  get extents(): readonly Extent[] {
    return this.map;
  }

  /**
   * A write of journal block `j`. Returns the transactions it committed (a commit block, or the last block a
   * transaction held for lacked), oldest first; one that cannot be walked (damaged) or never read back whole
   * comes back `torn`, with the CorruptError.
   */
  async written(j: number, data: Uint8Array): Promise<CommittedTx[]> {
    if (j === 0) {
      let sb: JournalSuperblock;
      try {
        sb = decodeJournalSuperblock(data);
      } catch {
        // A damaged journal superblock write: keep following with the old geometry.
        return [];
      }
      if (sb.start !== 0 && this.sb.start === 0) {
        // An empty log gets its first transaction (after a mount, or a flush): jbd2 writes the superblock with
        // that transaction's id and log block before it logs anything. The kernel skips a tid at mount, and a
        // newer one may keep the log head (s_head) across mounts: this says where the log goes on.
        this.next = sb.start;
        this.expected = sb.sequence;
      }
      this.sb = sb;
      this.sbBytes = copyBytes(data);
      return [];
    }
    // Blocks from logEnd on are the fast-commit area: never part of the regular log.
    if (j < this.sb.first || j >= this.sb.logEnd) return [];
    this.remember(j, data);
    this.held?.missing.delete(j);
    let type: number | undefined;
    let sequence = 0;
    if (isJournalMetadataBlock(data)) {
      const h = decodeJournalHeader(data);
      type = h.blockType;
      sequence = h.sequence;
    }
    if (type === JournalBlockType.descriptor || type === JournalBlockType.revoke) this.noteStart(sequence, j);
    const out: CommittedTx[] = [];
    const held = this.held;
    if (held && type !== undefined && sequence !== held.sequence) {
      // Another transaction's log: jbd2 finishes writing one transaction's log before it writes the next's (an
      // async commit too), so what the one held lacks is written by now, or never will be. One last look (the
      // only one for a v1 checksum, which cannot say which block it lacks).
      await this.completeInto(out, held.sequence, held.start);
      const torn = this.held;
      if (torn) {
        this.held = undefined;
        this.forget(torn.sequence);
        out.push({ sequence: torn.sequence, blocks: [], torn: torn.why });
      }
    }
    if (type === JournalBlockType.commit && sequence !== held?.sequence) {
      const start = await this.startOf(sequence);
      if (start === undefined) {
        // A commit of a transaction whose descriptor we never saw and cannot place: nothing to apply.
        this.forget(sequence);
        return out;
      }
      await this.completeInto(out, sequence, start);
      return out;
    }
    if (this.held && this.held.missing.size === 0) await this.completeInto(out, this.held.sequence, this.held.start);
    return out;
  }

  /** {@link complete} into `out`; a CorruptError as a torn transaction (so that others in `out` are not lost). */
  private async completeInto(out: CommittedTx[], sequence: number, start: number): Promise<void> {
    try {
      const tx = await this.complete(sequence, start);
      if (tx) out.push(tx);
    } catch (err) {
      if (!(err instanceof CorruptError)) throw err;
      out.push({ sequence, blocks: [], torn: err });
    }
  }

  /**
   * Where committed transaction `sequence` starts: where the last one followed ended when it is the one expected
   * (jbd2 logs transactions one after another), else (or, without async commit, when its log is not there: the
   * log was flushed, and goes on at s_head) the earliest of its descriptor and revoke blocks seen.
   */
  private async startOf(sequence: number): Promise<number | undefined> {
    const seen = this.starts.get(sequence);
    if (sequence !== this.expected || seen === this.next) return seen;
    // With async commit the commit block may come before the rest of the log: the log at `next` may not be
    // written yet, and a descriptor seen may be a later one of the transaction.
    if (seen === undefined || this.sb.has.asyncCommit) return this.next;
    const b = await this.block(this.next);
    return isJournalMetadataBlock(b) && decodeJournalHeader(b).sequence === sequence ? this.next : seen;
  }

  /** Notes that transaction `sequence` logs a descriptor or revoke block at `j`: the earliest is where it starts. */
  private noteStart(sequence: number, j: number): void {
    const was = this.starts.get(sequence);
    if (was !== undefined) {
      // The block layer may send one transaction's log blocks in any order. jbd2 logs a transaction in one
      // stretch shorter than a quarter of the log, so of two of its blocks the earlier is the one from which the
      // other is less than half the log on.
      const len = this.sb.logEnd - this.sb.first;
      const ahead = (((was - j) % len) + len) % len;
      if (ahead === 0 || ahead >= len / 2) return;
      this.starts.delete(sequence);
    }
    // Bounded like the open blocks: a guest writing descriptors it never commits cannot grow this.
    if (this.starts.size >= MAX_OPEN_JOURNAL_BLOCKS) this.starts.delete(this.starts.keys().next().value as number);
    this.starts.set(sequence, j);
  }

  /**
   * Walks committed transaction `sequence` from `start`: the transaction when its log reads back whole; else
   * holds it to try again once the blocks it lacks are written (the commit block of an async commit may be
   * written before the blocks it covers), or drops it when nothing will come. CorruptError for a damaged one.
   */
  private async complete(sequence: number, start: number): Promise<CommittedTx | undefined> {
    let w: Walked;
    try {
      w = await this.walk(start, sequence);
    } catch (err) {
      this.held = undefined;
      this.forget(sequence);
      throw err;
    }
    if (w.done && w.bad.length === 0 && !w.sumBad) {
      this.held = undefined;
      this.forget(sequence);
      for (const u of w.used) this.open.delete(u);
      this.next = this.after(w.end);
      this.expected = (sequence + 1) >>> 0;
      return { sequence, blocks: w.blocks.map((b) => ({ fsBlock: b.fsBlock, data: b.data })) };
    }
    // A logged block that does not match its checksum may yet be written; a log that stops short only may with
    // an async commit (else jbd2 writes the commit block once the rest is on disk).
    if (w.bad.length > 0 || w.sumBad === true || this.sb.has.asyncCommit) {
      const missing = new Set(w.bad);
      if (!w.done) missing.add(w.at);
      // Which block a v1 checksum lacks is unknown: only the next transaction's log ends the wait.
      if (w.sumBad === true) missing.add(w.end);
      const why =
        w.bad.length > 0
          ? new CorruptError(CorruptKind.JournalChecksum, `transaction ${sequence}: log block ${w.bad[0]} does not match its tag checksum`, { block: w.bad[0], field: 't_checksum' })
          : w.sumBad === true
            ? new CorruptError(CorruptKind.JournalChecksum, `transaction ${sequence}: its log does not match the (v1) checksum of its commit block`, { block: w.end, field: 'h_chksum' })
            : new CorruptError(CorruptKind.JournalBlock, `transaction ${sequence}: committed, but its log stops at block ${w.done ? w.end : w.at}`, { block: w.done ? w.end : w.at });
      this.held = { sequence, start, missing, why };
      return undefined;
    }
    this.held = undefined;
    this.forget(sequence);
    return undefined;
  }

  /**
   * The committed transactions in the log from the superblock's start (what recovery would replay), as read
   * from the disk; stops at the first block that does not continue the log. As jbd2's recovery, a block logged
   * by a transaction is left out when the same or a later transaction of the log revokes it (it was freed, and
   * may hold newer bytes that were never logged: file data).
   */
  async recover(): Promise<CommittedTx[]> {
    const walked: { sequence: number; blocks: Logged[] }[] = [];
    const revokedAt = new Map<number, number>();
    if (this.sb.start === 0) return [];
    let j = this.sb.start;
    let seq = this.sb.sequence;
    let bytes = 0;
    for (let n = 0; n < MAX_TX_BLOCKS; n++) {
      const tx = await this.walk(j, seq, true).catch(() => undefined);
      // A v1 checksum that does not match ends jbd2's recovery before the transaction, as a bad commit block does.
      if (tx === undefined || !tx.done || tx.sumBad) break;
      bytes += tx.blocks.length * this.sb.blockSize;
      if (bytes > MAX_RECOVERY_BYTES) {
        throw new CorruptError(CorruptKind.JournalBlock, `the log to recover holds more than ${MAX_RECOVERY_BYTES} bytes of blocks (transaction ${seq})`, { block: j });
      }
      for (const u of tx.used) this.open.delete(u);
      // As jbd2's replay: a logged block that does not match its tag checksum is not written (the kernel goes on
      // with the rest of the log, then fails the mount).
      const bad = new Set(tx.bad);
      walked.push({ sequence: seq, blocks: bad.size === 0 ? tx.blocks : tx.blocks.filter((b) => !bad.has(b.at)) });
      for (const b of tx.revoked) revokedAt.set(b, seq);
      j = this.after(tx.end);
      seq = (seq + 1) >>> 0;
    }
    this.next = j;
    this.expected = seq;
    // As jbd2's recovery: a block is revoked for the transactions up to and including the last that revokes it.
    const kept = (b: Logged, sequence: number): boolean => {
      const r = revokedAt.get(b.fsBlock);
      return r === undefined || !tidGeq(r, sequence);
    };
    return walked.map((tx) => ({ sequence: tx.sequence, blocks: tx.blocks.filter((b) => kept(b, tx.sequence)).map((b) => ({ fsBlock: b.fsBlock, data: b.data })) }));
  }

  state(): JournalState {
    const held = this.held ? ([this.held.sequence, this.held.start] as const) : undefined;
    return { sb: this.sbBytes, open: [...this.open], starts: [...this.starts], next: this.next, expected: this.expected, ...(held ? { held } : {}) };
  }

  /** Takes the state {@link state} returned (CorruptError when its superblock does not decode). */
  restore(s: JournalState): void {
    this.sb = decodeJournalSuperblock(s.sb);
    this.sbBytes = s.sb;
    this.open = new Map(s.open);
    this.starts = new Map(s.starts);
    this.next = s.next;
    // A tid (a checkpoint from before tids wrapped modulo 2^32 here could hold 2^32).
    this.expected = s.expected >>> 0;
    // A transaction held when the checkpoint was taken is held again. Which blocks it lacked is not kept: it is
    // walked again at the next write of its log, and given up at the first block of another transaction's.
    this.held = s.held
      ? { sequence: s.held[0] >>> 0, start: s.held[1], missing: new Set(), why: new CorruptError(CorruptKind.JournalBlock, `transaction ${s.held[0] >>> 0}: committed, but its log did not read back whole`, { block: s.held[1] }) }
      : undefined;
  }

  private remember(j: number, data: Uint8Array): void {
    this.open.delete(j);
    if (this.open.size >= MAX_OPEN_JOURNAL_BLOCKS) {
      const oldest = this.open.keys().next().value as number;
      this.open.delete(oldest);
    }
    this.open.set(j, copyBytes(data));
  }

  /** Forgets where transaction `sequence` and those before it start (tids compare modulo 2^32). */
  private forget(sequence: number): void {
    for (const s of [...this.starts.keys()]) if (tidGeq(sequence, s)) this.starts.delete(s);
  }

  /** The log block after `j`: the log wraps from the end of its regular area (before any fast-commit blocks). */
  private after(j: number): number {
    return j + 1 >= this.sb.logEnd ? this.sb.first : j + 1;
  }

  private async block(j: number): Promise<Uint8Array> {
    return this.open.get(j) ?? (await this.read(j));
  }

  /**
   * Walks transaction `sequence` from journal block `start` to its commit block (with `revokes`, also the blocks
   * its revoke records name), checking each logged block against its tag checksum. Not done when the log at
   * `start` is not that transaction (or it has no commit yet); CorruptError for a damaged committed one, or one
   * longer than the log.
   */
  private async walk(start: number, sequence: number, revokes = false): Promise<Walked> {
    const blocks: (Logged & { at: number })[] = [];
    const revoked: number[] = [];
    const used: number[] = [];
    const bad: number[] = [];
    // Every block of the walk counts: a transaction is shorter than the log, so a walk that comes round to where
    // it began (a hostile descriptor whose tags reach its own block) ends here, whatever the tags say.
    const limit = Math.min(MAX_TX_BLOCKS, this.sb.logEnd - this.sb.first);
    const tooLong = (): CorruptError => new CorruptError(CorruptKind.JournalBlock, `transaction ${sequence} runs past ${limit} blocks (the log's length)`, { block: start });
    // v1: crc32_be over the descriptor and data blocks, from ~0 (as jbd2's calc_chksums()).
    let sum = 0xffffffff;
    let j = start;
    for (;;) {
      if (used.length >= limit) throw tooLong();
      const b = await this.block(j);
      used.push(j);
      if (!isJournalMetadataBlock(b)) return { done: false, at: j, bad };
      const h = decodeJournalHeader(b);
      if (h.sequence !== sequence) return { done: false, at: j, bad };
      if (h.blockType === JournalBlockType.commit) {
        const c = decodeCommitBlock(b, this.sb, { block: j });
        // As jbd2's recovery: the v1 checksum matches, or the commit block says it has none.
        const sumBad = this.sb.has.checksumV1 && !(c.checksumType === JBD2_CRC32_CHKSUM && c.checksumSize === JBD2_CRC32_CHKSUM_SIZE && c.checksum === sum) && !(c.checksumType === 0 && c.checksumSize === 0 && c.checksum === 0);
        return { done: true, blocks, revoked, end: j, used, bad, sumBad };
      }
      if (h.blockType === JournalBlockType.revoke) {
        // Read only for recovery (as jbd2's, whatever the journal's revoke feature says): a transaction followed
        // live applies every block it logs.
        if (revokes) revoked.push(...decodeRevokeBlock(b, this.sb, { block: j }).blocks);
        j = this.after(j);
        continue;
      }
      if (h.blockType !== JournalBlockType.descriptor) {
        throw new CorruptError(CorruptKind.JournalBlock, `block type ${h.blockType} inside transaction ${sequence}`, { block: j });
      }
      const d = decodeDescriptorBlock(b, this.sb, { block: j });
      if (this.sb.has.checksumV1) sum = crc32Be(sum, b);
      for (const tag of d.tags) {
        if (used.length >= limit) throw tooLong();
        j = this.after(j);
        const data = await this.block(j);
        used.push(j);
        if (!journalTagChecksumOk(this.sb, tag, sequence, data)) bad.push(j);
        if (this.sb.has.checksumV1) sum = crc32Be(sum, data);
        blocks.push({ fsBlock: tag.fsBlock, data: unescapeBlock(data, tag.escaped), at: j });
      }
      j = this.after(j);
    }
  }
}
