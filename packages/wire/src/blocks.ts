import { BSON } from 'bson';
import { CorruptError, EncodeError, WireCorruptKind } from './errors.js';
import { describe, toSafeUint } from './int64.js';
import { MAX_BLOCK_READ_BYTES, MAX_BLOCK_REQUEST_BYTES, MAX_RECORD_BYTES } from './limits.js';
import { deserializeUntrusted } from './record.js';

/**
 * A block read on `gammaray.<disk>.blocks`, BSON `{offset: int64, length: int32}`. Both request and reply are
 * BSON (not JSON) so the reply carries raw bytes as binary and the sequence as an exact int64.
 */
export interface BlockReadRequest {
  readonly offset: number;
  readonly length: number;
}

/** Error codes of a block-read reply. */
export const BlockReadErrorCode = {
  /** The request is not a valid BlockReadRequest. */
  BadRequest: 'BadRequest',
  /** The range is not within the disk, or longer than MAX_BLOCK_READ_BYTES. */
  OutOfRange: 'OutOfRange',
  /** The disk is closing or not captured by this responder. */
  Unavailable: 'Unavailable',
  /** Reading the image failed. */
  Internal: 'Internal',
} as const;
/** See {@link BlockReadErrorCode}. */
export type BlockReadErrorCode = (typeof BlockReadErrorCode)[keyof typeof BlockReadErrorCode];

/**
 * A block-read reply, BSON. Success: `{data: binary, seq: int64}` where `data` is the disk's bytes after applying
 * exactly this disk's write records with stream sequence <= `seq` (and no later ones). Failure:
 * `{error: {code, message}}`.
 */
export type BlockReadReply =
  | { readonly data: Uint8Array; readonly seq: number }
  | { readonly error: { readonly code: BlockReadErrorCode; readonly message: string } };

/** Encodes a block-read request. */
export function encodeBlockReadRequest(req: BlockReadRequest): Uint8Array {
  if (!Number.isSafeInteger(req.offset) || req.offset < 0) throw new EncodeError('offset is not a non-negative safe integer', { field: 'offset' });
  if (!Number.isInteger(req.length) || req.length < 0 || req.length > MAX_BLOCK_READ_BYTES) {
    throw new EncodeError(`length is not in 0..${MAX_BLOCK_READ_BYTES}`, { field: 'length' });
  }
  return BSON.serialize({ offset: BigInt(req.offset), length: req.length });
}

/** Decodes a block-read request from untrusted bytes; throws CorruptError. Does not check the disk's size. */
export function decodeBlockReadRequest(bytes: Uint8Array): BlockReadRequest {
  const d = deserializeUntrusted(bytes, MAX_BLOCK_REQUEST_BYTES);
  const offset = toSafeUint(d['offset'], WireCorruptKind.Offset, 'offset');
  const length = toSafeUint(d['length'], WireCorruptKind.Length, 'length');
  if (length > MAX_BLOCK_READ_BYTES) throw new CorruptError(WireCorruptKind.Length, `length ${length} is larger than ${MAX_BLOCK_READ_BYTES}`, { field: 'length' });
  if (!Number.isSafeInteger(offset + length)) throw new CorruptError(WireCorruptKind.Offset, 'range ends beyond 2^53', { field: 'offset' });
  return Object.freeze({ offset, length });
}

/** Encodes a block-read reply. */
export function encodeBlockReadReply(reply: BlockReadReply): Uint8Array {
  if ('error' in reply) return BSON.serialize({ error: { code: reply.error.code, message: reply.error.message } });
  if (!Number.isSafeInteger(reply.seq) || reply.seq < 0) throw new EncodeError('seq is not a non-negative safe integer', { field: 'seq' });
  return BSON.serialize({ data: reply.data, seq: BigInt(reply.seq) });
}

/** Decodes a block-read reply from untrusted bytes; throws CorruptError. */
export function decodeBlockReadReply(bytes: Uint8Array): BlockReadReply {
  const d = deserializeUntrusted(bytes, MAX_RECORD_BYTES);
  const err = d['error'];
  if (err !== undefined) {
    if (err === null || typeof err !== 'object') throw new CorruptError(WireCorruptKind.Field, `error is ${describe(err)}`, { field: 'error' });
    const e = err as Record<string, unknown>;
    const code = e['code'];
    const message = e['message'];
    if (typeof code !== 'string' || !Object.values(BlockReadErrorCode).includes(code as BlockReadErrorCode)) {
      throw new CorruptError(WireCorruptKind.Field, 'error.code is not a known code', { field: 'error.code' });
    }
    if (typeof message !== 'string') throw new CorruptError(WireCorruptKind.Field, 'error.message is not a string', { field: 'error.message' });
    return Object.freeze({ error: Object.freeze({ code: code as BlockReadErrorCode, message }) });
  }
  const data = d['data'];
  if (!(data instanceof Uint8Array)) throw new CorruptError(WireCorruptKind.Data, `data is ${describe(data)}, expected binary`, { field: 'data' });
  const seq = toSafeUint(d['seq'], WireCorruptKind.Field, 'seq');
  return Object.freeze({ data, seq });
}
