/** errno values an NBD server maps to its reply error codes. */
export const Errno = { EIO: 5, EINVAL: 22, ENOSPC: 28, ESHUTDOWN: 108 } as const;
/** See {@link Errno}. */
export type Errno = (typeof Errno)[keyof typeof Errno];

/** Base class of every error this package throws; `errno` is what the NBD layer reports to the client. */
export class CaptureError extends Error {
  override name = 'CaptureError';
  readonly errno: Errno;
  constructor(message: string, errno: Errno, options?: { cause?: unknown }) {
    super(message, options);
    this.errno = errno;
  }
}

/** A request could not be completed: the image I/O failed, or JetStream did not store it in time (errno 5). */
export class IoError extends CaptureError {
  override name = 'IoError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, Errno.EIO, options);
  }
}

/** A request's range is not within the disk (errno 28 for writes, 22 otherwise). */
export class OutOfRangeError extends CaptureError {
  override name = 'OutOfRangeError';
}

/** Kinds of damage in a legacy trace. */
export const TraceCorruptKind = {
  /** The stream ends inside a record (header or data). */
  Truncated: 'Truncated',
  /** A negative sector or one whose byte offset is not a safe integer. */
  Sector: 'Sector',
  /** A negative sector count or one above MAX_TRACE_SECTORS. */
  Count: 'Count',
} as const;
/** See {@link TraceCorruptKind}. */
export type TraceCorruptKind = (typeof TraceCorruptKind)[keyof typeof TraceCorruptKind];

/** A legacy trace is malformed at byte `offset` (the start of the offending record). */
export class TraceError extends CaptureError {
  override name = 'TraceError';
  readonly kind: TraceCorruptKind;
  readonly offset: number;
  constructor(kind: TraceCorruptKind, message: string, offset: number) {
    super(`${message} (trace record at byte ${offset})`, Errno.EINVAL);
    this.kind = kind;
    this.offset = offset;
  }
}

/** The disk id is attached by another capture that is serving it (it answers the disk's block reads). */
export class DiskBusyError extends CaptureError {
  override name = 'DiskBusyError';
  constructor(message: string) {
    super(message, Errno.EIO);
  }
}

/**
 * The image is a container format (qcow2, VMDK, ...), not a raw disk: served as it is, the VM would see the
 * container's bytes as its disk and its first write would corrupt the container.
 */
export class ImageFormatError extends CaptureError {
  override name = 'ImageFormatError';
  /** qemu-img's name of the format found. */
  readonly format: string;
  constructor(message: string, format: string) {
    super(message, Errno.EINVAL);
    this.format = format;
  }
}
