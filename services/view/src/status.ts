/**
 * How failures become gRPC statuses: one code per ReplicaError code, the message as details (it says what was
 * wrong and what to do), and the precise reason in trailing metadata `gammaray-error`.
 */
import * as grpc from '@grpc/grpc-js';
import { ReplicaError, ReplicaErrorCode } from '@gammaray/replica';

/** Trailing metadata key carrying the precise reason of an error. */
export const ERROR_REASON_KEY = 'gammaray-error';

/** Reasons the API reports beyond the replica's codes. */
export const ApiReason = {
  NotASymlink: 'NotASymlink',
  BadPageToken: 'BadPageToken',
  Unauthenticated: 'Unauthenticated',
  Internal: 'Internal',
} as const;
/** See {@link ApiReason}. */
export type ApiReason = (typeof ApiReason)[keyof typeof ApiReason];

/** A request the API refuses for a reason of its own (not the replica's). */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly code: grpc.status,
    readonly reason: ApiReason,
    message: string,
  ) {
    super(message);
  }
}

const CODES: Readonly<Record<ReplicaErrorCode, grpc.status>> = {
  NotFound: grpc.status.NOT_FOUND,
  // A path naming the wrong kind of thing is the caller's mistake whatever the state: INVALID_ARGUMENT keeps
  // FAILED_PRECONDITION meaning only "not ready yet, retry".
  NotADirectory: grpc.status.INVALID_ARGUMENT,
  IsADirectory: grpc.status.INVALID_ARGUMENT,
  InvalidArgument: grpc.status.INVALID_ARGUMENT,
  NotReady: grpc.status.FAILED_PRECONDITION,
  Unavailable: grpc.status.UNAVAILABLE,
};

/** What a handler hands grpc-js for a failure. */
export type ServiceError = Partial<grpc.StatusObject> & { code: grpc.status; details: string };

/** The status of a failure; anything unexpected is INTERNAL (and `onInternal` sees it, for the log). */
export function toServiceError(err: unknown, onInternal?: (err: unknown) => void): ServiceError {
  let code: grpc.status;
  let reason: string;
  let details: string;
  if (err instanceof ReplicaError) {
    code = CODES[err.code] ?? grpc.status.INTERNAL;
    reason = err.code;
    details = err.message;
  } else if (err instanceof ApiError) {
    code = err.code;
    reason = err.reason;
    details = err.message;
  } else {
    onInternal?.(err);
    code = grpc.status.INTERNAL;
    reason = ApiReason.Internal;
    details = `internal error: ${(err as Error)?.message ?? String(err)}`;
  }
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_REASON_KEY, reason);
  return { code, details, metadata };
}
