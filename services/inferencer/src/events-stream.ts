import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream';
import { ensureStream, type WantedStream } from '@gammaray/ops';
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
  const want: WantedStream = {
    name: STREAM_EVENTS,
    subjects: [EVENTS_WILDCARD],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    num_replicas: opts.replicas ?? 1,
    duplicate_window: nanos(EVENTS_DUPLICATE_WINDOW_MS),
    max_msg_size: EVENTS_MAX_MSG_SIZE,
  };
  return ensureStream(jsm, want);
}

export { isStreamNotFound } from '@gammaray/ops';
