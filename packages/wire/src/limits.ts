/**
 * Every cap of the wire format in one place. NATS's default `max_payload` is 1 MiB (1,048,576 bytes); a stream
 * message also carries headers (Nats-Msg-Id, ...), so records stop well short of it.
 */

/** Largest encoded write record, in bytes. Encoders never exceed it and decoders reject anything larger. */
export const MAX_RECORD_BYTES = 1_000_000;

/**
 * Largest data payload of one `write` op. 960 KiB keeps a record holding one such op (plus the fixed part of the
 * record and op documents, well under 1 KiB) below {@link MAX_RECORD_BYTES}, and is a multiple of 64 KiB so
 * split writes stay aligned.
 */
export const MAX_WRITE_CHUNK_BYTES = 960 * 1024;

/** Upper bound of the BSON bytes of the record document around its ops (`v`, `disk` up to 64 bytes, `ts`, `ops`). */
export const RECORD_OVERHEAD_BYTES = 256;

/** Upper bound of the BSON bytes of one op document apart from its `data` payload. */
export const OP_OVERHEAD_BYTES = 96;

/** Most ops in one record (a record of only flushes stays far below {@link MAX_RECORD_BYTES} at this count). */
export const MAX_OPS_PER_RECORD = 8192;

/** Largest `length` of one op: BSON int32. Larger zero/trim ranges are split (see `splitRange`). */
export const MAX_OP_LENGTH = 0x7fff_ffff;

/** Largest range a split zero/trim op covers: 1 GiB, aligned, below {@link MAX_OP_LENGTH}. */
export const MAX_RANGE_CHUNK_BYTES = 1024 * 1024 * 1024;

/** Largest block read answered in one reply (the reply must fit in a NATS message like a record). */
export const MAX_BLOCK_READ_BYTES = MAX_WRITE_CHUNK_BYTES;

/** Largest encoded block-read request; it holds two integers. */
export const MAX_BLOCK_REQUEST_BYTES = 1024;

/** Largest disk registry entry (JSON) accepted from KV. */
export const MAX_REGISTRY_ENTRY_BYTES = 16 * 1024;

/** Longest image path kept in a registry entry. */
export const MAX_IMAGE_PATH_CHARS = 4096;

/**
 * Largest encoded file-system event (one message of GAMMARAY_EVENTS): like a record, short of NATS's default
 * max_payload (1 MiB) to leave room for the headers (the percent-encoded path may take 12 KiB). The inferencer's
 * inline limit (at most {@link MAX_WRITE_CHUNK_BYTES}) keeps a write event below it; an event that would still
 * be larger is published without its data.
 */
export const MAX_EVENT_BYTES = 1_000_000;

/**
 * Longest `Gammaray-Path` header value: a PATH_MAX path (4096 bytes), each byte percent-encoded. A guest can nest
 * directories far deeper than PATH_MAX; such an event goes without the header (its BSON path is the authority),
 * since event + header must stay under max_payload or the event could never be stored.
 */
export const MAX_PATH_HEADER_CHARS = 12 * 1024;
