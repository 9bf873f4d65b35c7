import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdServer } from '../src/index.js';
import { MemoryDisk, MemoryProvider } from './memory-export.js';
import { hostileSession } from './hostile.js';
import { RawClient } from './raw-client.js';
import { waitFor } from './wait-for.js';

const run = promisify(execFile);
const MiB = 1 << 20;

describe('NbdServer under hostile clients', () => {
  const good = new MemoryDisk('good', 8 * MiB, { exclusive: true });
  const scratch = new MemoryDisk('scratch', 16 * MiB);
  const qdisk = new MemoryDisk('qdisk', 4 * MiB, { exclusive: true });
  const server = new NbdServer({ provider: new MemoryProvider([good, scratch, qdisk]), handshakeTimeoutMs: 300 });
  let port = 0;
  beforeAll(async () => {
    port = (await server.listen('127.0.0.1', 0)).port;
  });
  afterAll(() => server.close({ drainMs: 1000 }));

  it('survives 1,000+ malformed sessions while well-behaved clients keep reading their own writes', async () => {
    const rssBefore = process.memoryUsage().rss;
    let done = false;
    let verified = 0;
    const wellBehaved = (async () => {
      const c = await RawClient.open(port, 'good');
      const shadow = Buffer.alloc(8 * MiB);
      while (!done) {
        const off = randomInt(0, 8 * 16) * 65536;
        const data = randomBytes(65536);
        expect((await c.writeAt(off, data)).error).toBe(0);
        data.copy(shadow, off);
        const check = randomInt(0, 8 * 16) * 65536;
        const r = await c.readAt(check, 65536);
        expect(r.error).toBe(0);
        expect(r.data!.equals(shadow.subarray(check, check + 65536))).toBe(true);
        verified++;
      }
      c.disconnect();
      await c.waitClosed();
    })();
    let qemuRuns = 0;
    const qemuLoop = (async () => {
      while (!done) {
        const p = randomInt(1, 255);
        await run('qemu-io', ['-f', 'raw', '-c', `write -P ${p} 0 256k`, '-c', `read -P ${p} 0 256k`, `nbd://127.0.0.1:${port}/qdisk`]);
        await waitFor(() => !qdisk.holder);
        qemuRuns++;
      }
    })();

    const total = 1200;
    let started = 0;
    const worker = async (): Promise<void> => {
      while (started < total) {
        started++;
        await hostileSession(port);
      }
    };
    await Promise.all(Array.from({ length: 40 }, worker));
    done = true;
    await Promise.all([wellBehaved, qemuLoop]);

    expect(verified).toBeGreaterThan(10);
    expect(qemuRuns).toBeGreaterThan(0);
    await waitFor(() => server.connections === 0, 10_000);
    expect(scratch.closes).toBe(scratch.opens);
    expect(scratch.opens).toBeGreaterThan(100);
    expect(good.closes).toBe(good.opens);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(512 * MiB);
    // Still serving after all that.
    const { stdout } = await run('qemu-io', ['-f', 'raw', '-c', 'read 0 4k', `nbd://127.0.0.1:${port}/good`]);
    expect(stdout).toMatch(/read 4096\/4096/);
  });
});
