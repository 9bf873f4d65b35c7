import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdErrno, NbdServer } from '../src/index.js';
import { MemoryDisk, MemoryProvider } from './memory-export.js';
import { ERR, RawClient, REP_ACK, REP_INFO, REP_SERVER } from './raw-client.js';
import { waitFor } from './wait-for.js';

const MiB = 1 << 20;

describe('NbdServer protocol edges (raw client)', () => {
  const disk = new MemoryDisk('disk1', 4 * MiB, { exclusive: true });
  const ro = new MemoryDisk('ro', MiB, { readOnly: true });
  const slow = new MemoryDisk('slow', MiB, { delayMs: () => Math.random() * 10 });
  const server = new NbdServer({ provider: new MemoryProvider([disk, ro, slow]), handshakeTimeoutMs: 500 });
  let port = 0;
  beforeAll(async () => {
    port = (await server.listen('127.0.0.1', 0)).port;
  });
  afterAll(() => server.close());

  it('replies EINVAL to out-of-bounds, misaligned, oversized and unknown requests and stays usable', async () => {
    const c = await RawClient.open(port, 'disk1');
    expect((await c.readAt(4 * MiB - 512, 1024)).error).toBe(NbdErrno.EINVAL); // past the end
    expect((await c.readAt(2 ** 60, 512)).error).toBe(NbdErrno.EINVAL); // offset beyond 2^53
    expect((await c.readAt(100, 512)).error).toBe(NbdErrno.EINVAL); // misaligned offset
    expect((await c.readAt(0, 100)).error).toBe(NbdErrno.EINVAL); // misaligned length
    expect((await c.readAt(0, 0)).error).toBe(NbdErrno.EINVAL);
    c.request(0, 9n, 0, 64 * MiB); // read longer than maxBlockSize
    expect(await c.reply()).toEqual({ error: NbdErrno.EINVAL, cookie: 9n });
    for (const type of [5, 7, 8, 99, 0xffff]) {
      c.request(type, 7n, 0, 512);
      expect(await c.reply()).toEqual({ error: NbdErrno.EINVAL, cookie: 7n });
    }
    c.request(0, 8n, 0, 512, 1 << 2); // DF flag without structured replies
    expect((await c.reply()).error).toBe(NbdErrno.EINVAL);
    // A bad WRITE still has its payload consumed, so the stream stays in sync.
    expect((await c.writeAt(4 * MiB, Buffer.alloc(512, 1))).error).toBe(NbdErrno.ENOSPC);
    expect((await c.writeAt(3, Buffer.alloc(512, 1))).error).toBe(NbdErrno.EINVAL);
    const data = randomBytes(8192);
    expect((await c.writeAt(4096, data)).error).toBe(0);
    expect((await c.readAt(4096, 8192)).data).toEqual(data);
    c.disconnect();
    await c.waitClosed();
  });

  it('drops a client that announces a WRITE longer than maxBlockSize after replying EINVAL', async () => {
    const c = await RawClient.open(port, 'disk1');
    c.request(1, 5n, 0, 0xffff_ffff);
    expect(await c.reply()).toEqual({ error: NbdErrno.EINVAL, cookie: 5n });
    await c.waitClosed();
  });

  it('replies EPERM to writes, trims and zeroes on a read-only export', async () => {
    const c = await RawClient.open(port, 'ro');
    expect((await c.writeAt(0, Buffer.alloc(512))).error).toBe(NbdErrno.EPERM);
    c.request(4, 3n, 0, 512);
    expect((await c.reply()).error).toBe(NbdErrno.EPERM);
    c.request(6, 4n, 0, 512);
    expect((await c.reply()).error).toBe(NbdErrno.EPERM);
    expect((await c.readAt(0, 512)).error).toBe(0);
    c.destroy();
  });

  it('starts pipelined writes in arrival order and passes FUA / NO_HOLE through', async () => {
    slow.ops.length = 0;
    const c = await RawClient.open(port, 'slow');
    const n = 200;
    for (let i = 0; i < n; i++) {
      const flags = i % 3 === 0 ? 1 : 0;
      c.request(1, BigInt(i), (i % 4) * 512, 512, flags, Buffer.alloc(512, i & 0xff));
    }
    c.request(6, 1000n, 4096, 1024, 3);
    const cookies = new Set<bigint>();
    for (let i = 0; i <= n; i++) {
      const r = await c.reply();
      expect(r.error).toBe(0);
      cookies.add(r.cookie);
    }
    expect(cookies.size).toBe(n + 1);
    const writes = slow.ops.filter((o) => o.op === 'write');
    expect(writes.map((o) => [o.offset, o.fua])).toEqual(Array.from({ length: n }, (_, i) => [(i % 4) * 512, i % 3 === 0]));
    expect(slow.ops.at(-1)).toEqual({ op: 'writeZeroes', offset: 4096, length: 1024, fua: true, noHole: true });
    expect(slow.maxConcurrent).toBeGreaterThan(1);
    c.disconnect();
    await c.waitClosed();
  });

  it('answers every in-flight request before closing on DISC', async () => {
    const c = await RawClient.open(port, 'slow');
    for (let i = 0; i < 20; i++) c.request(0, BigInt(i), i * 512, 512);
    c.request(2, 99n, 0, 0);
    for (let i = 0; i < 20; i++) expect((await c.reply(512)).error).toBe(0);
    await c.waitClosed();
  });

  it('gives a second writer NBD_REP_ERR_POLICY while the first holds the export, and access after it leaves', async () => {
    await waitFor(() => server.connections === 0);
    const first = await RawClient.open(port, 'disk1');
    const second = await RawClient.connect(port);
    await second.greet();
    const busy = await second.go('disk1');
    expect(busy.at(-1)?.type).toBe(ERR(2));
    expect(busy.at(-1)?.data.toString()).toMatch(/in use/);
    first.disconnect();
    await first.waitClosed();
    await waitFor(() => disk.holder === false);
    const ok = await second.go('disk1'); // same session: a refused GO is not a disconnect
    expect(ok.at(-1)?.type).toBe(REP_ACK);
    expect((await second.readAt(0, 512)).error).toBe(0);
    second.disconnect();
    await second.waitClosed();
    await waitFor(() => server.connections === 0);
    expect(disk.closes).toBe(disk.opens);
  });

  it('negotiates: INFO, LIST, unknown export, bad names, unsupported and oversized options, ABORT', async () => {
    const c = await RawClient.connect(port);
    expect(await c.greet()).toBe(3);
    const info = await c.go('disk1', 6, [1, 2, 3, 77]);
    expect(info.map((r) => r.type)).toEqual([REP_INFO, REP_INFO, REP_INFO, REP_ACK]);
    expect(info[0]!.data.readBigUInt64BE(2)).toBe(BigInt(4 * MiB));
    expect(info[0]!.data.readUInt16BE(10)).toBe(1 | 4 | 8 | 32 | 64);
    expect([info[1]!.data.readUInt32BE(2), info[1]!.data.readUInt32BE(6), info[1]!.data.readUInt32BE(10)]).toEqual([512, 4096, 32 * MiB]);
    expect(info[2]!.data.subarray(2).toString()).toBe('disk1');
    c.sendOption(3);
    const names: string[] = [];
    for (let r = await c.readOptReply(); r.type === REP_SERVER; r = await c.readOptReply()) {
      names.push(r.data.toString('latin1', 4, 4 + r.data.readUInt32BE(0)));
    }
    expect(names.sort()).toEqual(['disk1', 'ro', 'slow']);
    expect((await c.go('nope')).at(-1)?.type).toBe(ERR(6));
    expect((await c.go('../etc/passwd')).at(-1)?.type).toBe(ERR(6));
    expect((await c.go('')).at(-1)?.type).toBe(ERR(6));
    c.sendOption(8); // STRUCTURED_REPLY
    expect((await c.readOptReply()).type).toBe(ERR(1));
    c.sendOption(0x1234, Buffer.alloc(10));
    expect((await c.readOptReply()).type).toBe(ERR(1));
    c.sendOption(6, Buffer.alloc(5000));
    expect((await c.readOptReply()).type).toBe(ERR(9));
    c.sendOption(6, Buffer.from([0, 0, 0, 9, 0, 0]));
    expect((await c.readOptReply()).type).toBe(ERR(3));
    c.sendOption(2);
    expect((await c.readOptReply()).type).toBe(REP_ACK);
    await c.waitClosed();
  });

  it('serves NBD_OPT_EXPORT_NAME with and without NO_ZEROES', async () => {
    for (const flags of [1, 3]) {
      const c = await RawClient.connect(port);
      await c.read(18);
      const f = Buffer.alloc(4);
      f.writeUInt32BE(flags);
      c.write(f);
      c.sendOption(1, Buffer.from('ro'));
      const r = await c.read(flags === 3 ? 10 : 134);
      expect(r.readBigUInt64BE(0)).toBe(BigInt(MiB));
      expect(r.readUInt16BE(8) & 2).toBe(2);
      expect((await c.readAt(0, 512)).error).toBe(0);
      c.disconnect();
      await c.waitClosed();
    }
  });

  it('drops clients without FIXED_NEWSTYLE, with unknown flags, and those that stall the handshake', async () => {
    for (const flags of [0, 2, 1 | 8]) {
      const c = await RawClient.connect(port);
      await c.read(18);
      const f = Buffer.alloc(4);
      f.writeUInt32BE(flags);
      c.write(f);
      await c.waitClosed();
    }
    const t0 = Date.now();
    const slowloris = await RawClient.connect(port);
    slowloris.write(Buffer.from([0, 0]));
    await slowloris.waitClosed();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    await waitFor(() => server.connections === 0);
  });
});
