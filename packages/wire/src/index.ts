export { WireError, CorruptError, InvalidNameError, EncodeError, WireCorruptKind } from './errors.js';
export {
  MAX_RECORD_BYTES,
  MAX_WRITE_CHUNK_BYTES,
  RECORD_OVERHEAD_BYTES,
  OP_OVERHEAD_BYTES,
  MAX_OPS_PER_RECORD,
  MAX_OP_LENGTH,
  MAX_RANGE_CHUNK_BYTES,
  MAX_BLOCK_READ_BYTES,
  MAX_BLOCK_REQUEST_BYTES,
  MAX_REGISTRY_ENTRY_BYTES,
  MAX_IMAGE_PATH_CHARS,
  MAX_EVENT_BYTES,
  MAX_PATH_HEADER_CHARS,
} from './limits.js';
export {
  STREAM_WRITES,
  STREAM_EVENTS,
  KV_DISKS,
  OBJ_STATE,
  KV_WORKERS,
  KV_LEASES,
  WRITES_WILDCARD,
  EVENTS_WILDCARD,
  BLOCKS_WILDCARD,
  BLOCKS_QUEUE,
  HEADER_PATH,
  HEADER_WORKER,
  HEADER_EPOCH,
  DISK_ID_PATTERN,
  EVENT_KIND_PATTERN,
  isDiskId,
  parseDiskId,
  writesSubject,
  blocksSubject,
  eventsSubject,
  diskEventsFilter,
  diskOfSubject,
} from './subjects.js';
export { encodePathHeader, decodePathHeader } from './headers.js';
export type { WriteRecord, WriteOp, WriteDataOp, WriteZeroOp, WriteTrimOp, WriteFlushOp } from './record.js';
export {
  WRITE_RECORD_VERSION,
  OpKind,
  encodeWriteRecord,
  decodeWriteRecord,
  opEncodedBound,
  recordEncodedBound,
  splitWrite,
  splitRange,
  batchOps,
} from './record.js';
export type { BlockReadRequest, BlockReadReply } from './blocks.js';
export { BlockReadErrorCode, encodeBlockReadRequest, decodeBlockReadRequest, encodeBlockReadReply, decodeBlockReadReply } from './blocks.js';
export type { DiskRegistryEntry } from './registry.js';
export { DiskState, encodeDiskEntry, decodeDiskEntry, isPartitionNumber, MAX_PARTITION_NUMBER } from './registry.js';
