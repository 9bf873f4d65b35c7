/**
 * Reads a disk's records from stream GAMMARAY_WRITES and replays them onto a copy of the starting image:
 * the "stream fidelity" check (the replay must equal the capture's image, byte for byte).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { decodeWriteRecord, STREAM_WRITES, writesSubject, type WriteRecord } from '@gammaray/wire';

/** One stored record with its stream sequence and message id. */
export interface StoredRecord {
  readonly seq: number;
  readonly msgId: string | undefined;
  readonly rec: WriteRecord;
}

/** Every record of `disk`, in stream order; `natsUrl` may list several servers, comma separated. */
export async function readRecords(natsUrl: string, disk: string): Promise<StoredRecord[]> {
  const nc = await connect({ servers: natsUrl.split(',') });
  try {
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const subject = writesSubject(disk);
    const info = await jsm.streams.info(STREAM_WRITES, { subjects_filter: subject });
    const want = info.state.subjects?.[subject] ?? 0;
    const out: StoredRecord[] = [];
    if (want === 0) return out;
    const c = await js.consumers.get(STREAM_WRITES, { filter_subjects: subject });
    while (out.length < want) {
      // Few at a time: 500 records of ~1 MB each would overrun the client's slow-consumer limit.
      const it = await c.fetch({ max_messages: Math.min(16, want - out.length), expires: 2000 });
      for await (const m of it) out.push({ seq: m.seq, msgId: m.headers?.get('Nats-Msg-Id'), rec: decodeWriteRecord(m.data) });
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** The starting image with every write and zero applied in stream order (trims leave bytes as they are). */
export function replay(startImage: string, records: readonly StoredRecord[]): Buffer {
  const img = readFileSync(startImage);
  for (const r of records) {
    for (const op of r.rec.ops) {
      if (op.op === 'write') img.set(op.data, op.offset);
      else if (op.op === 'zero') img.fill(0, op.offset, op.offset + op.length);
    }
  }
  return img;
}

/** Hex sha256. */
export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
