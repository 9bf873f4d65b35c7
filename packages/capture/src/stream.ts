import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream';
import { ensureStream, type WantedStream } from '@gammaray/ops';
import { nanos } from '@nats-io/nats-core';
import { STREAM_WRITES, WRITES_WILDCARD } from '@gammaray/wire';

/** Largest message GAMMARAY_WRITES accepts: NATS's default max_payload, above MAX_RECORD_BYTES plus headers. */
export const WRITES_MAX_MSG_SIZE = 1024 * 1024;
/** Default duplicate window: how long a retried publish (same Nats-Msg-Id) is recognised as a duplicate. */
export const DEFAULT_DUPLICATE_WINDOW_MS = 2 * 60 * 1000;

/** Options of {@link ensureWritesStream}. */
export interface WritesStreamOptions {
  /** Replicas (1 on a single server, 3 in a cluster). Default 1. */
  readonly replicas?: number;
  /** Duplicate window in ms. Default 2 minutes; capture's retries must finish within it to be de-duplicated. */
  readonly duplicateWindowMs?: number;
  /** Maximum age of a record in ms; 0 (the default) keeps records until a byte/message limit or forever. */
  readonly maxAgeMs?: number;
  /** Maximum bytes of the stream; -1 (the default) is unlimited. */
  readonly maxBytes?: number;
}

/**
 * Creates stream GAMMARAY_WRITES, or updates the settings capture depends on if it exists: subjects
 * `gammaray.*.writes`, file storage, limits retention (records are the history of every disk, so nothing is
 * removed by consumers acking: only the explicit age/byte limits, none by default, discard old), the duplicate
 * window, and a max message size that admits every record.
 */
export async function ensureWritesStream(jsm: JetStreamManager, opts: WritesStreamOptions = {}): Promise<StreamInfo> {
  const want: WantedStream = {
    name: STREAM_WRITES,
    subjects: [WRITES_WILDCARD],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    num_replicas: opts.replicas ?? 1,
    duplicate_window: nanos(opts.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS),
    max_age: nanos(opts.maxAgeMs ?? 0),
    max_bytes: opts.maxBytes ?? -1,
    max_msg_size: WRITES_MAX_MSG_SIZE,
  };
  return ensureStream(jsm, want);
}
