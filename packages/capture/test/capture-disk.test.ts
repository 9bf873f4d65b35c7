import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BSON } from 'bson';
import { MAX_RECORD_BYTES, blocksSubject, decodeBlockReadReply, encodeBlockReadRequest } from '@gammaray/wire';
import { AsyncAckPublisher, attachDisk, getDiskEntry, openDiskRegistry, serveBlockReads, type AttachedDisk } from '../src/index.js';
import { makeImage, readRecords, replay, setup, sha256, sleep, type Env } from './helpers.js';

const MiB = 1024 * 1024;
let env: Env;
const attached: AttachedDisk[] = [];

beforeAll(async () => {
  env = await setup();
});
afterAll(async () => {
  for (const a of attached) await a.detach().catch(() => undefined);
  await env?.close();
});

async function attach(disk: string, size = 16 * MiB, extra: Record<string, unknown> = {}): Promise<AttachedDisk & { image: string; original: string }> {
  const { image, original } = makeImage(env.dir, disk, size);
  const a = await attachDisk({ nc: env.nc, disk, image, instanceId: 'test-capture', ...extra });
  attached.push(a);
  return Object.assign(a, { image, original });
}

/** Data whose first 4 bytes are a tag, so a test can read back the call order from the stream. */
function tagged(tag: number, length: number): Uint8Array {
  const d = randomBytes(length);
  d.writeUInt32LE(tag, 0);
  return d;
}

describe('CaptureDisk', () => {
  it('puts writes, zeroes, trims and flushes into the image and the stream in call order (stream fidelity)', async () => {
    const a = await attach('fidelity');
    const { disk } = a;
    expect(disk.size).toBe(16 * MiB);
    await disk.write(4096, tagged(1, 8192), { fua: false });
    await disk.write(10 * MiB + 512, tagged(2, 4096), { fua: true });
    await disk.writeZeroes(0, 1024, { fua: false, noHole: false });
    await disk.trim(MiB, 64 * 1024, { fua: false });
    await disk.flush();
    await disk.write(8192, tagged(3, 512), { fua: false });
    await disk.writeZeroes(3 * MiB, 3 * MiB, { fua: true, noHole: true });
    expect(Buffer.from(await disk.read(8192, 4)).readUInt32LE(0)).toBe(3);

    const recs = await readRecords(env, 'fidelity');
    const kinds = recs.flatMap((r) => r.rec.ops.map((o) => o.op));
    expect(kinds).toEqual(['write', 'write', 'zero', 'trim', 'flush', 'write', 'zero']);
    expect(recs[0]!.seq).toBeGreaterThanOrEqual(a.entry.firstSeq);
    expect(recs.every((r) => r.rec.disk === 'fidelity')).toBe(true);
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
  });

  it('registers the disk in KV gammaray-disks and marks it detached on detach', async () => {
    const a = await attach('registry', 4 * MiB);
    const kv = await openDiskRegistry(env.nc);
    const e = await getDiskEntry(kv, 'registry');
    expect(e).toEqual({ disk: 'registry', size: 4 * MiB, blockSize: 512, image: a.image, capture: 'test-capture', firstSeq: a.entry.firstSeq, state: 'attached' });
    await a.disk.write(0, new Uint8Array(512).fill(1), { fua: false });
    await a.detach();
    expect((await getDiskEntry(kv, 'registry'))?.state).toBe('detached');
    await expect(a.disk.write(0, new Uint8Array(512), { fua: false })).rejects.toMatchObject({ errno: 5 });
  });

  it('keeps call order for many concurrent un-awaited writes and batches them into fewer records', async () => {
    const a = await attach('concurrent');
    const n = 600;
    const calls: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      // Overlapping ranges: only the call order makes the final bytes come out right.
      const offset = (i % 7) * 2048;
      if (i % 50 === 49) calls.push(a.disk.flush());
      else if (i % 13 === 12) calls.push(a.disk.writeZeroes(offset, 4096, { fua: false, noHole: false }));
      else calls.push(a.disk.write(offset, tagged(i, 4096), { fua: i % 11 === 0 }));
    }
    await Promise.all(calls);
    const recs = await readRecords(env, 'concurrent');
    const ops = recs.flatMap((r) => r.rec.ops);
    expect(ops.length).toBe(n);
    const tags = ops.flatMap((o) => (o.op === 'write' ? [Buffer.from(o.data).readUInt32LE(0)] : []));
    expect(tags).toEqual([...tags].sort((x, y) => x - y));
    expect(recs.length).toBeLessThan(n / 4);
    expect(a.disk.stats.records).toBe(recs.length);
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
    // Every record stored exactly once.
    expect(new Set(recs.map((r) => r.msgId)).size).toBe(recs.length);
  });

  it('splits a 5 MiB write across records that each stay below 1 MiB', async () => {
    const a = await attach('big');
    const data = randomBytes(5 * MiB);
    await a.disk.write(MiB, data, { fua: true });
    const recs = await readRecords(env, 'big');
    expect(recs.length).toBeGreaterThanOrEqual(6);
    for (const r of recs) expect(r.size).toBeLessThanOrEqual(MAX_RECORD_BYTES);
    expect(recs.flatMap((r) => r.rec.ops).reduce((s, o) => s + (o.op === 'write' ? o.length : 0), 0)).toBe(5 * MiB);
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
  });

  it('publishes a turn\'s record before its small image writes, yet a read in the same turn sees them', async () => {
    const inner = new AsyncAckPublisher(env.nc);
    let image = '';
    const atPublish: number[] = [];
    const publisher = {
      publish: (subject: string, data: Uint8Array, opts: Parameters<AsyncAckPublisher['publish']>[2]) => {
        // What the image holds at 64 KiB when the record goes out (read straight from the file, synchronously).
        atPublish.push(readFileSync(image).readUInt32LE(64 * 1024));
        return inner.publish(subject, data, opts);
      },
    };
    const a = await attach('deferred', 16 * MiB, { publisher });
    image = a.image;
    const w = a.disk.write(64 * 1024, tagged(7, 4096), { fua: false });
    const r = a.disk.read(64 * 1024, 4); // same turn: must still see the write
    expect(Buffer.from(await r).readUInt32LE(0)).toBe(7);
    await w;
    const w2 = a.disk.write(64 * 1024, tagged(8, 4096), { fua: false });
    await w2;
    expect(readFileSync(a.image).readUInt32LE(64 * 1024)).toBe(8);
    // The second write's record left while the image still held the first write: its pwrite overlapped the publish.
    expect(atPublish.at(-1)).toBe(7);
    const recs = await readRecords(env, 'deferred');
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
    inner.close();
  });

  it('runs large image writes concurrently yet leaves overlapping ones in call order, flushes after all of them', async () => {
    const a = await attach('overlap');
    const calls: Promise<void>[] = [];
    for (let i = 0; i < 60; i++) {
      // 512 KiB writes (through libuv's pool) overlapping their neighbours, each followed by a 4 KiB write into
      // it (which would be quicker and land first if it did not wait), a flush every 10.
      const at = (i % 7) * 96 * 1024;
      calls.push(a.disk.write(at, tagged(i, 512 * 1024), { fua: i % 9 === 0 }));
      calls.push(a.disk.write(at + 8192, tagged(1000 + i, 4096), { fua: false }));
      if (i % 10 === 9) calls.push(a.disk.flush());
    }
    await Promise.all(calls);
    const recs = await readRecords(env, 'overlap');
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
    const tags = recs.flatMap((r) => r.rec.ops).flatMap((o) => (o.op === 'write' && o.offset % (96 * 1024) === 0 ? [Buffer.from(o.data).readUInt32LE(0)] : []));
    expect(tags).toEqual(Array.from({ length: 60 }, (_, i) => i));
  });

  it('packs concurrent sequential 1 MiB writes into full records, about one per write, in order', async () => {
    const a = await attach('packed');
    // Three rounds, so the later ones reuse the record buffers of the earlier ones.
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 4 }, (_, k) => a.disk.write((round * 4 + k) * MiB, tagged(round * 4 + k, MiB), { fua: false })));
    }
    const recs = await readRecords(env, 'packed');
    expect(recs.length).toBeLessThanOrEqual(16); // 24 without packing: a 960 KiB and a 64 KiB piece per write
    for (const r of recs) expect(r.size).toBeLessThanOrEqual(MAX_RECORD_BYTES);
    const ops = recs.flatMap((r) => r.rec.ops);
    let at = 0;
    for (const o of ops) {
      if (o.op !== 'write') throw new Error(`unexpected ${o.op}`);
      expect(o.offset).toBe(at); // pieces in order, back to back, 4 KiB aligned
      expect(o.offset % 4096).toBe(0);
      at += o.length;
    }
    expect(at).toBe(12 * MiB);
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
  });

  it('recycles receive buffers only after their write is in the image and in a record', async () => {
    const a = await attach('recycle');
    expect(a.disk.receiveBuffer(4096)).toBeUndefined(); // small payloads are not worth pooling
    const first = a.disk.receiveBuffer(MiB)!; // ok: 1 MiB is pooled
    first.set(tagged(1, MiB));
    const pending = a.disk.write(0, first, { fua: false });
    const second = a.disk.receiveBuffer(MiB)!; // ok: as above
    expect(second.buffer).not.toBe(first.buffer); // the first is still in use
    second.set(tagged(2, MiB));
    await Promise.all([pending, a.disk.write(MiB, second, { fua: false })]);
    const third = a.disk.receiveBuffer(512 * 1024)!; // ok: 512 KiB is pooled
    expect([first.buffer, second.buffer]).toContain(third.buffer);
    third.set(tagged(3, 512 * 1024));
    await a.disk.write(2 * MiB, third, { fua: true });
    const recs = await readRecords(env, 'recycle');
    const tags = recs.flatMap((r) => r.rec.ops).flatMap((o) => (o.op === 'write' && o.offset % (512 * 1024) === 0 ? [Buffer.from(o.data).readUInt32LE(0)] : []));
    expect(tags).toEqual([1, 2, 3]);
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
  });

  it('with a publisher taking parts, sends large write data uncopied and takes a receive buffer back only once stored, never after a retried publish', async () => {
    const inner = new AsyncAckPublisher(env.nc);
    type Opts = Parameters<AsyncAckPublisher['publish']>[2];
    const partCounts: number[] = [];
    let hold: Promise<void> | undefined;
    let failNext = false;
    const publisher = {
      publish: (subject: string, data: Uint8Array, opts: Opts) => inner.publish(subject, data, opts),
      publishParts: async (subject: string, parts: readonly Uint8Array[], opts: Opts) => {
        partCounts.push(parts.length);
        if (failNext) {
          failNext = false;
          void inner.publishParts(subject, parts, opts).catch(() => undefined); // the attempt reaches the server, its ack is lost
          throw new Error('ack lost');
        }
        const ack = inner.publishParts(subject, parts, opts);
        if (hold) await hold;
        return ack;
      },
    };
    const a = await attach('parts', 16 * MiB, { publisher });
    let release!: () => void;
    hold = new Promise((resolve) => (release = resolve));
    const first = a.disk.receiveBuffer(MiB)!; // ok: 1 MiB is pooled
    first.set(tagged(1, MiB));
    const w1 = a.disk.write(0, first, { fua: false });
    // In the image, not yet stored: the record still reads the buffer, so it is not handed out again.
    for (let i = 0; i < 200 && readFileSync(a.image).readUInt32LE(0) !== 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect(readFileSync(a.image).readUInt32LE(0)).toBe(1);
    const other = a.disk.receiveBuffer(MiB)!; // ok: pooled size
    expect(other.buffer).not.toBe(first.buffer);
    release();
    hold = undefined;
    await w1;
    expect(a.disk.receiveBuffer(MiB)!.buffer).toBe(first.buffer); // stored after one attempt: back in the pool
    // A record whose first attempt failed is sent again; its buffer is never reused (that attempt may still read it).
    const second = a.disk.receiveBuffer(MiB)!; // ok: pooled size
    second.set(tagged(2, MiB));
    failNext = true;
    await a.disk.write(MiB, second, { fua: false });
    for (let i = 0; i < 4; i++) expect(a.disk.receiveBuffer(MiB)!.buffer).not.toBe(second.buffer);
    // Concurrent sequential writes (buffers of the caller's own), packed into records of a few parts each.
    await Promise.all(Array.from({ length: 6 }, (_, k) => a.disk.write((4 + k) * MiB, tagged(10 + k, MiB), { fua: false })));
    expect(Math.max(...partCounts)).toBeGreaterThanOrEqual(3); // framing, data, framing
    const recs = await readRecords(env, 'parts');
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
    const tags = recs.flatMap((r) => r.rec.ops).flatMap((o) => (o.op === 'write' && o.offset % MiB === 0 ? [Buffer.from(o.data).readUInt32LE(0)] : []));
    expect(tags).toEqual([1, 2, 10, 11, 12, 13, 14, 15]);
    inner.close();
  });

  it('answers block reads with {data, seq} equal to replaying the stream up to seq, under concurrent writes', async () => {
    const a = await attach('blocks', 4 * MiB);
    const server = serveBlockReads(env.nc, a.disk);
    try {
      let stop = false;
      const writer = (async () => {
        let i = 0;
        while (!stop) {
          const batch: Promise<void>[] = [];
          for (let k = 0; k < 20; k++, i++) batch.push(a.disk.write((i % 16) * 4096, tagged(i, 8192), { fua: false }));
          await Promise.all(batch);
        }
      })();
      const replies: { offset: number; data: Uint8Array; seq: number }[] = [];
      for (let q = 0; q < 30; q++) {
        const offset = (q % 4) * 16384;
        const m = await env.nc.request(blocksSubject('blocks'), encodeBlockReadRequest({ offset, length: 65536 }), { timeout: 5000 });
        const r = decodeBlockReadReply(m.data);
        if ('error' in r) throw new Error(r.error.message);
        replies.push({ offset, data: r.data, seq: r.seq });
      }
      stop = true;
      await writer;
      const recs = await readRecords(env, 'blocks');
      expect(new Set(replies.map((r) => r.seq)).size).toBeGreaterThan(3); // reads really interleaved with writes
      for (const r of replies) {
        const img = replay(a.original, recs, r.seq);
        expect(sha256(r.data)).toBe(sha256(img.subarray(r.offset, r.offset + 65536)));
      }
      const bad = await env.nc.request(blocksSubject('blocks'), BSON.serialize({ offset: BigInt(4 * MiB), length: 512 }), { timeout: 5000 });
      expect(decodeBlockReadReply(bad.data)).toMatchObject({ error: { code: 'OutOfRange' } });
      const garbage = await env.nc.request(blocksSubject('blocks'), new Uint8Array([1, 2, 3]), { timeout: 5000 });
      expect(decodeBlockReadReply(garbage.data)).toMatchObject({ error: { code: 'BadRequest' } });
    } finally {
      await server.stop();
    }
  });

  it('rejects out-of-range requests with errno 28 / 22', async () => {
    const a = await attach('range', MiB);
    await expect(a.disk.write(MiB - 512, new Uint8Array(1024), { fua: false })).rejects.toMatchObject({ errno: 28 });
    await expect(a.disk.read(MiB, 1)).rejects.toMatchObject({ errno: 22 });
  });

  it('holds writes while nats-server is down and stores each exactly once after it restarts', async () => {
    const a = await attach('outage');
    const short = await attach('outage-eio', 4 * MiB, { requestTimeoutMs: 700 });
    await a.disk.write(0, tagged(0, 4096), { fua: false });
    await env.server.pause();
    let resolved = 0;
    const pending: Promise<void>[] = [];
    for (let i = 1; i <= 200; i++) {
      pending.push(a.disk.write((i % 9) * 4096, tagged(i, 4096), { fua: false }).then(() => void resolved++));
    }
    const eio = short.disk.write(0, tagged(7, 4096), { fua: false });
    await expect(eio).rejects.toMatchObject({ errno: 5 });
    await sleep(1000);
    expect(resolved).toBe(0);
    await env.server.restart();
    await Promise.all(pending);
    expect(resolved).toBe(200);
    const recs = await readRecords(env, 'outage');
    const tags = recs.flatMap((r) => r.rec.ops).map((o) => (o.op === 'write' ? Buffer.from(o.data).readUInt32LE(0) : -1));
    expect(tags).toEqual(Array.from({ length: 201 }, (_, i) => i)); // none missing, none twice, in order
    expect(new Set(recs.map((r) => r.msgId)).size).toBe(recs.length);
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
    // The request that timed out with EIO was applied, so it is still stored once NATS is back.
    await short.detach();
    const shortRecs = await readRecords(env, 'outage-eio');
    expect(shortRecs.flatMap((r) => r.rec.ops).length).toBe(1);
    expect(sha256(replay(short.original, shortRecs))).toBe(sha256(readFileSync(short.image)));
    expect(a.disk.stats.publishRetries).toBeGreaterThan(0);
  });
});

describe('CaptureDisk with AsyncAckPublisher (the service publisher: records framed in their buffers, which are recycled)', () => {
  it('stores small and large writes in call order over many rounds of recycled record buffers (stream fidelity)', async () => {
    const publisher = new AsyncAckPublisher(env.nc);
    const a = await attach('framed', 32 * MiB, { publisher });
    let tag = 0;
    const starts = new Set<number>(); // where writes begin; split-off pieces begin elsewhere (and carry no tag)
    const write = (offset: number, length: number, fua: boolean): Promise<void> => {
      starts.add(offset);
      return a.disk.write(offset, tagged(tag++, length), { fua });
    };
    for (let round = 0; round < 8; round++) {
      const calls: Promise<void>[] = [];
      for (let i = 0; i < 40; i++) calls.push(write(((round * 40 + i) % 97) * 4096, 4096, false));
      calls.push(write((round % 3) * 3 * MiB + MiB, MiB + 8192, round % 2 === 0));
      calls.push(a.disk.writeZeroes(((round * 5) % 97) * 4096, 8192, { fua: false, noHole: false }));
      calls.push(write(20 * MiB + round * 65536, 60 * 1024, false));
      await Promise.all(calls);
    }
    const recs = await readRecords(env, 'framed');
    const tags = recs.flatMap((r) => r.rec.ops).flatMap((o) => (o.op === 'write' && starts.has(o.offset) ? [Buffer.from(o.data).readUInt32LE(0)] : []));
    expect(tags).toEqual(Array.from({ length: tag }, (_, i) => i)); // each write once, in call order
    expect(new Set(recs.map((r) => r.msgId)).size).toBe(recs.length);
    expect(a.disk.stats.records).toBe(recs.length);
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
    await a.detach();
    publisher.close();
  });

  it('holds writes while nats-server is down and stores each exactly once after it restarts', async () => {
    const publisher = new AsyncAckPublisher(env.nc);
    const a = await attach('framed-outage', 16 * MiB, { publisher, publishTimeoutMs: 500 });
    await a.disk.write(0, tagged(0, 4096), { fua: false });
    await env.server.pause();
    const pending: Promise<void>[] = [];
    for (let i = 1; i <= 100; i++) pending.push(a.disk.write((i % 9) * 4096, tagged(i, i % 10 === 0 ? 300 * 1024 : 4096), { fua: false }));
    await sleep(1200);
    await env.server.restart();
    await Promise.all(pending);
    const recs = await readRecords(env, 'framed-outage');
    // Pieces split off the 300 KiB writes begin past 9 x 4 KiB and carry no tag.
    const tags = recs.flatMap((r) => r.rec.ops).flatMap((o) => (o.op === 'write' && o.offset < 9 * 4096 ? [Buffer.from(o.data).readUInt32LE(0)] : []));
    expect(tags).toEqual(Array.from({ length: 101 }, (_, i) => i)); // none missing, none twice, in order
    expect(sha256(replay(a.original, recs))).toBe(sha256(readFileSync(a.image)));
    expect(a.disk.stats.publishRetries).toBeGreaterThan(0);
    await a.detach();
    publisher.close();
  });
});
