import { createHash, randomBytes } from 'node:crypto';
import type { JetStreamManager, MsgRequest } from '@nats-io/jetstream';
import type { ObjectStore } from '@nats-io/obj';
import { OBJ_STATE, parseDiskId } from '@gammaray/wire';

/** A stored checkpoint: the engine's state and what it was taken at. */
export interface Checkpoint {
  /** The full checkpoint. */
  readonly state: Uint8Array;
  /**
   * The deltas stored after it, in order (DiskInferencer.deltaCheckpointParts: restore applies them over
   * `state`); the other fields are those of the last. Absent or empty: `state` alone.
   */
  readonly deltas?: readonly Uint8Array[];
  /** Its chain id (a full checkpoint starts one; its deltas carry it). Undefined for checkpoints without deltas. */
  readonly chain?: string | undefined;
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

/** Deltas one full checkpoint can have: a load reads at most this many objects after it. */
export const MAX_CHECKPOINT_DELTAS = 32;

/**
 * The object of a disk's `n`th delta (1-based). Disk ids have no dot, so no disk's full checkpoint has such a
 * name. Names are reused by every chain; a delta counts only when it carries its full checkpoint's chain id.
 */
export const deltaName = (disk: string, n: number): string => `${parseDiskId(disk)}.delta.${n}`;

/** What a save stores besides the bytes. */
export interface CheckpointSaveMeta {
  readonly appliedSeq: number;
  readonly size: number;
  readonly epoch?: number | undefined;
  readonly eventsSeq?: number | undefined;
}

/** Where a delta goes: the chain (of its full checkpoint) and its place in it, from 1. */
export interface DeltaPlace {
  readonly chain: string;
  readonly n: number;
}

/** A stored object as a chain load sees it: its metadata, and its bytes when they are wanted. */
interface StoredObject {
  readonly metadata: Record<string, string> | undefined;
  bytes(): Promise<Uint8Array>;
}

const NO_BYTES = new Uint8Array(0);

/**
 * The disk's full checkpoint and the deltas of its chain, read through `get` (object name -> object): deltas 1, 2,
 * ... until one is missing, of another chain (a later full checkpoint's, or from before this one and not yet
 * replaced), or going back in sequence. A delta's bytes are read only once its metadata says it belongs; without
 * `withBytes`, none are (`state` and every delta are then empty).
 */
async function loadChain(disk: string, get: (name: string) => Promise<StoredObject | undefined>, withBytes = true): Promise<Checkpoint | undefined> {
  const base = await get(parseDiskId(disk));
  if (!base) return undefined;
  const state = withBytes ? await base.bytes() : NO_BYTES;
  const chain = base.metadata?.['chain'];
  const first = checkpointMeta(base.metadata);
  if (chain === undefined) return { state, ...first };
  const deltas: Uint8Array[] = [];
  let last = first;
  for (let n = 1; n <= MAX_CHECKPOINT_DELTAS; n++) {
    const d = await get(deltaName(disk, n));
    if (!d || d.metadata?.['chain'] !== chain || d.metadata['n'] !== String(n)) break;
    const meta = checkpointMeta(d.metadata);
    if (meta.appliedSeq === undefined || last.appliedSeq === undefined || meta.appliedSeq < last.appliedSeq) break;
    deltas.push(withBytes ? await d.bytes() : NO_BYTES);
    last = meta;
  }
  return { ...last, state, deltas, chain };
}

/**
 * Checkpoints in Object Store bucket `gammaray-state` (OBJ_STATE): per disk, a full checkpoint named by the disk
 * id, and the deltas after it (see {@link deltaName}; saveChained, saveDelta).
 * Objects are chunked by the store, so a state of many MiB fits; a put replaces the previous object whole (the
 * reader sees the old one or the new one, each verified against its SHA-256 digest by the client).
 */
export class CheckpointStore {
  constructor(private readonly os: ObjectStore) {}

  /** The disk's checkpoint (with the deltas of its chain), or undefined if there is none. */
  load(disk: string): Promise<Checkpoint | undefined> {
    return loadChain(disk, (name) => this.#getObject(name));
  }

  /**
   * An object's metadata and bytes, undefined when there is none. get() rather than info() + getBlob(): the
   * metadata and the bytes of one and the same revision (read at once: the client's get() streams them).
   */
  async #getObject(name: string): Promise<StoredObject | undefined> {
    const r = await this.os.get(name);
    if (!r) return undefined;
    const chunks: Uint8Array[] = [];
    const reader = r.data.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    const err = await r.error;
    if (err) throw err;
    const bytes = Buffer.concat(chunks);
    return { metadata: r.info.metadata, bytes: async () => bytes };
  }

  /**
   * What the disk's checkpoint restores to (its full checkpoint's metadata, or its last delta's) and how many
   * deltas it has, read from the objects' metadata only: for waiting until a checkpoint covers a sequence.
   */
  async latest(disk: string): Promise<(Omit<Checkpoint, 'state' | 'deltas'> & { readonly deltas: number }) | undefined> {
    const ck = await loadChain(
      disk,
      async (name) => {
        const info = await this.os.info(name);
        return info && !info.deleted ? { metadata: info.metadata, bytes: async () => NO_BYTES } : undefined;
      },
      false,
    );
    if (!ck) return undefined;
    const { state: _state, deltas, ...rest } = ck;
    return { ...rest, deltas: deltas?.length ?? 0 };
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
  async save(disk: string, state: Uint8Array | readonly Uint8Array[], meta: CheckpointSaveMeta): Promise<void> {
    await this.#put(parseDiskId(disk), disk, state, meta, undefined);
  }

  /**
   * Stores a full checkpoint that starts a chain of deltas; returns the chain's id, which
   * {@link saveDelta} takes. Fenced as {@link save}. The deltas of the chain before stay until the new chain's
   * replace them, and count no more (they carry the old chain's id).
   */
  async saveChained(disk: string, state: Uint8Array | readonly Uint8Array[], meta: CheckpointSaveMeta): Promise<string> {
    const chain = randomBytes(9).toString('base64url');
    await this.#put(parseDiskId(disk), disk, state, meta, { chain });
    return chain;
  }

  /**
   * Stores delta `place.n` of chain `place.chain` (DiskInferencer.deltaCheckpointParts: the changes since the
   * checkpoint before it in the chain). Fenced as {@link save}, against the epoch of the disk's full checkpoint.
   */
  async saveDelta(disk: string, state: Uint8Array | readonly Uint8Array[], meta: CheckpointSaveMeta, place: DeltaPlace): Promise<void> {
    if (!Number.isSafeInteger(place.n) || place.n < 1 || place.n > MAX_CHECKPOINT_DELTAS) throw new RangeError(`delta ${place.n} of a checkpoint: 1 to ${MAX_CHECKPOINT_DELTAS}`);
    await this.#put(deltaName(disk, place.n), disk, state, meta, { chain: place.chain, n: String(place.n) });
  }

  async #put(name: string, disk: string, state: Uint8Array | readonly Uint8Array[], meta: CheckpointSaveMeta, extra: Record<string, string> | undefined): Promise<void> {
    const metadata: Record<string, string> = { appliedSeq: String(meta.appliedSeq), size: String(meta.size), ...extra };
    if (meta.eventsSeq !== undefined && meta.eventsSeq > 0) metadata['eventsSeq'] = String(meta.eventsSeq);
    if (meta.epoch !== undefined) {
      const stored = await this.epoch(disk);
      if (stored !== undefined && stored > meta.epoch) {
        throw new CheckpointFencedError(`checkpoint of disk ${disk} not written: it holds epoch ${stored}, this writer has ${meta.epoch}`);
      }
      metadata['epoch'] = String(meta.epoch);
    }
    const info = { name, description: `gammaray inferencer ${extra?.['n'] ? `delta ${extra['n']} of the state` : 'state'} of disk ${disk}`, metadata };
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
    for (let n = 1; n <= MAX_CHECKPOINT_DELTAS; n++) {
      const d = deltaName(disk, n);
      const info = await this.os.info(d);
      if (!info || info.deleted) break;
      await this.os.delete(d);
    }
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

  override load(disk: string): Promise<Checkpoint | undefined> {
    return loadChain(disk, (name) => this.#read(name, disk));
  }

  /**
   * One object's metadata, and its bytes (checked against its digest) read when asked for; undefined when there
   * is none.
   */
  async #read(name: string, disk: string): Promise<StoredObject | undefined> {
    const m = await this.jsm.streams.getMessage(STREAM, { last_by_subj: metaSubject(name) });
    if (!m) return undefined;
    const meta = m.json<ObjectMeta>();
    if (meta.deleted) return undefined;
    const what = name === disk ? `checkpoint of disk ${disk}` : `checkpoint ${name} of disk ${disk}`;
    if (!Number.isSafeInteger(meta.size) || meta.size < 0 || !Number.isSafeInteger(meta.chunks) || meta.chunks < 0) {
      throw new Error(`${what}: meta with size ${meta.size} and ${meta.chunks} chunks`);
    }
    return { metadata: meta.metadata, bytes: () => this.#chunks(meta, what) };
  }

  /** The bytes of the object `meta` describes, one message get per chunk, checked against its digest. */
  async #chunks(meta: ObjectMeta, what: string): Promise<Uint8Array> {
    const state = new Uint8Array(meta.size);
    let at = 0;
    let seq = 0;
    for (let i = 0; i < meta.chunks; i++) {
      // ok: the server's STREAM.MSG.GET takes next_by_subj with seq; the client's type lists only seq or last_by_subj
      const c = await this.jsm.streams.getMessage(STREAM, { seq: seq + 1, next_by_subj: chunkSubject(meta.nuid) } as unknown as MsgRequest);
      if (!c) throw new Error(`${what}: chunk ${i + 1} of ${meta.chunks} is gone (replaced by a newer checkpoint?)`);
      if (at + c.data.length > state.length) throw new Error(`${what}: chunks longer than its size ${meta.size}`);
      state.set(c.data, at);
      at += c.data.length;
      seq = c.seq;
    }
    if (at !== meta.size) throw new Error(`${what}: ${at} bytes in its chunks, ${meta.size} in its meta`);
    const digest = `SHA-256=${createHash('sha256').update(state).digest('base64').replace(/\+/g, '-').replace(/\//g, '_')}`;
    if (digest !== meta.digest) throw new Error(`${what}: digest ${digest}, its meta says ${meta.digest}`);
    return state;
  }
}
