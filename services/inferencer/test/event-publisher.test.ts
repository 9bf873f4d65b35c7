/**
 * The worker's event publisher against a real nats-server: pipelining within its window, every event stored once
 * in order with its headers, re-publishes dropped as duplicates, and a failure that outlasts the retries failing
 * the publisher for good.
 */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADER_EPOCH, HEADER_PATH, HEADER_WORKER, STREAM_EVENTS, decodePathHeader, eventsSubject } from '@gammaray/wire';
import { startNatsServer, type NatsServer } from '../../../test/support/nats-server.js';
import { EventPublisher, ensureEventsStream } from '../src/index.js';

let server: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  jsm = await jetstreamManager(nc);
  await ensureEventsStream(jsm);
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const stored = async (): Promise<number> => (await jsm.streams.info(STREAM_EVENTS)).state.messages;

describe('EventPublisher', () => {
  it('sends at once while its window has room, waits when it is full, and stores every event once, in order, with its headers', async () => {
    const before = await stored();
    const p = new EventPublisher(nc, { window: 64, worker: 'w-1', epoch: 7 });
    const paths = Array.from({ length: 1_000 }, (_, i) => (i % 3 === 0 ? `/d/ü ${i}` : `/d/f${i}`));
    let waited = 0;
    for (const [i, path] of paths.entries()) {
      const room = p.publish(eventsSubject('pubt', 'create'), new Uint8Array([i & 0xff, i >> 8]), `pubt:${i}:0`, path);
      if (i < 64) expect(room).toBeUndefined(); // the first window's worth goes out without waiting
      if (room) {
        waited++;
        await room;
      }
    }
    expect(waited).toBeGreaterThan(0);
    await p.flush();
    expect(p.stats).toEqual({ published: 1_000, duplicates: 0 });
    expect((await stored()) - before).toBe(1_000);
    for (const i of [0, 1, 500, 999]) {
      const m = await jsm.streams.getMessage(STREAM_EVENTS, { seq: before + 1 + i });
      expect(m?.header?.get('Nats-Msg-Id')).toBe(`pubt:${i}:0`);
      expect(decodePathHeader(m!.header!.get(HEADER_PATH))).toBe(paths[i]);
      expect(m?.header?.get(HEADER_WORKER)).toBe('w-1');
      expect(m?.header?.get(HEADER_EPOCH)).toBe('7');
      expect([...m!.data]).toEqual([i & 0xff, i >> 8]);
    }
    // A restart re-publishes events after its checkpoint: the stream drops them by msg id.
    for (let i = 990; i < 1_000; i++) await p.publish(eventsSubject('pubt', 'create'), new Uint8Array([0]), `pubt:${i}:0`, paths[i]!);
    await p.flush();
    expect(p.stats).toEqual({ published: 1_010, duplicates: 10 });
    expect((await stored()) - before).toBe(1_000);
    p.close();
  });

  it('stores an event whose path is too long for a header without the Gammaray-Path header (the BSON path stays)', async () => {
    const before = await stored();
    const p = new EventPublisher(nc, { timeoutMs: 1_000, retryForMs: 2_000 });
    // A guest can nest directories far past PATH_MAX: percent-encoded, this path alone is 1.2 MB, over max_payload.
    const deep = `/${'ü'.repeat(200_000)}`;
    p.publish(eventsSubject('pubt', 'create'), new Uint8Array([9]), 'pubt:deep:0', deep);
    p.publish(eventsSubject('pubt', 'create'), new Uint8Array([8]), 'pubt:short:0', '/short');
    await p.flush();
    expect((await stored()) - before).toBe(2);
    const long = await jsm.streams.getMessage(STREAM_EVENTS, { seq: before + 1 });
    expect(long?.header?.get('Nats-Msg-Id')).toBe('pubt:deep:0');
    expect(long?.header?.has(HEADER_PATH)).toBe(false);
    const short = await jsm.streams.getMessage(STREAM_EVENTS, { seq: before + 2 });
    expect(decodePathHeader(short!.header!.get(HEADER_PATH))).toBe('/short');
    p.close();
  });

  it('retries an event no stream stores until retryForMs, then fails: flush and later publishes throw', async () => {
    const p = new EventPublisher(nc, { timeoutMs: 200, retryForMs: 600 });
    p.publish('nostream.fs.create', new Uint8Array([1]), 'nostream:1:0', '/x');
    const t0 = performance.now();
    await expect(p.flush()).rejects.toThrow(/nostream:1:0 was not stored/);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(500);
    expect(() => p.publish(eventsSubject('pubt', 'create'), new Uint8Array([1]), 'pubt:x:0', '/y')).toThrow(/not stored/);
    p.close();
  });

  it('logs a streak of failed publishes once per 2 s, not once per event and attempt, and says when events are stored again', async () => {
    const lines: { msg: string; failedAttempts?: number }[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as { msg: string }) });
    const p = new EventPublisher(nc, { timeoutMs: 1_000, retryForMs: 20_000, log });
    // No stream covers the subject yet: every attempt of every event gets "no responders".
    for (let i = 0; i < 100; i++) p.publish('later.fs.create', new Uint8Array([i]), `later:${i}:0`, `/f${i}`);
    await new Promise((r) => setTimeout(r, 1_500));
    await jsm.streams.add({ name: 'LATER', subjects: ['later.>'] });
    await p.flush();
    expect((await jsm.streams.info('LATER')).state.messages).toBe(100);
    const warned = lines.filter((l) => l.msg.startsWith('event publish failed'));
    expect(warned.length).toBeGreaterThanOrEqual(1);
    expect(warned.length).toBeLessThanOrEqual(2); // 100 events failed about 3 times each within ~1.5 s
    const back = lines.filter((l) => l.msg === 'events are being stored again');
    expect(back).toHaveLength(1);
    expect(back[0]!.failedAttempts).toBeGreaterThanOrEqual(100); // ok: length checked
    p.close();
    await jsm.streams.delete('LATER');
  });

  it('after abort() sends nothing more', async () => {
    const p = new EventPublisher(nc);
    p.abort();
    expect(() => p.publish(eventsSubject('pubt', 'create'), new Uint8Array([1]), 'pubt:a:0', '/a')).toThrow(/aborted/);
    p.close();
  });
});
