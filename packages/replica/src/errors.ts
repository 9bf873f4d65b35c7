/** What went wrong with a request to a replica: each maps to one gRPC status and one errno. */
export const ReplicaErrorCode = {
  /** No such disk, or no such path on it. */
  NotFound: 'NotFound',
  /** A path component is not a directory, or a directory was asked for something only files have. */
  NotADirectory: 'NotADirectory',
  /** A file operation on a directory. */
  IsADirectory: 'IsADirectory',
  /** The request itself is malformed (a relative path, `..`, a negative offset...). */
  InvalidArgument: 'InvalidArgument',
  /** The disk has no state yet: its inferencer has not finished the first crawl (no checkpoint stored). */
  NotReady: 'NotReady',
  /** NATS or the capture's block reads did not answer. */
  Unavailable: 'Unavailable',
} as const;
/** See {@link ReplicaErrorCode}. */
export type ReplicaErrorCode = (typeof ReplicaErrorCode)[keyof typeof ReplicaErrorCode];

/** A request a replica cannot answer; `message` says what was wrong and what to do. */
export class ReplicaError extends Error {
  override name = 'ReplicaError';
  readonly code: ReplicaErrorCode;
  constructor(code: ReplicaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
