import { describe, expect, it } from 'vitest';
import type { WriteRecord } from '@gammaray/wire';
import { EFI_SYSTEM_GUID, LINUX_FS_GUID, SECTOR, buildGptDisk, writeMbrSector } from '../../disk/test/builders.js';
import { decodeCheckpoint, encodeCheckpoint, CheckpointError } from '../src/checkpoint.js';
import type { InferencerState } from '../src/inferencer.js';
import type { BlockFetcher } from '../src/store.js';
import { NoVolumeError, TABLE_AREA_BYTES, WindowFetcher, clipRecord, locateVolume, wholeDisk, windowed, type VolumeWindow } from '../src/volume-window.js';

/** A fetcher over bytes in memory, counting reads. */
function memFetcher(disk: Uint8Array): BlockFetcher & { reads: number } {
  const f = {
    size: disk.length,
    reads: 0,
    read: async (offset: number, length: number) => {
      f.reads++;
      if (offset < 0 || offset + length > disk.length) throw new RangeError(`read ${offset}+${length} past ${disk.length}`);
      return { data: disk.slice(offset, offset + length), seq: 7 };
    },
  };
  return f;
}

/** Puts the ext2/3/4 superblock magic where a file system starting at `start` has it. */
function extMagic(disk: Uint8Array, start: number): void {
  disk[start + 1024 + 0x38] = 0x53;
  disk[start + 1024 + 0x39] = 0xef;
}

/** GPT on 8192 sectors: 1 EFI (sectors 40-1063), 2 small Linux (1064-3111), 3 large Linux (3112-8150). */
function gptDisk(): Uint8Array {
  return buildGptDisk([
    { type: EFI_SYSTEM_GUID, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000001', first: 40, last: 1063, name: 'efi' },
    { type: LINUX_FS_GUID, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000002', first: 1064, last: 3111, name: 'boot' },
    { type: LINUX_FS_GUID, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000003', first: 3112, last: 8150, name: 'root' },
  ]).disk;
}

describe('locateVolume', () => {
  it('takes the whole disk when a file system starts at byte 0', async () => {
    const disk = new Uint8Array(4 << 20);
    extMagic(disk, 0);
    expect(await locateVolume(memFetcher(disk))).toEqual(wholeDisk(disk.length));
    // A partition named there: it said the disk held no file system at all.
    await expect(locateVolume(memFetcher(disk), 1)).rejects.toThrow(/^the disk has no partition table, so no partition 1: its ext2\/3\/4 file system is the whole disk \(partition 0\)$/);
  });

  it('on a GPT, takes the largest partition holding ext (not a smaller ext one, not a larger one without)', async () => {
    const disk = gptDisk();
    extMagic(disk, 1064 * SECTOR);
    await expect(locateVolume(memFetcher(disk))).resolves.toEqual({ partition: 2, start: 1064 * SECTOR, size: 2048 * SECTOR });
    extMagic(disk, 3112 * SECTOR);
    await expect(locateVolume(memFetcher(disk))).resolves.toEqual({ partition: 3, start: 3112 * SECTOR, size: 5039 * SECTOR });
    // A preference wins over size, and must hold ext.
    await expect(locateVolume(memFetcher(disk), 2)).resolves.toMatchObject({ partition: 2 });
    await expect(locateVolume(memFetcher(disk), 1)).rejects.toThrow(/partition 1 holds no ext2\/3\/4/);
    await expect(locateVolume(memFetcher(disk), 9)).rejects.toThrow(/GPT partition table with 3 partitions but no partition 9/);
    await expect(locateVolume(memFetcher(disk), 0)).rejects.toThrow(NoVolumeError);
  });

  it('on an MBR, the same: partitions by size, the largest ext one', async () => {
    const disk = new Uint8Array(8192 * SECTOR);
    writeMbrSector(disk, 0, [{ type: 0x83, start: 2048, count: 1024 }, { type: 0x83, start: 4096, count: 4000 }]);
    extMagic(disk, 2048 * SECTOR);
    await expect(locateVolume(memFetcher(disk))).resolves.toEqual({ partition: 1, start: 2048 * SECTOR, size: 1024 * SECTOR });
    extMagic(disk, 4096 * SECTOR);
    await expect(locateVolume(memFetcher(disk))).resolves.toEqual({ partition: 2, start: 4096 * SECTOR, size: 4000 * SECTOR });
  });

  it('says what it found when there is nothing to follow, and a damaged table is not fatal', async () => {
    await expect(locateVolume(memFetcher(new Uint8Array(1 << 20)))).rejects.toThrow(/no ext2\/3\/4 file system .* and no partition table/);
    await expect(locateVolume(memFetcher(gptDisk()))).rejects.toThrow(/GPT partition table with 3 partitions, none holding an ext2\/3\/4 file system/);
    // Both GPT headers destroyed under a protective MBR: a CorruptError of the table reader, reported as no volume.
    const disk = gptDisk();
    disk.fill(0xff, SECTOR, 2 * SECTOR);
    disk.fill(0xff, disk.length - SECTOR, disk.length);
    await expect(locateVolume(memFetcher(disk))).rejects.toThrow(/partition table is unreadable/);
  });

  it('lets a failing block read through (a transient failure, not "no file system")', async () => {
    const failing: BlockFetcher = { size: 1 << 20, read: () => Promise.reject(new Error('no responders')) };
    await expect(locateVolume(failing)).rejects.toThrow('no responders');
  });
});

describe('WindowFetcher', () => {
  it('reads the window at the file system\'s offsets and refuses reads past it', async () => {
    const disk = new Uint8Array(1 << 16).map((_, i) => i & 0xff);
    const w: VolumeWindow = { partition: 2, start: 4096, size: 8192 };
    const f = windowed(memFetcher(disk), w);
    expect(f).toBeInstanceOf(WindowFetcher);
    expect(f.size).toBe(8192);
    expect((await f.read(0, 4)).data).toEqual(Uint8Array.from([0, 1, 2, 3]));
    expect((await f.read(100, 2)).data).toEqual(disk.slice(4196, 4198));
    await expect(f.read(8190, 4)).rejects.toThrow(/outside partition 2/);
    const whole = memFetcher(disk);
    expect(windowed(whole, wholeDisk(disk.length))).toBe(whole);
  });
});

describe('clipRecord', () => {
  const w: VolumeWindow = { partition: 1, start: 1 << 20, size: 4 << 20 };
  const DISK = 8 << 20;
  const rec = (ops: WriteRecord['ops']): WriteRecord => ({ v: 1, disk: 'd', ts: new Date(0), ops });
  const data = (n: number, base = 0) => new Uint8Array(n).map((_, i) => (base + i) & 0xff);

  it('moves ops into the window\'s offsets, clips ops that straddle its edges and drops ops outside', () => {
    const straddle = data(8192);
    const r = clipRecord(
      rec([
        { op: 'write', offset: (1 << 20) + 4096, length: 4, data: data(4), fua: true },
        { op: 'write', offset: (1 << 20) - 4096, length: 8192, data: straddle, fua: false },
        { op: 'write', offset: (5 << 20) - 1024, length: 4096, data: data(4096, 9), fua: false },
        { op: 'zero', offset: 6 << 20, length: 4096, fua: false },
        { op: 'trim', offset: 0, length: 2 << 20, fua: false },
        { op: 'flush' },
      ]),
      w,
      DISK,
    );
    expect(r.ops).toEqual([
      { op: 'write', offset: 4096, length: 4, data: data(4), fua: true },
      { op: 'write', offset: 0, length: 4096, data: straddle.subarray(4096), fua: false },
      { op: 'write', offset: (4 << 20) - 1024, length: 1024, data: data(4096, 9).subarray(0, 1024), fua: false },
      { op: 'trim', offset: 0, length: 1 << 20, fua: false },
      { op: 'flush' },
    ]);
    expect(r.tableTouched).toBe(true); // the trim from byte 0
  });

  it('notes writes to the table\'s areas (the first and last 64 KiB) outside the window, and nothing else', () => {
    const at = (offset: number) => clipRecord(rec([{ op: 'write', offset, length: 512, data: data(512), fua: false }]), w, DISK).tableTouched;
    expect(at(0)).toBe(true);
    expect(at(512)).toBe(true);
    expect(at(TABLE_AREA_BYTES - 512)).toBe(true);
    expect(at(TABLE_AREA_BYTES)).toBe(false);
    expect(at(DISK - 512)).toBe(true);
    expect(at(DISK - TABLE_AREA_BYTES - 512)).toBe(false);
    expect(at((1 << 20) + 512)).toBe(false); // inside the window
    expect(at(6 << 20)).toBe(false); // another partition
  });

  it('for an LVM logical volume, also notes writes to its PV\'s label and metadata', () => {
    const lv: VolumeWindow = { partition: 2, start: 3 << 20, size: 2 << 20, lv: 'vg/root', meta: [1 << 20, 2 << 20] };
    const at = (offset: number) => clipRecord(rec([{ op: 'write', offset, length: 512, data: data(512), fua: false }]), lv, DISK).tableTouched;
    expect(at(1 << 20)).toBe(true);
    expect(at((2 << 20) - 512)).toBe(true);
    expect(at(2 << 20)).toBe(false); // another LV's extents
    expect(at((3 << 20) + 512)).toBe(false); // inside the LV
  });

  it('leaves the whole disk\'s records as they are', () => {
    const r = rec([{ op: 'write', offset: 0, length: 4, data: data(4), fua: false }]);
    const c = clipRecord(r, wholeDisk(DISK), DISK);
    expect(c.ops).toBe(r.ops);
    expect(c.tableTouched).toBe(false);
  });
});

describe('checkpoint window', () => {
  const base: InferencerState = {
    disk: 'd',
    appliedSeq: 3,
    blockSize: 1024,
    nodes: [],
    links: [],
    blocks: [],
    itables: [],
    geometryDirty: false,
    watched: [],
    remapped: [],
    pending: [],
    omitted: [],
    dirty: [],
    tails: [],
    heldTails: [],
    recent: [],
    retries: [],
    namedBy: [],
    journal: undefined,
    idxSeq: -1,
    idx: 0,
  };

  it('round-trips a partition window; the whole disk stays absent (older checkpoints read as the whole disk)', () => {
    const w: VolumeWindow = { partition: 3, start: 26214400, size: 83886080 };
    expect(decodeCheckpoint(encodeCheckpoint({ ...base, window: w })).window).toEqual(w);
    expect(decodeCheckpoint(encodeCheckpoint({ ...base, window: wholeDisk(1 << 30) })).window).toBeUndefined();
    expect(decodeCheckpoint(encodeCheckpoint(base)).window).toBeUndefined();
  });

  it('round-trips an LVM logical volume\'s window, on a partition or on the whole disk', () => {
    const onPart: VolumeWindow = { partition: 2, start: 26214400, size: 67108864, lv: 'vg/root', meta: [17825792, 18874368] };
    expect(decodeCheckpoint(encodeCheckpoint({ ...base, window: onPart })).window).toEqual(onPart);
    const onDisk: VolumeWindow = { partition: 0, start: 1048576, size: 67108864, lv: 'vg/root', meta: [0, 1048576] };
    expect(decodeCheckpoint(encodeCheckpoint({ ...base, window: onDisk })).window).toEqual(onDisk);
  });

  it('refuses a window that is not three sane integers', () => {
    const bytes = encodeCheckpoint({ ...base, window: { partition: -1, start: 0, size: 10 } });
    expect(() => decodeCheckpoint(bytes)).toThrow(CheckpointError);
  });
});

describe('locateVolume on a hostile table', () => {
  it('looks into at most MAX_CANDIDATES partitions, the largest first, and says so', async () => {
    // 200 partitions of 8 sectors (one of 16), none formatted: at most 64 looked into besides the table's reads.
    const parts = Array.from({ length: 200 }, (_, i) => ({ type: LINUX_FS_GUID, uuid: `aaaaaaaa-bbbb-cccc-dddd-${String(i).padStart(12, '0')}`, first: 100 + i * 8, last: 100 + i * 8 + 7 + (i === 150 ? 8 : 0) }));
    const { disk } = buildGptDisk(parts, { sectors: 4096, entryCount: 256 });
    const f = memFetcher(disk);
    await expect(locateVolume(f)).rejects.toThrow(/none holding an ext2\/3\/4 file system \(yet\) \(the 64 largest were looked into\)/);
    expect(f.reads).toBeLessThan(150); // 64 partitions looked into: a superblock read and an LVM label read each
    // The largest one holding ext is found first.
    extMagic(disk, (100 + 150 * 8) * SECTOR);
    await expect(locateVolume(memFetcher(disk))).resolves.toMatchObject({ partition: 151 });
  });
});
