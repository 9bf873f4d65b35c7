import type { JetStreamManager, StreamConfig, StreamInfo } from '@nats-io/jetstream';

/** A stream's wanted configuration: its name and subjects plus whatever settings the caller depends on. */
export type WantedStream = Partial<StreamConfig> & { readonly name: string; readonly subjects: string[] };

/**
 * Creates stream `want.name`, or, when it exists with any of the wanted settings different, updates those
 * (storage and retention cannot change after creation and are left as they are). Returns the stream's info.
 */
export async function ensureStream(jsm: JetStreamManager, want: WantedStream): Promise<StreamInfo> {
  let info: StreamInfo | undefined;
  try {
    info = await jsm.streams.info(want.name);
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
  }
  if (!info) return jsm.streams.add(want);
  const c = info.config as unknown as Record<string, unknown>; // ok: compared key by key below
  const { name, storage: _storage, retention: _retention, ...update } = want;
  const differs = Object.entries(update).some(([k, v]) => (Array.isArray(v) ? JSON.stringify(c[k]) !== JSON.stringify(v) : c[k] !== v));
  return differs ? jsm.streams.update(name, update) : info;
}

/** Whether a JetStream API error says the stream does not exist. */
export function isStreamNotFound(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { api_error?: { err_code?: number } };
  return e.name === 'StreamNotFoundError' || e.api_error?.err_code === 10059 || /stream not found/i.test(e.message);
}
