import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NbdServer } from '../src/index.js';
import { MemoryDisk, MemoryProvider } from './memory-export.js';
import { waitFor } from './wait-for.js';

const run = promisify(execFile);
const MiB = 1 << 20;

describe('NbdServer with real NBD clients', () => {
  const disk1 = new MemoryDisk('disk1', 64 * MiB, { exclusive: true, description: 'first test disk' });
  const disk2 = new MemoryDisk('disk2', 8 * MiB, { exclusive: true });
  const provider = new MemoryProvider([disk1, disk2]);
  const server = new NbdServer({ provider });
  let port = 0;
  let dir = '';

  beforeAll(async () => {
    port = (await server.listen('127.0.0.1', 0)).port;
    dir = await mkdtemp(join(tmpdir(), 'nbd-test-'));
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    // A client exiting does not wait for the server to release the export; the next one must not race it.
    await waitFor(() => server.connections === 0);
    disk1.ops.length = 0;
  });

  const url = (name: string): string => `nbd://127.0.0.1:${port}/${name}`;

  it('nbdinfo shows the size and the advertised block sizes', async () => {
    const { stdout } = await run('nbdinfo', ['--json', url('disk1')]);
    const info = JSON.parse(stdout) as { exports: Record<string, unknown>[] };
    const e = info.exports[0]!;
    expect(e['export-size']).toBe(64 * MiB);
    expect(e['block_size_minimum']).toBe(512);
    expect(e['block_size_preferred']).toBe(4096);
    expect(e['block_size_maximum']).toBe(32 * MiB);
    expect(e['is_read_only']).toBe(false);
    expect(e['can_flush']).toBe(true);
    expect(e['can_fua']).toBe(true);
    expect(e['can_trim']).toBe(true);
    expect(e['can_zero']).toBe(true);
    expect(e['can_multi_conn']).toBe(false);
    const text = await run('nbdinfo', [url('disk1')]);
    expect(text.stdout).toMatch(/export-size: 67108864/);
    expect(disk1.closes).toBe(disk1.opens);
  });

  it('nbdinfo --list lists every export with its description', async () => {
    const { stdout } = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${port}`]);
    const info = JSON.parse(stdout) as { exports: { 'export-name': string; description?: string; 'export-size': number }[] };
    const byName = new Map(info.exports.map((e) => [e['export-name'], e]));
    expect([...byName.keys()].sort()).toEqual(['disk1', 'disk2']);
    expect(byName.get('disk1')?.description).toBe('first test disk');
    expect(byName.get('disk2')?.['export-size']).toBe(8 * MiB);
  });

  it('qemu-io writes, reads back, zeroes, discards and flushes, in order and with the right flags', async () => {
    // writeback: qemu-io's default writethrough mode would set FUA on every write.
    const { stdout } = await run('qemu-io', [
      '-f', 'raw', '-t', 'writeback',
      '-c', 'write -P 0xab 0 1M',
      '-c', 'read -P 0xab 0 1M',
      '-c', 'write -f -P 0xcd 1M 64k',
      '-c', 'write -z 1M 64k',
      '-c', 'write -z -u 1536k 64k',
      '-c', 'discard 2M 64k',
      '-c', 'flush',
      url('disk1'),
    ]);
    expect(stdout).not.toMatch(/Pattern verification failed|error/i);
    expect(disk1.data.subarray(0, MiB).every((b) => b === 0xab)).toBe(true);
    expect(disk1.data.subarray(MiB, MiB + 65536).every((b) => b === 0)).toBe(true);
    const ops = disk1.ops.filter((o) => o.op !== 'read');
    // qemu may split the 1 MiB write; everything after it is one request each.
    const firstWrites = ops.filter((o) => o.op === 'write' && o.offset! < MiB);
    expect(firstWrites.reduce((n, o) => n + o.length!, 0)).toBe(MiB);
    const rest = ops.slice(firstWrites.length);
    expect(firstWrites.every((o) => o.fua === false)).toBe(true);
    // qemu flushes once more when it closes the image.
    expect(rest.slice(5).every((o) => o.op === 'flush')).toBe(true);
    expect(rest.slice(0, 5)).toEqual([
      { op: 'write', offset: MiB, length: 65536, fua: true },
      // qemu-io -z without -u forbids unmapping: NO_HOLE.
      { op: 'writeZeroes', offset: MiB, length: 65536, fua: false, noHole: true },
      { op: 'writeZeroes', offset: 1536 * 1024, length: 65536, fua: false, noHole: false },
      { op: 'trim', offset: 2 * MiB, length: 65536, fua: false },
      { op: 'flush' },
    ]);
  });

  it('qemu-io aio writes are pipelined: several are in the backend at once', async () => {
    const slow = new MemoryDisk('slow', 4 * MiB, { delayMs: () => 5 + Math.random() * 20 });
    provider.disks.set('slow', slow);
    const cmds: string[] = [];
    for (let i = 0; i < 32; i++) cmds.push('-c', `aio_write -P ${i + 1} ${i * 65536} 64k`);
    cmds.push('-c', 'aio_flush');
    await run('qemu-io', ['-f', 'raw', '-t', 'writeback', ...cmds, url('slow')]);
    const writes = slow.ops.filter((o) => o.op === 'write');
    expect(writes.map((o) => o.offset).sort((a, b) => a! - b!)).toEqual(Array.from({ length: 32 }, (_, i) => i * 65536));
    expect(slow.maxConcurrent).toBeGreaterThan(1);
    for (let i = 0; i < 32; i++) expect(slow.data[i * 65536 + 100]).toBe(i + 1);
    provider.disks.delete('slow');
  });

  it('qemu-img convert to the export and nbdcopy back round-trip 64 MiB', async () => {
    const src = join(dir, 'src.img');
    const out = join(dir, 'out.img');
    const bytes = randomBytes(64 * MiB);
    await writeFile(src, bytes);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, url('disk1')]);
    await waitFor(() => server.connections === 0);
    await run('nbdcopy', [url('disk1'), out]);
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    expect(sha(await readFile(out))).toBe(sha(bytes));
    expect(sha(disk1.data)).toBe(sha(bytes));
  });
});
