// Small in-memory builders for MBR and GPT disks. Checksums come from
// node:zlib, so the tables are built independently of the crc32 under test.
import { crc32 as zlibCrc32 } from 'node:zlib';

export const SECTOR = 512;

export const LINUX_FS_GUID = '0fc63daf-8483-4772-8e79-3d69d8477de4';
export const EFI_SYSTEM_GUID = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';

export function le32(b: Uint8Array, off: number, v: number): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(off, v >>> 0, true);
}
export function le64(b: Uint8Array, off: number, v: number | bigint): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setBigUint64(off, BigInt(v), true);
}
export function rd32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off, true);
}
export function rd64(b: Uint8Array, off: number): number {
  return Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true));
}

/** XORs `mask` into byte `off`. */
export function flip(b: Uint8Array, off: number, mask: number): void {
  b[off] = (b[off] ?? 0) ^ mask;
}

/** Text GUID -> 16 on-disk bytes (first three groups little-endian). */
export function guidBytes(guid: string): Uint8Array {
  const h = guid.replace(/-/g, '');
  const raw = Uint8Array.from({ length: 16 }, (_, i) => Number.parseInt(h.slice(i * 2, i * 2 + 2), 16));
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  return Uint8Array.from(order, (i) => raw[i] ?? 0);
}

export interface MbrSlot {
  type: number;
  start: number;
  count: number;
  boot?: number;
}

/** Writes an MBR/EBR sector (4 slots + 0x55AA) at `lba`. */
export function writeMbrSector(disk: Uint8Array, lba: number, slots: readonly (MbrSlot | undefined)[], diskSignature = 0): void {
  const base = lba * SECTOR;
  disk.fill(0, base + 0x1b8, base + SECTOR);
  le32(disk, base + 0x1b8, diskSignature);
  slots.forEach((s, i) => {
    if (s === undefined) return;
    const off = base + 0x1be + i * 16;
    disk[off] = s.boot ?? 0;
    disk[off + 4] = s.type;
    le32(disk, off + 8, s.start);
    le32(disk, off + 12, s.count);
  });
  disk[base + 0x1fe] = 0x55;
  disk[base + 0x1ff] = 0xaa;
}

export interface Logical {
  /** Absolute LBA of the EBR describing this logical. */
  ebr: number;
  /** Absolute LBA of the partition. */
  start: number;
  count: number;
  type?: number;
}

/** Writes the EBR chain of an extended partition starting at `extStart`. */
export function writeEbrChain(disk: Uint8Array, extStart: number, logicals: readonly Logical[]): void {
  logicals.forEach((l, i) => {
    const next = logicals[i + 1];
    writeMbrSector(disk, l.ebr, [
      { type: l.type ?? 0x83, start: l.start - l.ebr, count: l.count },
      next === undefined ? undefined : { type: 0x05, start: next.ebr - extStart, count: next.start + next.count - next.ebr },
    ]);
  });
}

/**
 * A 64 MiB-ish DOS disk: p1 Linux, p2 extended with 2 logicals (p5, p6), p3
 * Linux. Returns the bytes and what readPartitions should report.
 */
export function buildMbrDisk(sectors = 131072): { disk: Uint8Array; expected: { index: number; startLba: number; count: number; type: string }[] } {
  const disk = new Uint8Array(sectors * SECTOR);
  writeMbrSector(
    disk,
    0,
    [
      { type: 0x83, start: 2048, count: 20480, boot: 0x80 },
      { type: 0x05, start: 22528, count: 81920 },
      { type: 0x83, start: 104448, count: 20480 },
    ],
    0x1a2b3c4d,
  );
  writeEbrChain(disk, 22528, [
    { ebr: 22528, start: 24576, count: 20480 },
    { ebr: 45056, start: 47104, count: 20480, type: 0x07 },
  ]);
  return {
    disk,
    expected: [
      { index: 1, startLba: 2048, count: 20480, type: '0x83' },
      { index: 2, startLba: 22528, count: 81920, type: '0x05' },
      { index: 3, startLba: 104448, count: 20480, type: '0x83' },
      { index: 5, startLba: 24576, count: 20480, type: '0x83' },
      { index: 6, startLba: 47104, count: 20480, type: '0x07' },
    ],
  };
}

export interface GptPart {
  type: string;
  uuid: string;
  first: number;
  last: number;
  name?: string;
  attributes?: bigint;
  /** Slot in the array; defaults to the position in the list. */
  slot?: number;
}

export interface GptLayout {
  sectorSize: number;
  sectors: number;
  entryCount: number;
  entrySize: number;
  primaryEntriesLba: number;
  backupEntriesLba: number;
  lastLba: number;
}

/** Recomputes `header_crc32` of the header at `lba`. */
export function fixHeaderCrc(disk: Uint8Array, lba: number, sectorSize = SECTOR): void {
  const h = disk.subarray(lba * sectorSize, (lba + 1) * sectorSize);
  const size = Math.min(rd32(h, 0x0c), sectorSize);
  le32(h, 0x10, 0);
  le32(h, 0x10, zlibCrc32(h.subarray(0, size)));
}

/** Recomputes the entry-array CRC named by the header at `lba`, then the header CRC. */
export function fixEntriesCrc(disk: Uint8Array, lba: number, sectorSize = SECTOR): void {
  const h = disk.subarray(lba * sectorSize, (lba + 1) * sectorSize);
  const at = rd64(h, 0x48) * sectorSize;
  const bytes = rd32(h, 0x50) * rd32(h, 0x54);
  if (at + bytes <= disk.length) le32(h, 0x58, zlibCrc32(disk.subarray(at, at + bytes)));
  fixHeaderCrc(disk, lba, sectorSize);
}

function writeHeader(disk: Uint8Array, l: GptLayout, myLba: number, altLba: number, entriesLba: number, diskGuid: string, arrayCrc: number): void {
  const h = disk.subarray(myLba * l.sectorSize, (myLba + 1) * l.sectorSize);
  h.fill(0);
  h.set(new TextEncoder().encode('EFI PART'), 0);
  le32(h, 0x08, 0x00010000);
  le32(h, 0x0c, 92);
  le64(h, 0x18, myLba);
  le64(h, 0x20, altLba);
  const arraySectors = Math.ceil((l.entryCount * l.entrySize) / l.sectorSize);
  le64(h, 0x28, l.primaryEntriesLba + arraySectors);
  le64(h, 0x30, l.backupEntriesLba - 1);
  h.set(guidBytes(diskGuid), 0x38);
  le64(h, 0x48, entriesLba);
  le32(h, 0x50, l.entryCount);
  le32(h, 0x54, l.entrySize);
  le32(h, 0x58, arrayCrc);
  fixHeaderCrc(disk, myLba, l.sectorSize);
}

/** Builds a GPT disk (protective MBR, primary and backup header and arrays). */
export function buildGptDisk(
  parts: readonly GptPart[],
  opts: { sectors?: number; sectorSize?: number; entryCount?: number; entrySize?: number; diskGuid?: string } = {},
): { disk: Uint8Array; layout: GptLayout } {
  const sectorSize = opts.sectorSize ?? SECTOR;
  const sectors = opts.sectors ?? 8192;
  const entryCount = opts.entryCount ?? 128;
  const entrySize = opts.entrySize ?? 128;
  const arraySectors = Math.ceil((entryCount * entrySize) / sectorSize);
  const lastLba = sectors - 1;
  const layout: GptLayout = { sectorSize, sectors, entryCount, entrySize, primaryEntriesLba: 2, backupEntriesLba: lastLba - arraySectors, lastLba };
  const disk = new Uint8Array(sectors * sectorSize);
  // Protective MBR: its LBAs count in the disk's logical sectors, but it lives in the first 512 bytes.
  const pm = new Uint8Array(SECTOR);
  writeMbrSector(pm, 0, [{ type: 0xee, start: 1, count: Math.min(lastLba, 0xffffffff) }]);
  disk.set(pm, 0);

  const array = new Uint8Array(entryCount * entrySize);
  parts.forEach((p, i) => {
    const off = (p.slot ?? i) * entrySize;
    array.set(guidBytes(p.type), off);
    array.set(guidBytes(p.uuid), off + 0x10);
    le64(array, off + 0x20, p.first);
    le64(array, off + 0x28, p.last);
    le64(array, off + 0x30, p.attributes ?? 0n);
    const name = p.name ?? '';
    for (let k = 0; k < name.length && k < 36; k++) {
      array[off + 0x38 + k * 2] = name.charCodeAt(k) & 0xff;
      array[off + 0x39 + k * 2] = name.charCodeAt(k) >> 8;
    }
  });
  const arrayCrc = zlibCrc32(array);
  disk.set(array, layout.primaryEntriesLba * sectorSize);
  disk.set(array, layout.backupEntriesLba * sectorSize);
  const diskGuid = opts.diskGuid ?? '11111111-2222-3333-4444-555555555555';
  writeHeader(disk, layout, 1, lastLba, layout.primaryEntriesLba, diskGuid, arrayCrc);
  writeHeader(disk, layout, lastLba, 1, layout.backupEntriesLba, diskGuid, arrayCrc);
  return { disk, layout };
}

/** Two Linux partitions (slots 0 and 1) on an 8192-sector disk. */
export function standardGptParts(): GptPart[] {
  return [
    { type: EFI_SYSTEM_GUID, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000001', first: 40, last: 2087, name: 'EFI system' },
    { type: LINUX_FS_GUID, uuid: 'aaaaaaaa-bbbb-cccc-dddd-000000000002', first: 2088, last: 8150, name: 'root' },
  ];
}

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce from the seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
