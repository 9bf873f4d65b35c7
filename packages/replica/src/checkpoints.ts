import type { ObjectStore } from '@nats-io/obj';
import { parseDiskId } from '@gammaray/wire';

/** A stored checkpoint: the engine's state and what it was taken at. */
export interface Checkpoint {
  readonly state: Uint8Array;
  /** The engine's appliedSeq when the state was taken (from the object's metadata; undefined if absent). */
  readonly appliedSeq: number | undefined;
  /** The disk's size then (a checkpoint of a disk of another size belongs to another image). */
  readonly size: number | undefined;
  /** The lease epoch of the instance that wrote it (undefined for checkpoints from before leases). */
  readonly epoch: number | undefined;
}

/** A checkpoint write was refused: a newer lease epoch already wrote one (this writer lost the disk). */
export class CheckpointFencedError extends Error {
  override name = 'CheckpointFencedError';
}

const num = (v: string | undefined): number | undefined => (v !== undefined && /^\d{1,16}$/.test(v) ? Number(v) : undefined);

/**
 * Checkpoints in Object Store bucket `gammaray-state` (OBJ_STATE), one object per disk named by the disk id.
 * Objects are chunked by the store, so a state of many MiB fits; a put replaces the previous object whole (the
 * reader sees the old one or the new one, each verified against its SHA-256 digest by the client).
 */
export class CheckpointStore {
  constructor(private readonly os: ObjectStore) {}

  /** The disk's checkpoint, or undefined if there is none. */
  async load(disk: string): Promise<Checkpoint | undefined> {
    const name = parseDiskId(disk);
    // get() rather than info() + getBlob(): the metadata and the bytes of one and the same revision.
    const r = await this.os.get(name);
    if (!r) return undefined;
    const chunks: Uint8Array[] = [];
    let length = 0;
    const reader = r.data.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      length += value.length;
    }
    const err = await r.error;
    if (err) throw err; // a chunk went missing or the digest does not match
    const state = new Uint8Array(length);
    let at = 0;
    for (const c of chunks) {
      state.set(c, at);
      at += c.length;
    }
    const info = r.info;
    return { state, appliedSeq: num(info.metadata?.['appliedSeq']), size: num(info.metadata?.['size']), epoch: num(info.metadata?.['epoch']) };
  }

  /** The lease epoch recorded with the disk's checkpoint (undefined: no checkpoint, or one without epoch). */
  async epoch(disk: string): Promise<number | undefined> {
    const info = await this.os.info(parseDiskId(disk));
    return info ? num(info.metadata?.['epoch']) : undefined;
  }

  /**
   * Stores the disk's checkpoint, replacing the previous one. With `epoch`, the write is refused
   * ({@link CheckpointFencedError}) when the stored checkpoint carries a higher epoch: it was written by a later
   * owner of the disk. The object store has no compare-and-set, so this is check-then-write: a writer that stalls
   * between the check and the put can still replace a newer checkpoint (the lease confirmation just before the
   * check makes that a window of one request).
   */
  async save(disk: string, state: Uint8Array, meta: { appliedSeq: number; size: number; epoch?: number }): Promise<void> {
    const metadata: Record<string, string> = { appliedSeq: String(meta.appliedSeq), size: String(meta.size) };
    if (meta.epoch !== undefined) {
      const stored = await this.epoch(disk);
      if (stored !== undefined && stored > meta.epoch) {
        throw new CheckpointFencedError(`checkpoint of disk ${disk} not written: it holds epoch ${stored}, this writer has ${meta.epoch}`);
      }
      metadata['epoch'] = String(meta.epoch);
    }
    await this.os.putBlob({ name: parseDiskId(disk), description: `gammaray inferencer state of disk ${disk}`, metadata }, state);
  }

  /** Removes the disk's checkpoint (the next start crawls the disk again). */
  async remove(disk: string): Promise<void> {
    const name = parseDiskId(disk);
    if (await this.os.info(name)) await this.os.delete(name);
  }
}
