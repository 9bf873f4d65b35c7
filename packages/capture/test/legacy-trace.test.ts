import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_TRACE_SECTORS, TraceCorruptKind, TraceError, applyTrace, attachDisk, readLegacyTrace, type TraceRecord } from '../src/index.js';
import { makeImage, readRecords, replay, setup, sha256, type Env } from './helpers.js';

function traceRecord(sector: bigint, count: number, data = randomBytes(count * 512)): Buffer {
  const h = Buffer.alloc(12);
  h.writeBigInt64LE(sector, 0);
  h.writeInt32LE(count, 8);
  return Buffer.concat([h, data]);
}

/** Feeds bytes in odd-sized chunks so records straddle chunk boundaries. */
function chunked(buf: Buffer): Readable {
  const parts: Buffer[] = [];
  for (let at = 0, k = 1; at < buf.length; k = (k * 7 + 3) % 997) {
    parts.push(buf.subarray(at, at + k + 1));
    at += k + 1;
  }
  return Readable.from(parts);
}

async function collect(gen: AsyncIterable<TraceRecord>): Promise<{ recs: TraceRecord[]; err: unknown }> {
  const recs: TraceRecord[] = [];
  try {
    for await (const r of gen) recs.push(r);
  } catch (err) {
    return { recs, err };
  }
  return { recs, err: undefined };
}

describe('readLegacyTrace', () => {
  it('reads every record across arbitrary chunk boundaries', async () => {
    const a = traceRecord(0n, 1);
    const b = traceRecord(BigInt(2 ** 33), 8); // byte offset beyond 2^32 * 512
    const c = traceRecord(7n, 0, Buffer.alloc(0));
    const { recs, err } = await collect(readLegacyTrace(chunked(Buffer.concat([a, b, c]))));
    expect(err).toBeUndefined();
    expect(recs.map((r) => [r.sector, r.count, r.offset])).toEqual([
      [0, 1, 0],
      [2 ** 33, 8, a.length],
      [7, 0, a.length + b.length],
    ]);
    expect(Buffer.from(recs[1]!.data).equals(b.subarray(12))).toBe(true);
  });

  it('reports a truncated final record as Trace(Truncated) naming its byte offset, after the complete ones', async () => {
    const a = traceRecord(1n, 2);
    const b = traceRecord(3n, 4).subarray(0, 12 + 1000);
    const { recs, err } = await collect(readLegacyTrace(chunked(Buffer.concat([a, b]))));
    expect(recs.length).toBe(1);
    expect(err).toBeInstanceOf(TraceError);
    expect((err as TraceError).kind).toBe(TraceCorruptKind.Truncated);
    expect((err as TraceError).offset).toBe(a.length);
    expect((err as TraceError).message).toContain(`byte ${a.length}`);
    const { err: headerErr } = await collect(readLegacyTrace(Readable.from([Buffer.concat([a, Buffer.alloc(5)])])));
    expect((headerErr as TraceError).kind).toBe(TraceCorruptKind.Truncated);
  });

  it('rejects an absurd sector count as Trace(Count) and a negative sector as Trace(Sector)', async () => {
    const big = traceRecord(0n, 0, Buffer.alloc(0));
    big.writeInt32LE(MAX_TRACE_SECTORS + 1, 8);
    expect(((await collect(readLegacyTrace(Readable.from([big])))).err as TraceError).kind).toBe(TraceCorruptKind.Count);
    big.writeInt32LE(-1, 8);
    expect(((await collect(readLegacyTrace(Readable.from([big])))).err as TraceError).kind).toBe(TraceCorruptKind.Count);
    const neg = traceRecord(-1n, 1);
    expect(((await collect(readLegacyTrace(Readable.from([neg])))).err as TraceError).kind).toBe(TraceCorruptKind.Sector);
  });
});

describe('applyTrace', () => {
  let env: Env;
  beforeAll(async () => {
    env = await setup();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('applies a trace as captured writes: image and stream replay agree', async () => {
    const { image, original } = makeImage(env.dir, 'trace', 8 * 1024 * 1024);
    const att = await attachDisk({ nc: env.nc, disk: 'trace', image, instanceId: 't' });
    const parts: Buffer[] = [];
    for (let i = 0; i < 300; i++) parts.push(traceRecord(BigInt((i * 37) % 16000), 1 + (i % 16)));
    const n = await applyTrace(att.disk, readLegacyTrace(chunked(Buffer.concat(parts))));
    expect(n).toBe(300);
    await att.detach();
    const recs = await readRecords(env, 'trace');
    expect(recs.flatMap((r) => r.rec.ops).length).toBe(300);
    expect(recs.length).toBeLessThan(300);
    expect(sha256(replay(original, recs))).toBe(sha256(readFileSync(image)));
  });
});
