// CheckpointStore moved to @gammaray/replica (views restore the same checkpoints); the service loads through
// DirectCheckpointStore below.
import { createHash } from 'node:crypto';
import type { JetStreamManager, MsgRequest } from '@nats-io/jetstream';
import type { ObjectStore } from '@nats-io/obj';
import { CheckpointStore, type Checkpoint } from '@gammaray/replica';
import { OBJ_STATE, parseDiskId } from '@gammaray/wire';

export { CheckpointStore, CheckpointFencedError } from '@gammaray/replica';
export type { Checkpoint } from '@gammaray/replica';

/** The object store's stream and subjects (its layout, as every NATS client writes it). */
const STREAM = `OBJ_${OBJ_STATE}`;
const chunkSubject = (id: string): string => `$O.${OBJ_STATE}.C.${id}`;
/** Meta subjects name the object in padded base64url. */
const metaSubject = (name: string): string => `$O.${OBJ_STATE}.M.${Buffer.from(name).toString('base64').replace(/\+/g, '-').replace(/\//g, '_')}`;

const num = (v: string | undefined): number | undefined => (v !== undefined && /^\d{1,16}$/.test(v) ? Number(v) : undefined);

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
    return { state, appliedSeq: num(meta.metadata?.['appliedSeq']), size: num(meta.metadata?.['size']), epoch: num(meta.metadata?.['epoch']) };
  }
}
