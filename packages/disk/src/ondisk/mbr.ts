import { CorruptError, DiskCorruptKind } from '../errors.js';
import { MBR_SECTOR_SIZE } from '../limits.js';
import { u8, u32le } from './bytes.js';

/*
 * Master Boot Record: sector 0 of a DOS-partitioned disk. Every Extended Boot
 * Record (EBR) in an extended partition has the same layout.
 *
 *   Offset  Size  Field            Meaning
 *   0x000   440   bootcode         x86 boot code (ignored)
 *   0x1B8   4     disk_signature   32-bit disk id (MBR only); Linux builds
 *                                  PARTUUID "xxxxxxxx-NN" from it
 *   0x1BC   2     reserved
 *   0x1BE   64    partitions[4]    struct msdos_partition, below
 *   0x1FE   2     signature        0x55 0xAA
 *
 * struct msdos_partition (16 bytes, at 0x1BE + 16 * slot)
 *
 *   Offset  Size  Field                 Meaning
 *   0x0     1     boot_ind              0x80 active, 0x00 inactive; any other
 *                                       value means "not a partition table"
 *                                       (e.g. a FAT/NTFS boot sector)
 *   0x1     3     head, sector, cyl     CHS of the first sector (ignored)
 *   0x4     1     sys_ind               type: 0x00 unused, 0x05/0x0F/0x85
 *                                       extended, 0xEE GPT protective
 *   0x5     3     end_head, end_sector, end_cyl  CHS of the last sector (ignored)
 *   0x8     4     start_sect            first sector. MBR: absolute. EBR slot 0
 *                                       (logical): relative to this EBR. EBR
 *                                       slot 1 (link): relative to the start of
 *                                       the primary extended partition
 *   0xC     4     nr_sects              number of sectors
 */

/** Byte offset of the four partition entries. */
export const MBR_ENTRIES_OFFSET = 0x1be;
/** Bytes per partition entry. */
export const MBR_ENTRY_SIZE = 16;
/** Offset of the 0x55 0xAA boot signature. */
export const MBR_SIGNATURE_OFFSET = 0x1fe;
/** Offset of the 32-bit disk signature. */
export const MBR_DISK_SIGNATURE_OFFSET = 0x1b8;
/** Partition type of the single entry of a protective MBR in front of a GPT. */
export const MBR_TYPE_GPT_PROTECTIVE = 0xee;

const EXTENDED_TYPES: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]);

/** True for the partition types Linux treats as extended containers (0x05, 0x0F, 0x85). */
export function isMbrExtendedType(type: number): boolean {
  return EXTENDED_TYPES.has(type);
}

/** One of the four slots of an MBR or EBR. */
export interface MbrEntry {
  /** 0-based slot, 0..3. */
  readonly slot: number;
  /** `boot_ind` was 0x80. */
  readonly bootable: boolean;
  /** `sys_ind`, the partition type byte. */
  readonly type: number;
  /** `start_sect`, in 512-byte sectors; what it is relative to depends on where the entry lives. */
  readonly startLba: number;
  /** `nr_sects`. */
  readonly sectorCount: number;
}

/** A decoded MBR or EBR sector. */
export interface Mbr {
  /** `disk_signature` (meaningless in an EBR). */
  readonly diskSignature: number;
  /** All four slots, including unused ones (see {@link isMbrEntryUsed}). */
  readonly entries: readonly MbrEntry[];
}

/** True unless the slot is unused: type 0x00 or zero sectors. */
export function isMbrEntryUsed(e: MbrEntry): boolean {
  return e.type !== 0 && e.sectorCount !== 0;
}

function checkSector(sector: Uint8Array, lba: number): void {
  if (sector.length < MBR_SECTOR_SIZE) {
    throw new CorruptError(DiskCorruptKind.MbrSignature, `sector ${lba} is only ${sector.length} bytes`, { block: lba, field: 'signature' });
  }
  if (u8(sector, MBR_SIGNATURE_OFFSET) !== 0x55 || u8(sector, MBR_SIGNATURE_OFFSET + 1) !== 0xaa) {
    throw new CorruptError(DiskCorruptKind.MbrSignature, `sector ${lba} has no 0x55AA boot signature`, { block: lba, field: 'signature' });
  }
}

function decodeEntries(sector: Uint8Array, lba: number, checkBootInd: boolean): MbrEntry[] {
  const entries: MbrEntry[] = [];
  for (let slot = 0; slot < 4; slot++) {
    const off = MBR_ENTRIES_OFFSET + slot * MBR_ENTRY_SIZE;
    const boot_ind = u8(sector, off);
    const sys_ind = u8(sector, off + 0x4);
    const start_sect = u32le(sector, off + 0x8);
    const nr_sects = u32le(sector, off + 0xc);
    if (checkBootInd && boot_ind !== 0x00 && boot_ind !== 0x80) {
      throw new CorruptError(DiskCorruptKind.MbrEntry, `partition slot ${slot + 1} has boot indicator 0x${boot_ind.toString(16)} (not a partition table)`, {
        block: lba,
        field: 'boot_ind',
      });
    }
    entries.push(Object.freeze({ slot, bootable: boot_ind === 0x80, type: sys_ind, startLba: start_sect, sectorCount: nr_sects }));
  }
  return entries;
}

/**
 * Decodes the MBR in sector 0.
 *
 * @throws {@link CorruptError} `MbrSignature` if the 0x55AA signature is
 *   missing, `MbrEntry` if a boot indicator is neither 0x00 nor 0x80 - both
 *   mean "this sector is not a partition table" (an unpartitioned disk, or a
 *   file system boot sector), which callers usually treat as no table at all.
 */
export function decodeMbr(sector: Uint8Array): Mbr {
  checkSector(sector, 0);
  const disk_signature = u32le(sector, MBR_DISK_SIGNATURE_OFFSET);
  const entries = decodeEntries(sector, 0, true);
  return Object.freeze({ diskSignature: disk_signature, entries: Object.freeze(entries) });
}

/**
 * Decodes an EBR found at absolute sector `lba`. Unlike {@link decodeMbr} the
 * boot indicators are not checked (Linux ignores them in EBRs too).
 *
 * @throws {@link CorruptError} `MbrExtendedChain` if the 0x55AA signature is missing.
 */
export function decodeEbr(sector: Uint8Array, lba: number): Mbr {
  try {
    checkSector(sector, lba);
  } catch (err) {
    throw new CorruptError(DiskCorruptKind.MbrExtendedChain, `EBR at sector ${lba} has no 0x55AA boot signature`, { block: lba, field: 'signature', cause: err });
  }
  return Object.freeze({ diskSignature: u32le(sector, MBR_DISK_SIGNATURE_OFFSET), entries: Object.freeze(decodeEntries(sector, lba, false)) });
}
