import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCK_READ_BYTES, blocksSubject, decodeBlockReadRequest, encodeBlockReadReply, type BlockReadReply } from '@gammaray/wire';
import { startNatsServer, type NatsServer } from '../../../test/support/nats-server.js';
import { BlockFetchError, NatsBlockFetcher } from '../src/block-fetcher.js';

const SIZE = 4 * 1024 * 1024;
let server: NatsServer;
let nc: NatsConnection;

/** The byte a fake disk holds at `offset`. */
const byteAt = (offset: number): number => (offset * 7 + (offset >> 12)) & 0xff;

/** Answers block reads for `disk` with `answer(request index, offset, length)`; returns the requests seen. */
function responder(disk: string, answer: (n: number, offset: number, length: number) => BlockReadReply): { offset: number; length: number }[] {
  const seen: { offset: number; length: number }[] = [];
  nc.subscribe(blocksSubject(disk), {
    callback: (_err, msg) => {
      const req = decodeBlockReadRequest(msg.data);
      seen.push(req);
      msg.respond(encodeBlockReadReply(answer(seen.length, req.offset, req.length)));
    },
  });
  return seen;
}

const bytes = (offset: number, length: number): Uint8Array => Uint8Array.from({ length }, (_, i) => byteAt(offset + i));

beforeAll(async () => {
  server = await startNatsServer({ jetstream: false });
  nc = await connect({ servers: server.url });
}, 30_000);

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('NatsBlockFetcher', () => {
  it('splits a long read into MAX_BLOCK_READ_BYTES pieces, re-reads lagging pieces and reports the common seq', async () => {
    // Seqs 1, 2 for the first two pieces, then 3 for everything: the first piece is read again.
    const seen = responder('split', (n, offset, length) => ({ data: bytes(offset, length), seq: Math.min(n, 3) }));
    const f = new NatsBlockFetcher(nc, 'split', SIZE);
    const offset = 4096;
    const length = MAX_BLOCK_READ_BYTES + 100_000;
    const r = await f.read(offset, length);
    expect(Buffer.from(r.data).equals(Buffer.from(bytes(offset, length)))).toBe(true);
    expect(r.seq).toBe(3);
    expect(seen.slice(0, 2)).toEqual([
      { offset, length: MAX_BLOCK_READ_BYTES },
      { offset: offset + MAX_BLOCK_READ_BYTES, length: 100_000 },
    ]);
    expect(seen.length).toBeGreaterThanOrEqual(3); // the lagging pieces were read again
  });

  it('reports the maximum seq when writes keep landing between re-reads', async () => {
    responder('busy', (n, offset, length) => ({ data: bytes(offset, length), seq: n }));
    const r = await new NatsBlockFetcher(nc, 'busy', SIZE).read(0, 2 * MAX_BLOCK_READ_BYTES);
    expect(r.seq).toBeGreaterThanOrEqual(3);
  });

  it('fails with the reply code, retrying only Unavailable/Internal, and refuses reads outside the disk', async () => {
    const oor = responder('oor', () => ({ error: { code: 'OutOfRange', message: 'no' } }));
    await expect(new NatsBlockFetcher(nc, 'oor', SIZE).read(0, 512)).rejects.toMatchObject({ name: 'BlockFetchError', code: 'OutOfRange' });
    expect(oor).toHaveLength(1);
    const busy = responder('unavail', () => ({ error: { code: 'Unavailable', message: 'closing' } }));
    await expect(new NatsBlockFetcher(nc, 'unavail', SIZE, { attempts: 3 }).read(0, 512)).rejects.toMatchObject({ code: 'Unavailable' });
    expect(busy).toHaveLength(3);
    await expect(new NatsBlockFetcher(nc, 'nobody', SIZE, { attempts: 2, timeoutMs: 300 }).read(0, 512)).rejects.toMatchObject({ code: 'NoReply' });
    await expect(new NatsBlockFetcher(nc, 'oor', SIZE).read(SIZE - 1, 2)).rejects.toBeInstanceOf(BlockFetchError);
  });

  it('rejects a reply whose data has the wrong length', async () => {
    responder('short', (_n, offset) => ({ data: bytes(offset, 10), seq: 1 }));
    await expect(new NatsBlockFetcher(nc, 'short', SIZE).read(0, 512)).rejects.toMatchObject({ code: 'BadReply' });
  });
});
