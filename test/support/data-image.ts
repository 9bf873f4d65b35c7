/**
 * A small ext4 image holding one file, /data.bin, of `count` blocks, and where those blocks are on the disk: for
 * tests that write a file's data through the capture and watch the `write` events it gives, with the helpers for
 * that (a block written with qemu-io, the disk's events read back, a wait for a write event).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { expect } from 'vitest';
import { decodeEvent, type FsEvent } from '@gammaray/inferencer';
import { STREAM_EVENTS, diskEventsFilter } from '@gammaray/wire';

const exec = promisify(execFile);

/** Makes `dir`/`name` (mkfs.ext4 -d, 32 MiB) and returns its path and /data.bin's physical block numbers. */
export async function dataFileImage(dir: string, name: string, count: number, blockSize: number): Promise<{ image: string; blocks: number[] }> {
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'data.bin'), Buffer.alloc(count * blockSize, 'd'));
  const image = join(dir, name);
  await exec('mkfs.ext4', ['-q', '-F', '-b', String(blockSize), '-d', src, image, '32M']);
  const blocks: number[] = [];
  for (let i = 0; i < count; i++) {
    const { stdout } = await exec('debugfs', ['-R', `bmap /data.bin ${i}`, image]);
    blocks.push(Number(stdout.trim()));
  }
  return { image, blocks };
}

/** Writes `blockSize` bytes of `pattern` at block `block` of the export at `url` with qemu-io, then flushes. */
export async function writeDataBlock(url: string, block: number, blockSize: number, pattern: number): Promise<void> {
  const { stdout } = await exec('qemu-io', ['-f', 'raw', '-c', `write -P 0x${pattern.toString(16)} ${block * blockSize} ${blockSize}`, '-c', 'flush', url]);
  expect(stdout).not.toMatch(/error/i);
}

/** Every event of `disk` stored in GAMMARAY_EVENTS, in order, with its msg id. */
export async function readDiskEvents(nc: NatsConnection, disk: string): Promise<{ msgId: string | undefined; event: FsEvent }[]> {
  const filter = diskEventsFilter(disk);
  const info = await (await jetstreamManager(nc)).streams.info(STREAM_EVENTS, { subjects_filter: filter });
  const want = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  const out: { msgId: string | undefined; event: FsEvent }[] = [];
  if (want === 0) return out;
  const c = await jetstream(nc).consumers.get(STREAM_EVENTS, { filter_subjects: filter });
  while (out.length < want) {
    for await (const m of await c.fetch({ max_messages: want - out.length, expires: 2000 })) out.push({ msgId: m.headers?.get('Nats-Msg-Id'), event: decodeEvent(m.data) });
  }
  return out;
}

/** Waits (15 s at most) for a `write` event of `disk` whose data starts with `pattern`; `logs` for the failure. */
export async function waitForWriteEvent(nc: NatsConnection, disk: string, pattern: number, logs: () => string): Promise<FsEvent> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = (await readDiskEvents(nc, disk).catch(() => [])).find((s) => s.event.kind === 'write' && s.event.data?.[0] === pattern);
    if (found) return found.event;
    if (Date.now() > deadline) throw new Error(`no write event of 0x${pattern.toString(16)}; inferencer logs:\n${logs()}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}
