import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNatsServer, type NatsServer } from '../../../test/support/nats-server.js';
import { AckPublisher, PUBLISH_HEADROOM, headerLine } from '../src/index.js';

let server: NatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'ACKS', subjects: ['acks.>'], duplicate_window: 60_000_000_000 });
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('AckPublisher', () => {
  it('stores thousands of messages in order with their acks, and drops a re-publish of a msg id as a duplicate', async () => {
    const p = new AckPublisher(nc);
    const acks = await Promise.all(Array.from({ length: 3_000 }, (_, i) => p.publish('acks.a', new TextEncoder().encode(`m${i}`), { msgID: `a:${i}`, timeout: 5_000 })));
    expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: 3_000 }, (_, i) => i + 1));
    expect(acks.every((a) => !a.duplicate)).toBe(true);
    const again = await p.publish('acks.a', new Uint8Array([1]), { msgID: 'a:7', timeout: 5_000 });
    expect(again).toEqual({ seq: 8, duplicate: true });
    expect(p.inFlight).toBe(0);
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info('ACKS')).state.messages).toBe(3_000);
    const m = await jsm.streams.getMessage('ACKS', { seq: 5 });
    expect(m?.header?.get('Nats-Msg-Id')).toBe('a:4');
    p.close();
  });

  it('sends the header lines it is given along with the msg id, and frames a payload in its headroom without touching it', async () => {
    const p = new AckPublisher(nc);
    const headers = headerLine('Gammaray-Path', encodeURI('/a b/é')) + headerLine('Gammaray-Epoch', '3');
    const ack = await p.publish('acks.h', new Uint8Array([2]), { msgID: 'h:1', timeout: 5_000, headers });
    const jsm = await jetstreamManager(nc);
    const m = await jsm.streams.getMessage('ACKS', { seq: ack.seq });
    expect(m?.header?.get('Gammaray-Path')).toBe('/a%20b/%C3%A9');
    expect(m?.header?.get('Gammaray-Epoch')).toBe('3');
    expect(m?.header?.get('Nats-Msg-Id')).toBe('h:1');
    const data = new Uint8Array(5000).map((_, i) => i & 0xff);
    const slab = new Uint8Array(PUBLISH_HEADROOM + data.length + 2).fill(0xee);
    slab.set(data, PUBLISH_HEADROOM);
    const payload = slab.subarray(PUBLISH_HEADROOM, PUBLISH_HEADROOM + data.length);
    const a2 = await p.publish('acks.h', payload, { msgID: 'h:2', timeout: 5_000, headroom: true, headers });
    expect(Buffer.from((await jsm.streams.getMessage('ACKS', { seq: a2.seq }))!.data).equals(data)).toBe(true);
    expect(Buffer.from(payload).equals(data)).toBe(true);
    p.close();
  });

  it.each([['by default', undefined], ['sending every frame at once', 0]])('stores large and small frames queued in one turn byte for byte (%s)', async (_name, sendAloneBytes) => {
    const p = new AckPublisher(nc, { sendAloneBytes });
    const datas = [300_000, 10, 70_000, 5, 200_000].map((n, i) => new Uint8Array(n).map((_, j) => (i * 31 + j) & 0xff));
    const acks = await Promise.all(datas.map((d, i) => p.publish('acks.big', d, { msgID: `big:${sendAloneBytes}:${i}`, timeout: 5_000 })));
    const jsm = await jetstreamManager(nc);
    for (const [i, a] of acks.entries()) expect(Buffer.from((await jsm.streams.getMessage('ACKS', { seq: a.seq }))!.data).equals(datas[i]!)).toBe(true);
    expect(acks.map((a) => a.seq)).toEqual([...acks.map((a) => a.seq)].sort((x, y) => x - y));
    p.close();
  });

  it('publishes a message in parts (with and without headroom, mixed with whole frames in one turn), stored as their concatenation', async () => {
    const p = new AckPublisher(nc, { sendAloneBytes: 0 });
    const data = (n: number, seed: number) => new Uint8Array(n).map((_, j) => (seed * 17 + j * 7) & 0xff);
    // Headroom: the first part lies after PUBLISH_HEADROOM lent bytes of its buffer, the last one has 2 after it.
    const slab = new Uint8Array(PUBLISH_HEADROOM + 100 + 2).fill(0xee);
    const head = slab.subarray(PUBLISH_HEADROOM, PUBLISH_HEADROOM + 60);
    head.set(data(60, 1));
    const tail = slab.subarray(PUBLISH_HEADROOM + 60, PUBLISH_HEADROOM + 100);
    tail.set(data(40, 2));
    const big = data(700_000, 3);
    const messages: Uint8Array[][] = [[head, big, tail], [data(10, 4), data(300_000, 5), data(1, 6), data(0, 7), data(9, 8)], [data(5, 9)]];
    const acks = await Promise.all([
      p.publishParts('acks.parts', messages[0]!, { msgID: 'parts:0', timeout: 5_000, headroom: true }),
      p.publishParts('acks.parts', messages[1]!, { msgID: 'parts:1', timeout: 5_000 }),
      p.publish('acks.parts', messages[2]![0]!, { msgID: 'parts:2', timeout: 5_000 }),
    ]);
    expect(acks.map((a) => a.seq)).toEqual([...acks.map((a) => a.seq)].sort((x, y) => x - y));
    const jsm = await jetstreamManager(nc);
    for (const [i, a] of acks.entries()) {
      const m = await jsm.streams.getMessage('ACKS', { seq: a.seq });
      expect(Buffer.from(m!.data).equals(Buffer.concat(messages[i]!)), `message ${i}`).toBe(true);
      expect(m?.header?.get('Nats-Msg-Id')).toBe(`parts:${i}`);
    }
    expect(Buffer.from(head).equals(data(60, 1)) && Buffer.from(tail).equals(data(40, 2))).toBe(true);
    await expect(p.publishParts('acks.parts', [], { msgID: 'parts:x', timeout: 1_000 })).rejects.toThrow(/no parts/);
    await expect(p.publishParts('acks.parts', [data(600_000, 1), data(600_000, 2)], { msgID: 'parts:y', timeout: 1_000 })).rejects.toThrow(/max_payload/);
    p.close();
  });

  it('refuses header lines and msg ids that would break the protocol', async () => {
    expect(() => headerLine('Bad Name', 'x')).toThrow(/not a token/);
    expect(() => headerLine('X', 'a\r\nNats-Msg-Id: forged')).toThrow(/not printable/);
    const p = new AckPublisher(nc);
    await expect(p.publish('acks.a', new Uint8Array([1]), { msgID: 'has space', timeout: 1_000 })).rejects.toThrow(/not printable/);
    await expect(p.publish('acks.a b', new Uint8Array([1]), { msgID: 'x:1', timeout: 1_000 })).rejects.toThrow(/subject/);
    p.close();
  });

  it('rejects a publish no stream takes (no responders), naming the msg id', async () => {
    const p = new AckPublisher(nc);
    await expect(p.publish('nostream.x', new Uint8Array([1]), { msgID: 'n:1', timeout: 2_000 })).rejects.toThrow(/n:1.*no responders|n:1: 503/);
    p.close();
  });

  it('rejects a publish whose ack does not come within the timeout, and everything pending when closed', async () => {
    const p = new AckPublisher(nc);
    // A core subscriber that never answers stands in for a stream that is not acking.
    const silent = nc.subscribe('silent.>');
    const t0 = performance.now();
    await expect(p.publish('silent.x', new Uint8Array([1]), { msgID: 's:1', timeout: 300 })).rejects.toThrow(/no JetStream ack for s:1 within the publish timeout/);
    expect(performance.now() - t0).toBeLessThan(1_500);
    const waiting = p.publish('silent.y', new Uint8Array([1]), { msgID: 's:2', timeout: 5_000 });
    p.close();
    await expect(waiting).rejects.toThrow(/closed before s:2/);
    await expect(p.publish('acks.a', new Uint8Array([1]), { msgID: 's:3', timeout: 5_000 })).rejects.toThrow(/closed/);
    silent.unsubscribe();
  });
});
