import type { NatsConnection } from '@nats-io/nats-core';
import type { BlockFetcher } from '@gammaray/inferencer';
import { MAX_BLOCK_READ_BYTES, blocksSubject, decodeBlockReadReply, encodeBlockReadRequest, type BlockReadErrorCode } from '@gammaray/wire';
import type { Logger } from 'pino';

/** Why a block read failed: a reply's error code, or what went wrong on the way. */
export type BlockFetchFailure = BlockReadErrorCode | 'NoReply' | 'BadReply';

/**
 * A block read over NATS failed (after its retries). The worker treats it as transient: it restarts the disk
 * from its checkpoint after a backoff instead of counting it against the engine.
 */
export class BlockFetchError extends Error {
  override name = 'BlockFetchError';
  readonly code: BlockFetchFailure;
  constructor(code: BlockFetchFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Options of {@link NatsBlockFetcher}. */
export interface NatsBlockFetcherOptions {
  /** How long one request waits for its reply. Default 10 s. */
  readonly timeoutMs?: number;
  /** Attempts per piece when the capture does not answer or answers Unavailable/Internal. Default 4. */
  readonly attempts?: number;
  /** Pieces requested at once. Default 8. */
  readonly concurrency?: number;
  readonly log?: Logger;
}

/** Re-reads of lagging pieces before a multi-piece read settles for mixed sequences. */
const CONSISTENCY_ROUNDS = 2;
const RETRY_BASE_MS = 200;

interface Piece {
  readonly offset: number;
  readonly length: number;
  data: Uint8Array;
  seq: number;
}

/**
 * Reads a captured disk through its capture's block-read endpoint `gammaray.<disk>.blocks` (request/reply, BSON
 * codecs of @gammaray/wire). A read longer than MAX_BLOCK_READ_BYTES is split into pieces, requested in parallel.
 *
 * Sequence of a multi-piece read: each piece comes back with the stream sequence its bytes include. Pieces that
 * lag behind the newest are read again (up to CONSISTENCY_ROUNDS times), so without concurrent writes every
 * piece ends at the same sequence and the read is exact. If writes keep arriving the pieces may still differ;
 * the read then reports the **maximum**: no piece includes a record beyond it, so records after `seq` are
 * exactly the ones still to apply for the newest pieces. The weakness: a lagging piece may lack a record in
 * (its own seq, max], which the engine then believes is included. The re-reads make that need a write landing
 * in the same piece between every round; the minimum would be the conservative alternative (it re-applies
 * records some pieces already hold), at the cost of the engine seeing "old" sequences for fresh bytes.
 */
export class NatsBlockFetcher implements BlockFetcher {
  readonly size: number;
  readonly #nc: NatsConnection;
  readonly #subject: string;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  readonly #concurrency: number;
  readonly #log: Logger | undefined;

  constructor(nc: NatsConnection, disk: string, size: number, opts: NatsBlockFetcherOptions = {}) {
    this.#nc = nc;
    this.#subject = blocksSubject(disk);
    this.size = size;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#attempts = Math.max(1, opts.attempts ?? 4);
    this.#concurrency = Math.max(1, opts.concurrency ?? 8);
    this.#log = opts.log;
  }

  async read(offset: number, length: number): Promise<{ data: Uint8Array; seq: number }> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new BlockFetchError('OutOfRange', `read ${offset}+${length} is outside the disk (${this.size} bytes)`);
    }
    const pieces: Piece[] = [];
    let at = 0;
    do {
      const n = Math.min(MAX_BLOCK_READ_BYTES, length - at);
      pieces.push({ offset: offset + at, length: n, data: new Uint8Array(0), seq: -1 });
      at += n;
    } while (at < length);
    await this.#readAll(pieces);
    if (pieces.length === 1) {
      const p = pieces[0]!; // ok: do/while pushes at least one
      return { data: p.data, seq: p.seq };
    }
    for (let round = 0; round < CONSISTENCY_ROUNDS; round++) {
      const max = Math.max(...pieces.map((p) => p.seq));
      const lagging = pieces.filter((p) => p.seq < max);
      if (lagging.length === 0) break;
      await this.#readAll(lagging);
    }
    const data = new Uint8Array(length);
    for (const p of pieces) data.set(p.data, p.offset - offset);
    return { data, seq: Math.max(...pieces.map((p) => p.seq)) };
  }

  async #readAll(pieces: readonly Piece[]): Promise<void> {
    for (let i = 0; i < pieces.length; i += this.#concurrency) {
      await Promise.all(pieces.slice(i, i + this.#concurrency).map((p) => this.#readPiece(p)));
    }
  }

  async #readPiece(p: Piece): Promise<void> {
    let last: BlockFetchError | undefined;
    for (let attempt = 0; attempt < this.#attempts; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, RETRY_BASE_MS * 2 ** (attempt - 1)));
      let bytes: Uint8Array;
      try {
        const msg = await this.#nc.request(this.#subject, encodeBlockReadRequest({ offset: p.offset, length: p.length }), { timeout: this.#timeoutMs });
        bytes = msg.data;
      } catch (cause) {
        // No responder (capture down or restarting), a timeout, a reconnect: worth another try.
        last = new BlockFetchError('NoReply', `no block-read reply on ${this.#subject}: ${(cause as Error).message}`, { cause });
        this.#log?.debug({ err: cause, offset: p.offset, length: p.length, attempt }, 'block read got no reply');
        continue;
      }
      let reply;
      try {
        reply = decodeBlockReadReply(bytes);
      } catch (cause) {
        throw new BlockFetchError('BadReply', `unreadable block-read reply on ${this.#subject}`, { cause });
      }
      if ('error' in reply) {
        last = new BlockFetchError(reply.error.code, `block read ${p.offset}+${p.length} failed: ${reply.error.code}: ${reply.error.message}`);
        if (reply.error.code === 'Unavailable' || reply.error.code === 'Internal') continue;
        throw last;
      }
      if (reply.data.length !== p.length) {
        throw new BlockFetchError('BadReply', `block read ${p.offset}+${p.length} returned ${reply.data.length} bytes`);
      }
      p.data = reply.data;
      p.seq = reply.seq;
      return;
    }
    throw last ?? new BlockFetchError('NoReply', `no block-read reply on ${this.#subject}`); // ok: attempts >= 1
  }
}
