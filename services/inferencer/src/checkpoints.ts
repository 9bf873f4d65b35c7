import type { ObjectStore } from '@nats-io/obj';
import { parseDiskId } from '@gammaray/wire';

/** A stored checkpoint: the engine's state and what it was taken at. */
export interface Checkpoint {
  readonly state: Uint8Array;
  /** The engine's appliedSeq when the state was taken (from the object's metadata; undefined if absent). */
  readonly appliedSeq: number | undefined;
  /** The disk's size then (a checkpoint of a disk of another size belongs to another image). */
  readonly size: number | undefined;
}

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
    const num = (v: string | undefined): number | undefined => (v !== undefined && /^\d{1,16}$/.test(v) ? Number(v) : undefined);
    return { state, appliedSeq: num(info.metadata?.['appliedSeq']), size: num(info.metadata?.['size']) };
  }

  /** Stores the disk's checkpoint, replacing the previous one. */
  async save(disk: string, state: Uint8Array, meta: { appliedSeq: number; size: number }): Promise<void> {
    await this.os.putBlob(
      { name: parseDiskId(disk), description: `gammaray inferencer state of disk ${disk}`, metadata: { appliedSeq: String(meta.appliedSeq), size: String(meta.size) } },
      state,
    );
  }

  /** Removes the disk's checkpoint (the next start crawls the disk again). */
  async remove(disk: string): Promise<void> {
    const name = parseDiskId(disk);
    if (await this.os.info(name)) await this.os.delete(name);
  }
}
