import { describe, expect, it } from 'vitest';
import {
  CorruptError,
  DiskCorruptKind,
  MAX_GPT_ENTRIES,
  MemoryBlockSource,
  decodeGptEntries,
  decodeGptHeader,
  listVolumes,
  readPartitions,
} from '../src/index.js';
import { EFI_SYSTEM_GUID, LINUX_FS_GUID, SECTOR, buildGptDisk, fixEntriesCrc, fixHeaderCrc, flip, le32, le64, rd32, standardGptParts, writeMbrSector } from './builders.js';

async function rejection(p: Promise<unknown>): Promise<CorruptError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CorruptError);
  return err as CorruptError;
}

function primaryHeader(disk: Uint8Array): Uint8Array {
  return disk.subarray(SECTOR, 2 * SECTOR);
}

describe('decodeGptHeader', () => {
  const { disk, layout } = buildGptDisk(standardGptParts());

  it('decodes every field of a valid header', () => {
    const h = decodeGptHeader(primaryHeader(disk), 1, layout.sectors);
    expect(h).toEqual({
      revision: 0x10000,
      headerSize: 92,
      myLba: 1,
      alternateLba: 8191,
      firstUsableLba: 34,
      lastUsableLba: 8158,
      diskGuid: '11111111-2222-3333-4444-555555555555',
      entriesLba: 2,
      entryCount: 128,
      entrySize: 128,
      entriesCrc32: rd32(disk, SECTOR + 0x58),
      entryArrayBytes: 16384,
    });
    expect(Object.isFrozen(h)).toBe(true);
  });

  // Each case damages exactly one field (then re-seals the header CRC, except
  // for the CRC case itself) and names the kind and field it expects.
  const cases: [string, (h: Uint8Array) => void, DiskCorruptKind, string][] = [
    ['signature', (h) => (h[0] = 0x46), DiskCorruptKind.GptHeader, 'signature'],
    ['header_size below 92', (h) => le32(h, 0x0c, 91), DiskCorruptKind.GptHeader, 'header_size'],
    ['header_size above the sector', (h) => le32(h, 0x0c, SECTOR + 1), DiskCorruptKind.GptHeader, 'header_size'],
    ['my_lba', (h) => le64(h, 0x18, 2), DiskCorruptKind.GptHeader, 'my_lba'],
    ['alternate_lba above 2^53', (h) => le64(h, 0x20, 1n << 60n), DiskCorruptKind.GptHeader, 'alternate_lba'],
    ['first_usable_lba after last_usable_lba', (h) => le64(h, 0x28, 9000), DiskCorruptKind.GptHeader, 'first_usable_lba'],
    ['partition_entry_lba past the disk', (h) => le64(h, 0x48, 8190), DiskCorruptKind.GptHeader, 'partition_entry_lba'],
    ['partition_entry_lba above 2^53', (h) => le64(h, 0x48, 0xffffffffffffffffn), DiskCorruptKind.GptHeader, 'partition_entry_lba'],
    ['num_partition_entries absurd', (h) => le32(h, 0x50, 0xffffffff), DiskCorruptKind.GptHeader, 'num_partition_entries'],
    ['num_partition_entries above the cap', (h) => le32(h, 0x50, MAX_GPT_ENTRIES + 1), DiskCorruptKind.GptHeader, 'num_partition_entries'],
    ['array bytes above the cap', (h) => (le32(h, 0x50, 4096), le32(h, 0x54, 4096)), DiskCorruptKind.GptHeader, 'num_partition_entries'],
    ['sizeof_partition_entry below 128', (h) => le32(h, 0x54, 120), DiskCorruptKind.GptHeader, 'sizeof_partition_entry'],
    ['sizeof_partition_entry not a multiple of 8', (h) => le32(h, 0x54, 132), DiskCorruptKind.GptHeader, 'sizeof_partition_entry'],
  ];
  for (const [what, damage, kind, field] of cases) {
    it(`rejects ${what} as Corrupt(${kind}, ${field})`, () => {
      const h = primaryHeader(disk).slice();
      damage(h);
      if (field !== 'signature') fixHeaderCrc(h, 0);
      expect(() => decodeGptHeader(h, 1, layout.sectors)).toThrow(expect.objectContaining({ kind, field, block: 1 }));
    });
  }

  it('rejects a wrong header_crc32 as Corrupt(GptHeaderCrc)', () => {
    const h = primaryHeader(disk).slice();
    flip(h, 0x38, 1); // disk_guid
    expect(() => decodeGptHeader(h, 1, layout.sectors)).toThrow(expect.objectContaining({ kind: DiskCorruptKind.GptHeaderCrc, field: 'header_crc32' }));
  });

  it('rejects a sector too short for a header', () => {
    expect(() => decodeGptHeader(new Uint8Array(50), 1, 100)).toThrow(CorruptError);
  });
});

describe('decodeGptEntries', () => {
  it('decodes used slots with GUIDs, inclusive LBAs, attributes and UTF-16 names', () => {
    const parts = standardGptParts();
    parts[1] = { ...parts[1]!, slot: 5, name: 'Ωmega-名前', attributes: (1n << 63n) | 4n }; // ok: two standard parts
    const { disk } = buildGptDisk(parts);
    const header = decodeGptHeader(primaryHeader(disk), 1, 8192);
    const entries = decodeGptEntries(disk.subarray(2 * SECTOR, 34 * SECTOR), header);
    expect(entries).toEqual([
      { slot: 0, typeGuid: EFI_SYSTEM_GUID, uniqueGuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000001', firstLba: 40, lastLba: 2087, attributes: 0n, name: 'EFI system' },
      { slot: 5, typeGuid: LINUX_FS_GUID, uniqueGuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000002', firstLba: 2088, lastLba: 8150, attributes: (1n << 63n) | 4n, name: 'Ωmega-名前' },
    ]);
  });

  it('reads a 36-unit name without a terminating NUL', () => {
    const parts = standardGptParts();
    parts[0] = { ...parts[0]!, name: 'x'.repeat(36) }; // ok: two standard parts
    const { disk } = buildGptDisk(parts);
    const header = decodeGptHeader(primaryHeader(disk), 1, 8192);
    expect(decodeGptEntries(disk.subarray(2 * SECTOR, 34 * SECTOR), header)[0]?.name).toBe('x'.repeat(36));
  });

  it('rejects a wrong partition_entry_array_crc32 as Corrupt(GptEntriesCrc)', () => {
    const { disk } = buildGptDisk(standardGptParts());
    const header = decodeGptHeader(primaryHeader(disk), 1, 8192);
    const array = disk.slice(2 * SECTOR, 34 * SECTOR);
    flip(array, 0x20, 1);
    expect(() => decodeGptEntries(array, header)).toThrow(expect.objectContaining({ kind: DiskCorruptKind.GptEntriesCrc, block: 2 }));
    expect(() => decodeGptEntries(array.subarray(0, 100), header)).toThrow(expect.objectContaining({ kind: DiskCorruptKind.GptEntries }));
  });

  it('rejects an LBA above 2^53 as Corrupt(GptEntries)', () => {
    const parts = standardGptParts();
    const { disk } = buildGptDisk(parts);
    le64(disk, 2 * SECTOR + 0x28, 1n << 62n);
    fixEntriesCrc(disk, 1);
    const header = decodeGptHeader(primaryHeader(disk), 1, 8192);
    expect(() => decodeGptEntries(disk.subarray(2 * SECTOR, 34 * SECTOR), header)).toThrow(expect.objectContaining({ kind: DiskCorruptKind.GptEntries, field: 'ending_lba' }));
  });
});

describe('readPartitions on GPT disks', () => {
  it('reads the primary table', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t).toMatchObject({ scheme: 'gpt', usedBackup: false, sectorSize: 512, diskId: '11111111-2222-3333-4444-555555555555', warnings: [] });
    expect(t.partitions).toEqual([
      { index: 1, start: 40 * SECTOR, size: 2048 * SECTOR, type: EFI_SYSTEM_GUID, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000001', name: 'EFI system' },
      { index: 2, start: 2088 * SECTOR, size: 6063 * SECTOR, type: LINUX_FS_GUID, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000002', name: 'root' },
    ]);
    const vols = await listVolumes(new MemoryBlockSource(disk));
    expect(vols.map((v) => [v.index, v.source.size])).toEqual([
      [1, 2048 * SECTOR],
      [2, 6063 * SECTOR],
    ]);
  });

  it('uses the backup when the primary header is zeroed', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    const good = await readPartitions(new MemoryBlockSource(disk.slice()));
    disk.fill(0, SECTOR, 2 * SECTOR);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.usedBackup).toBe(true);
    expect(t.partitions).toEqual(good.partitions);
    expect(t.warnings.join()).toMatch(/primary GPT unusable .*EFI PART.*backup at LBA 8191/);
  });

  it('uses the backup when the primary header CRC is wrong', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    flip(disk, SECTOR + 0x10, 0xff);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.usedBackup).toBe(true);
    expect(t.partitions).toHaveLength(2);
  });

  it('uses the backup when the primary header has an absurd entry count', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    le32(disk, SECTOR + 0x50, 0x7fffffff);
    fixHeaderCrc(disk, 1);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.usedBackup).toBe(true);
    expect(t.warnings.join()).toMatch(/num_partition_entries/);
  });

  it("uses the backup named by the intact primary header when the primary entries' CRC is wrong", async () => {
    // Backup in the middle of the disk, as after growing a disk without fixing the GPT.
    const { disk } = buildGptDisk(standardGptParts());
    const big = new Uint8Array(disk.length * 2);
    big.set(disk);
    flip(big, 2 * SECTOR + 0x30, 1); // attributes of slot 0 in the primary array
    const t = await readPartitions(new MemoryBlockSource(big));
    expect(t.usedBackup).toBe(true);
    expect(t.warnings.join()).toMatch(/partition_entry_array_crc32.*backup at LBA 8191/);
    expect(t.partitions).toHaveLength(2);
  });

  it('falls back to the last LBA when the alternate_lba of the primary is wrong', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    le64(disk, SECTOR + 0x20, 5000);
    flip(disk, 2 * SECTOR + 0x30, 1); // primary entries bad too
    fixHeaderCrc(disk, 1);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.usedBackup).toBe(true);
    expect(t.warnings.join()).toMatch(/backup at LBA 8191/);
  });

  it('rejects a disk whose primary and backup are both bad as CorruptError', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    flip(disk, SECTOR + 0x10, 0xff);
    flip(disk, 8191 * SECTOR + 0x10, 0xff);
    const err = await rejection(readPartitions(new MemoryBlockSource(disk)));
    expect(err.kind).toBe(DiskCorruptKind.GptHeaderCrc);
    expect(err.message).toMatch(/primary: .*backup: /);
  });

  it('rejects a disk whose primary and backup entry arrays are both bad', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    flip(disk, 2 * SECTOR, 1);
    flip(disk, 8159 * SECTOR, 1);
    const err = await rejection(readPartitions(new MemoryBlockSource(disk)));
    expect(err.kind).toBe(DiskCorruptKind.GptEntriesCrc);
  });

  it('rejects a protective MBR with no GPT behind it', async () => {
    const disk = new Uint8Array(100 * SECTOR);
    writeMbrSector(disk, 0, [{ type: 0xee, start: 1, count: 99 }]);
    expect((await rejection(readPartitions(new MemoryBlockSource(disk)))).kind).toBe(DiskCorruptKind.GptHeader);
    const tiny = new Uint8Array(2 * SECTOR);
    writeMbrSector(tiny, 0, [{ type: 0xee, start: 1, count: 1 }]);
    expect((await rejection(readPartitions(new MemoryBlockSource(tiny)))).kind).toBe(DiskCorruptKind.GptHeader);
  });

  it('warns about a damaged backup while the primary is good', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    disk[8191 * SECTOR] = 0;
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.usedBackup).toBe(false);
    expect(t.warnings).toEqual([expect.stringMatching(/backup GPT header is damaged/)]);
  });

  it('reads a truncated image: clips the last partition and warns', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    const t = await readPartitions(new MemoryBlockSource(disk.subarray(0, 5000 * SECTOR)));
    expect(t.usedBackup).toBe(false);
    expect(t.partitions.map((p) => [p.index, p.start / SECTOR, p.size / SECTOR])).toEqual([
      [1, 40, 2048],
      [2, 2088, 5000 - 2088],
    ]);
    expect(t.warnings.join('\n')).toMatch(/backup GPT header LBA 8191 is not on the 5000-sector disk/);
    expect(t.warnings.join('\n')).toMatch(/last usable LBA 8158 is beyond/);
    expect(t.warnings.join('\n')).toMatch(/partition 2 .* truncated/);
    await expect(readPartitions(new MemoryBlockSource(disk.subarray(0, 5000 * SECTOR)), { strict: true })).rejects.toMatchObject({
      kind: DiskCorruptKind.PartitionRange,
      field: 'ending_lba',
    });
  });

  it('drops an entry that ends before it starts, or throws Corrupt(PartitionRange) in strict mode', async () => {
    const parts = standardGptParts();
    parts[0] = { ...parts[0]!, first: 100, last: 99 }; // ok: two standard parts
    const { disk } = buildGptDisk(parts);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.map((p) => p.index)).toEqual([2]);
    expect(t.warnings.join()).toMatch(/partition 1 ends/);
    expect(await rejection(readPartitions(new MemoryBlockSource(disk), { strict: true }))).toMatchObject({ kind: DiskCorruptKind.PartitionRange, field: 'ending_lba' });
  });

  it('drops an entry that starts beyond the disk', async () => {
    const parts = standardGptParts();
    parts.push({ type: LINUX_FS_GUID, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000003', first: 2 ** 53 - 10, last: 2 ** 53 - 1, slot: 127 });
    const { disk } = buildGptDisk(parts);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.partitions.map((p) => p.index)).toEqual([1, 2]);
    expect(t.warnings.join()).toMatch(/partition 128 starts at sector 9007199254740982, beyond/);
  });

  it('numbers partitions by slot, like Linux', async () => {
    const parts = standardGptParts();
    parts[1] = { ...parts[1]!, slot: 3 }; // ok: two standard parts
    const { disk } = buildGptDisk(parts);
    expect((await readPartitions(new MemoryBlockSource(disk))).partitions.map((p) => p.index)).toEqual([1, 4]);
  });

  it('accepts zero entries and large valid entry sizes', async () => {
    const none = buildGptDisk([], { entryCount: 0 });
    expect(await readPartitions(new MemoryBlockSource(none.disk))).toMatchObject({ scheme: 'gpt', partitions: [] });
    expect(await listVolumes(new MemoryBlockSource(none.disk))).toEqual([]);
    const wide = buildGptDisk(standardGptParts(), { entrySize: 256, entryCount: 64 });
    expect((await readPartitions(new MemoryBlockSource(wide.disk))).partitions).toHaveLength(2);
  });

  it('reads a GPT with 4096-byte sectors, and its backup', async () => {
    const parts = [{ type: LINUX_FS_GUID, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000009', first: 256, last: 1000 }];
    const { disk } = buildGptDisk(parts, { sectorSize: 4096, sectors: 1024 });
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t).toMatchObject({ scheme: 'gpt', sectorSize: 4096, usedBackup: false, warnings: [] });
    expect(t.partitions.map((p) => [p.start, p.size])).toEqual([[256 * 4096, 745 * 4096]]);
    disk.fill(0, 4096, 8192);
    const b = await readPartitions(new MemoryBlockSource(disk));
    expect(b).toMatchObject({ sectorSize: 4096, usedBackup: true });
    expect(b.partitions).toEqual(t.partitions);
  });

  it('finds a GPT whose protective MBR was wiped, and ignores a broken one', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    disk.fill(0, 0, SECTOR);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.scheme).toBe('gpt');
    expect(t.warnings[0]).toMatch(/without a protective MBR/);
    flip(disk, SECTOR + 0x10, 1);
    flip(disk, 8191 * SECTOR + 0x10, 1);
    const n = await readPartitions(new MemoryBlockSource(disk));
    expect(n.scheme).toBe('none');
    expect(n.warnings).toEqual([expect.stringMatching(/ignoring a damaged GPT/)]);
  });

  it('prefers the GPT of a hybrid MBR', async () => {
    const { disk } = buildGptDisk(standardGptParts());
    writeMbrSector(disk, 0, [
      { type: 0xee, start: 1, count: 39 },
      { type: 0x0c, start: 40, count: 2048 },
    ]);
    const t = await readPartitions(new MemoryBlockSource(disk));
    expect(t.scheme).toBe('gpt');
    expect(t.warnings).toEqual([expect.stringMatching(/hybrid MBR/)]);
  });
});
