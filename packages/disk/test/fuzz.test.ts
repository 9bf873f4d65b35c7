import { describe, expect, it } from 'vitest';
import { DiskError, MemoryBlockSource, listVolumes, readPartitions, type PartitionTable } from '../src/index.js';
import { SECTOR, buildGptDisk, fixEntriesCrc, le32, prng, standardGptParts, writeEbrChain, writeMbrSector } from './builders.js';

const SEED = 0x5eed2024;
const ITERATIONS = 1000; // per table kind: 2000 mutated tables, each read lenient and strict
const MAX_MS = 250;

/** Values that tend to hit edges: zero, one, sign bits, all ones, near the disk size. */
const INTERESTING = [0, 1, 2, 0x7f, 0x80, 0xff, 0x7fffffff, 0x80000000, 0xffffffff, 8191, 8192, 4095, 22528];

type Rand = () => number;

function pick<T>(r: Rand, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] as T; // ok: index < length
}

/** Mutates 1..8 spots of `disk` inside the byte ranges `regions`. */
function mutate(r: Rand, disk: Uint8Array, regions: readonly [number, number][]): void {
  const n = 1 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    const [from, to] = pick(r, regions);
    const off = from + Math.floor(r() * (to - from));
    const how = r();
    if (how < 0.4) disk[off] = Math.floor(r() * 256);
    else if (how < 0.6) disk[off] = (disk[off] ?? 0) ^ (1 << Math.floor(r() * 8));
    else if (off + 4 <= to) le32(disk, off - (off % 4), pick(r, INTERESTING));
  }
}

function checkTable(t: PartitionTable, size: number): void {
  for (const p of t.partitions) {
    expect(Number.isSafeInteger(p.start) && Number.isSafeInteger(p.size)).toBe(true);
    expect(p.size).toBeGreaterThan(0);
    expect(p.start + p.size).toBeLessThanOrEqual(size);
  }
  expect(['gpt', 'mbr', 'none']).toContain(t.scheme);
}

/** Reads `disk` lenient and strict; only DiskErrors may escape, and each read must be quick. */
async function readAll(disk: Uint8Array): Promise<{ ok: number; errors: number; ms: number }> {
  let ok = 0;
  let errors = 0;
  let ms = 0;
  for (const strict of [false, true]) {
    const src = new MemoryBlockSource(disk);
    const t0 = performance.now();
    try {
      const t = await readPartitions(src, { strict });
      checkTable(t, disk.length);
      await listVolumes(src, { strict });
      ok++;
    } catch (err) {
      if (!(err instanceof DiskError)) throw err;
      errors++;
    }
    ms = Math.max(ms, performance.now() - t0);
  }
  return { ok, errors, ms };
}

describe('fuzzing', () => {
  it(`survives ${ITERATIONS} mutations of a GPT (seed ${SEED.toString(16)})`, async () => {
    const r = prng(SEED);
    const { disk, layout } = buildGptDisk(standardGptParts());
    const pristine = disk.slice();
    const head: [number, number] = [0, 34 * SECTOR];
    const tail: [number, number] = [layout.backupEntriesLba * SECTOR, disk.length];
    // Weight the header sectors and the used entries: that is where the decoding happens.
    const regions: [number, number][] = [
      [0, SECTOR],
      [SECTOR, SECTOR + 96],
      [2 * SECTOR, 2 * SECTOR + 256],
      [8191 * SECTOR, 8191 * SECTOR + 96],
      [layout.backupEntriesLba * SECTOR, layout.backupEntriesLba * SECTOR + 256],
      head,
      tail,
    ];
    let worst = 0;
    const totals = { ok: 0, errors: 0 };
    for (let i = 0; i < ITERATIONS; i++) {
      mutate(r, disk, regions);
      // Half the time re-seal the checksums so the field checks behind them run.
      if (r() < 0.5) {
        fixEntriesCrc(disk, 1);
        fixEntriesCrc(disk, 8191);
      }
      const res = await readAll(disk);
      totals.ok += res.ok;
      totals.errors += res.errors;
      worst = Math.max(worst, res.ms);
      disk.set(pristine.subarray(...head), head[0]);
      disk.set(pristine.subarray(...tail), tail[0]);
    }
    expect(worst).toBeLessThan(MAX_MS);
    // Both outcomes must actually occur, or the fuzzer is not reaching anything.
    expect(totals.ok).toBeGreaterThan(100);
    expect(totals.errors).toBeGreaterThan(100);
  });

  it(`survives ${ITERATIONS} mutations of an MBR with an EBR chain (seed ${SEED.toString(16)})`, async () => {
    const r = prng(SEED + 1);
    const disk = new Uint8Array(8192 * SECTOR);
    writeMbrSector(disk, 0, [
      { type: 0x83, start: 64, count: 1000 },
      { type: 0x0f, start: 2048, count: 6000 },
    ]);
    const ebrs = [2048, 3000, 4000, 5000, 6000];
    writeEbrChain(
      disk,
      2048,
      ebrs.map((ebr) => ({ ebr, start: ebr + 8, count: 500 })),
    );
    const sectors = [0, ...ebrs];
    const pristine = disk.slice();
    const regions = sectors.map((s): [number, number] => [s * SECTOR + 0x1b8, (s + 1) * SECTOR]);
    let worst = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      mutate(r, disk, regions);
      // Sometimes point a link at another EBR (or itself) to make loops.
      if (r() < 0.3) le32(disk, pick(r, ebrs) * SECTOR + 0x1be + 16 + 8, pick(r, ebrs) - 2048);
      const res = await readAll(disk);
      worst = Math.max(worst, res.ms);
      for (const s of sectors) disk.set(pristine.subarray(s * SECTOR, (s + 1) * SECTOR), s * SECTOR);
    }
    expect(worst).toBeLessThan(MAX_MS);
  });

  it('survives random sectors 0 and 1 with and without signatures', async () => {
    const r = prng(SEED + 2);
    const disk = new Uint8Array(4096 * SECTOR);
    for (let i = 0; i < 300; i++) {
      for (let k = 0; k < 2 * SECTOR; k++) disk[k] = Math.floor(r() * 256);
      if (i % 2 === 0) disk.set([0x55, 0xaa], 0x1fe);
      if (i % 3 === 0) disk.set(new TextEncoder().encode('EFI PART'), SECTOR);
      if (i % 4 === 0) for (let s = 0; s < 4; s++) disk[0x1be + s * 16] = 0;
      const res = await readAll(disk);
      expect(res.ms).toBeLessThan(MAX_MS);
    }
  });
});
