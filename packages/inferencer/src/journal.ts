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
  decodeCommitBlock,
  decodeDescriptorBlock,
  decodeJournalHeader,
  decodeJournalSuperblock,
  decodeRevokeBlock,
  isJournalMetadataBlock,
  JournalBlockType,
  unescapeBlock,
  type Extent,
  type JournalSuperblock,
} from '@gammaray/ext4';
import { MAX_OPEN_JOURNAL_BLOCKS, MAX_RECOVERY_BYTES, MAX_TX_BLOCKS } from './limits.js';

/** A committed transaction: its sequence and the block images it logs, in log order. */
export interface CommittedTx {
  readonly sequence: number;
  readonly blocks: readonly { readonly fsBlock: number; readonly data: Uint8Array }[];
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
   * A write of journal block `j`. Returns the transactions it committed (a commit block), oldest first; throws
   * CorruptError when a committed transaction cannot be walked.
   */
  async written(j: number, data: Uint8Array): Promise<CommittedTx[]> {
    if (j === 0) {
      try {
        this.sb = decodeJournalSuperblock(data);
        this.sbBytes = copyBytes(data);
      } catch {
        // A damaged journal superblock write: keep following with the old geometry.
      }
      return [];
    }
    if (j < this.sb.first || j >= this.sb.maxLen) return [];
    if (!isJournalMetadataBlock(data)) {
      this.remember(j, data);
      return [];
    }
    let type: number;
    let sequence: number;
    try {
      const h = decodeJournalHeader(data);
      type = h.blockType;
      sequence = h.sequence;
    } catch {
      this.remember(j, data);
      return [];
    }
    if (type === JournalBlockType.descriptor || type === JournalBlockType.revoke) {
      this.remember(j, data);
      if (!this.starts.has(sequence)) {
        // Bounded like the open blocks: a guest writing descriptors it never commits cannot grow this.
        if (this.starts.size >= MAX_OPEN_JOURNAL_BLOCKS) this.starts.delete(this.starts.keys().next().value as number);
        this.starts.set(sequence, j);
      }
      return [];
    }
    if (type !== JournalBlockType.commit) {
      this.remember(j, data);
      return [];
    }
    this.remember(j, data);
    const start = this.starts.get(sequence) ?? (sequence === this.expected ? this.next : undefined);
    if (start === undefined) {
      // A commit of a transaction whose descriptor we never saw and cannot place: nothing to apply.
      this.forget(sequence);
      return [];
    }
    const tx = await this.walk(start, sequence);
    this.forget(sequence);
    if (tx === undefined) return [];
    this.next = this.after(tx.end);
    this.expected = sequence + 1;
    return [{ sequence, blocks: tx.blocks }];
  }

  /**
   * The committed transactions in the log from the superblock's start (what recovery would replay), as read
   * from the disk; stops at the first block that does not continue the log. As jbd2's recovery, a block logged
   * by a transaction is left out when the same or a later transaction of the log revokes it (it was freed, and
   * may hold newer bytes that were never logged: file data).
   */
  async recover(): Promise<CommittedTx[]> {
    const walked: { sequence: number; blocks: { fsBlock: number; data: Uint8Array }[] }[] = [];
    const revokedAt = new Map<number, number>();
    if (this.sb.start === 0) return [];
    let j = this.sb.start;
    let seq = this.sb.sequence;
    let bytes = 0;
    for (let n = 0; n < MAX_TX_BLOCKS; n++) {
      const tx = await this.walk(j, seq, true).catch(() => undefined);
      if (tx === undefined) break;
      bytes += tx.blocks.length * this.sb.blockSize;
      if (bytes > MAX_RECOVERY_BYTES) {
        throw new CorruptError(CorruptKind.JournalBlock, `the log to recover holds more than ${MAX_RECOVERY_BYTES} bytes of blocks (transaction ${seq})`, { block: j });
      }
      walked.push({ sequence: seq, blocks: tx.blocks });
      for (const b of tx.revoked) revokedAt.set(b, seq);
      j = this.after(tx.end);
      seq++;
    }
    this.next = j;
    this.expected = seq;
    if (revokedAt.size === 0) return walked;
    return walked.map((tx) => ({ sequence: tx.sequence, blocks: tx.blocks.filter((b) => (revokedAt.get(b.fsBlock) ?? -1) < tx.sequence) }));
  }

  state(): JournalState {
    return { sb: this.sbBytes, open: [...this.open], starts: [...this.starts], next: this.next, expected: this.expected };
  }

  /** Takes the state {@link state} returned (CorruptError when its superblock does not decode). */
  restore(s: JournalState): void {
    this.sb = decodeJournalSuperblock(s.sb);
    this.sbBytes = s.sb;
    this.open = new Map(s.open);
    this.starts = new Map(s.starts);
    this.next = s.next;
    this.expected = s.expected;
  }

  private remember(j: number, data: Uint8Array): void {
    this.open.delete(j);
    if (this.open.size >= MAX_OPEN_JOURNAL_BLOCKS) {
      const oldest = this.open.keys().next().value as number;
      this.open.delete(oldest);
    }
    this.open.set(j, copyBytes(data));
  }

  private forget(sequence: number): void {
    for (const s of [...this.starts.keys()]) if (s <= sequence) this.starts.delete(s);
  }

  private after(j: number): number {
    return j + 1 >= this.sb.maxLen ? this.sb.first : j + 1;
  }

  private async block(j: number): Promise<Uint8Array> {
    return this.open.get(j) ?? (await this.read(j));
  }

  /**
   * Walks transaction `sequence` from journal block `start` to its commit block (with `revokes`, also the blocks
   * its revoke records name). Undefined when the log at `start` is not that transaction (or it has no commit
   * yet); CorruptError for a damaged committed one.
   */
  private async walk(start: number, sequence: number, revokes = false): Promise<{ blocks: { fsBlock: number; data: Uint8Array }[]; revoked: number[]; end: number } | undefined> {
    const blocks: { fsBlock: number; data: Uint8Array }[] = [];
    const revoked: number[] = [];
    const used: number[] = [];
    let j = start;
    for (let steps = 0; steps < MAX_TX_BLOCKS; steps++) {
      const b = await this.block(j);
      used.push(j);
      if (!isJournalMetadataBlock(b)) return undefined;
      const h = decodeJournalHeader(b);
      if (h.sequence !== sequence) return undefined;
      if (h.blockType === JournalBlockType.commit) {
        decodeCommitBlock(b, this.sb, { block: j });
        for (const u of used) this.open.delete(u);
        return { blocks, revoked, end: j };
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
      for (const tag of d.tags) {
        j = this.after(j);
        const data = await this.block(j);
        used.push(j);
        blocks.push({ fsBlock: tag.fsBlock, data: unescapeBlock(data, tag.escaped) });
      }
      j = this.after(j);
    }
    throw new CorruptError(CorruptKind.JournalBlock, `transaction ${sequence} runs past ${MAX_TX_BLOCKS} blocks`, { block: start });
  }
}
