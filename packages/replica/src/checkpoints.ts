import { createHash } from 'node:crypto';
import type { JetStreamManager, MsgRequest } from '@nats-io/jetstream';
import type { ObjectStore } from '@nats-io/obj';
import { OBJ_STATE, parseDiskId } from '@gammaray/wire';

/** A stored checkpoint: the engine's state and what it was taken at. */
export interface Checkpoint {
  readonly state: Uint8Array;
  /** The engine's appliedSeq when the state was taken (from the object's metadata; undefined if absent). */
  readonly appliedSeq: number | undefined;
  /** The disk's size then (a checkpoint of a disk of another size belongs to another image). */
  readonly size: number | undefined;
  /** The lease epoch of the instance that wrote it (undefined for checkpoints from before leases). */
  readonly epoch: number | undefined;
  /**
   * The highest GAMMARAY_EVENTS sequence among the disk's events stored when the state was taken: the events of
   * later records are after it (undefined for checkpoints from before it was recorded, or before any event).
   */
  readonly eventsSeq?: number | undefined;
}

/** A checkpoint write was refused: a newer lease epoch already wrote one (this writer lost the disk). */
export class CheckpointFencedError extends Error {
  override name = 'CheckpointFencedError';
}

const num = (v: string | undefined): number | undefined => (v !== undefined && /^\d{1,16}$/.test(v) ? Number(v) : undefined);

/** What a checkpoint's object metadata says (absent or malformed values are undefined). */
function checkpointMeta(m: Record<string, string> | undefined): Omit<Checkpoint, 'state'> {
  return { appliedSeq: num(m?.['appliedSeq']), size: num(m?.['size']), epoch: num(m?.['epoch']), eventsSeq: num(m?.['eventsSeq']) };
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
    return { state, ...checkpointMeta(info.metadata) };
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
  async save(disk: string, state: Uint8Array | readonly Uint8Array[], meta: { appliedSeq: number; size: number; epoch?: number; eventsSeq?: number }): Promise<void> {
    const metadata: Record<string, string> = { appliedSeq: String(meta.appliedSeq), size: String(meta.size) };
    if (meta.eventsSeq !== undefined && meta.eventsSeq > 0) metadata['eventsSeq'] = String(meta.eventsSeq);
    if (meta.epoch !== undefined) {
      const stored = await this.epoch(disk);
      if (stored !== undefined && stored > meta.epoch) {
        throw new CheckpointFencedError(`checkpoint of disk ${disk} not written: it holds epoch ${stored}, this writer has ${meta.epoch}`);
      }
      metadata['epoch'] = String(meta.epoch);
    }
    const info = { name: parseDiskId(disk), description: `gammaray inferencer state of disk ${disk}`, metadata };
    if (state instanceof Uint8Array) {
      await this.os.putBlob(info, state);
      return;
    }
    // The parts one after the other (DiskInferencer.checkpointParts): never the whole state in one more array.
    let i = 0;
    const parts = state;
    await this.os.put(
      info,
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (i < parts.length) controller.enqueue(parts[i++]!); // ok: i < length
          else controller.close();
        },
      }),
    );
  }

  /** Removes the disk's checkpoint (the next start crawls the disk again). */
  async remove(disk: string): Promise<void> {
    const name = parseDiskId(disk);
    if (await this.os.info(name)) await this.os.delete(name);
  }
}

/** The object store's stream and subjects (its layout, as every NATS client writes it). */
const STREAM = `OBJ_${OBJ_STATE}`;
const chunkSubject = (id: string): string => `$O.${OBJ_STATE}.C.${id}`;
/** Meta subjects name the object in padded base64url. */
const metaSubject = (name: string): string => `$O.${OBJ_STATE}.M.${Buffer.from(name).toString('base64').replace(/\+/g, '-').replace(/\//g, '_')}`;

/** The fields of an object's stored meta that a load needs. */
interface ObjectMeta {
  readonly nuid: string;
  readonly size: number;
  readonly chunks: number;
  readonly digest: string;
  readonly deleted?: boolean;
  readonly metadata?: Record<string, string>;
}

/**
 * A {@link CheckpointStore} whose load() reads the object with JetStream message-get requests (the meta by its
 * subject, then each chunk as the next message on the chunk subject) instead of the object store client's get().
 * That get() reads the chunks through an ephemeral push consumer and has no deadline; on a 3-node cluster, after
 * a node was killed and restarted, it delivered nothing for minutes while every chunk was stored, and the disk's
 * worker waited with it. A request has a timeout: a load now fails (and the worker retries) instead of hanging.
 * Writes are the store's own (save() is inherited), so views read these checkpoints as before.
 */
export class DirectCheckpointStore extends CheckpointStore {
  constructor(
    os: ObjectStore,
    private readonly jsm: JetStreamManager,
  ) {
    super(os);
  }

  override async load(disk: string): Promise<Checkpoint | undefined> {
    const m = await this.jsm.streams.getMessage(STREAM, { last_by_subj: metaSubject(parseDiskId(disk)) });
    if (!m) return undefined;
    const meta = m.json<ObjectMeta>();
    if (meta.deleted) return undefined;
    if (!Number.isSafeInteger(meta.size) || meta.size < 0 || !Number.isSafeInteger(meta.chunks) || meta.chunks < 0) {
      throw new Error(`checkpoint of disk ${disk}: meta with size ${meta.size} and ${meta.chunks} chunks`);
    }
    const state = new Uint8Array(meta.size);
    let at = 0;
    let seq = 0;
    for (let i = 0; i < meta.chunks; i++) {
      // ok: the server's STREAM.MSG.GET takes next_by_subj with seq; the client's type lists only seq or last_by_subj
      const c = await this.jsm.streams.getMessage(STREAM, { seq: seq + 1, next_by_subj: chunkSubject(meta.nuid) } as unknown as MsgRequest);
      if (!c) throw new Error(`checkpoint of disk ${disk}: chunk ${i + 1} of ${meta.chunks} is gone (replaced by a newer checkpoint?)`);
      if (at + c.data.length > state.length) throw new Error(`checkpoint of disk ${disk}: chunks longer than its size ${meta.size}`);
      state.set(c.data, at);
      at += c.data.length;
      seq = c.seq;
    }
    if (at !== meta.size) throw new Error(`checkpoint of disk ${disk}: ${at} bytes in its chunks, ${meta.size} in its meta`);
    const digest = `SHA-256=${createHash('sha256').update(state).digest('base64').replace(/\+/g, '-').replace(/\//g, '_')}`;
    if (digest !== meta.digest) throw new Error(`checkpoint of disk ${disk}: digest ${digest}, its meta says ${meta.digest}`);
    return { state, ...checkpointMeta(meta.metadata) };
  }
}
