/**
 * Journal recovery in memory, for reading an image as the kernel would mount it: when the superblock says the
 * journal holds committed transactions not yet written home (the guest crashed, or is running), the file system
 * is read through an overlay of the blocks those transactions log, revoked ones left out, as jbd2's recovery
 * replays them. The image is never written.
 */
import { IoError, type BlockSource } from '@gammaray/disk';
import { CorruptError, CorruptKind, Ext4Volume } from '@gammaray/ext4';
import { JournalFollower } from './journal.js';

/** What {@link replayJournal} replayed. */
export interface ReplayedJournal {
  /** The file system's bytes with the journal's committed transactions applied. */
  readonly source: BlockSource;
  /** Committed transactions found in the log. */
  readonly transactions: number;
  /** Distinct file-system blocks the overlay replaces. */
  readonly blocks: number;
}

/** `base` with some whole blocks replaced. */
class OverlaySource implements BlockSource {
  readonly size: number;
  constructor(
    private readonly base: BlockSource,
    private readonly blockSize: number,
    private readonly blocks: ReadonlyMap<number, Uint8Array>,
  ) {
    this.size = base.size;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new IoError(`read of ${length} bytes at ${offset} is outside the ${this.size}-byte source`, { offset, length });
    }
    const out = await this.base.read(offset, length);
    const bs = this.blockSize;
    const last = Math.floor((offset + length - 1) / bs);
    for (let b = Math.floor(offset / bs); length > 0 && b <= last; b++) {
      const data = this.blocks.get(b);
      if (!data) continue;
      const from = Math.max(offset, b * bs);
      const to = Math.min(offset + length, (b + 1) * bs);
      out.set(data.subarray(from - b * bs, to - b * bs), from - offset);
    }
    return out;
  }

  close(): Promise<void> {
    return this.base.close?.() ?? Promise.resolve();
  }
}

/**
 * The file system on `source` with its journal replayed in memory, or undefined when there is nothing to replay:
 * no journal, or the superblock does not ask for recovery (a cleanly unmounted file system), or the log holds no
 * committed transaction. Throws an Ext4Error (CorruptError) when the journal cannot be read (a damaged journal inode or superblock).
 */
export async function replayJournal(source: BlockSource, volume?: Ext4Volume): Promise<ReplayedJournal | undefined> {
  const vol = volume ?? (await Ext4Volume.open(source));
  const sb = vol.superblock;
  if (!sb.has.journal || !sb.has.needsRecovery || sb.journalInum === 0) return undefined;
  const bs = sb.blockSize;
  const map = await vol.blockMap(await vol.readInode(sb.journalInum));
  const first = map[0];
  if (!first || first.logical !== 0) throw new CorruptError(CorruptKind.JournalBlock, 'the journal inode maps no first block', { inode: sb.journalInum });
  const readPhysical = async (p: number): Promise<Uint8Array> => {
    if ((p + 1) * bs > source.size) throw new CorruptError(CorruptKind.JournalBlock, `journal block at block ${p} is past the end of the file system`, { block: p });
    return source.read(p * bs, bs);
  };
  const follower: JournalFollower = new JournalFollower(await readPhysical(first.physical), map, async (j) => {
    const p = follower.physicalOf(j);
    if (p === undefined) throw new CorruptError(CorruptKind.JournalBlock, `journal block ${j} is not mapped by the journal inode`, { inode: sb.journalInum });
    return readPhysical(p);
  });
  const txs = await follower.recover();
  if (txs.length === 0) return undefined;
  const blocks = new Map<number, Uint8Array>();
  for (const tx of txs) {
    for (const b of tx.blocks) {
      if ((b.fsBlock + 1) * bs > source.size) continue; // a tag past the end (damage): recovery would fail the write
      blocks.set(b.fsBlock, b.data);
    }
  }
  return { source: new OverlaySource(source, bs, blocks), transactions: txs.length, blocks: blocks.size };
}
