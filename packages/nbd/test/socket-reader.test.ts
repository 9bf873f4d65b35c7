import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketReader, adoptSocket } from '../src/socket-reader.js';

/**
 * SocketReader against a real loopback TCP connection, in both modes: 'data' events, and pooled (the server's:
 * reads land in recycled slabs through `onread`, large payloads straight in their destination). The sender writes
 * frames (4-byte length, then that many bytes) in pieces of random sizes; the reader takes them as the NBD
 * connection does (length, then payload, large ones into a caller-supplied buffer). Every payload taken is kept
 * and checked at the end, so a slab reused while a taken buffer still pointed into it would show.
 */

let server: Server | undefined;
afterEach(() => {
  server?.close();
  server = undefined;
});

/** A connected pair: the accepted side made by `make` (which sets up the reader), the client side plain. */
async function pair(make: (accepted: Socket) => { socket: Socket; reader: SocketReader }): Promise<{ client: Socket; reader: SocketReader; socket: Socket }> {
  let made: { socket: Socket; reader: SocketReader } | undefined;
  const accepted = new Promise<void>((resolve) => {
    server = createServer({ pauseOnConnect: true }, (s) => {
      made = make(s);
      resolve();
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const port = (server!.address() as { port: number }).port;
  const client = connect(port, '127.0.0.1');
  await Promise.all([new Promise((resolve) => client.once('connect', resolve)), accepted]);
  return { client, ...made! };
}

function events(accepted: Socket): { socket: Socket; reader: SocketReader } {
  const reader = new SocketReader(accepted);
  accepted.resume();
  return { socket: accepted, reader };
}

/** Payload sizes: mostly NBD-like (headers, 4 KiB, 1 MiB), some odd, some around the direct-read threshold. */
function sizes(count: number): number[] {
  const pick = [0, 1, 28, 512, 4096, 4096, 4096, 65535, 65536, 65537, 200_000, 1 << 20, 1 << 20];
  return Array.from({ length: count }, (_, i) => (i % 7 === 6 ? Math.floor(Math.random() * 300_000) : pick[Math.floor(Math.random() * pick.length)]!));
}

async function exchange(mode: (s: Socket) => { socket: Socket; reader: SocketReader }): Promise<void> {
  const { client, reader, socket } = await pair(mode);
  const lens = sizes(400);
  const payloads = lens.map((n) => randomBytes(n));
  // One byte stream, sent in pieces of random sizes (so frames straddle reads every which way).
  const stream = Buffer.concat(payloads.flatMap((p) => [Buffer.from(Uint32Array.of(p.length).buffer), p]));
  void (async () => {
    for (let at = 0; at < stream.length; ) {
      const n = Math.min(stream.length - at, 1 + Math.floor(Math.random() * 150_000));
      if (!client.write(stream.subarray(at, at + n))) await new Promise((resolve) => client.once('drain', resolve));
      at += n;
      if (Math.random() < 0.2) await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  const taken: Buffer[] = [];
  const dests: Buffer[] = [];
  for (let i = 0; i < lens.length; i++) {
    const h = reader.tryTake(4) ?? (await reader.read(4));
    const n = h.readUInt32LE(0);
    expect(n).toBe(lens[i]);
    // Large payloads go into a buffer of the caller's (as the capture supplies), sometimes none is given.
    const alloc = n >= 4096 && i % 3 !== 0 ? () => {
      const d = Buffer.alloc(n + 16).subarray(8, 8 + n);
      dests.push(d);
      return d;
    } : undefined;
    const p = n === 0 ? Buffer.alloc(0) : (reader.tryTake(n, alloc) ?? (await reader.read(n, alloc)));
    taken.push(p);
    // Let later reads happen while earlier payloads are still held.
    if (i % 5 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const digest = (bufs: Buffer[]): string[] => bufs.map((b) => createHash('sha256').update(b).digest('hex'));
  expect(digest(taken)).toEqual(digest(payloads));
  client.destroy();
  socket.destroy();
}

describe('SocketReader', () => {
  it('pooled mode (onread into recycled slabs, large payloads read in place) delivers every frame intact', async () => {
    await exchange(adoptSocket);
  }, 30_000);

  it('data-event mode delivers every frame intact', async () => {
    await exchange(events);
  }, 30_000);

  it('pooled mode gives an idle connection a small read buffer and grows it while reads fill it', () => {
    const reader = new SocketReader();
    const first = reader.onread.buffer();
    expect(first.length).toBeLessThanOrEqual(16 << 10);
    let room = first;
    for (let i = 0; i < 8; i++) {
      reader.onread.callback(room.length, room); // a read that filled all the room it had
      room = reader.onread.buffer();
    }
    expect(room.length).toBeGreaterThanOrEqual(64 << 10);
    expect(room.length).toBeLessThanOrEqual(256 << 10);
  });

  it('pooled mode reads a large payload into the caller\'s buffer, not a copy of it', async () => {
    const { client, reader, socket } = await pair(adoptSocket);
    const payload = randomBytes(1 << 20);
    const dest = Buffer.alloc(1 << 20);
    const got = reader.read(1 << 20, () => dest);
    client.write(payload.subarray(0, 1000));
    await new Promise((resolve) => setTimeout(resolve, 20));
    client.write(payload.subarray(1000));
    const out = await got;
    expect(out.buffer).toBe(dest.buffer);
    expect(out.equals(payload)).toBe(true);
    client.destroy();
    socket.destroy();
  });
});
