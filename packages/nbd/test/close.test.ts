import { describe, expect, it } from 'vitest';
import { NbdServer } from '../src/index.js';
import { MemoryDisk, MemoryProvider } from './memory-export.js';
import { RawClient } from './raw-client.js';
import { waitFor } from './wait-for.js';

describe('NbdServer.close', () => {
  it('replies to every in-flight request, releases exports, then closes sockets', async () => {
    const disk = new MemoryDisk('disk1', 1 << 20, { exclusive: true, delayMs: () => 50 });
    const server = new NbdServer({ provider: new MemoryProvider([disk]) });
    const { port } = await server.listen('127.0.0.1', 0);
    const c = await RawClient.open(port, 'disk1');
    const idle = await RawClient.connect(port); // still negotiating
    for (let i = 0; i < 10; i++) c.request(0, BigInt(i), i * 512, 512);
    await waitFor(() => disk.ops.length === 10);
    expect(server.connections).toBe(2);
    const closed = server.close({ drainMs: 2000 });
    const cookies: bigint[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await c.reply(512);
      expect(r.error).toBe(0);
      cookies.push(r.cookie);
    }
    await closed;
    await c.waitClosed();
    await idle.waitClosed();
    expect(cookies.sort()).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i)));
    expect(server.connections).toBe(0);
    expect(disk.closes).toBe(1);
  });
});
