/**
 * An ext2/3/4 image that a test changes as a guest would (debugfs, byte patches), each change fed to an inference
 * engine as the records the capture would publish: one write per changed block, then a flush, then another.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { DiskInferencer, FsEvent } from '@gammaray/inferencer';
import type { WriteRecord } from '@gammaray/wire';

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
