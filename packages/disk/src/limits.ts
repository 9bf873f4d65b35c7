/**
 * Caps on everything a guest disk can make us count, read or loop over. A
 * partition table is attacker-controlled, so each bound here is what keeps a
 * hostile table from costing more than a few reads and a little memory.
 */

/** Bytes in an MBR / EBR sector; MBR LBAs are always counted in these units here. */
export const MBR_SECTOR_SIZE = 512;

/**
 * Most EBRs followed across all extended partitions of one disk. Linux stops
 * at 256 partitions per disk; real tables rarely have more than a dozen
 * logicals.
 */
export const MAX_MBR_LOGICAL = 128;

/** Logical sector sizes probed for a GPT header, in order. */
export const GPT_SECTOR_SIZES = [512, 4096] as const;

/** Smallest GPT header the UEFI spec allows (revision 1.0 layout). */
export const GPT_HEADER_MIN_SIZE = 92;

/** Smallest GPT partition entry the UEFI spec allows. */
export const GPT_ENTRY_MIN_SIZE = 128;

/** Largest GPT partition entry accepted (the spec allows 128 * 2^n; nobody uses more than 128). */
export const MAX_GPT_ENTRY_SIZE = 4096;

/** Most GPT partition entries accepted (tools write 128 by default). */
export const MAX_GPT_ENTRIES = 4096;

/** Largest GPT partition entry array read from disk (128 entries of 128 bytes is 16 KiB). */
export const MAX_GPT_ENTRY_ARRAY_BYTES = 1024 * 1024;

/** Most UTF-16 code units in a GPT partition name (72 bytes). */
export const GPT_NAME_UNITS = 36;
