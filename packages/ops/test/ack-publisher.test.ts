import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { startNatsServer, type NatsServer } from '../../../test/support/nats-server.js';
import { AckPublisher } from '../src/index.js';

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
    const p = new AckPublisher(nc, { timeoutMs: 5_000 });
    const acks = await Promise.all(Array.from({ length: 3_000 }, (_, i) => p.publish('acks.a', new TextEncoder().encode(`m${i}`), `a:${i}`)));
    expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: 3_000 }, (_, i) => i + 1));
    expect(acks.every((a) => !a.duplicate)).toBe(true);
    const again = await p.publish('acks.a', new Uint8Array([1]), 'a:7');
    expect(again).toEqual({ seq: 8, duplicate: true });
    expect(p.pending).toBe(0);
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info('ACKS')).state.messages).toBe(3_000);
    const m = await jsm.streams.getMessage('ACKS', { seq: 5 });
    expect(m?.header?.get('Nats-Msg-Id')).toBe('a:4');
    p.close();
  });

  it('sends the headers it is given along with the msg id', async () => {
    const p = new AckPublisher(nc);
    const h = headers();
    h.set('Gammaray-Path', '/x');
    const ack = await p.publish('acks.h', new Uint8Array([2]), 'h:1', h);
    const m = await (await jetstreamManager(nc)).streams.getMessage('ACKS', { seq: ack.seq });
    expect(m?.header?.get('Gammaray-Path')).toBe('/x');
    expect(m?.header?.get('Nats-Msg-Id')).toBe('h:1');
    p.close();
  });

  it('rejects a publish no stream takes (no responders), naming the msg id', async () => {
    const p = new AckPublisher(nc, { timeoutMs: 2_000 });
    await expect(p.publish('nostream.x', new Uint8Array([1]), 'n:1')).rejects.toThrow(/n:1.*no responders|n:1: 503/);
    p.close();
  });

  it('rejects a publish whose ack does not come within the timeout, and everything pending when closed', async () => {
    const p = new AckPublisher(nc, { timeoutMs: 300 });
    // A core subscriber that never answers stands in for a stream that is not acking.
    const silent = nc.subscribe('silent.>');
    const t0 = performance.now();
    await expect(p.publish('silent.x', new Uint8Array([1]), 's:1')).rejects.toThrow(/no JetStream ack for s:1 within 300 ms/);
    expect(performance.now() - t0).toBeLessThan(1_500);
    const waiting = p.publish('silent.y', new Uint8Array([1]), 's:2');
    p.close();
    await expect(waiting).rejects.toThrow(/closed before s:2/);
    await expect(p.publish('acks.a', new Uint8Array([1]), 's:3')).rejects.toThrow(/closed/);
    silent.unsubscribe();
  });
});
