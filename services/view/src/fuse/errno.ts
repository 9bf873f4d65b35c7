/**
 * Errnos of the FUSE view, and how a failed request becomes one.
 */
import { constants } from 'node:os';
import { ReplicaError, ReplicaErrorCode } from '@gammaray/replica';

const E = constants.errno;

/** The (positive, Linux) errnos the view answers with. */
export const Errno = {
  ENOENT: E.ENOENT,
  ENOTDIR: E.ENOTDIR,
  EISDIR: E.EISDIR,
  EINVAL: E.EINVAL,
  EAGAIN: E.EAGAIN,
  EIO: E.EIO,
  EROFS: E.EROFS,
  ERANGE: E.ERANGE,
  ESTALE: E.ESTALE,
  EBADF: E.EBADF,
  ENODATA: E.ENODATA,
} as const;
/** See {@link Errno}. */
export type Errno = (typeof Errno)[keyof typeof Errno];

/** A request the view refuses with a given errno (expected outcomes: not logged as failures). */
export class FsError extends Error {
  override name = 'FsError';
  readonly errno: Errno;
  constructor(errno: Errno, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.errno = errno;
  }
}

const BY_CODE: Record<ReplicaErrorCode, Errno> = {
  [ReplicaErrorCode.NotFound]: Errno.ENOENT,
  [ReplicaErrorCode.NotADirectory]: Errno.ENOTDIR,
  [ReplicaErrorCode.IsADirectory]: Errno.EISDIR,
  [ReplicaErrorCode.InvalidArgument]: Errno.EINVAL,
  // Not bootstrapped yet: try again shortly.
  [ReplicaErrorCode.NotReady]: Errno.EAGAIN,
  // NATS or the capture's block reads did not answer.
  [ReplicaErrorCode.Unavailable]: Errno.EIO,
};

/** The errno a failed request is answered with; anything unexpected is EIO. */
export function errnoOf(err: unknown): Errno {
  if (err instanceof FsError) return err.errno;
  if (err instanceof ReplicaError) return BY_CODE[err.code] ?? Errno.EIO;
  return Errno.EIO;
}

/**
 * Whether a failure is worth a warning: lookups of names that do not exist, refused writes, a disk still
 * bootstrapping (EAGAIN) and the like are the normal traffic of a file system (shells probe for files all the
 * time); I/O failures are not.
 */
export function isExpected(errno: Errno): boolean {
  return errno !== Errno.EIO;
}
