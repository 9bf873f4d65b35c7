export type { NbdExport } from './nbd-export.js';
export type { CaptureDiskOptions, CaptureStats } from './capture-disk.js';
export {
  CaptureDisk,
  MAX_REQUEST_BYTES,
  DEFAULT_MAX_INFLIGHT_RECORDS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_PUBLISH_TIMEOUT_MS,
  DEFAULT_MAX_PENDING_BYTES,
  DEFAULT_CLOSE_TIMEOUT_MS,
} from './capture-disk.js';
export type { WritesStreamOptions } from './stream.js';
export { ensureWritesStream, WRITES_MAX_MSG_SIZE, DEFAULT_DUPLICATE_WINDOW_MS } from './stream.js';
export { openDiskRegistry, putDiskEntry, getDiskEntry, markDiskDetached } from './registry.js';
export type { AttachOptions, AttachedDisk } from './attach.js';
export { attachDisk } from './attach.js';
export type { BlockReadServer } from './block-reads.js';
export { serveBlockReads } from './block-reads.js';
export type { TraceRecord } from './legacy-trace.js';
export { readLegacyTrace, applyTrace, TRACE_SECTOR_SIZE, TRACE_HEADER_SIZE, MAX_TRACE_SECTORS, TRACE_APPLY_WINDOW } from './legacy-trace.js';
export { CaptureError, DiskBusyError, ImageFormatError, IoError, OutOfRangeError, TraceError, TraceCorruptKind, Errno } from './errors.js';
export { AsyncAckPublisher, PUBLISH_HEADROOM } from './publisher.js';
export { ImageLock, imageLockDir, imageLockHolder } from './image-lock.js';
export type { PublishAck, RecordPublisher, RecordPublishOptions } from './publisher.js';
