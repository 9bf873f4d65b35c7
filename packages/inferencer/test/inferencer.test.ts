/**
 * DiskInferencer driven without a guest: images made by mkfs.ext4 -d, changed by debugfs and by hand-made write
 * records (test/support/edited-disk.ts feeds each change as the records the capture would publish).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { WriteRecord } from '@gammaray/wire';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventKind, type FsEvent } from '../src/events.js';
import { DiskInferencer } from '../src/inferencer.js';
import { EditedDisk } from '../../../test/support/edited-disk.js';

const exec = promisify(execFile);
const BS = 4096;
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-inferencer-'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A 4 KiB-block image without a journal (each flush is a consistency point) holding `files`, and an engine on it. */
async function setUp(name: string, files: Record<string, Uint8Array>, journal: boolean): Promise<{ disk: EditedDisk; inf: DiskInferencer }> {
  const src = join(work, `${name}.src`);
  mkdirSync(src, { recursive: true });
  for (const [f, data] of Object.entries(files)) writeFileSync(join(src, f), data);
  const img = join(work, `${name}.img`);
  await exec('mkfs.ext4', ['-q', '-F', ...(journal ? [] : ['-O', '^has_journal']), '-b', String(BS), '-N', '64', '-d', src, img, '16M']);
  const disk = new EditedDisk(img);
  const { inferencer: inf } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'prealloc' }, 0, new Date());
  return { disk, inf };
}

/** Applies one record of `ops` (as the capture would publish a guest's writes), then a flush. */
async function writeRecord(disk: EditedDisk, inf: DiskInferencer, ops: WriteRecord['ops'][number][]): Promise<FsEvent[]> {
  for (const op of ops) if (op.op === 'write') disk.bytes.set(op.data, op.offset);
  disk.seq++;
  return inf.apply(disk.seq, { v: 1, disk: 'prealloc', ts: new Date(), ops: [...ops, { op: 'flush' }] } as WriteRecord);
}

function blockWrite(block: number, data: Uint8Array): WriteRecord['ops'][number] {
  const bytes = new Uint8Array(BS);
  bytes.set(data);
  return { op: 'write', offset: block * BS, length: BS, data: bytes, fua: false };
}

/** The physical block of logical block `logical` of the file at `path`. */
function physicalOf(inf: DiskInferencer, path: string, logical: number): number {
  const node = inf.nodes.get(inf.tree().find((e) => e.path === path)!.ino)!; // ok: the tests make the file
  const run = node.runs!.find((r) => logical >= r.logical && logical < r.logical + r.length)!; // ok: a regular file mapping the block
  return run.physical + (logical - run.logical);
}

/** Each write as [path, offset, length, whether its bytes are all zeros]. */
function writesOf(events: FsEvent[]): [string, number, number, boolean][] {
  return events.filter((e) => e.kind === EventKind.Write).map((e) => [e.path, e.offset!, e.length!, e.data!.every((b) => b === 0)]); // ok: writes carry offset, length, small ones their bytes
}

describe('DiskInferencer: preallocated (unwritten) extents and ranges zeroed in place', () => {
  it.each([false, true])('journal %s: reports a range zeroed in place (its extent marked unwritten, not freed) as a write of zeros', async (journal) => {
    const { disk, inf } = await setUp(`zeroed-${journal}`, { z: Buffer.alloc(20000, 'a') }, journal);
    // FALLOC_FL_ZERO_RANGE over written blocks: the same blocks, the extent marked unwritten (ee_len + 32768).
    const edit = async () => {
      await disk.debugfs('sif /z block[4] 0x8005');
    };
    const events = journal ? await disk.changeJournaled(inf, edit) : await disk.change(inf, edit);
    expect(writesOf(events)).toEqual([['/z', 0, 20000, true]]);
  });

  it('reports data written into a preallocated block before the commit that maps it when ext4 marks the block written, not before', async () => {
    const { disk, inf } = await setUp('moved', { z: Buffer.alloc(20000, 'a') }, false);
    // The extent moved to free blocks and marked unwritten (freed and preallocated again), with bytes in its first
    // block written before the flush that maps it: they read as zeros while the block is unwritten.
    const events = await disk.change(inf, async () => {
      await disk.debugfs('sif /z block[4] 0x8005');
      await disk.debugfs('sif /z block[5] 2000');
      const b = Buffer.from(readFileSync(disk.path));
      b.fill('n', 2000 * BS, 2000 * BS + 100);
      writeFileSync(disk.path, b);
    });
    expect(writesOf(events)).toEqual([['/z', 0, 20000, true]]);
    // Marked written (as dioread_nolock does once the data is in): now they are the file's.
    const converted = await disk.change(inf, async () => {
      await disk.debugfs('sif /z block[4] 0x0005');
    });
    expect(writesOf(converted)).toEqual([['/z', 0, BS, false]]);
    expect(Buffer.from(converted.find((e) => e.kind === EventKind.Write)!.data!).subarray(0, 101).toString('latin1')).toBe(`${'n'.repeat(100)}\0`); // ok: one write, small
  });

  it('reports a partial write into a preallocated block together with the data waiting for it', async () => {
    const { disk, inf } = await setUp('merged', { z: Buffer.alloc(20000, 'a') }, false);
    await disk.change(inf, async () => {
      await disk.debugfs('sif /z block[4] 0x8005');
      await disk.debugfs('sif /z block[5] 2000');
      const b = Buffer.from(readFileSync(disk.path));
      b.fill('n', 2000 * BS, 2000 * BS + 100);
      writeFileSync(disk.path, b);
    });
    const events = await writeRecord(disk, inf, [{ op: 'write', offset: 2000 * BS + 200, length: 2, data: Buffer.from('pp'), fua: false }]);
    expect(writesOf(events)).toEqual([['/z', 0, BS, false]]);
    expect(Buffer.from(events[0]!.data!).subarray(0, 203).toString('latin1')).toBe(`${'n'.repeat(100)}${'\0'.repeat(100)}pp\0`); // ok: one small write
  });

  it('reports no zeros for blocks preallocated into a hole or past end of file, nor for zeros written into them', async () => {
    const sparse = new Uint8Array(6 * BS + 1);
    sparse[6 * BS] = 0x68;
    const { disk, inf } = await setUp('holes', { h: sparse }, false);
    const events = await disk.change(inf, async () => {
      await disk.debugfs('fallocate /h 1 3');
      await disk.debugfs('fallocate /h 8 9');
    });
    expect(inf.nodes.get(inf.tree().find((e) => e.path === '/h')!.ino)!.runs!.filter((r) => r.unwritten).length).toBeGreaterThan(0); // ok: made above
    expect(writesOf(events)).toEqual([]);
    // ext4 zeroes the rest of a small unwritten extent out when part of it is written: consumers hold zeros there.
    const zeros = new Uint8Array(BS);
    expect(writesOf(await writeRecord(disk, inf, [blockWrite(physicalOf(inf, '/h', 2), zeros), blockWrite(physicalOf(inf, '/h', 4), zeros)]))).toEqual([]);
    expect(writesOf(await writeRecord(disk, inf, [{ op: 'zero', offset: physicalOf(inf, '/h', 1) * BS, length: BS, fua: false }]))).toEqual([]);
  });

  it('reports data written into a preallocated block, and zeros written over that data, also after a checkpoint', async () => {
    const sparse = new Uint8Array(6 * BS + 1);
    const { disk, inf: first } = await setUp('written', { h: sparse }, false);
    await disk.change(first, async () => {
      await disk.debugfs('fallocate /h 1 3');
    });
    const b2 = physicalOf(first, '/h', 2);
    expect(writesOf(await writeRecord(disk, first, [blockWrite(b2, Buffer.from('xyz'))]))).toEqual([['/h', 2 * BS, BS, false]]);
    const inf = await DiskInferencer.restore(first.checkpoint(), disk.fetcher(), { disk: 'prealloc' });
    const zeros = new Uint8Array(BS);
    expect(writesOf(await writeRecord(disk, inf, [blockWrite(b2, zeros), blockWrite(physicalOf(inf, '/h', 3), zeros)]))).toEqual([['/h', 2 * BS, BS, true]]);
  });

  it('reports zeros written into preallocated blocks of a file it has not seen preallocated (after a crawl, consumers may hold anything)', async () => {
    const src = join(work, 'crawled.src');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'h'), new Uint8Array(6 * BS + 1));
    const img = join(work, 'crawled.img');
    await exec('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-b', String(BS), '-N', '64', '-d', src, img, '16M']);
    await exec('debugfs', ['-w', '-R', 'fallocate /h 1 3', img]);
    const disk = new EditedDisk(img);
    const { inferencer: inf } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'prealloc' }, 0, new Date());
    expect(writesOf(await writeRecord(disk, inf, [blockWrite(physicalOf(inf, '/h', 2), new Uint8Array(BS))]))).toEqual([['/h', 2 * BS, BS, true]]);
  });
});
