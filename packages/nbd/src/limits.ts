/** Every cap the server applies to what a client may make it hold or do. */

/** Largest option data accepted (the protocol's string limit); bigger gets NBD_REP_ERR_TOO_BIG. */
export const MAX_OPTION_LENGTH = 4096;
/** Largest oversized option data skipped after NBD_REP_ERR_TOO_BIG; anything bigger drops the connection. */
export const MAX_OPTION_SKIP = 1 << 20;
/** Options per handshake; a client that keeps negotiating past this is dropped. */
export const MAX_OPTIONS = 256;
/** Number of information requests in one NBD_OPT_INFO / NBD_OPT_GO (bounded by MAX_OPTION_LENGTH anyway). */
export const MAX_INFO_REQUESTS = 2046;
/** Export names are disk ids. */
export const EXPORT_NAME_PATTERN = /^[a-z0-9_-]{1,64}$/;
/** Default time a client has from accept to entering transmission. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Default requests in flight per connection before the server stops reading. */
export const DEFAULT_MAX_IN_FLIGHT = 128;
/** Payload and reply bytes in flight per connection before the server stops reading (one request may exceed it). */
export const DEFAULT_MAX_IN_FLIGHT_BYTES = 64 << 20;
/** Hard ceiling on an export's maxBlockSize: the largest single buffer one request can make the server allocate. */
export const MAX_REQUEST_LENGTH = 32 << 20;
/** Largest minimum block size the protocol allows. */
export const MAX_MIN_BLOCK_SIZE = 64 << 10;
/** Bytes buffered from a socket beyond what the parser currently needs before reading pauses. */
export const READ_HIGH_WATER = 256 << 10;
/** Unsent reply bytes queued on a socket before the server stops reading new requests. */
export const WRITE_HIGH_WATER = 16 << 20;
/** Default grace period for in-flight requests in NbdServer.close(). */
export const DEFAULT_DRAIN_MS = 5_000;
