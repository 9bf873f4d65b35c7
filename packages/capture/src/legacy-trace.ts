import type { Readable } from 'node:stream';
import type { CaptureDisk } from './capture-disk.js';
import { TraceCorruptKind, TraceError } from './errors.js';

/** Sector size of the legacy trace. */
export const TRACE_SECTOR_SIZE = 512;
/** Bytes of a trace record header: int64 LE sector, int32 LE count. */
export const TRACE_HEADER_SIZE = 12;
/** Largest sector count of one trace record (32 MiB, the NBD request cap). */
export const MAX_TRACE_SECTORS = (32 * 1024 * 1024) / TRACE_SECTOR_SIZE;
/** Writes applyTrace keeps in flight (so capture can batch them into records). */
export const TRACE_APPLY_WINDOW = 64;

/**
 * One record of gammaray's old QEMU binary trace: `count` sectors written at `sector`. Layout, repeated without
 * framing or trailer:
 * | offset | size        | field  |
 * |--------|-------------|--------|
 * | 0x0    | 8           | sector (int64 LE) |
 * | 0x8    | 4           | count (int32 LE)  |
 * | 0xC    | count * 512 | data              |
 */
export interface TraceRecord {
  /** Sector number; a safe integer, so `sector * 512` is exact too. */
  readonly sector: number;
  readonly count: number;
  readonly data: Uint8Array;
  /** Byte offset of the record in the trace. */
  readonly offset: number;
}

/** Chunks of a stream consumed in exact-size pieces without re-concatenating everything. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  length = 0;
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.length += chunk.length;
  }
  take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      const c = this.#chunks[0];
      if (!c) throw new Error('ByteQueue underflow'); // ok: callers check length first
      const avail = c.length - this.#head;
      const k = Math.min(avail, n - done);
      out.set(c.subarray(this.#head, this.#head + k), done);
      done += k;
      this.#head += k;
      if (this.#head === c.length) {
        this.#chunks.shift();
        this.#head = 0;
      }
    }
    this.length -= n;
    return out;
  }
}

/**
 * Reads the legacy trace format. Throws {@link TraceError}: `Count` for a negative count or one above
 * MAX_TRACE_SECTORS, `Sector` for a negative or too large sector, `Truncated` (with the byte offset of the
 * record) when the stream ends inside a record, after yielding every complete record before it.
 */
export async function* readLegacyTrace(stream: Readable | AsyncIterable<Uint8Array | string>): AsyncGenerator<TraceRecord> {
  const q = new ByteQueue();
  let offset = 0;
  let header: { sector: number; count: number } | undefined;
  const drain = function* (): Generator<TraceRecord> {
    for (;;) {
      if (!header) {
        if (q.length < TRACE_HEADER_SIZE) return;
        const h = q.take(TRACE_HEADER_SIZE);
        const dv = new DataView(h.buffer, h.byteOffset, h.byteLength);
        const sector = dv.getBigInt64(0, true);
        const count = dv.getInt32(8, true);
        if (count < 0 || count > MAX_TRACE_SECTORS) {
          throw new TraceError(TraceCorruptKind.Count, `sector count ${count} is not in 0..${MAX_TRACE_SECTORS}`, offset);
        }
        if (sector < 0n || sector > BigInt(Math.floor(Number.MAX_SAFE_INTEGER / TRACE_SECTOR_SIZE))) {
          throw new TraceError(TraceCorruptKind.Sector, `sector ${sector} is negative or too large`, offset);
        }
        header = { sector: Number(sector), count };
      }
      const size = header.count * TRACE_SECTOR_SIZE;
      if (q.length < size) return;
      const rec: TraceRecord = { sector: header.sector, count: header.count, data: q.take(size), offset };
      offset += TRACE_HEADER_SIZE + size;
      header = undefined;
      yield rec;
    }
  };
  for await (const chunk of stream as AsyncIterable<Uint8Array | string>) {
    q.push(typeof chunk === 'string' ? Buffer.from(chunk, 'binary') : chunk);
    yield* drain();
  }
  if (header || q.length > 0) {
    const have = header ? TRACE_HEADER_SIZE + q.length : q.length;
    const want = header ? `${TRACE_HEADER_SIZE + header.count * TRACE_SECTOR_SIZE}` : `at least ${TRACE_HEADER_SIZE}`;
    throw new TraceError(TraceCorruptKind.Truncated, `trace ends inside a record: ${have} bytes of ${want}`, offset);
  }
}

/**
 * Applies trace records to a disk as writes, in trace order, keeping up to TRACE_APPLY_WINDOW writes in flight.
 * Returns the number of records applied. A record beyond the disk's end fails the whole apply (after the writes
 * already issued settle).
 */
export async function applyTrace(disk: CaptureDisk, records: AsyncIterable<TraceRecord>): Promise<number> {
  const inflight: Promise<void>[] = [];
  let n = 0;
  let firstError: unknown;
  const track = (p: Promise<void>): Promise<void> =>
    p.catch((err: unknown) => {
      firstError ??= err;
    });
  try {
    for await (const rec of records) {
      if (firstError) break;
      if (rec.count === 0) continue;
      inflight.push(track(disk.write(rec.sector * TRACE_SECTOR_SIZE, rec.data, { fua: false })));
      n++;
      if (inflight.length >= TRACE_APPLY_WINDOW) await inflight.shift();
    }
  } finally {
    await Promise.all(inflight);
  }
  if (firstError) throw firstError;
  return n;
}
