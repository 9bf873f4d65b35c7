import { crc32 } from '../crc32.js';
import { CorruptError, DiskCorruptKind } from '../errors.js';
import { GPT_ENTRY_MIN_SIZE, GPT_HEADER_MIN_SIZE, GPT_NAME_UNITS, MAX_GPT_ENTRIES, MAX_GPT_ENTRY_ARRAY_BYTES, MAX_GPT_ENTRY_SIZE } from '../limits.js';
import { formatGuid, isZero, safeU64le, u16le, u32le, u64le } from './bytes.js';

/*
 * GUID Partition Table (UEFI spec, chapter 5.3). The primary header is at
 * LBA 1, the backup at the last LBA of the disk; each points at its own copy of
 * the entry array (primary usually at LBA 2, backup just before the backup
 * header).
 *
 * GPT header
 *
 *   Offset  Size  Field                          Meaning
 *   0x00    8     signature                      "EFI PART"
 *   0x08    4     revision                       0x00010000 (1.0)
 *   0x0C    4     header_size                    bytes covered by header_crc32,
 *                                                92..logical sector size
 *   0x10    4     header_crc32                   CRC32 of header_size bytes with
 *                                                this field taken as zero
 *   0x14    4     reserved1                      zero
 *   0x18    8     my_lba                         LBA of this header
 *   0x20    8     alternate_lba                  LBA of the other header
 *   0x28    8     first_usable_lba               first LBA partitions may use
 *   0x30    8     last_usable_lba                last LBA partitions may use (inclusive)
 *   0x38    16    disk_guid                      disk identity
 *   0x48    8     partition_entry_lba            first LBA of this header's entry array
 *   0x50    4     num_partition_entries          slots in the array
 *   0x54    4     sizeof_partition_entry         bytes per slot, 128 * 2^n
 *   0x58    4     partition_entry_array_crc32    CRC32 of num * sizeof bytes
 *   0x5C    ...   reserved2                      zero to the end of the sector
 *
 * GPT partition entry (sizeof_partition_entry bytes; only the first 128 defined)
 *
 *   Offset  Size  Field                          Meaning
 *   0x00    16    partition_type_guid            all zero: unused slot
 *   0x10    16    unique_partition_guid          Linux PARTUUID
 *   0x20    8     starting_lba                   first LBA
 *   0x28    8     ending_lba                     last LBA (inclusive)
 *   0x30    8     attributes                     bit 0 platform required, 1 no
 *                                                block IO, 2 legacy BIOS bootable,
 *                                                48-63 type specific
 *   0x38    72    partition_name                 UTF-16LE, NUL padded (36 units)
 */

/** The 8 signature bytes "EFI PART". */
export const GPT_SIGNATURE = 'EFI PART';
/** LBA of the primary GPT header. */
export const GPT_PRIMARY_LBA = 1;

const SIGNATURE_BYTES = new TextEncoder().encode(GPT_SIGNATURE);
const UTF16 = new TextDecoder('utf-16le');

/** A validated GPT header. */
export interface GptHeader {
  /** `revision`, 0x00010000 for every GPT written so far. */
  readonly revision: number;
  /** `header_size`. */
  readonly headerSize: number;
  /** `my_lba`: where this header lives (1 for the primary). */
  readonly myLba: number;
  /** `alternate_lba`: where the other copy claims to live. */
  readonly alternateLba: number;
  /** `first_usable_lba`. */
  readonly firstUsableLba: number;
  /** `last_usable_lba` (inclusive). May lie beyond the end of a truncated image. */
  readonly lastUsableLba: number;
  /** `disk_guid`, lowercase text. */
  readonly diskGuid: string;
  /** `partition_entry_lba`. */
  readonly entriesLba: number;
  /** `num_partition_entries`. */
  readonly entryCount: number;
  /** `sizeof_partition_entry`. */
  readonly entrySize: number;
  /** `partition_entry_array_crc32`. */
  readonly entriesCrc32: number;
  /** `entryCount * entrySize`: bytes to read at `entriesLba` (at most {@link MAX_GPT_ENTRY_ARRAY_BYTES}). */
  readonly entryArrayBytes: number;
}

/** A used slot of a GPT entry array. */
export interface GptEntry {
  /** 0-based slot in the array (Linux names the partition slot + 1). */
  readonly slot: number;
  /** `partition_type_guid`, lowercase text. */
  readonly typeGuid: string;
  /** `unique_partition_guid`, lowercase text. */
  readonly uniqueGuid: string;
  /** `starting_lba`. */
  readonly firstLba: number;
  /** `ending_lba` (inclusive). Not checked against `firstLba` here. */
  readonly lastLba: number;
  /** `attributes`, a 64-bit flag word. */
  readonly attributes: bigint;
  /** `partition_name` up to the first NUL; unpaired surrogates become U+FFFD. */
  readonly name: string;
}

/** True if `sector` starts with "EFI PART" (a cheap probe before {@link decodeGptHeader}). */
export function hasGptSignature(sector: Uint8Array): boolean {
  if (sector.length < SIGNATURE_BYTES.length) return false;
  return SIGNATURE_BYTES.every((c, i) => sector[i] === c);
}

function headerError(kind: DiskCorruptKind, lba: number, field: string, what: string): CorruptError {
  return new CorruptError(kind, `GPT header at LBA ${lba}: ${what}`, { block: lba, field });
}

/**
 * Decodes and validates the GPT header in `sector`, one whole logical sector
 * read from `lba` of a disk of `diskSectors` sectors (`sector.length` is the
 * logical sector size).
 *
 * Checks the signature, `header_size`, `header_crc32`, that `my_lba` is
 * `lba`, the usable range, the entry size and count against the caps in
 * `limits.ts`, and that the entry array lies on the disk. A `last_usable_lba`
 * beyond the disk is accepted (truncated images); callers clip partitions.
 *
 * @throws {@link CorruptError} `GptHeaderCrc` for a checksum mismatch,
 *   `GptHeader` for anything else.
 */
export function decodeGptHeader(sector: Uint8Array, lba: number, diskSectors: number): GptHeader {
  const K = DiskCorruptKind;
  if (sector.length < GPT_HEADER_MIN_SIZE) throw headerError(K.GptHeader, lba, 'header_size', `sector of ${sector.length} bytes cannot hold a header`);
  if (!hasGptSignature(sector)) throw headerError(K.GptHeader, lba, 'signature', 'no "EFI PART" signature');

  const revision = u32le(sector, 0x08);
  const header_size = u32le(sector, 0x0c);
  const header_crc32 = u32le(sector, 0x10);
  if (header_size < GPT_HEADER_MIN_SIZE || header_size > sector.length) {
    throw headerError(K.GptHeader, lba, 'header_size', `header_size ${header_size} is outside ${GPT_HEADER_MIN_SIZE}..${sector.length}`);
  }
  const copy = sector.slice(0, header_size);
  copy.fill(0, 0x10, 0x14);
  const actual = crc32(copy);
  if (actual !== header_crc32) {
    throw headerError(K.GptHeaderCrc, lba, 'header_crc32', `header_crc32 0x${header_crc32.toString(16)} != computed 0x${actual.toString(16)}`);
  }

  const my_lba = safeU64le(sector, 0x18, K.GptHeader, 'my_lba', lba);
  const alternate_lba = safeU64le(sector, 0x20, K.GptHeader, 'alternate_lba', lba);
  const first_usable_lba = safeU64le(sector, 0x28, K.GptHeader, 'first_usable_lba', lba);
  const last_usable_lba = safeU64le(sector, 0x30, K.GptHeader, 'last_usable_lba', lba);
  const disk_guid = formatGuid(sector, 0x38);
  const partition_entry_lba = safeU64le(sector, 0x48, K.GptHeader, 'partition_entry_lba', lba);
  const num_partition_entries = u32le(sector, 0x50);
  const sizeof_partition_entry = u32le(sector, 0x54);
  const partition_entry_array_crc32 = u32le(sector, 0x58);

  if (my_lba !== lba) throw headerError(K.GptHeader, lba, 'my_lba', `my_lba ${my_lba} but read from LBA ${lba}`);
  if (first_usable_lba > last_usable_lba) {
    throw headerError(K.GptHeader, lba, 'first_usable_lba', `first_usable_lba ${first_usable_lba} > last_usable_lba ${last_usable_lba}`);
  }
  if (sizeof_partition_entry < GPT_ENTRY_MIN_SIZE || sizeof_partition_entry > MAX_GPT_ENTRY_SIZE || sizeof_partition_entry % 8 !== 0) {
    throw headerError(K.GptHeader, lba, 'sizeof_partition_entry', `sizeof_partition_entry ${sizeof_partition_entry} is not a multiple of 8 in ${GPT_ENTRY_MIN_SIZE}..${MAX_GPT_ENTRY_SIZE}`);
  }
  // sizeof_partition_entry <= 2^12 here, so the product (< 2^44) is exact.
  if (num_partition_entries > MAX_GPT_ENTRIES || num_partition_entries * sizeof_partition_entry > MAX_GPT_ENTRY_ARRAY_BYTES) {
    throw headerError(K.GptHeader, lba, 'num_partition_entries', `num_partition_entries ${num_partition_entries} exceeds the cap (${MAX_GPT_ENTRIES} entries, ${MAX_GPT_ENTRY_ARRAY_BYTES} bytes)`);
  }
  const arrayBytes = num_partition_entries * sizeof_partition_entry;
  const arraySectors = Math.ceil(arrayBytes / sector.length);
  if (partition_entry_lba > diskSectors || arraySectors > diskSectors - partition_entry_lba) {
    throw headerError(K.GptHeader, lba, 'partition_entry_lba', `entry array at LBA ${partition_entry_lba} (${arraySectors} sectors) extends past the ${diskSectors}-sector disk`);
  }

  return Object.freeze({
    revision,
    headerSize: header_size,
    myLba: my_lba,
    alternateLba: alternate_lba,
    firstUsableLba: first_usable_lba,
    lastUsableLba: last_usable_lba,
    diskGuid: disk_guid,
    entriesLba: partition_entry_lba,
    entryCount: num_partition_entries,
    entrySize: sizeof_partition_entry,
    entriesCrc32: partition_entry_array_crc32,
    entryArrayBytes: arrayBytes,
  });
}

/**
 * Verifies the entry array read from `header.entriesLba` against
 * `header.entriesCrc32` and decodes its used slots (non-zero type GUID), in
 * slot order.
 *
 * @throws {@link CorruptError} `GptEntriesCrc` for a checksum mismatch,
 *   `GptEntries` if the buffer is short or an LBA does not fit in 53 bits.
 */
export function decodeGptEntries(array: Uint8Array, header: GptHeader): GptEntry[] {
  const K = DiskCorruptKind;
  const block = header.entriesLba;
  if (array.length < header.entryArrayBytes) {
    throw new CorruptError(K.GptEntries, `GPT entry array is ${array.length} bytes, header says ${header.entryArrayBytes}`, { block, field: 'num_partition_entries' });
  }
  const actual = crc32(array.subarray(0, header.entryArrayBytes));
  if (actual !== header.entriesCrc32) {
    throw new CorruptError(K.GptEntriesCrc, `GPT entry array at LBA ${block}: partition_entry_array_crc32 0x${header.entriesCrc32.toString(16)} != computed 0x${actual.toString(16)}`, {
      block,
      field: 'partition_entry_array_crc32',
    });
  }
  const entries: GptEntry[] = [];
  for (let slot = 0; slot < header.entryCount; slot++) {
    const off = slot * header.entrySize;
    if (isZero(array, off, 16)) continue;
    const partition_type_guid = formatGuid(array, off);
    const unique_partition_guid = formatGuid(array, off + 0x10);
    const starting_lba = safeU64le(array, off + 0x20, K.GptEntries, 'starting_lba', block);
    const ending_lba = safeU64le(array, off + 0x28, K.GptEntries, 'ending_lba', block);
    const attributes = u64le(array, off + 0x30);
    let units = 0;
    while (units < GPT_NAME_UNITS && u16le(array, off + 0x38 + units * 2) !== 0) units++;
    const partition_name = UTF16.decode(array.subarray(off + 0x38, off + 0x38 + units * 2));
    entries.push(
      Object.freeze({
        slot,
        typeGuid: partition_type_guid,
        uniqueGuid: unique_partition_guid,
        firstLba: starting_lba,
        lastLba: ending_lba,
        attributes,
        name: partition_name,
      }),
    );
  }
  return entries;
}
