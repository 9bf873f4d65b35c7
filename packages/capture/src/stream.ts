import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
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
  const want: Partial<StreamConfig> & { name: string } = {
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
  let info: StreamInfo | undefined;
  try {
    info = await jsm.streams.info(STREAM_WRITES);
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
  }
  if (!info) return jsm.streams.add(want);
  const c = info.config;
  const same =
    c.subjects?.length === 1 &&
    c.subjects[0] === WRITES_WILDCARD &&
    c.num_replicas === want.num_replicas &&
    c.duplicate_window === want.duplicate_window &&
    c.max_msg_size === want.max_msg_size &&
    c.max_age === want.max_age &&
    c.max_bytes === want.max_bytes;
  if (same) return info;
  const { name: _name, storage: _storage, retention: _retention, ...update } = want;
  return jsm.streams.update(STREAM_WRITES, update);
}

function isStreamNotFound(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { code?: number | string; api_error?: { err_code?: number } };
  return e.name === 'StreamNotFoundError' || e.api_error?.err_code === 10059 || /stream not found/i.test(e.message);
}
