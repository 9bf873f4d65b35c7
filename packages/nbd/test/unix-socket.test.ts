/**
 * NBD on a unix socket, with real clients (qemu-io, nbdinfo: `nbd+unix:///EXPORT?socket=PATH`): the socket's
 * mode, a stale socket a dead server left replaced, a live one and a plain file refused, the file removed at close.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { NbdServer } from '../src/index.js';
import { MemoryDisk, MemoryProvider } from './memory-export.js';

const run = promisify(execFile);
const MiB = 1 << 20;

describe('NbdServer on a unix socket', () => {
  const work = mkdtempSync(join(tmpdir(), 'nbd-unix-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('serves qemu-io and nbdinfo, with mode 0660, and removes the socket at close', async () => {
    const disk = new MemoryDisk('disk1', 8 * MiB, { exclusive: true });
    const server = new NbdServer({ provider: new MemoryProvider([disk]) });
    const path = join(work, 'nbd.sock');
    await server.listenUnix(path);
    try {
      expect(statSync(path).isSocket()).toBe(true);
      expect(statSync(path).mode & 0o777).toBe(0o660);
      const url = `nbd+unix:///disk1?socket=${path}`;
      const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x7e 64k 64k', '-c', 'read -P 0x7e 64k 64k', url]);
      expect(w.stdout).not.toContain('Pattern verification failed');
      expect(disk.data.subarray(64 * 1024, 128 * 1024).every((b) => b === 0x7e)).toBe(true);
      const info = await run('nbdinfo', ['--json', url]);
      expect(JSON.parse(info.stdout).exports[0]['export-size']).toBe(8 * MiB);
    } finally {
      await server.close();
    }
    expect(existsSync(path)).toBe(false);
  });

  it('replaces a stale socket, refuses one a live server listens on and a file that is not a socket', async () => {
    const provider = new MemoryProvider([new MemoryDisk('disk1', MiB, { exclusive: true })]);
    // A stale socket: a server that listened there and died without removing it (its file stays).
    const stale = join(work, 'stale.sock');
    await run(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]).catch(() => undefined);
    expect(statSync(stale).isSocket()).toBe(true);
    const a = new NbdServer({ provider });
    await a.listenUnix(stale);
    await run('nbdinfo', [`nbd+unix:///disk1?socket=${stale}`]);
    // A second server on a socket the first one serves: refused, and the first one's socket is left alone.
    const b = new NbdServer({ provider });
    await expect(b.listenUnix(stale)).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await run('nbdinfo', [`nbd+unix:///disk1?socket=${stale}`]);
    await a.close();
    const file = join(work, 'plain-file');
    writeFileSync(file, 'keep me');
    await expect(new NbdServer({ provider }).listenUnix(file)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(existsSync(file)).toBe(true);
  });
});
