import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STREAM_WRITES, writesSubject } from '@gammaray/wire';
import { AsyncAckPublisher, PUBLISH_HEADROOM, ensureWritesStream } from '../src/index.js';
import { setup, type Env } from './helpers.js';

let env: Env;
let pub: AsyncAckPublisher;

beforeAll(async () => {
  env = await setup();
  await ensureWritesStream(env.jsm);
  pub = new AsyncAckPublisher(env.nc);
});
afterAll(async () => {
  pub?.close();
  await env?.close();
});

/** `data` placed in a buffer with PUBLISH_HEADROOM bytes before it and 2 after, as capture's record slabs are. */
function withHeadroom(data: Uint8Array): Uint8Array {
  const slab = Buffer.alloc(PUBLISH_HEADROOM + data.length + 2, 0xee);
  slab.set(data, PUBLISH_HEADROOM);
  return slab.subarray(PUBLISH_HEADROOM, PUBLISH_HEADROOM + data.length);
}

async function stored(seq: number): Promise<{ data: Uint8Array; msgId: string | undefined; subject: string }> {
  const m = await env.jsm.streams.getMessage(STREAM_WRITES, { seq });
  if (!m) throw new Error(`no message ${seq}`);
  return { data: m.data, msgId: m.header?.get('Nats-Msg-Id'), subject: m.subject };
}

describe('AsyncAckPublisher', () => {
  it('stores each record byte for byte with its Nats-Msg-Id, framed in its headroom or copied', async () => {
    const subject = writesSubject('pub-frames');
    const sizes = [1, 4096, 27_000, 300_000, 1024 * 1024 - 4096];
    for (const [i, size] of sizes.entries()) {
      const data = randomBytes(size);
      for (const headroom of [false, true]) {
        const msgID = `pub-frames:e:${i}:${headroom ? 'h' : 'c'}`;
        const payload = headroom ? withHeadroom(data) : new Uint8Array(data);
        const ack = await pub.publish(subject, payload, { msgID, timeout: 5000, headroom });
        expect(ack.duplicate).toBe(false);
        const m = await stored(ack.seq);
        expect(m.subject).toBe(subject);
        expect(m.msgId).toBe(msgID);
        expect(Buffer.from(m.data).equals(data)).toBe(true);
        expect(Buffer.from(payload).equals(data)).toBe(true); // the record itself is never written to
      }
    }
  });

  it('keeps many publishes in flight and resolves each with its own sequence', async () => {
    const subject = writesSubject('pub-pipelined');
    const datas = Array.from({ length: 200 }, (_, i) => randomBytes(100 + i * 37));
    const acks = await Promise.all(datas.map((d, i) => pub.publish(subject, withHeadroom(d), { msgID: `pub-pipelined:e:${i}`, timeout: 5000, headroom: true })));
    const seqs = acks.map((a) => a.seq);
    expect(new Set(seqs).size).toBe(200);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b)); // one connection: stored in publish order
    for (const i of [0, 99, 199]) expect(Buffer.from((await stored(seqs[i]!)).data).equals(datas[i]!)).toBe(true);
  });

  it('reports a retry with the same msg id as a duplicate of the stored record', async () => {
    const subject = writesSubject('pub-dup');
    const data = randomBytes(5000);
    const first = await pub.publish(subject, withHeadroom(data), { msgID: 'pub-dup:e:0', timeout: 5000, headroom: true });
    const again = await pub.publish(subject, data, { msgID: 'pub-dup:e:0', timeout: 5000 });
    expect(again).toEqual({ seq: first.seq, duplicate: true });
  });

  it('rejects a record no stream takes (no responders) and one never acked (timeout)', async () => {
    await expect(pub.publish('gammaray-nostream.x', new Uint8Array(10), { msgID: 'x:1', timeout: 5000 })).rejects.toThrow(/did not store/);
    const sub = env.nc.subscribe('gammaray-silent.x', { callback: () => undefined }); // takes it, never answers
    const t0 = performance.now();
    await expect(pub.publish('gammaray-silent.x', new Uint8Array(10), { msgID: 'x:2', timeout: 300 })).rejects.toThrow(/no JetStream ack/);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    sub.unsubscribe();
  });

  it('refuses a subject or msg id that would break the frame (space, CR, LF, empty)', async () => {
    for (const subject of ['', 'a b', 'a\r\nPUB x 1']) {
      await expect(pub.publish(subject, new Uint8Array(1), { msgID: 'ok:1', timeout: 5000 })).rejects.toThrow(/subject/);
    }
    for (const msgID of ['', 'a b', 'x\r\nNats-Expected-Stream: y']) {
      await expect(pub.publish(writesSubject('pub-bad'), new Uint8Array(1), { msgID, timeout: 5000 })).rejects.toThrow(/msg id/);
    }
    const ok = await pub.publish(writesSubject('pub-bad'), new Uint8Array(1), { msgID: 'pub-bad:e:0', timeout: 5000 });
    expect(ok.duplicate).toBe(false); // the connection is still in sync
  });

  it('rejects a record larger than the server takes without sending it', async () => {
    const max = env.nc.info?.max_payload ?? 1024 * 1024;
    await expect(pub.publish(writesSubject('pub-big'), new Uint8Array(max), { msgID: 'pub-big:e:0', timeout: 5000 })).rejects.toThrow(/max_payload/);
  });
});
