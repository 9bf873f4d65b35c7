import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { probeDeviceSize } from '@gammaray/disk';
import type { JetStreamClient } from '@nats-io/jetstream';
import {
  MAX_OPS_PER_RECORD,
  MAX_RECORD_BYTES,
  MAX_WRITE_CHUNK_BYTES,
  OP_OVERHEAD_BYTES,
  RECORD_OVERHEAD_BYTES,
  opEncodedBound,
  parseDiskId,
  splitRange,
  splitWrite,
  writesSubject,
  type WriteOp,
} from '@gammaray/wire';
import { pino, type Logger } from 'pino';
import { Errno, IoError, OutOfRangeError } from './errors.js';
import type { NbdExport } from './nbd-export.js';
import { PUBLISH_HEADROOM, type RecordPublisher } from './publisher.js';
import { ImageLock, imageLockDir } from './image-lock.js';
import { writeRecord, writeRecordParts } from './record-writer.js';

/** Largest NBD request capture accepts (advertised as maxBlockSize). */
export const MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** Default number of records whose publish ack may be outstanding at once. */
export const DEFAULT_MAX_INFLIGHT_RECORDS = 32;
/** Smallest head of a write split off to fill a record (see #splitInto), and the alignment of split points. */
const SPLIT_MIN_BYTES = 64 * 1024;
const SPLIT_ALIGN = 4096;
/** NBD payloads of POOLED_PAYLOAD_MIN..PAYLOAD_SLAB bytes are received into recycled PAYLOAD_SLAB buffers. */
const PAYLOAD_SLAB = 1024 * 1024;
const POOLED_PAYLOAD_MIN = 256 * 1024;
/** Recycled buffers kept per pool (a connection has at most 64 MiB of payload in flight). */
const MAX_POOLED = 64;
/**
 * Records are written into recycled buffers with PUBLISH_HEADROOM bytes before them and 2 after (the publisher
 * frames the message in place): SMALL_SLAB bytes for records up to SMALL_SLAB - HEADROOM_TOTAL, else BIG_SLAB.
 */
const HEADROOM_TOTAL = PUBLISH_HEADROOM + 2;
const SMALL_SLAB = 64 * 1024;
const BIG_SLAB = MAX_RECORD_BYTES + HEADROOM_TOTAL;
/** Image writes below this size are written synchronously (see #pwrite). */
const SYNC_WRITE_MAX = 64 * 1024;
/**
 * Write data of at least this many bytes goes into its record's message by reference, as a piece of its own,
 * when the publisher takes messages in parts (RecordPublisher.publishParts): no copy of it in this process.
 */
const GATHER_MIN = 64 * 1024;
/** Default time a write may wait for JetStream before the client gets EIO. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Default time one publish attempt waits for its ack. */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5_000;
/** Default cap on bytes of writes accepted but not yet stored; beyond it new writes fail with EIO at once. */
export const DEFAULT_MAX_PENDING_BYTES = 256 * 1024 * 1024;
/** Default time close() waits for unstored records. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;

const ZEROS = new Uint8Array(1024 * 1024);
/** While records are unconfirmed, a new record is cut only once this many bytes (encoded bound) have accumulated. */

/** Options of {@link CaptureDisk.open}. */
export interface CaptureDiskOptions {
  /** Disk id (`[a-z0-9_-]{1,64}`): the NBD export name and the subject token. */
  readonly disk: string;
  /** Path of the raw image; opened read-write, never resized. */
  readonly image: string;
  /** JetStream client; its connection should reconnect forever (`maxReconnectAttempts: -1`). */
  readonly js: JetStreamClient;
  /** Publishes records; default `js` (an AsyncAckPublisher on the same connection is much cheaper). */
  readonly publisher?: RecordPublisher;
  /** Distinguishes this attach's msg ids from an earlier attach's; default: random. */
  readonly epoch?: string;
  /** Sequence a block read reports before any record of this attach is stored: normally firstSeq - 1. */
  readonly baseSeq?: number;
  readonly log?: Logger;
  readonly maxInflightRecords?: number;
  readonly publishTimeoutMs?: number;
  readonly requestTimeoutMs?: number;
  readonly maxPendingBytes?: number;
  readonly closeTimeoutMs?: number;
  /** Called with each record's publish time (first attempt to ack, seconds) and payload bytes, for metrics. */
  readonly onPublished?: (seconds: number, bytes: number) => void;
  /** Directory of the machine-wide image locks; default {@link imageLockDir}. */
  readonly lockDir?: string;
}

/** Counters of a disk's capture pipeline (for metrics and tests). */
export interface CaptureStats {
  /** NBD requests accepted (write, zero, trim, flush). */
  readonly requests: number;
  /** Ops appended to records (a split write counts once per piece). */
  readonly ops: number;
  /** Data bytes of write requests received. */
  readonly bytes: number;
  /** Record payload bytes stored in JetStream and confirmed. */
  readonly publishedBytes: number;
  /** Records cut so far. */
  readonly records: number;
  /** Records stored in JetStream and confirmed in order. */
  readonly confirmedRecords: number;
  /** Publish attempts that failed and were retried. */
  readonly publishRetries: number;
  /** Records re-published because JetStream stored them out of order. */
  readonly redos: number;
  /** Requests that failed with EIO because they were not stored in time. */
  readonly timeouts: number;
  /** Last stream sequence confirmed in order for this disk. */
  readonly confirmedSeq: number;
}

/** A client request waiting to be stored. */
interface Req {
  resolve(): void;
  reject(err: Error): void;
  settled: boolean;
  /** When the client gets EIO if it is not stored by then (performance.now() time). */
  readonly deadline: number;
  bytes: number;
  /** The image change (and fdatasync) finished. */
  applied: boolean;
  /** The record holding its last op, and every record before it, is stored. */
  stored: boolean;
  /**
   * A recycled receive buffer holding its data (see receiveBuffer), returned once applied and cut, and when its
   * data went into a record by reference (`gathered`), once stored after one publish attempt (`!resent`).
   */
  payload: Buffer | undefined;
  /** Its last op was encoded into a record. */
  cut: boolean;
  /** Some of its data is a part of a record's message, not a copy (see #cut): it is read until stored. */
  gathered: boolean;
  /** A record holding its data was published more than once: an earlier attempt may still read it. */
  resent: boolean;
}

/**
 * A place in `accum`: an op (`req` set on the last op of its request), or a block read's marker, which ends the
 * record before it so the read's seq covers exactly the ops called before the read.
 */
type Entry = OpEntry | { readonly barrier: Barrier };

/** An op in `accum` or a record: `req` on the last op of its request; `owner`, the request of one before it. */
interface OpEntry {
  readonly op: WriteOp;
  readonly req: Req | undefined;
  readonly owner?: Req;
}

/** A block read waiting for the seq of the record that ends right before it. */
interface Barrier {
  resolve(seq: number): void;
  reject(err: Error): void;
}

interface Rec {
  readonly index: number;
  readonly entries: OpEntry[];
  readonly barriers: Barrier[];
  /**
   * The record's BSON as the pieces of one message (see writeRecordParts): views of `slab` from PUBLISH_HEADROOM
   * on, and between them the data of large writes, uncopied. One piece when nothing is gathered.
   */
  readonly parts: Buffer[];
  /** Encoded size of the record (the sum of `parts`). */
  readonly bytes: number;
  /**
   * The pooled buffer the record's own bytes are in (at PUBLISH_HEADROOM), returned to the pool once the record
   * is confirmed after a single publish attempt (a retried record's earlier frames are not tracked: it is dropped).
   */
  readonly slab: Buffer;
  /** Publish attempts so far; only the first is framed in the slab's headroom. */
  attempts: number;
  msgId: string;
  state: 'queued' | 'sending' | 'acked';
  seq: number;
  redo: number;
}

/**
 * One captured disk: an NBD export over a raw image whose every change is put into stream GAMMARAY_WRITES before
 * the client hears it succeeded.
 *
 * Pipeline, per request (write / zero / trim / flush):
 * 1. On entry, synchronously (before any await), the request's ops are appended to `accum` (what becomes the
 *    stream) and its image change is scheduled after every earlier change it overlaps (flushes and block reads
 *    after every earlier change: see #schedule). So stream order = the order the NBD server called us, the
 *    image ends up as if the changes ran in that order, and publishing overlaps the image I/O.
 * 2. When its turn comes: apply it to the image (pwrite; zeros; nothing for trim; fdatasync for FUA and flush).
 *    If that fails the disk stops taking requests (the stream may hold a change the image lacks).
 * 3. The pump (on setImmediate) cuts `accum` into records (<= MAX_RECORD_BYTES, <= MAX_OPS_PER_RECORD): what
 *    arrived in one turn of the event loop shares a record; never more than `maxInflightRecords` unconfirmed
 *    records, which are published pipelined; while the window is full, ops keep accumulating (group commit). Each record has msg id `<disk>:<epoch>:<index>`; a failed publish is retried
 *    forever with the same id (the stream's duplicate window de-duplicates a retry of a stored record).
 * 4. Acks may arrive in any order; records are confirmed strictly in index order, and a request resolves only when
 *    its image change finished and the record holding its last op is confirmed, i.e. every earlier record is
 *    stored too. If JetStream stored a
 *    record with a lower sequence than an earlier one (possible only if the server lost the earlier one while
 *    storing a later one), the later record is published again (msg id suffixed `:r<n>`), so replaying the
 *    subject in sequence order ends in the same bytes.
 * While NATS is down, requests wait; after `requestTimeoutMs` the client gets EIO (errno 5) but the ops stay in
 * the pipeline and are stored when NATS is back: nothing applied to the image is ever dropped from the stream.
 */
export class CaptureDisk implements NbdExport {
  readonly name: string;
  readonly size: number;
  /**
   * 512, or 1 for an image whose size is not a multiple of 512: advertised with such a size, 512 left its last
   * bytes unreachable (libnbd refuses the unaligned request, qemu's client hangs on it); qemu-nbd says 1 too.
   */
  readonly minBlockSize: number;
  readonly preferredBlockSize = 4096;
  readonly maxBlockSize = MAX_REQUEST_BYTES;
  readonly readOnly = false;
  /** The image path. */
  readonly image: string;
  /** This attach's msg-id epoch. */
  readonly epoch: string;

  readonly #fh: FileHandle;
  /** This capture's hold on the image (released at close). */
  readonly #lock: ImageLock | undefined;
  readonly #js: RecordPublisher;
  readonly #subject: string;
  readonly #log: Logger;
  readonly #onPublished: ((seconds: number, bytes: number) => void) | undefined;
  readonly #window: number;
  /** The publisher takes a message in parts: large write data goes out uncopied (see GATHER_MIN). */
  readonly #gather: boolean;
  readonly #publishTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  readonly #maxPendingBytes: number;
  readonly #closeTimeoutMs: number;

  /**
   * Image changes in progress, each with its byte range. A change starts once every earlier change it overlaps
   * and the last barrier finished; changes of disjoint ranges run concurrently (a sequential writer's 1 MiB
   * pwrites overlap in libuv's pool, as qemu-nbd's do in its threads), which leaves the same image as running
   * them in call order.
   */
  #active: { readonly start: number; readonly end: number; readonly done: Promise<void> }[] = [];
  /** The last barrier (flush, FUA trim, block read): it started after every earlier change finished. */
  #barrier: Promise<void> = Promise.resolve();
  /** Image tasks scheduled and not finished; while 0, a small change may be applied synchronously. */
  #ioQueued = 0;
  /**
   * Small image changes taken this turn and not applied yet, in call order: applied synchronously by the pump
   * right after it sent the turn's record (so the pwrites overlap the JetStream round trip instead of delaying
   * the record), or before anything that reads the image or must follow them (see #applyDeferred).
   */
  #deferred: { readonly req: Req; readonly apply: () => void }[] = [];
  #accum: Entry[] = [];
  #accumBytes = 0;
  /** Block-read markers in `accum`. */
  #markers = 0;
  /** Set once an image write failed: every later request fails with it. */
  #failed: IoError | undefined;
  #records: Rec[] = [];
  /** Requests not yet settled, in submit order (settled ones are dropped from the front); see #expire. */
  #waiting: Req[] = [];
  #waitingHead = 0;
  #expiry: NodeJS.Timeout | undefined;
  /**
   * Recycled record buffers (SMALL_SLAB and BIG_SLAB bytes). A record's buffer is free again once it is confirmed
   * after one publish attempt: JetStream acked that attempt, so its frame (the buffer itself) reached the
   * server's socket and no longer sits in nats.js' outbound queue, and nothing else keeps it.
   */
  #smallSlabs: Buffer[] = [];
  #bigSlabs: Buffer[] = [];
  /** Recycled receive buffers (see receiveBuffer); `#ours` tells a write whose data is one of them. */
  #payloads: Buffer[] = [];
  readonly #ours = new WeakSet<ArrayBufferLike>();
  #nextRecord = 0;
  #sending = 0;
  #pumpScheduled = false;
  #pendingBytes = 0;
  #confirmedSeq: number;
  #closing = false;
  #aborted = false;
  #closed: Promise<void> | undefined;
  #drainWaiters: (() => void)[] = [];
  #stats = { requests: 0, ops: 0, bytes: 0, publishedBytes: 0, records: 0, confirmedRecords: 0, publishRetries: 0, redos: 0, timeouts: 0 };

  private constructor(fh: FileHandle, size: number, opts: CaptureDiskOptions, lock: ImageLock | undefined) {
    this.#fh = fh;
    this.#lock = lock;
    this.size = size;
    this.minBlockSize = size % 512 === 0 ? 512 : 1;
    this.name = opts.disk;
    this.image = opts.image;
    this.epoch = opts.epoch ?? `${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
    this.#js = opts.publisher ?? opts.js;
    this.#gather = typeof this.#js.publishParts === 'function';
    this.#subject = writesSubject(opts.disk);
    this.#log = (opts.log ?? pino({ level: 'silent' })).child({ component: 'capture-disk', disk: opts.disk });
    this.#window = Math.max(1, opts.maxInflightRecords ?? DEFAULT_MAX_INFLIGHT_RECORDS);
    this.#publishTimeoutMs = opts.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS;
    this.#requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#maxPendingBytes = opts.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES;
    this.#closeTimeoutMs = opts.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.#confirmedSeq = opts.baseSeq ?? 0;
    this.#onPublished = opts.onPublished;
  }

  /**
   * Opens the image read-write and returns the disk; does not touch NATS until the first write. Takes the image's
   * machine-wide lock (see ImageLock): DiskBusyError when another live capture on this machine serves it.
   */
  static async open(opts: CaptureDiskOptions): Promise<CaptureDisk> {
    parseDiskId(opts.disk);
    const fh = await open(opts.image, 'r+');
    let lock: ImageLock | undefined;
    try {
      const st = await fh.stat();
      if (!st.isFile() && !st.isBlockDevice()) throw new IoError(`${opts.image} is not a file`);
      // stat gives a block device (an LVM volume, /dev/nbd0 from qemu-nbd --connect) size 0.
      const size = st.isBlockDevice() ? await probeDeviceSize(fh) : st.size;
      lock = ImageLock.acquire(st, opts.image, opts.disk, opts.lockDir);
      const disk = new CaptureDisk(fh, size, opts, lock);
      if (!lock) disk.#log.warn({ lockDir: opts.lockDir ?? imageLockDir() }, 'image lock directory not usable: a second capture on this machine would not be refused');
      return disk;
    } catch (err) {
      lock?.release();
      await fh.close();
      throw err;
    }
  }

  /** Pipeline counters. */
  get stats(): CaptureStats {
    return { ...this.#stats, confirmedSeq: this.#confirmedSeq };
  }

  /** Reads image bytes. Reflects every write whose promise resolved (its pwrite finished before that). */
  async read(offset: number, length: number): Promise<Uint8Array> {
    this.#checkRange(offset, length, Errno.EINVAL);
    if (this.#closed) throw new IoError(`disk ${this.name} is closed`);
    this.#applyDeferred();
    return this.#pread(offset, length);
  }

  /**
   * A buffer of `length` bytes for the NBD server to receive a large WRITE payload into, recycled once that
   * write is in the image and encoded into a record: sequential 1 MiB writes then allocate nothing per write
   * (large short-lived buffers made the garbage collector a sixth of the capture's CPU). Undefined for sizes
   * not worth it.
   */
  receiveBuffer(length: number): Uint8Array | undefined {
    if (length < POOLED_PAYLOAD_MIN || length > PAYLOAD_SLAB) return undefined;
    let b = this.#payloads.pop();
    if (!b) {
      b = Buffer.allocUnsafeSlow(PAYLOAD_SLAB);
      this.#ours.add(b.buffer);
    }
    return b.subarray(0, length);
  }

  /**
   * Writes `data` at `offset`; resolves once in the image (and stable if `fua`) and stored in JetStream.
   * `data` is kept, not copied, until it is stored (possibly after the promise settled with a timeout): the
   * caller hands it over and must not change it afterwards. (The NBD server never reuses a payload buffer.)
   */
  write(offset: number, data: Uint8Array, opts: { fua: boolean }): Promise<void> {
    try {
      this.#checkRange(offset, data.length, Errno.ENOSPC);
    } catch (err) {
      return Promise.reject(err);
    }
    const fua = opts.fua;
    this.#stats.bytes += data.length;
    const sync = !fua && data.length < SYNC_WRITE_MAX ? () => this.#pwriteSync(offset, data) : undefined;
    const payload = data.length >= POOLED_PAYLOAD_MIN && this.#ours.has(data.buffer) ? Buffer.from(data.buffer) : undefined;
    return this.#submit(
      data.length <= MAX_WRITE_CHUNK_BYTES ? [{ op: 'write', offset, length: data.length, data, fua }] : splitWrite(offset, data, fua),
      data.length,
      [offset, offset + data.length],
      async () => {
        await this.#pwrite(offset, data);
        if (fua) await this.#fh.datasync();
      },
      sync,
      payload,
    );
  }

  /** Makes `length` bytes at `offset` read as zeros; resolves as {@link write} does. */
  writeZeroes(offset: number, length: number, opts: { fua: boolean; noHole: boolean }): Promise<void> {
    try {
      this.#checkRange(offset, length, Errno.ENOSPC);
    } catch (err) {
      return Promise.reject(err);
    }
    const { fua, noHole } = opts;
    const sync = !fua && length < SYNC_WRITE_MAX ? () => this.#pwriteSync(offset, ZEROS.subarray(0, length)) : undefined;
    return this.#submit(
      splitRange('zero', offset, length, fua, noHole),
      0,
      [offset, offset + length],
      async () => {
        for (let at = 0; at < length; at += ZEROS.length) {
          await this.#pwrite(offset + at, ZEROS.subarray(0, Math.min(ZEROS.length, length - at)));
        }
        if (fua) await this.#fh.datasync();
      },
      fua ? undefined : sync,
    );
  }

  /**
   * Records a discard. The image bytes are left as they are (trimmed contents are unspecified, so this is
   * allowed), which keeps "replay the stream" equal to the image without knowing the host's hole semantics.
   */
  trim(offset: number, length: number, opts: { fua: boolean }): Promise<void> {
    try {
      this.#checkRange(offset, length, Errno.EINVAL);
    } catch (err) {
      return Promise.reject(err);
    }
    const { fua } = opts;
    return this.#submit(
      splitRange('trim', offset, length, fua),
      0,
      fua ? undefined : [offset, offset + length],
      async () => {
        if (fua) await this.#fh.datasync();
      },
      fua ? undefined : () => undefined,
    );
  }

  /** Makes every earlier write stable (fdatasync) and records a flush op after them. */
  flush(): Promise<void> {
    return this.#submit([{ op: 'flush' }], 0, undefined, () => this.#fh.datasync());
  }

  /**
   * Reads image bytes together with the stream sequence they correspond to: `data` holds exactly the effect of
   * this disk's records with sequence <= `seq` (on top of the image as it was at attach).
   *
   * Why this is atomic: like a write, the read takes its place synchronously on entry, twice. (1) As an image
   * barrier: the pread runs after every earlier request's image change finished and before any later one starts. (2) In
   * `accum`: a marker that no record spans, so the record before it ends with the last op called before the read
   * and holds none after it. The read's seq is that record's sequence, known once it and every record before it
   * are confirmed (or the last confirmed sequence if every earlier op was already confirmed). Writes are not
   * held up: they wait only for the pread itself.
   */
  readConsistent(offset: number, length: number): Promise<{ data: Uint8Array; seq: number }> {
    try {
      this.#checkRange(offset, length, Errno.EINVAL);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#closing) return Promise.reject(new IoError(`disk ${this.name} is closing`));
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      let data: Uint8Array | undefined;
      let seq: number | undefined;
      const done = (): void => {
        if (data !== undefined && seq !== undefined) resolve({ data, seq });
      };
      this.#accum.push({
        barrier: {
          resolve: (s) => {
            seq = s;
            done();
          },
          reject,
        },
      });
      this.#markers++;
      this.#schedulePump();
      this.#schedule(undefined, async () => {
        try {
          data = await this.#pread(offset, length);
          done();
        } catch (err) {
          reject(err instanceof IoError ? err : new IoError(`reading ${this.image} failed`, { cause: err }));
        }
      });
    });
  }

  /**
   * Stops accepting requests, waits (up to closeTimeoutMs) until everything applied is stored, then closes the
   * image. Records still unstored after that are logged as an error: the stream then lacks writes the image has.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    this.#applyDeferred();
    await Promise.all([this.#barrier, ...this.#active.map((a) => a.done)]);
    this.#schedulePump();
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      this.#drained().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), this.#closeTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained) {
      this.#aborted = true;
      const lost = this.#records.length + (this.#accum.length > 0 ? 1 : 0);
      this.#log.error({ records: lost }, 'closing with records not stored in JetStream: the stream lacks writes the image has');
      const err = new IoError(`disk ${this.name} closed before its writes were stored`);
      for (const rec of this.#records) {
        for (const e of rec.entries) if ('op' in e && e.req) this.#settle(e.req, err);
        for (const b of rec.barriers) b.reject(err);
      }
      for (const e of this.#accum) {
        if ('barrier' in e) e.barrier.reject(err);
        else if (e.req) this.#settle(e.req, err);
      }
      this.#records = [];
      this.#accum = [];
    }
    clearTimeout(this.#expiry);
    this.#expiry = undefined;
    await this.#fh.close();
    this.#lock?.release();
  }

  /** Resolves when nothing is waiting to be stored. */
  #drained(): Promise<void> {
    if (this.#records.length === 0 && this.#accum.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #checkRange(offset: number, length: number, errno: Errno): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new OutOfRangeError(`range ${offset}+${length} is outside disk ${this.name} (${this.size} bytes)`, errno);
    }
  }

  /**
   * Step 1 of the pipeline, synchronous: the request's ops go to the end of `accum` (stream order) and its image
   * change is scheduled after the earlier ones it must follow (#schedule; `range` undefined: after all of them).
   * Publishing and the image change then run concurrently; the request settles when both are done.
   *
   * `applySync`, when given, does the same image change synchronously (a small pwrite without fdatasync). It is
   * used when no image task is in progress, so the order is the same, and it spares the request the promise
   * chain of a scheduled change (which cost more than the pwrite itself).
   */
  #submit(
    ops: WriteOp[],
    bytes: number,
    range: readonly [number, number] | undefined,
    apply: () => Promise<void>,
    applySync?: () => void,
    payload?: Buffer,
  ): Promise<void> {
    if (this.#closing) return Promise.reject(new IoError(`disk ${this.name} is closing`));
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#pendingBytes + bytes > this.#maxPendingBytes && this.#pendingBytes > 0) {
      // Nothing is applied or queued, so image and stream stay consistent: the write simply did not happen.
      return Promise.reject(new IoError(`disk ${this.name}: ${this.#pendingBytes} bytes wait for JetStream; refusing more`));
    }
    this.#stats.requests++;
    this.#pendingBytes += bytes;
    return new Promise<void>((resolve, reject) => {
      const deadline = performance.now() + this.#requestTimeoutMs;
      const req: Req = { resolve, reject, settled: false, deadline, bytes, applied: false, stored: false, payload, cut: false, gathered: false, resent: false };
      this.#waiting.push(req);
      this.#expiry ??= setTimeout(this.#expire, this.#requestTimeoutMs + 1).unref();
      const last = ops.length - 1;
      for (let i = 0; i <= last; i++) {
        const op = ops[i]!; // ok: i <= last
        this.#accum.push(i === last ? { op, req } : { op, req: undefined, owner: req });
        this.#accumBytes += opEncodedBound(op);
      }
      this.#stats.ops += ops.length;
      this.#schedulePump();
      if (applySync && this.#ioQueued === 0) {
        this.#deferred.push({ req, apply: applySync });
        return;
      }
      this.#schedule(range, async () => {
        if (this.#failed) {
          this.#settle(req, this.#failed);
          return;
        }
        try {
          await apply();
        } catch (cause) {
          this.#imageFailed(req, cause);
          return;
        }
        this.#applied(req);
      });
    });
  }

  /**
   * Runs an image task after the changes it must follow: with a `range` [start, end), every earlier change it
   * overlaps and the last barrier; without one (a barrier), everything scheduled before it. `task` handles its
   * own errors.
   */
  #schedule(range: readonly [number, number] | undefined, task: () => Promise<void>): void {
    this.#applyDeferred(); // they came first: the image must have them before this task can start
    this.#ioQueued++;
    const deps: Promise<void>[] = [this.#barrier];
    for (const a of this.#active) if (!range || (a.start < range[1] && range[0] < a.end)) deps.push(a.done);
    const after = deps.length === 1 ? deps[0]! : Promise.all(deps); // ok: deps starts with the barrier
    let entry: { start: number; end: number; done: Promise<void> } | undefined;
    const done = after
      .then(task)
      .catch((err: unknown) => this.#log.error({ err }, 'image task failed'))
      .finally(() => {
        this.#ioQueued--;
        if (entry) {
          const i = this.#active.indexOf(entry);
          if (i >= 0) this.#active.splice(i, 1);
        }
      });
    if (range) {
      entry = { start: range[0], end: range[1], done };
      this.#active.push(entry);
    } else {
      this.#barrier = done;
      this.#active = [];
    }
  }

  /**
   * Applies the small changes taken synchronously so far (#submit), in call order. Runs at the end of each pump
   * (after the turn's record went to the socket) and before every image read and every scheduled image task, so
   * the image never misses a change that came before them.
   */
  #applyDeferred(): void {
    const list = this.#deferred;
    if (list.length === 0) return;
    this.#deferred = [];
    for (const { req, apply } of list) {
      if (this.#failed) {
        this.#settle(req, this.#failed);
        continue;
      }
      try {
        apply();
      } catch (cause) {
        this.#imageFailed(req, cause);
        continue;
      }
      this.#applied(req);
    }
  }

  /** The request's image change is done: it settles now if its record is stored too. */
  #applied(req: Req): void {
    req.applied = true;
    this.#recycle(req);
    if (req.stored) this.#settle(req);
  }

  /**
   * The op is (or will be) in the stream but not in the image. Stop taking requests rather than let the two
   * drift further apart; an operator must look at the image.
   */
  #imageFailed(req: Req, cause: unknown): void {
    this.#failed = new IoError(`writing ${this.image} failed; disk ${this.name} no longer accepts requests`, { cause });
    this.#log.error({ err: cause }, 'image I/O failed: the stream holds a change the image may lack; refusing further requests');
    this.#settle(req, this.#failed);
  }

  /**
   * Returns a request's receive buffer to the pool once nothing reads it any more: applied and encoded, and if
   * its record reads it (gathered), stored after one attempt (JetStream acked it, so the socket wrote it).
   */
  #recycle(req: Req): void {
    const b = req.payload;
    if (!b || !req.applied || !req.cut) return;
    if (req.gathered && (!req.stored || req.resent)) {
      if (req.resent) req.payload = undefined; // an earlier attempt may sit in nats.js' queue: left to the collector
      return;
    }
    req.payload = undefined;
    if (this.#payloads.length < MAX_POOLED) this.#payloads.push(b);
  }

  #settle(req: Req, err?: Error): void {
    if (req.settled) return;
    req.settled = true;
    if (err) req.reject(err);
    else req.resolve();
    this.#dropSettled();
  }

  /** Drops settled requests from the front of `#waiting` (they settle roughly in order: records confirm in order). */
  #dropSettled(): void {
    const w = this.#waiting;
    let head = this.#waitingHead;
    while (head < w.length && w[head]!.settled) head++; // ok: head < length
    if (head === w.length) {
      w.length = 0;
      head = 0;
    } else if (head >= 1024 && head * 2 >= w.length) {
      w.splice(0, head);
      head = 0;
    }
    this.#waitingHead = head;
  }

  /**
   * Fails with EIO every request not stored by its deadline (one timer for all of them: they share a timeout, so
   * `#waiting` is in deadline order), then re-arms for the oldest still waiting. The ops stay in the pipeline.
   */
  readonly #expire = (): void => {
    this.#expiry = undefined;
    this.#dropSettled();
    const now = performance.now();
    const w = this.#waiting;
    for (let i = this.#waitingHead; i < w.length; i++) {
      const req = w[i]!; // ok: i < length
      if (req.settled) continue;
      if (req.deadline > now) {
        this.#expiry = setTimeout(this.#expire, req.deadline - now + 1).unref();
        break;
      }
      this.#stats.timeouts++;
      this.#log.warn({ timeoutMs: this.#requestTimeoutMs }, 'request not stored in JetStream in time: EIO');
      req.settled = true; // not #settle: that compacts `#waiting` under this loop
      req.reject(new IoError(`disk ${this.name}: write not stored in JetStream within ${this.#requestTimeoutMs} ms`));
    }
    this.#dropSettled();
  };

  /** Resolves a block-read marker that follows every record cut so far. */
  #afterLastRecord(b: Barrier): void {
    const last = this.#records[this.#records.length - 1];
    if (last) last.barriers.push(b);
    else b.resolve(this.#confirmedSeq);
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    // setImmediate, not a microtask: ops completing in the same turn of the event loop share a record.
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#aborted) return;
    // Cut what accumulated during this turn of the event loop (the pump runs on setImmediate, so ops that
    // arrived together share a record) as long as fewer than `window` records are unconfirmed. Waiting for a
    // full record instead would make a queue of small writes pay a whole ack round trip per batch.
    while (this.#accum.length > 0 && this.#records.length < this.#window) {
      this.#cut();
    }
    for (const rec of this.#records) {
      if (this.#sending >= this.#window) break;
      if (rec.state === 'queued') void this.#send(rec);
    }
    // The turn's record is on its way to JetStream: its small pwrites now overlap the round trip.
    this.#applyDeferred();
  }

  /** Moves the longest prefix of `accum` that fits one record, and stops at no marker, into a new record. */
  #cut(): void {
    for (let head = this.#accum[0]; head && 'barrier' in head; head = this.#accum[0]) {
      this.#accum.shift();
      this.#markers--;
      this.#afterLastRecord(head.barrier);
    }
    let size = RECORD_OVERHEAD_BYTES;
    let n = 0;
    while (n < this.#accum.length && n < MAX_OPS_PER_RECORD) {
      const e = this.#accum[n];
      if (!e || 'barrier' in e) break;
      const add = opEncodedBound(e.op);
      if (n > 0 && size + add > MAX_RECORD_BYTES) {
        if (this.#splitInto(n, MAX_RECORD_BYTES - size)) {
          size += opEncodedBound((this.#accum[n] as { op: WriteOp }).op); // ok: #splitInto put an op there
          n++;
        }
        break;
      }
      size += add;
      n++;
    }
    if (n === 0) return;
    // ok: the loop above only counted op entries
    const entries = this.#accum.splice(0, n) as OpEntry[];
    let gathered = 0;
    for (const e of entries) {
      this.#accumBytes -= opEncodedBound(e.op);
      if (this.#gather && e.op.op === 'write' && e.op.length >= GATHER_MIN) {
        gathered += e.op.length;
        const owner = e.req ?? e.owner;
        if (owner) owner.gathered = true;
      }
    }
    const index = this.#nextRecord++;
    // `size` bounds the encoded size from above, so what is not gathered always fits its slab after the headroom.
    const own = size - gathered;
    const slab = own + HEADROOM_TOTAL <= SMALL_SLAB ? (this.#smallSlabs.pop() ?? Buffer.allocUnsafeSlow(SMALL_SLAB)) : (this.#bigSlabs.pop() ?? Buffer.allocUnsafeSlow(BIG_SLAB));
    const ops = entries.map((e) => e.op);
    const parts = gathered > 0 ? writeRecordParts(this.name, new Date(), ops, GATHER_MIN, slab, PUBLISH_HEADROOM) : [writeRecord(this.name, new Date(), ops, slab, PUBLISH_HEADROOM)];
    let bytes = 0;
    for (const p of parts) bytes += p.length;
    for (const e of entries) {
      if (!e.req) continue;
      e.req.cut = true; // its data is in this record (and earlier pieces in earlier ones)
      this.#recycle(e.req);
    }
    const rec: Rec = { index, entries, barriers: [], parts, bytes, slab, msgId: `${this.name}:${this.epoch}:${index}`, state: 'queued', seq: 0, redo: 0, attempts: 0 };
    for (let head = this.#accum[0]; head && 'barrier' in head; head = this.#accum[0]) {
      this.#accum.shift();
      this.#markers--;
      rec.barriers.push(head.barrier);
    }
    this.#records.push(rec);
    this.#stats.records++;
  }

  /**
   * Fills the rest of a record with the head of the write at `accum[i]` when at least SPLIT_MIN_BYTES fit: the
   * entry becomes two ops (views of the same data, the request on the second), so sequential 1 MiB writes make
   * full records (about one per write) instead of a 960 KiB and a 64 KiB one each. Pieces are multiples of
   * SPLIT_ALIGN bytes, so they keep the write's alignment. Returns whether it split.
   */
  #splitInto(i: number, room: number): boolean {
    const e = this.#accum[i];
    if (!e || 'barrier' in e || e.op.op !== 'write') return false;
    const op = e.op;
    const fit = Math.floor((room - OP_OVERHEAD_BYTES) / SPLIT_ALIGN) * SPLIT_ALIGN;
    if (fit < SPLIT_MIN_BYTES || fit >= op.length) return false;
    const head: WriteOp = { op: 'write', offset: op.offset, length: fit, data: op.data.subarray(0, fit), fua: op.fua };
    const tail: WriteOp = { op: 'write', offset: op.offset + fit, length: op.length - fit, data: op.data.subarray(fit), fua: op.fua };
    const owner = e.req ?? e.owner;
    this.#accum.splice(i, 1, { op: head, req: undefined, owner }, e.req ? { op: tail, req: e.req } : { op: tail, req: undefined, owner });
    this.#accumBytes += OP_OVERHEAD_BYTES;
    this.#stats.ops++;
    return true;
  }

  /** Publishes one record until JetStream acks it (same msg id on every attempt). */
  async #send(rec: Rec): Promise<void> {
    rec.state = 'sending';
    this.#sending++;
    let backoff = 50;
    const started = performance.now();
    try {
      for (;;) {
        if (this.#aborted) return;
        try {
          // ok: writeRecord wrote the record at PUBLISH_HEADROOM of its slab (it fits: see #cut)
          const first = rec.parts[0]!; // ok: a record has at least one part
          const headroom = rec.attempts++ === 0 && first.buffer === rec.slab.buffer && first.byteOffset === rec.slab.byteOffset + PUBLISH_HEADROOM;
          const opts = { msgID: rec.msgId, timeout: this.#publishTimeoutMs, headroom };
          const ack =
            rec.parts.length === 1
              ? await this.#js.publish(this.#subject, first, opts)
              : await this.#js.publishParts!(this.#subject, rec.parts, opts); // ok: records have parts only when #gather, i.e. publishParts exists
          rec.seq = ack.seq;
          rec.state = 'acked';
          this.#onPublished?.((performance.now() - started) / 1000, rec.bytes);
          if (ack.duplicate) this.#log.debug({ record: rec.index, seq: ack.seq }, 'publish retry was a duplicate of a stored record');
          break;
        } catch (err) {
          this.#stats.publishRetries++;
          this.#log.warn({ err, record: rec.index, msgId: rec.msgId, retryInMs: backoff }, 'publish failed; retrying with the same msg id');
          await new Promise((resolve) => setTimeout(resolve, backoff));
          backoff = Math.min(backoff * 2, 1000);
        }
      }
    } finally {
      this.#sending--;
    }
    this.#advance();
    this.#schedulePump();
  }

  /** Confirms acked records strictly in index order and settles what they complete. */
  #advance(): void {
    for (;;) {
      const rec = this.#records[0];
      if (!rec || rec.state !== 'acked') break;
      if (rec.seq <= this.#confirmedSeq) {
        // Stored before an earlier record of this disk: publish it again so it also comes after that one.
        rec.redo++;
        rec.msgId = `${this.name}:${this.epoch}:${rec.index}:r${rec.redo}`;
        rec.state = 'queued';
        this.#stats.redos++;
        this.#log.error({ record: rec.index, seq: rec.seq, after: this.#confirmedSeq }, 'record stored out of order; publishing it again');
        break;
      }
      this.#records.shift();
      this.#confirmedSeq = rec.seq;
      this.#stats.confirmedRecords++;
      this.#stats.publishedBytes += rec.bytes;
      if (rec.attempts === 1) {
        const pool = rec.slab.length === SMALL_SLAB ? this.#smallSlabs : this.#bigSlabs;
        if (pool.length < MAX_POOLED) pool.push(rec.slab);
      } else {
        for (const e of rec.entries) {
          const owner = e.req ?? e.owner;
          if (owner) owner.resent = true;
        }
      }
      for (const e of rec.entries) {
        if (!e.req) continue;
        this.#pendingBytes -= e.req.bytes;
        e.req.stored = true;
        this.#recycle(e.req);
        if (e.req.applied) this.#settle(e.req);
      }
      for (const b of rec.barriers) b.resolve(rec.seq);
    }
    if (this.#records.length === 0 && this.#accum.length === 0) {
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  async #pwrite(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      // Image writes are serialized (stream order = image order). Small ones are written synchronously: a trip
      // through libuv's pool (~100-200 us) costs more than the pwrite and halves small-write IOPS. Large ones go
      // through the pool, so the file system's work overlaps encoding and publishing on this thread.
      const len = data.length - done;
      const bytesWritten = len < SYNC_WRITE_MAX ? writeSync(this.#fh.fd, data, done, len, offset + done) : (await this.#fh.write(data, done, len, offset + done)).bytesWritten;
      if (bytesWritten <= 0) throw new IoError(`short write to ${this.image} at ${offset + done}`);
      done += bytesWritten;
    }
  }

  /** A small image write on this thread (see #pwrite). */
  #pwriteSync(offset: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const n = writeSync(this.#fh.fd, data, done, data.length - done, offset + done);
      if (n <= 0) throw new IoError(`short write to ${this.image} at ${offset + done}`);
      done += n;
    }
  }

  async #pread(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    let done = 0;
    try {
      while (done < length) {
        const { bytesRead } = await this.#fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) break; // ok: past the end of a sparse/short image reads as zeros
        done += bytesRead;
      }
    } catch (cause) {
      throw new IoError(`reading ${this.image} at ${offset} failed`, { cause });
    }
    return buf;
  }
}
