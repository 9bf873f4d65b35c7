export type { BlockSource } from './block-source.js';
export { FileBlockSource, MemoryBlockSource, SliceBlockSource, probeDeviceSize } from './block-source.js';
export { DiskError, CorruptError, IoError, DiskCorruptKind } from './errors.js';
export { crc32 } from './crc32.js';
export {
  MBR_SECTOR_SIZE,
  MAX_MBR_LOGICAL,
  GPT_SECTOR_SIZES,
  GPT_HEADER_MIN_SIZE,
  GPT_ENTRY_MIN_SIZE,
  MAX_GPT_ENTRY_SIZE,
  MAX_GPT_ENTRIES,
  MAX_GPT_ENTRY_ARRAY_BYTES,
  GPT_NAME_UNITS,
} from './limits.js';
export type { Mbr, MbrEntry } from './ondisk/mbr.js';
export { decodeMbr, decodeEbr, isMbrEntryUsed, isMbrExtendedType, MBR_TYPE_GPT_PROTECTIVE } from './ondisk/mbr.js';
export type { GptHeader, GptEntry } from './ondisk/gpt.js';
export { decodeGptHeader, decodeGptEntries, hasGptSignature, GPT_SIGNATURE, GPT_PRIMARY_LBA } from './ondisk/gpt.js';
export type { Partition, PartitionTable, ReadPartitionsOptions, Volume } from './partitions.js';
export { PartitionScheme, readPartitions, listVolumes, volumesFromTable, partitionSource, isExtendedPartition } from './partitions.js';
export type { LinearLv, LvmPv, LvmSection, LvmValue } from './lvm.js';
export { readLvmPv, parseLvmText, MAX_LVM_METADATA_BYTES } from './lvm.js';
export type { ImageFormat } from './image-format.js';
export { probeImageFormat, probeSourceFormat, PROBE_HEAD_BYTES, PROBE_TAIL_BYTES } from './image-format.js';
