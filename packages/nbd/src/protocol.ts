/**
 * Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md), fixed newstyle negotiation and
 * simple replies only. Every multi-byte field on the wire is big-endian.
 *
 * Handshake, server first:
 * ```
 * S: 0x00  u64  NBDMAGIC  0x4e42444d41474943
 * S: 0x08  u64  IHAVEOPT  0x49484156454f5054
 * S: 0x10  u16  handshake flags (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)
 * C: 0x00  u32  client flags (NBD_FLAG_C_*)
 * ```
 * Option request (client):           `u64 IHAVEOPT, u32 option, u32 length, length bytes of data`.
 * Option reply (server):             `u64 0x3e889045565a9, u32 option, u32 reply type, u32 length, data`.
 * Transmission request (28 bytes):   `u32 0x25609513, u16 command flags, u16 type, u64 cookie, u64 offset, u32 length`.
 * Simple reply (16 bytes):           `u32 0x67446698, u32 error, u64 cookie` (+ data for a successful READ).
 */

/** `NBDMAGIC`, the first eight bytes the server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** `IHAVEOPT`: sent by the server after NBDMAGIC and prefixed by the client to every option. */
export const NBD_IHAVEOPT = 0x49484156454f5054n;
/** Magic of every option reply. */
export const NBD_OPT_REPLY_MAGIC = 0x3e889045565a9n;
/** Magic of a transmission request. */
export const NBD_REQUEST_MAGIC = 0x25609513;
/** Magic of a simple reply. */
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;

/** Size of the server greeting (NBDMAGIC, IHAVEOPT, handshake flags). */
export const GREETING_SIZE = 18;
/** Size of an option request header (IHAVEOPT, option, length). */
export const OPTION_HEADER_SIZE = 16;
/** Size of an option reply header. */
export const OPTION_REPLY_HEADER_SIZE = 20;
/** Size of a transmission request header. */
export const REQUEST_SIZE = 28;
/** Size of a simple reply header. */
export const SIMPLE_REPLY_SIZE = 16;
/** Zero padding after the NBD_OPT_EXPORT_NAME reply unless NO_ZEROES was agreed. */
export const EXPORT_NAME_PADDING = 124;

/** Handshake flags (server, u16). */
export const HandshakeFlag = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;
/** Client flags (u32); any other bit set makes the server drop the connection. */
export const ClientFlag = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;

/** Option types. */
export const NbdOpt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;
/** An option type this server knows by name. */
export type NbdOpt = (typeof NbdOpt)[keyof typeof NbdOpt];

/** Bit 31 marks an option reply type as an error. */
export const NBD_REP_FLAG_ERROR = 0x8000_0000;
/** Option reply types. */
export const NbdRep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: (NBD_REP_FLAG_ERROR | 1) >>> 0,
  ERR_POLICY: (NBD_REP_FLAG_ERROR | 2) >>> 0,
  ERR_INVALID: (NBD_REP_FLAG_ERROR | 3) >>> 0,
  ERR_PLATFORM: (NBD_REP_FLAG_ERROR | 4) >>> 0,
  ERR_TLS_REQD: (NBD_REP_FLAG_ERROR | 5) >>> 0,
  ERR_UNKNOWN: (NBD_REP_FLAG_ERROR | 6) >>> 0,
  ERR_SHUTDOWN: (NBD_REP_FLAG_ERROR | 7) >>> 0,
  ERR_BLOCK_SIZE_REQD: (NBD_REP_FLAG_ERROR | 8) >>> 0,
  ERR_TOO_BIG: (NBD_REP_FLAG_ERROR | 9) >>> 0,
  ERR_EXT_HEADER_REQD: (NBD_REP_FLAG_ERROR | 10) >>> 0,
} as const;
/** An option reply type. */
export type NbdRep = (typeof NbdRep)[keyof typeof NbdRep];

/** Information types in NBD_REP_INFO replies (and requested by NBD_OPT_INFO / NBD_OPT_GO). */
export const NbdInfo = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;
/** An information type. */
export type NbdInfo = (typeof NbdInfo)[keyof typeof NbdInfo];

/** Transmission flags (u16). */
export const TransmissionFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Command types. */
export const NbdCmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;
/** A command type this server knows by name. */
export type NbdCmd = (typeof NbdCmd)[keyof typeof NbdCmd];

/** Command flags (u16). */
export const CmdFlag = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const;

/** Error values of a reply (errno numbers fixed by the protocol, not by the host). */
export const NbdErrno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
/** An error value of a reply. */
export type NbdErrno = (typeof NbdErrno)[keyof typeof NbdErrno];
