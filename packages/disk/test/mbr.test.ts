import { describe, expect, it } from 'vitest';
import {
  CorruptError,
  DiskCorruptKind,
  MAX_MBR_LOGICAL,
  MemoryBlockSource,
  decodeEbr,
  decodeMbr,
  isExtendedPartition,
  listVolumes,
  readPartitions,
} from '../src/index.js';
import { SECTOR, buildMbrDisk, le32, writeEbrChain, writeMbrSector } from './builders.js';

async function rejection(p: Promise<unknown>): Promise<CorruptError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CorruptError);
  return err as CorruptError;
}

describe('decodeMbr', () => {
  it('decodes the four slots and the disk signature', () => {
    const { disk } = buildMbrDisk();
    const mbr = decodeMbr(disk.subarray(0, SECTOR));
    expect(mbr.diskSignature).toBe(0x1a2b3c4d);
    expect(mbr.entries).toHaveLength(4);
    expect(mbr.entries[0]).toEqual({ slot: 0, bootable: true, type: 0x83, startLba: 2048, sectorCount: 20480 });
    expect(mbr.entries[3]).toEqual({ slot: 3, bootable: false, type: 0, startLba: 0, sectorCount: 0 });
    expect(Object.isFrozen(mbr.entries[0])).toBe(true);
  });

  it('rejects a missing 0x55AA as Corrupt(MbrSignature)', () => {
    const { disk } = buildMbrDisk();
    disk[0x1ff] = 0;
    expect(() => decodeMbr(disk.subarray(0, SECTOR))).toThrow(expect.objectContaining({ kind: DiskCorruptKind.MbrSignature, field: 'signature', block: 0 }));
  });

  it('rejects a short sector as Corrupt(MbrSignature)', () => {
    expect(() => decodeMbr(new Uint8Array(100))).toThrow(CorruptError);
  });

  it('rejects a boot indicator other than 0x00/0x80 as Corrupt(MbrEntry)', () => {
    const { disk } = buildMbrDisk();
    disk[0x1be + 16 * 2] = 0x12;
    expect(() => decodeMbr(disk.subarray(0, SECTOR))).toThrow(expect.objectContaining({ kind: DiskCorruptKind.MbrEntry, field: 'boot_ind' }));
  });

  it('decodeEbr ignores boot indicators and reports a missing signature as Corrupt(MbrExtendedChain)', () => {
    const s = new Uint8Array(SECTOR);
    writeMbrSector(s, 0, [{ type: 0x83, start: 2048, count: 8, boot: 0x33 }]);
    expect(decodeEbr(s, 7).entries[0]?.type).toBe(0x83);
    s[0x1fe] = 0;
    expect(() => decodeEbr(s, 7)).toThrow(expect.objectContaining({ kind: DiskCorruptKind.MbrExtendedChain, block: 7 }));
  });
});

describe('readPartitions on MBR disks', () => {
  it('lists primaries 1-4, the extended container, and logicals 5+ in chain order', async () => {
    const { disk, expected } = buildMbrDisk();
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.scheme).toBe('mbr');
    expect(t.warnings).toEqual([]);
    expect(t.diskId).toBe('1a2b3c4d');
    expect(t.partitions.map((p) => ({ index: p.index, startLba: p.start / SECTOR, count: p.size / SECTOR, type: p.type }))).toEqual(expected);
    expect(t.partitions.find((p) => p.index === 5)?.uuid).toBe('1a2b3c4d-05');
    expect(isExtendedPartition(t.partitions[1]!)).toBe(true); // ok: five partitions asserted above
    expect(isExtendedPartition(t.partitions[0]!)).toBe(false); // ok: as above
  });

  it('listVolumes skips the extended container and windows each partition', async () => {
    const { disk } = buildMbrDisk();
    disk.fill(0xab, 24576 * SECTOR, 24576 * SECTOR + 4);
    const vols = await listVolumes(new MemoryBlockSource(disk));
    expect(vols.map((v) => v.index)).toEqual([1, 3, 5, 6]);
    const p5 = vols.find((v) => v.index === 5)!; // ok: listed above
    expect(p5.source.size).toBe(20480 * SECTOR);
    expect([...(await p5.source.read(0, 4))]).toEqual([0xab, 0xab, 0xab, 0xab]);
    await expect(p5.source.read(p5.source.size - 1, 2)).rejects.toThrow(/outside/);
  });

  it('numbers primaries by slot even with an empty slot before them', async () => {
    const disk = new Uint8Array(4096 * SECTOR);
    writeMbrSector(disk, 0, [undefined, undefined, { type: 0x83, start: 100, count: 100 }]);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.map((p) => p.index)).toEqual([3]);
  });

  it('gives no numbers to EBRs without a logical partition', async () => {
    const disk = new Uint8Array(4096 * SECTOR);
    writeMbrSector(disk, 0, [{ type: 0x0f, start: 100, count: 3000 }]);
    writeMbrSector(disk, 100, [undefined, { type: 0x05, start: 200, count: 400 }]);
    writeMbrSector(disk, 300, [{ type: 0x83, start: 10, count: 50 }]);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.map((p) => [p.index, p.start / SECTOR])).toEqual([
      [1, 100],
      [5, 310],
    ]);
  });

  it('treats a missing signature, a FAT-like boot sector and four empty slots as no table', async () => {
    const blank = new Uint8Array(64 * SECTOR);
    expect((await readPartitions(new MemoryBlockSource(blank))).scheme).toBe('none');

    const fat = new Uint8Array(64 * SECTOR);
    fat.set([0xeb, 0x3c, 0x90], 0);
    fat.fill(0x41, 0x1be, 0x1fe); // boot code / message text where the table would be
    fat[0x1fe] = 0x55;
    fat[0x1ff] = 0xaa;
    expect((await readPartitions(new MemoryBlockSource(fat))).scheme).toBe('none');

    const empty = new Uint8Array(64 * SECTOR);
    writeMbrSector(empty, 0, []);
    expect((await readPartitions(new MemoryBlockSource(empty))).scheme).toBe('none');

    const vols = await listVolumes(new MemoryBlockSource(empty));
    expect(vols).toHaveLength(1);
    expect(vols[0]?.index).toBe(0);
    expect(vols[0]?.partition).toBeUndefined();
    expect(vols[0]?.source.size).toBe(64 * SECTOR);
  });

  it('treats a table whose every slot lies off the disk as no table (boot code, not partitions)', async () => {
    const disk = new Uint8Array(64 * SECTOR);
    writeMbrSector(disk, 0, [
      { type: 0x41, start: 0x20202020, count: 0x30303030 },
      { type: 0x6e, start: 0x6f6e2073, count: 0x74736f6d },
    ]);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.scheme).toBe('none');
    expect(t.warnings.at(-1)).toMatch(/treating the disk as unpartitioned/);
    expect((await listVolumes(new MemoryBlockSource(disk))).map((v) => v.index)).toEqual([0]);
  });

  it('treats a disk smaller than a sector as no table', async () => {
    const t = await readPartitions(new MemoryBlockSource(new Uint8Array(100)));
    expect(t.scheme).toBe('none');
    expect(t.warnings).toHaveLength(1);
  });

  it('ends an EBR loop with a warning, keeping the logicals found so far', async () => {
    const { disk } = buildMbrDisk();
    // The second EBR links back to the first.
    writeMbrSector(disk, 45056, [
      { type: 0x83, start: 2048, count: 20480 },
      { type: 0x05, start: 0, count: 100 },
    ]);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.map((p) => p.index)).toEqual([1, 2, 3, 5, 6]);
    expect(t.warnings.join()).toMatch(/loops back to sector 22528/);
  });

  it('rejects an EBR loop as Corrupt(MbrExtendedChain) in strict mode', async () => {
    const { disk } = buildMbrDisk();
    writeMbrSector(disk, 22528, [
      { type: 0x83, start: 2048, count: 20480 },
      { type: 0x05, start: 0, count: 100 }, // links to itself
    ]);
    const err = await rejection(readPartitions(new MemoryBlockSource(disk), { strict: true }));
    expect(err.kind).toBe(DiskCorruptKind.MbrExtendedChain);
    expect(err.block).toBe(22528);
  });

  it(`follows at most MAX_MBR_LOGICAL (${MAX_MBR_LOGICAL}) EBRs`, async () => {
    const n = MAX_MBR_LOGICAL + 20;
    const disk = new Uint8Array((2048 + n * 4 + 8) * SECTOR);
    writeMbrSector(disk, 0, [{ type: 0x05, start: 2048, count: n * 4 }]);
    writeEbrChain(
      disk,
      2048,
      Array.from({ length: n }, (_, i) => ({ ebr: 2048 + i * 4, start: 2048 + i * 4 + 1, count: 3 })),
    );
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.filter((p) => p.index >= 5)).toHaveLength(MAX_MBR_LOGICAL);
    expect(t.warnings.join()).toMatch(/more than 128 EBRs/);
    const err = await rejection(readPartitions(new MemoryBlockSource(disk), { strict: true }));
    expect(err.kind).toBe(DiskCorruptKind.MbrExtendedChain);
  });

  it('stops at an EBR link outside the extended partition', async () => {
    const { disk } = buildMbrDisk();
    le32(disk, 45056 * SECTOR + 0x1be + 16 + 8, 81920); // link of the 2nd EBR -> just past the container
    disk[45056 * SECTOR + 0x1be + 16 + 4] = 0x05;
    le32(disk, 45056 * SECTOR + 0x1be + 16 + 12, 10);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.map((p) => p.index)).toEqual([1, 2, 3, 5, 6]);
    expect(t.warnings.join()).toMatch(/outside extended partition 2/);
    expect((await rejection(readPartitions(new MemoryBlockSource(disk), { strict: true }))).kind).toBe(DiskCorruptKind.MbrExtendedChain);
  });

  it('stops at an EBR without signature', async () => {
    const { disk } = buildMbrDisk();
    disk[45056 * SECTOR + 0x1fe] = 0;
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.map((p) => p.index)).toEqual([1, 2, 3, 5]);
    expect(t.warnings.join()).toMatch(/EBR at sector 45056 has no 0x55AA/);
    const err = await rejection(readPartitions(new MemoryBlockSource(disk), { strict: true }));
    expect(err).toMatchObject({ kind: DiskCorruptKind.MbrExtendedChain, field: 'signature', block: 45056 });
  });

  it('clips a partition that runs past the disk end and drops one that starts past it', async () => {
    const disk = new Uint8Array(1000 * SECTOR);
    writeMbrSector(disk, 0, [
      { type: 0x83, start: 100, count: 5000 },
      { type: 0x83, start: 1000, count: 10 },
      { type: 0x83, start: 0xffffffff, count: 0xffffffff },
    ]);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.map((p) => [p.index, p.start, p.size])).toEqual([[1, 100 * SECTOR, 900 * SECTOR]]);
    expect(t.warnings).toHaveLength(3);
    expect(t.warnings[0]).toMatch(/partition 1 .* truncated/);
    expect(t.warnings[1]).toMatch(/partition 2 starts at sector 1000, beyond/);
  });

  it('rejects a partition past the disk end as Corrupt(PartitionRange) in strict mode', async () => {
    const disk = new Uint8Array(1000 * SECTOR);
    writeMbrSector(disk, 0, [{ type: 0x83, start: 100, count: 901 }]);
    const err = await rejection(readPartitions(new MemoryBlockSource(disk), { strict: true }));
    expect(err).toMatchObject({ kind: DiskCorruptKind.PartitionRange, field: 'nr_sects', block: 100 });
    writeMbrSector(disk, 0, [{ type: 0x83, start: 1000, count: 1 }]);
    expect(await rejection(readPartitions(new MemoryBlockSource(disk), { strict: true }))).toMatchObject({ kind: DiskCorruptKind.PartitionRange, field: 'start_sect' });
    writeMbrSector(disk, 0, [{ type: 0x83, start: 100, count: 900 }]);
    expect((await readPartitions(new MemoryBlockSource(disk), { strict: true })).partitions).toHaveLength(1);
  });

  it('does not follow an extended partition that is not on the disk', async () => {
    const disk = new Uint8Array(1000 * SECTOR);
    writeMbrSector(disk, 0, [
      { type: 0x83, start: 1, count: 10 },
      { type: 0x85, start: 5000, count: 10 },
    ]);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.map((p) => p.index)).toEqual([1]);
    expect(t.warnings).toHaveLength(1);
  });
});
