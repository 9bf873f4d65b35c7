/**
 * An ext2/3/4 image that a test changes as a guest would (debugfs, byte patches), each change fed to an inference
 * engine as the records the capture would publish: one write per changed block, then a flush, then another.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { decodeJournalSuperblock, Ext4Volume, JOURNAL_INO } from '@gammaray/ext4';
import type { DiskInferencer, FsEvent } from '@gammaray/inferencer';
import type { WriteRecord } from '@gammaray/wire';
import { Jbd2Writer } from './jbd2-writer.js';

const exec = promisify(execFile);
const BS = 4096;

/** An image the test changes as a guest would, feeding each change to the engine as records. */
export class EditedDisk {
  seq = 0;
  bytes: Buffer;
  constructor(readonly path: string) {
    this.bytes = readFileSync(path);
  }

  fetcher() {
    return { size: this.bytes.length, read: async (o: number, l: number) => ({ data: Uint8Array.from(this.bytes.subarray(o, o + l)), seq: this.seq }) };
  }

  /** The records for going from the current bytes to the file's bytes: one write per changed block, a flush; then another flush. */
  async change(inf: DiskInferencer, edit: () => Promise<void> | void): Promise<FsEvent[]> {
    writeFileSync(this.path, this.bytes);
    await edit();
    const next = readFileSync(this.path);
    const ops: WriteRecord['ops'][number][] = [];
    for (let off = 0; off < next.length; off += BS) {
      if (!next.subarray(off, off + BS).equals(this.bytes.subarray(off, off + BS))) {
        ops.push({ op: 'write', offset: off, length: BS, data: Uint8Array.from(next.subarray(off, off + BS)), fua: false });
      }
    }
    ops.push({ op: 'flush' });
    this.bytes = next;
    this.seq++;
    const events = await inf.apply(this.seq, { v: 1, disk: 'hostile', ts: new Date(), ops } as WriteRecord);
    // Without a journal a failure is reported when it survives a second flush (ext2 orders nothing).
    this.seq++;
    events.push(...(await inf.apply(this.seq, { v: 1, disk: 'hostile', ts: new Date(), ops: [{ op: 'flush' }] } as WriteRecord)));
    return events;
  }

  #jbd2: { writer: Jbd2Writer; blocks: readonly number[] } | undefined;

  /**
   * The same change as a journalling ext4 makes it: every changed block logged in one jbd2 transaction whose
   * commit is the consistency point (a record of the journal writes and a flush), then the blocks written home
   * (a second record, as the kernel's checkpoint). Returns the events of both. `ts`: the records' capture time.
   */
  async changeJournaled(inf: DiskInferencer, edit: () => Promise<void> | void, ts = new Date()): Promise<FsEvent[]> {
    if (!this.#jbd2) {
      const src = { size: this.bytes.length, read: async (o: number, l: number) => Uint8Array.from(this.bytes.subarray(o, o + l)) };
      const vol = await Ext4Volume.open(src);
      const blocks: number[] = [];
      for (const e of await vol.blockMap(await vol.readInode(vol.superblock.journalInum || JOURNAL_INO))) for (let i = 0; i < e.length; i++) blocks[e.logical + i] = e.physical + i;
      const sb = decodeJournalSuperblock(this.bytes.subarray(blocks[0]! * BS, blocks[0]! * BS + BS)); // ok: a journal has block 0
      this.#jbd2 = { writer: new Jbd2Writer({ sb, blocks }), blocks };
    }
    const { writer, blocks } = this.#jbd2;
    const inJournal = new Set(blocks);
    writeFileSync(this.path, this.bytes);
    await edit();
    const next = readFileSync(this.path);
    const home: [number, Buffer][] = [];
    for (let b = 0; b * BS < next.length; b++) {
      if (inJournal.has(b)) continue;
      const now = next.subarray(b * BS, b * BS + BS);
      if (!now.equals(this.bytes.subarray(b * BS, b * BS + BS))) home.push([b, Buffer.from(now)]);
    }
    const logged: WriteRecord['ops'][number][] = [];
    for (const [j, bytes] of writer.transaction(home)) {
      const phys = blocks[j]!; // ok: the writer stays inside the journal
      bytes.copy(next, phys * BS);
      logged.push({ op: 'write', offset: phys * BS, length: BS, data: Uint8Array.from(bytes), fua: false });
    }
    writeFileSync(this.path, next);
    this.bytes = next;
    this.seq++;
    const events = await inf.apply(this.seq, { v: 1, disk: 'hostile', ts, ops: [...logged, { op: 'flush' }] } as WriteRecord);
    this.seq++;
    const checkpoint: WriteRecord['ops'][number][] = home.map(([b, bytes]) => ({ op: 'write', offset: b * BS, length: BS, data: Uint8Array.from(bytes), fua: false }));
    events.push(...(await inf.apply(this.seq, { v: 1, disk: 'hostile', ts, ops: [...checkpoint, { op: 'flush' }] } as WriteRecord)));
    return events;
  }

  debugfs(cmd: string) {
    return exec('debugfs', ['-w', '-R', cmd, this.path]);
  }

  /** Byte offset of inode `ino` in the image (from debugfs imap). */
  async inodeOffset(ino: number): Promise<number> {
    const { stdout } = await exec('debugfs', ['-R', `imap <${ino}>`, this.path]);
    const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(stdout);
    if (!m) throw new Error(`imap: ${stdout}`);
    return Number(m[1]) * BS + parseInt(m[2]!, 16); // ok: both groups matched
  }
}
