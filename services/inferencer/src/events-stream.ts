import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { EVENTS_WILDCARD, STREAM_EVENTS } from '@gammaray/wire';

/** Largest message GAMMARAY_EVENTS accepts: NATS's default max_payload, above MAX_EVENT_BYTES plus headers. */
export const EVENTS_MAX_MSG_SIZE = 1024 * 1024;
/**
 * Duplicate window of GAMMARAY_EVENTS: how long a re-published event (same `Nats-Msg-Id` `<disk>:<seq>:<idx>`)
 * is recognised and dropped. A restart re-publishes the events after the last checkpoint, so the checkpoint
 * interval and the publish retries must stay well inside it.
 */
export const EVENTS_DUPLICATE_WINDOW_MS = 2 * 60 * 1000;

/**
 * Creates stream GAMMARAY_EVENTS, or updates the settings the inferencer depends on: subjects
 * `gammaray.*.fs.>` (every `gammaray.<disk>.fs.<kind>`), file storage, limits retention, the duplicate window
 * and a max message size that admits every event.
 */
export async function ensureEventsStream(jsm: JetStreamManager, opts: { replicas?: number } = {}): Promise<StreamInfo> {
  const want: Partial<StreamConfig> & { name: string } = {
    name: STREAM_EVENTS,
    subjects: [EVENTS_WILDCARD],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    num_replicas: opts.replicas ?? 1,
    duplicate_window: nanos(EVENTS_DUPLICATE_WINDOW_MS),
    max_msg_size: EVENTS_MAX_MSG_SIZE,
  };
  let info: StreamInfo | undefined;
  try {
    info = await jsm.streams.info(STREAM_EVENTS);
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
  }
  if (!info) return jsm.streams.add(want);
  const c = info.config;
  const same =
    c.subjects?.length === 1 &&
    c.subjects[0] === EVENTS_WILDCARD &&
    c.num_replicas === want.num_replicas &&
    c.duplicate_window === want.duplicate_window &&
    c.max_msg_size === want.max_msg_size;
  if (same) return info;
  const { name: _name, storage: _storage, retention: _retention, ...update } = want;
  return jsm.streams.update(STREAM_EVENTS, update);
}

/** Whether a JetStream API error says the stream does not exist. */
export function isStreamNotFound(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { api_error?: { err_code?: number } };
  return e.name === 'StreamNotFoundError' || e.api_error?.err_code === 10059 || /stream not found/i.test(e.message);
}
