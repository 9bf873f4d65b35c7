import { createHash } from 'node:crypto';
import { DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg, type MsgRequest } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { DiskInferencer, EVENT_VERSION, NoFileSystemError, EventKind, encodeEvent, eventMsgId, type FsEvent, type InferencerOptions } from '@gammaray/inferencer';
import { CorruptError, EncodeError, STREAM_EVENTS, STREAM_WRITES, WireCorruptKind, decodeWriteRecord, diskEventsFilter, eventsSubject, writesSubject, type WriteRecord } from '@gammaray/wire';
import type { Logger } from 'pino';
import { ConsumerGuard, type StallWatch } from '@gammaray/replica';
import { BlockFetchError, NatsBlockFetcher } from './block-fetcher.js';
import { CheckpointFencedError, MAX_CHECKPOINT_DELTAS, type Checkpoint, type CheckpointSaveMeta, type CheckpointStore } from './checkpoints.js';
import { MAX_CHECKPOINT_INTERVAL_S } from './config.js';
import { EventPublisher } from './event-publisher.js';
import { LeaseLostError } from './leases.js';

/** Event headers a read-ahead consumer asks for at a time (see #readAheadByConsumer). */
const READ_AHEAD_BATCH = 1024;
/** A read-ahead consumer that delivers nothing for this long is given up for message gets. */
const READ_AHEAD_QUIET_MS = 5_000;

/**
 * What keeps a worker from acting on a disk it no longer owns: the lease it runs under. `confirm()` is awaited
 * before every publish batch, publish retry and checkpoint write; it throws {@link LeaseLostError} once the lease
 * is gone.
 */
export interface DiskFence {
  readonly epoch: number;
  confirm(): Promise<void>;
}

/**
 * A step of a worker's task (applying a record, publishing, checkpointing) that takes longer than this is logged,
 * and again each time as long passes.
 */
const BUSY_WARN_MS = 10_000;

/**
 * How long loading the disk's checkpoint may take before the session is restarted, doubled after each load that
 * timed out (a large state on a slow machine still loads) up to {@link CHECKPOINT_LOAD_TIMEOUT_MAX_MS}. A guard:
 * the object store client's get() has no deadline and, after a NATS node of a cluster was lost, delivered nothing
 * for minutes (see DirectCheckpointStore); a session, a stop() and a handover of the disk must not wait forever.
 */
const CHECKPOINT_LOAD_TIMEOUT_MS = 15_000;
const CHECKPOINT_LOAD_TIMEOUT_MAX_MS = 120_000;

/**
 * A busy disk's checkpoints take at most about 1/CHECKPOINT_COST_FACTOR of its worker's time: after a checkpoint
 * that took T to build and store, the next comes no sooner than T x this (or the configured interval, when
 * longer; never past MAX_CHECKPOINT_INTERVAL_S). A full checkpoint holds the whole state (11 MB and ~0.1-0.2 s at
 * 50,000 inodes): before deltas, at the default 2 s interval a disk of a few hundred thousand inodes did little but
 * checkpoint. Deltas are cheap, so their gap is mostly the interval.
 */
export const CHECKPOINT_COST_FACTOR = 10;

/**
 * A disk's checkpoints are a full one and then deltas (the changes since the one before: nodes, links and held
 * blocks that changed, the rest of the state whole) until the deltas add up to this fraction of the full one's
 * bytes, or MAX_CHECKPOINT_DELTAS of them are stored; then a full one again. A restore reads the full one and
 * every delta after it, so this bounds what a restore reads to 1 + CHECKPOINT_DELTA_FRACTION full checkpoints.
 */
export const CHECKPOINT_DELTA_FRACTION = 0.5;

/** The engine a {@link CheckpointChain} takes checkpoints of (DiskInferencer, or a test's fake). */
export type ChainedEngine = Pick<DiskInferencer, 'checkpointParts' | 'deltaCheckpointParts' | 'checkpointFailed'>;

/**
 * One session's checkpoints of one engine: a full checkpoint, then deltas while CHECKPOINT_DELTA_FRACTION and
 * MAX_CHECKPOINT_DELTAS allow (see there), each stored in `store` only after the one before it was. The worker and
 * bench/infer's publishing replay store checkpoints through it.
 */
export class CheckpointChain {
  #chain: { id: string; n: number; baseBytes: number; deltaBytes: number } | undefined;

  constructor(
    private readonly engine: ChainedEngine,
    private readonly store: Pick<CheckpointStore, 'saveChained' | 'saveDelta'>,
    private readonly disk: string,
  ) {}

  /** Takes the engine's next checkpoint (synchronously: its state now); `store()` then stores it. */
  take(): { readonly parts: Uint8Array[]; readonly bytes: number; readonly delta: boolean; store(meta: CheckpointSaveMeta): Promise<void> } {
    const c = this.#chain;
    const due = c !== undefined && c.n < MAX_CHECKPOINT_DELTAS && c.deltaBytes < c.baseBytes * CHECKPOINT_DELTA_FRACTION;
    const deltaParts = due ? this.engine.deltaCheckpointParts() : undefined;
    const parts = deltaParts ?? this.engine.checkpointParts();
    const bytes = parts.reduce((n, part) => n + part.length, 0);
    const delta = deltaParts !== undefined && c !== undefined;
    return {
      parts,
      bytes,
      delta,
      store: async (meta) => {
        try {
          if (delta) {
            await this.store.saveDelta(this.disk, parts, meta, { chain: c.id, n: c.n + 1 });
            c.n++;
            c.deltaBytes += bytes;
          } else {
            const id = await this.store.saveChained(this.disk, parts, meta);
            this.#chain = { id, n: 0, baseBytes: bytes, deltaBytes: 0 };
          }
        } catch (err) {
          // Its changes go into the next delta (a full one failed: the chain stored before stays in force).
          this.engine.checkpointFailed();
          throw err;
        }
      },
    };
  }
}

/** Loading the disk's checkpoint took longer than its load timeout (the session restarts). */
class CheckpointLoadTimeoutError extends Error {
  override name = 'CheckpointLoadTimeoutError';
}

/** Options of {@link DiskWorker}. */
export interface DiskWorkerOptions {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly checkpoints: CheckpointStore;
  readonly disk: string;
  /** Disk size in bytes, from the registry. */
  readonly size: number;
  /** The partition to follow (registry `partition`); default: the engine's choice (see locateVolume). */
  readonly partition?: number;
  /** A volume's captured disk (registry `source`): its writes and block reads are that disk's. Default: `disk`. */
  readonly source?: string;
  readonly inlineLimit: number;
  readonly checkpointIntervalMs: number;
  readonly log: Logger;
  /** First and longest wait before a failed worker restarts. Default 1 s and 30 s, doubling in between. */
  readonly restartBackoffMs?: { readonly min: number; readonly max: number };
  /**
   * Crawls again after a resync (a new file system, a changed partition table): `burst` within `windowMs` at
   * once, then each waits `minMs` doubling to `maxMs`. A guest rewriting its superblock's identity or its
   * partition table over and over would otherwise keep the instance crawling. Default 3 in 60 s, 5 s to 60 s.
   */
  readonly resyncLimit?: { readonly burst: number; readonly windowMs: number; readonly minMs: number; readonly maxMs: number };
  /** Failures of the engine on one and the same record before the disk is crawled afresh past it. Default 3. */
  readonly poisonAttempts?: number;
  /** The disk's lease; without one the worker publishes unfenced (a single instance, or tests). */
  readonly fence?: DiskFence;
  /** The instance id, sent as the `Gammaray-Worker` header of each event. */
  readonly workerId?: string;
  /** Called when the worker stopped itself because its checkpoint write was fenced by a newer epoch. */
  readonly onFenced?: () => void;
}

/** Counters of one worker (for logs, metrics and tests). */
export interface DiskWorkerStats {
  readonly records: number;
  readonly corruptRecords: number;
  readonly events: number;
  /** Events published, by kind. */
  readonly eventsByKind: Readonly<Record<string, number>>;
  /** Bytes in the engine's pending-block buffer (data written before the metadata that maps it). */
  readonly pendingBytes: number;
  /** Inodes in the disk's tree. */
  readonly trackedInodes: number;
  /** Bytes of the disk's metadata blocks the engine holds, as kept (packed or deflated mostly). */
  readonly heldBlockBytes: number;
  /** Bytes of the last full checkpoint stored, and of the last delta (0 before the first of each). */
  readonly lastCheckpointBytes: number;
  readonly lastDeltaBytes: number;
  /** Seconds the last checkpoint (full or delta) took to build and store (0 before the first). */
  readonly lastCheckpointSeconds: number;
  /** Checkpoints stored, deltas included, and of them deltas. */
  readonly checkpoints: number;
  readonly deltaCheckpoints: number;
  readonly restarts: number;
  /** Events the stream already held (re-published after a restart and dropped by msg id). */
  readonly duplicateEvents: number;
  readonly appliedSeq: number;
  readonly checkpointedSeq: number;
  /** Records of the disk still to apply after the last one handled (0 when caught up). */
  readonly lagRecords: number;
  /** How old the last handled record was when more were pending, in seconds (0 when caught up). */
  readonly lagSeconds: number;
}

/** Why the next session must crawl the disk instead of restoring the checkpoint. */
interface Rebootstrap {
  readonly seq: number;
  readonly ts: Date;
  readonly message: string;
  /**
   * A resync (the guest made a new file system) rather than a poison record: the record's events are published,
   * and `idx` is the first msg-id index after them.
   */
  readonly resync?: { readonly idx: number };
}

/** Ends a session so that the disk is crawled again (see DiskInferencer.resyncReason). */
class ResyncRequired extends Error {}

/**
 * Keeps one disk's inference engine running: restore from the checkpoint (or crawl the disk), follow the disk's
 * records in GAMMARAY_WRITES from `appliedSeq + 1` with an ordered consumer, apply each, publish the events to
 * `gammaray.<disk>.fs.<kind>`, checkpoint every interval.
 *
 * Consistency: a checkpoint is written only after every event up to its `appliedSeq` is acknowledged by
 * JetStream, so after any crash the worker resumes at the checkpoint and re-publishes the events after it, which
 * the stream drops by msg id (`<disk>:<seq>:<idx>`, deterministic) within its 2-minute duplicate window. Those the
 * stream stored after the checkpoint's `eventsSeq` are read at the restore and not sent again, which also holds
 * for a restart after that window.
 *
 * Ownership: with a `fence` (the disk's lease) the worker confirms the lease before each publish batch, each
 * publish retry and each checkpoint, and records the lease epoch in the checkpoint; once the lease is lost it
 * stops without publishing or checkpointing anything more ({@link revoke}). Events carry the `Gammaray-Worker`
 * and `Gammaray-Epoch` headers.
 *
 * Failures: a record that does not decode becomes a `corrupt` event and is skipped. Any other failure (the
 * engine throws, block reads go unanswered, a publish is not stored in time) ends the session: it is logged and
 * the worker restarts from the checkpoint after a backoff, without touching other disks. If the engine fails
 * `poisonAttempts` times on the same record, the next start publishes a `corrupt` event for it and crawls the
 * disk afresh (a new snapshot) instead of replaying it forever.
 */
export class DiskWorker {
  readonly disk: string;
  /** Whose writes and block reads: the disk itself, or a volume's captured disk. */
  readonly #source: string;
  readonly #o: DiskWorkerOptions;
  readonly #log: Logger;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;
  #messages: ConsumerMessages | undefined;
  #publisher: EventPublisher | undefined;
  #engine: DiskInferencer | undefined;
  /** Tasks that touch the engine (records, checkpoints) run one at a time, in order. */
  #serial: Promise<void> = Promise.resolve();
  #sessionError: unknown;
  /** Highest record handled (applied, or skipped as corrupt). */
  #processedSeq = 0;
  /**
   * Msg ids of the disk's events that GAMMARAY_EVENTS stored after the restored checkpoint (a crashed owner
   * published them), not yet met again: the replay does not send them a second time (see {@link #unstored}).
   */
  #storedAhead: Set<string> | undefined;
  /** The events-stream sequence the restored checkpoint covers (its `eventsSeq`), and the last one read after it. */
  #eventsSeq = { checkpoint: 0, read: 0 };
  #checkpointedSeq = -1;
  #lastCheckpointAt = 0;
  #lastCheckpoint = { bytes: 0, deltaBytes: 0, seconds: 0 };
  /**
   * The checkpoints of this session's engine (a restored engine starts a chain of its own: another owner's chain
   * is never continued).
   */
  #chain: { engine: DiskInferencer; chain: CheckpointChain } | undefined;
  /** heldBlocks() walks every held block: taken at most once a second (a metrics scrape reads stats per gauge). */
  #held = { at: -Infinity, bytes: 0 };
  /** Time to wait after the last checkpoint before the next (the interval, stretched by CHECKPOINT_COST_FACTOR). */
  #checkpointGapMs: number;
  /** The record being applied (and its capture time), for the poison-record rule. */
  #currentSeq: number | undefined;
  #currentTs: Date | undefined;
  #failing: { seq: number; count: number } | undefined;
  #rebootstrap: Rebootstrap | undefined;
  /** The last crawl found no file system (a blank disk): logged once, looked at again every restartBackoffMs.min. */
  #blank = false;
  #stats = { records: 0, corruptRecords: 0, events: 0, checkpoints: 0, deltaCheckpoints: 0, restarts: 0, duplicateEvents: 0 };
  readonly #eventsByKind: Record<string, number> = {};
  /** Set when the lease was lost: stop at once, no flush of new events, no final checkpoint. */
  #revoked = false;
  #lag: { pending: number; time: number } = { pending: 0, time: 0 };
  /** The session's guard against a write consumer gone quiet. */
  #watch: StallWatch | undefined;
  /** Tasks of the serial queue running now (0 or 1). */
  #busy = 0;
  /** What the running serial task is doing (for the busy warning), and since when (performance.now()). */
  #stepAt = '';
  #stepSince = 0;
  /** performance.now() of the last busy warning. */
  #busyWarnedAt = 0;
  #loadTimeoutMs = CHECKPOINT_LOAD_TIMEOUT_MS;

  constructor(opts: DiskWorkerOptions) {
    this.#o = opts;
    this.#checkpointGapMs = opts.checkpointIntervalMs;
    this.disk = opts.disk;
    this.#source = opts.source ?? opts.disk;
    this.#log = opts.log;
  }

  get stats(): DiskWorkerStats {
    const duplicateEvents = this.#stats.duplicateEvents + (this.#publisher?.stats.duplicates ?? 0);
    const lagSeconds = this.#lag.pending > 0 ? Math.max(0, (Date.now() - this.#lag.time) / 1000) : 0;
    return {
      ...this.#stats,
      eventsByKind: { ...this.#eventsByKind },
      pendingBytes: this.#engine?.pendingDataBytes ?? 0,
      trackedInodes: this.#engine?.trackedInodes ?? 0,
      heldBlockBytes: this.#heldBlockBytes(),
      lastCheckpointBytes: this.#lastCheckpoint.bytes,
      lastDeltaBytes: this.#lastCheckpoint.deltaBytes,
      lastCheckpointSeconds: this.#lastCheckpoint.seconds,
      duplicateEvents,
      appliedSeq: this.#engine?.appliedSeq ?? this.#checkpointedSeq,
      checkpointedSeq: this.#checkpointedSeq,
      lagRecords: this.#lag.pending,
      lagSeconds,
    };
  }

  #heldBlockBytes(): number {
    const now = performance.now();
    if (now - this.#held.at >= 1000) this.#held = { at: now, bytes: this.#engine?.heldBlocks().bytes ?? 0 };
    return this.#held.bytes;
  }

  /** Starts the worker in the background; failures are handled inside (logged, restarted). */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops consuming, waits for the record in hand, flushes the events and writes a final checkpoint. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#messages?.stop();
    this.#wake?.();
    await this.#loop;
  }

  /** Gives up on publishes still being retried (used when a graceful stop takes too long). */
  abort(): void {
    this.#publisher?.abort();
  }

  /**
   * The disk's lease was lost: stops at once. Nothing more is published (the publisher refuses new events and
   * gives up its retries) and no checkpoint is written; resolves when the worker has stopped.
   */
  async revoke(): Promise<void> {
    this.#revoked = true;
    this.#stopping = true;
    this.#publisher?.abort();
    this.#messages?.stop();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { min, max } = this.#o.restartBackoffMs ?? { min: 1_000, max: 30_000 };
    const limit = this.#o.resyncLimit ?? { burst: 3, windowMs: 60_000, minMs: 5_000, maxMs: 60_000 };
    let resyncs: number[] = [];
    let backoff = min;
    while (!this.#stopping) {
      const startSeq = this.#processedSeq;
      let resync = false;
      let blank = false;
      try {
        await this.#session();
      } catch (err) {
        if (this.#revoked) break;
        if (err instanceof LeaseLostError || err instanceof CheckpointFencedError) {
          // The service learns it from the lease too and stops this worker; until then publish nothing.
          this.#log.warn({ err }, 'disk lease lost; the worker stops publishing');
          this.#revoked = true;
          this.#stopping = true;
          if (err instanceof CheckpointFencedError) this.#o.onFenced?.();
          break;
        }
        if (this.#stopping && isClosedConnection(err)) break;
        if (err instanceof ResyncRequired) {
          this.#log.warn({ seq: this.#rebootstrap?.seq, reason: err.message }, 'the disk holds a new file system; crawling it again');
          resync = true;
        } else if (err instanceof NoFileSystemError) {
          // A blank disk the guest has yet to format: not a failure, and its crawl should follow the mkfs closely,
          // so it is looked at again every `min` ms (one superblock read) instead of backing off to `max`.
          if (!this.#blank) this.#log.warn({ reason: err.message, everyMs: min }, 'the disk holds no ext2/3/4 file system yet; crawling it once it does');
          this.#blank = true;
          blank = true;
        } else {
          this.#noteFailure(err);
          this.#log.error({ err, seq: this.#failing?.seq }, 'disk worker failed; restarting from its checkpoint');
        }
      } finally {
        await this.#teardown();
      }
      if (this.#stopping) break;
      if (this.#processedSeq > startSeq) backoff = min; // it made progress: a fresh failure, not a loop
      this.#stats.restarts++;
      if (resync) {
        const now = Date.now();
        resyncs = resyncs.filter((t) => now - t < limit.windowMs);
        resyncs.push(now);
        const over = resyncs.length - limit.burst;
        if (over > 0) {
          const waitMs = Math.min(limit.maxMs, limit.minMs * 2 ** (over - 1));
          this.#log.warn({ crawls: resyncs.length, withinMs: limit.windowMs, waitMs }, 'the disk keeps asking to be crawled again (its file system identity or partition table keeps changing); waiting before the next crawl');
          await this.#sleep(waitMs);
        }
        continue;
      }
      if (blank) {
        await this.#sleep(min);
        continue;
      }
      await this.#sleep(backoff);
      backoff = Math.min(max, backoff * 2);
    }
    this.#log.info({ ...this.stats }, 'disk worker stopped');
  }

  /** Counts engine failures on one record: the poison-record rule. Transient failures do not count. */
  #noteFailure(err: unknown): void {
    const seq = this.#currentSeq;
    if (seq === undefined || err instanceof BlockFetchError || isClosedConnection(err)) return;
    this.#failing = this.#failing?.seq === seq ? { seq, count: this.#failing.count + 1 } : { seq, count: 1 };
    if (this.#failing.count >= (this.#o.poisonAttempts ?? 3)) {
      this.#rebootstrap = { seq, ts: this.#currentTs ?? new Date(), message: `the inference engine failed ${this.#failing.count} times on this record: ${(err as Error).message}` };
      this.#failing = undefined;
    }
  }

  async #session(): Promise<void> {
    this.#sessionError = undefined;
    this.#currentSeq = undefined;
    this.#storedAhead = undefined;
    this.#eventsSeq = { checkpoint: 0, read: 0 };
    const fence = this.#o.fence;
    this.#publisher = new EventPublisher(this.#o.nc, { log: this.#log, worker: this.#o.workerId, epoch: fence?.epoch, fence: fence ? () => fence.confirm() : undefined });
    const fetcher = new NatsBlockFetcher(this.#o.nc, this.#source, this.#o.size, { log: this.#log });
    const engine = await this.#open(fetcher, { disk: this.disk, inlineLimit: this.#o.inlineLimit, partition: this.#o.partition });
    this.#engine = engine;
    if (this.#stopping) {
      await this.#finalCheckpoint(engine);
      return;
    }
    const consumer = await this.#o.js.consumers.get(STREAM_WRITES, {
      filter_subjects: writesSubject(this.#source),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.#processedSeq + 1,
    });
    const messages = await consumer.consume({ max_messages: 64 });
    this.#messages = messages;
    if (this.#stopping) messages.stop();
    this.#log.info({ appliedSeq: engine.appliedSeq, from: this.#processedSeq + 1 }, 'following the write stream');
    const guard = new ConsumerGuard(messages, {
      jsm: this.#o.jsm,
      stream: STREAM_WRITES,
      subject: writesSubject(this.#source),
      handledSeq: () => this.#processedSeq,
      onStall: ({ handledSeq, lastSeq, silentMs }) => {
        this.#log.warn({ appliedSeq: handledSeq, lastSeq, silentMs }, 'the write-stream consumer went quiet while records wait; restarting the session');
        this.#fail(new Error(`the write-stream consumer delivered nothing for ${silentMs} ms while records up to ${lastSeq} wait`));
      },
    });
    this.#watch = guard.watch;
    const timer = setInterval(() => {
      void this.#enqueue(() => this.#checkpoint(engine, false)).catch((err: unknown) => this.#fail(err));
      this.#warnIfBusy();
    }, Math.min(this.#o.checkpointIntervalMs, 1_000));
    try {
      for await (const m of messages) {
        if (this.#stopping || this.#sessionError !== undefined) break;
        await this.#enqueue(() => this.#handle(engine, m));
      }
    } finally {
      clearInterval(timer);
      guard.close();
    }
    if (this.#sessionError !== undefined) throw this.#sessionError;
    if (!this.#stopping) throw new Error('the write-stream consumer ended');
    await this.#finalCheckpoint(engine);
  }

  /** Logs a warning while one step of a task has taken more than BUSY_WARN_MS, once per BUSY_WARN_MS. */
  #warnIfBusy(): void {
    const now = performance.now();
    if (this.#busy === 0 || now - this.#stepSince < BUSY_WARN_MS || now - this.#busyWarnedAt < BUSY_WARN_MS) return;
    this.#busyWarnedAt = now;
    this.#log.warn({ step: this.#stepAt, forMs: Math.round(now - this.#stepSince), appliedSeq: this.#processedSeq, awaitingAcks: this.#publisher?.awaitingAcks ?? 0 }, 'disk worker is still busy on one step');
  }

  /** Names the step the running task is on (see {@link #warnIfBusy}). */
  #at(step: string): void {
    this.#stepAt = step;
    this.#stepSince = performance.now();
  }

  #fail(err: unknown): void {
    this.#sessionError ??= err;
    this.#messages?.stop();
  }

  #enqueue(task: () => Promise<void>): Promise<void> {
    const watch = this.#watch;
    const run = async (): Promise<void> => {
      this.#busy++;
      this.#at('starting a task');
      try {
        await task();
      } finally {
        this.#busy--;
      }
    };
    // Time spent busy is not the consumer's silence (see StallWatch).
    const p = this.#serial.then(() => (watch ? watch.busy(run) : run()));
    this.#serial = p.catch(() => undefined);
    return p;
  }

  async #teardown(): Promise<void> {
    this.#messages?.stop();
    this.#messages = undefined;
    await this.#serial;
    // Let what was sent settle (stored or failed) so the next session's re-publishes come after it.
    await this.#publisher?.flush().catch(() => undefined);
    this.#stats.duplicateEvents += this.#publisher?.stats.duplicates ?? 0;
    this.#publisher?.close();
    this.#publisher = undefined;
    this.#engine = undefined;
    this.#watch = undefined;
  }

  /** Restores from the checkpoint when it is usable, else crawls the disk and publishes the snapshot. */
  async #open(fetcher: NatsBlockFetcher, opts: InferencerOptions): Promise<DiskInferencer> {
    const info = await this.#o.jsm.streams.info(STREAM_WRITES);
    /** A checkpoint found and not used: why, and the tag that keeps this crawl's msg ids apart (see crawlTag). */
    let discarded: { why: string; tag: string } | undefined;
    if (this.#rebootstrap === undefined) {
      const ck = await this.#loadCheckpoint();
      let engine: DiskInferencer | undefined;
      const discard = (why: string, fields: Record<string, unknown>): void => {
        this.#log.warn(fields, `${why}; crawling the disk again`);
        discarded = { why, tag: crawlTag(ck!.state, ...(ck!.deltas ?? [])) }; // ok: only called with a checkpoint
        engine = undefined;
      };
      if (!ck) {
        // Events but no checkpoint: an owner was stopped between its crawl's snapshot and the checkpoint after it
        // (or the checkpoint was removed). Records since then have no events, and the crawl's snapshot would be a
        // second one over a tree consumers cannot get: a resync first, so they drop what they folded. Tagged from
        // the last stored event, so a retry of this crawl that stored nothing more publishes the same ids.
        const last = await this.#o.jsm.streams.getMessage(STREAM_EVENTS, { last_by_subj: diskEventsFilter(this.disk) });
        if (last) {
          const why = 'the disk has events but no checkpoint (its owner stopped before storing the first, or it was removed)';
          this.#log.warn({ lastEventSeq: last.seq }, `${why}; crawling the disk again`);
          discarded = { why, tag: crawlTag(new TextEncoder().encode(last.header?.get('Nats-Msg-Id') ?? String(last.seq))) };
        }
      } else if (ck.size !== undefined && ck.size !== this.#o.size) {
        discard('checkpoint is of a disk of another size', { checkpointSize: ck.size, size: this.#o.size });
      } else {
        try {
          engine = await DiskInferencer.restore(ck.state, fetcher, opts, ck.deltas);
        } catch (err) {
          if (err instanceof BlockFetchError) throw err;
          discard('checkpoint could not be restored', { err });
        }
      }
      const want = this.#o.partition;
      if (engine && want !== undefined && engine.window.partition !== want) {
        // Another file system from now on: consumers drop the tree they folded (resync), then take the crawl's.
        const message = `the registry names partition ${want} of the disk; partition ${engine.window.partition} was followed`;
        this.#log.warn({ partition: engine.window.partition, want }, 'checkpoint follows another partition than the registry names; crawling the disk again');
        this.#rebootstrap = { seq: engine.appliedSeq, ts: new Date(), message, resync: { idx: engine.peekIdx(engine.appliedSeq) } };
        engine = undefined;
      } else if (engine && info.state.last_seq < engine.appliedSeq) {
        discard('the write stream is behind the checkpoint (recreated?)', { appliedSeq: engine.appliedSeq, lastSeq: info.state.last_seq });
      } else if (engine && info.state.messages > 0 && info.state.first_seq > engine.appliedSeq + 1) {
        discard('records after the checkpoint may have left the write stream', { appliedSeq: engine.appliedSeq, firstSeq: info.state.first_seq });
      }
      if (engine) {
        if (ck?.eventsSeq !== undefined) await this.#readStoredAhead(ck.eventsSeq);
        this.#processedSeq = engine.appliedSeq;
        this.#checkpointedSeq = engine.appliedSeq;
        this.#lastCheckpointAt = Date.now();
        this.#log.info({ appliedSeq: engine.appliedSeq, bytes: ck?.state.length, deltas: ck?.deltas?.length ?? 0 }, 'restored from checkpoint');
        return engine;
      }
    }
    const poisoned = this.#rebootstrap;
    if (poisoned && !poisoned.resync) this.#log.error({ seq: poisoned.seq }, 'skipping a record the engine keeps failing on; crawling the disk again');
    const fromSeq = await this.#lastWriteSeq();
    this.#log.info({ fromSeq }, 'crawling the disk');
    const started = Date.now();
    let firstIdx = 0;
    if (poisoned?.resync) {
      // First the resync (consumers drop what they folded), then the crawl's snapshot: the new tree.
      const idx = poisoned.resync.idx;
      await this.#emit([{ v: EVENT_VERSION, disk: this.disk, kind: EventKind.Resync, path: '', ino: 0, type: '', seq: poisoned.seq, idx, ts: poisoned.ts, reason: poisoned.message }]);
      if (fromSeq === poisoned.seq) firstIdx = idx + 1;
    }
    const crawledAt = new Date();
    if (discarded) {
      // Consumers that folded the events so far drop that tree; the snapshot that follows starts the new one.
      // Under ids of their own: they share (disk, seq, idx) with what the checkpoint's engine may have published
      // (the snapshot of a disk re-attached before any write has the first crawl's seq, idx 0), which the
      // stream's duplicate window would drop. The tag comes from the discarded checkpoint, so a retry of this
      // crawl (a crash before its checkpoint below) publishes the same ids again, and they are dropped.
      const resync: FsEvent = { v: EVENT_VERSION, disk: this.disk, kind: EventKind.Resync, path: '', ino: 0, type: '', seq: fromSeq, idx: 0, ts: crawledAt, reason: `${discarded.why}: the disk is crawled again` };
      await this.#emit([resync], discarded.tag);
      firstIdx = 1;
    }
    const { inferencer, events } = await DiskInferencer.bootstrap(fetcher, opts, fromSeq, crawledAt, firstIdx);
    await this.#emit(events, discarded?.tag);
    if (poisoned && !poisoned.resync) {
      // The engine produced no event for the poison record; but when it was the disk's last record the crawl's
      // events carry its seq too (fromSeq), so the corrupt event takes the next free idx: a shared msg id would
      // make the stream drop one of them.
      const idx = events.reduce((n, e) => (e.seq === poisoned.seq ? Math.max(n, e.idx + 1) : n), 0);
      await this.#emit([{ ...this.#corruptEvent(poisoned.seq, poisoned.ts, 'EngineFailure', poisoned.message), idx }]);
    }
    this.#processedSeq = Math.max(inferencer.appliedSeq, fromSeq);
    const w = inferencer.window;
    this.#log.info({ fromSeq, appliedSeq: inferencer.appliedSeq, events: events.length, ms: Date.now() - started, partition: w.partition, ...(w.lv ? { lv: w.lv } : {}), start: w.start, bytes: w.size }, 'disk crawled');
    this.#blank = false;
    // Checkpoint at once: a crash before the first interval must not crawl (and publish a snapshot) again.
    await this.#checkpoint(inferencer, true);
    this.#rebootstrap = undefined;
    return inferencer;
  }

  /**
   * The disk's checkpoint, within the load timeout (see {@link CHECKPOINT_LOAD_TIMEOUT_MS}). A load that timed out
   * is left behind (a CheckpointStore load cannot be cancelled).
   */
  async #loadCheckpoint(): Promise<Checkpoint | undefined> {
    const ms = this.#loadTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CheckpointLoadTimeoutError(`checkpoint of disk ${this.disk} not loaded within ${ms} ms`)), ms);
    });
    try {
      const ck = await Promise.race([this.#o.checkpoints.load(this.disk), deadline]);
      this.#loadTimeoutMs = CHECKPOINT_LOAD_TIMEOUT_MS;
      return ck;
    } catch (err) {
      if (err instanceof CheckpointLoadTimeoutError) {
        this.#loadTimeoutMs = Math.min(CHECKPOINT_LOAD_TIMEOUT_MAX_MS, ms * 2);
        this.#log.error({ err }, 'checkpoint load timed out');
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Reads the msg ids of the disk's events stored after events-stream sequence `eventsSeq` (the restored
   * checkpoint's): those of records after the checkpoint that a crashed owner published. The stream's duplicate
   * window would drop them when re-published, but only for 2 minutes: a worker that starts later (a crash loop's
   * backoff, a host down longer, no other instance) would store them twice.
   */
  async #readStoredAhead(eventsSeq: number): Promise<void> {
    this.#eventsSeq = { checkpoint: eventsSeq, read: eventsSeq };
    const filter = diskEventsFilter(this.disk);
    const last = (await this.#o.jsm.streams.getMessage(STREAM_EVENTS, { last_by_subj: filter }))?.seq ?? 0;
    if (last <= eventsSeq) return;
    this.#at('reading the events stored after the checkpoint');
    const progress = { ids: new Set<string>(), read: eventsSeq };
    const t0 = performance.now();
    let how = 'consumer';
    try {
      await this.#readAheadByConsumer(filter, last, progress);
    } catch (err) {
      // Older deployments let the inferencer only get messages from GAMMARAY_EVENTS: one round trip each.
      how = 'message gets';
      this.#log.warn({ err, eventsSeq, read: progress.read, lastSeq: last }, 'cannot read the events stored after the checkpoint with a consumer (allow the inferencer $JS.API.CONSUMER.*.GAMMARAY_EVENTS, deploy/nats/values.yaml): reading them one message get at a time');
      await this.#readAheadByGets(filter, last, progress);
    }
    const { ids, read } = progress;
    this.#log.info({ eventsSeq, lastSeq: last, events: ids.size, ms: Math.round(performance.now() - t0), how }, 'events of records after the checkpoint are stored already; the replay does not send them again');
    this.#storedAhead = ids.size > 0 ? ids : undefined;
    this.#eventsSeq = { checkpoint: eventsSeq, read };
  }

  /**
   * The msg ids of this disk's events after `progress.read` up to `last`, from an ordered consumer that delivers
   * only headers: about 25 times as fast as a message get per event (70,000 events, two seconds of a busy disk
   * between checkpoints, took 14 s that way). Throws if the consumer cannot be made or goes quiet.
   */
  async #readAheadByConsumer(filter: string, last: number, progress: { ids: Set<string>; read: number }): Promise<void> {
    const consumer = await this.#o.js.consumers.get(STREAM_EVENTS, {
      filter_subjects: filter,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: progress.read + 1,
      headers_only: true,
    });
    const messages = await consumer.consume({ max_messages: READ_AHEAD_BATCH });
    let quiet: NodeJS.Timeout | undefined;
    let stalled = false;
    const arm = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(() => {
        stalled = true;
        messages.stop();
      }, READ_AHEAD_QUIET_MS);
    };
    try {
      arm();
      for await (const m of messages) {
        const id = m.headers?.get('Nats-Msg-Id');
        if (id) progress.ids.add(id);
        progress.read = m.seq;
        if (m.seq >= last || this.#stopping) break;
        arm();
      }
    } finally {
      clearTimeout(quiet);
      messages.stop();
    }
    if (progress.read < last && !this.#stopping) throw new Error(`the consumer ${stalled ? `delivered nothing for ${READ_AHEAD_QUIET_MS} ms` : 'ended'} at events-stream sequence ${progress.read} of ${last}`);
  }

  /** The same as {@link #readAheadByConsumer} with one message get per event (what the inferencer may always do). */
  async #readAheadByGets(filter: string, last: number, progress: { ids: Set<string>; read: number }): Promise<void> {
    while (progress.read < last && !this.#stopping) {
      // ok: the server's STREAM.MSG.GET takes next_by_subj with seq; the client's type lists only seq or last_by_subj
      const m = await this.#o.jsm.streams.getMessage(STREAM_EVENTS, { seq: progress.read + 1, next_by_subj: filter } as unknown as MsgRequest);
      if (!m) break;
      const id = m.header?.get('Nats-Msg-Id');
      if (id) progress.ids.add(id);
      progress.read = m.seq;
    }
  }

  /** The events of a replayed record that GAMMARAY_EVENTS does not hold yet (see {@link #readStoredAhead}). */
  #unstored(events: readonly FsEvent[]): readonly FsEvent[] {
    const ahead = this.#storedAhead;
    if (ahead === undefined) return events;
    const fresh = events.filter((e) => !ahead.delete(eventMsgId({ disk: this.disk, seq: e.seq, idx: e.idx })));
    this.#stats.duplicateEvents += events.length - fresh.length;
    if (ahead.size === 0) this.#storedAhead = undefined;
    return fresh;
  }

  /**
   * The `eventsSeq` of a checkpoint taken now: every event of a later record will be stored after it. While
   * events read after the restored checkpoint are still to be met again, the restored checkpoint's own.
   */
  #checkpointEventsSeq(): number {
    if (this.#storedAhead !== undefined) return this.#eventsSeq.checkpoint;
    return Math.max(this.#eventsSeq.read, this.#publisher?.storedSeq ?? 0);
  }

  /** The last sequence of this disk's records in GAMMARAY_WRITES, 0 if it has none. */
  async #lastWriteSeq(): Promise<number> {
    const m = await this.#o.jsm.streams.getMessage(STREAM_WRITES, { last_by_subj: writesSubject(this.#source) });
    return m?.seq ?? 0;
  }

  async #handle(engine: DiskInferencer, m: JsMsg): Promise<void> {
    const seq = m.seq;
    this.#watch?.delivered();
    this.#lag = { pending: m.info.pending, time: m.time.getTime() };
    if (seq <= this.#processedSeq) return;
    const ts = m.time; // when JetStream stored the record: deterministic across re-processing
    let rec: WriteRecord;
    try {
      rec = decodeWriteRecord(m.data);
      if (rec.disk !== this.#source) throw new CorruptError(WireCorruptKind.DiskId, `record on ${m.subject} says disk ${rec.disk}`, { field: 'disk' });
    } catch (err) {
      if (!(err instanceof CorruptError)) throw err;
      this.#stats.corruptRecords++;
      this.#log.warn({ err, seq }, 'write record does not decode; publishing a corrupt event');
      await this.#emit(this.#unstored([this.#corruptEvent(seq, ts, `record:${err.kind}`, err.message)]));
      this.#processedSeq = seq;
      return;
    }
    this.#currentSeq = seq;
    this.#currentTs = rec.ts;
    this.#at(`applying record ${seq}`);
    const events = await engine.apply(seq, rec);
    this.#currentSeq = undefined;
    this.#stats.records++;
    this.#processedSeq = seq;
    if (this.#failing?.seq === seq) this.#failing = undefined;
    await this.#emit(this.#unstored(events));
    const why = engine.resyncReason;
    if (why !== undefined) {
      const idx = events.reduce((n, e) => (e.seq === seq ? Math.max(n, e.idx + 1) : n), 0);
      this.#rebootstrap = { seq, ts: rec.ts, message: why, resync: { idx } };
      throw new ResyncRequired(why);
    }
  }

  /** A disk-level `corrupt` event for record `seq` (idx 0: the engine produced no event for that record). */
  #corruptEvent(seq: number, ts: Date, corruptKind: string, message: string): FsEvent {
    return { v: EVENT_VERSION, disk: this.disk, kind: EventKind.Corrupt, path: '', ino: 0, type: '', seq, idx: 0, ts, corruptKind, message };
  }

  /** Publishes `events` (msg ids from disk, seq and idx, and `tag` when given: see {@link crawlTag}). */
  async #emit(events: readonly FsEvent[], tag?: string): Promise<void> {
    const publisher = this.#publisher!; // ok: set for the whole session
    if (events.length === 0) return;
    if (this.#revoked) throw new LeaseLostError(this.disk, 'the worker was revoked');
    this.#at('confirming the lease before publishing');
    await this.#o.fence?.confirm();
    for (const e of events) {
      const bytes = this.#encode(e);
      const room = publisher.publish(eventsSubject(this.disk, bytes.kind), bytes.data, eventMsgId({ disk: this.disk, seq: e.seq, idx: e.idx }, tag), e.path);
      if (room) {
        this.#at(`waiting for room to publish the events of record ${e.seq}`);
        await room;
      }
      this.#stats.events++;
      this.#eventsByKind[bytes.kind] = (this.#eventsByKind[bytes.kind] ?? 0) + 1;
    }
  }

  /**
   * Encodes an event; one too large for a message goes without its data (`dataOmitted`), one that cannot be
   * encoded at all (a field name with a NUL byte) becomes a `corrupt` event under the same msg id.
   */
  #encode(e: FsEvent): { kind: string; data: Uint8Array } {
    try {
      return { kind: e.kind, data: encodeEvent(e) };
    } catch (err) {
      if (!(err instanceof EncodeError)) throw err;
      if (e.data !== undefined) {
        try {
          return { kind: e.kind, data: encodeEvent({ ...e, data: undefined, dataOmitted: true }) };
        } catch (err2) {
          if (!(err2 instanceof EncodeError)) throw err2;
        }
      }
      this.#log.warn({ err, seq: e.seq, idx: e.idx, kind: e.kind }, 'event cannot be encoded; publishing a corrupt event instead');
      const c: FsEvent = { ...this.#corruptEvent(e.seq, e.ts, 'EventEncoding', `a ${e.kind} event could not be encoded: ${err.message}`), idx: e.idx, ino: e.ino };
      return { kind: c.kind, data: encodeEvent(c) };
    }
  }

  /**
   * Writes a checkpoint when appliedSeq moved (or `force`) and the interval passed: first waits until every
   * event sent so far is stored (a publish failure ends the session), so the checkpoint never runs ahead of the
   * events stream. A failed put is logged and retried at the next interval.
   */
  async #checkpoint(engine: DiskInferencer, force: boolean): Promise<void> {
    if (!force && (engine.appliedSeq <= this.#checkpointedSeq || Date.now() - this.#lastCheckpointAt < this.#checkpointGapMs)) return;
    if (this.#revoked) return;
    this.#at('waiting for the events before a checkpoint to be stored');
    await this.#publisher!.flush(); // ok: set for the whole session
    const appliedSeq = engine.appliedSeq;
    const eventsSeq = this.#checkpointEventsSeq();
    const t0 = performance.now();
    if (this.#chain?.engine !== engine) this.#chain = { engine, chain: new CheckpointChain(engine, this.#o.checkpoints, this.disk) };
    const cp = this.#chain.chain.take();
    const { bytes, delta } = cp;
    const built = performance.now() - t0;
    this.#lastCheckpointAt = Date.now();
    const fence = this.#o.fence;
    this.#at('confirming the lease before a checkpoint');
    await fence?.confirm();
    this.#at(`storing the checkpoint at ${appliedSeq}`);
    const t1 = performance.now();
    try {
      await cp.store({ appliedSeq, size: this.#o.size, epoch: fence?.epoch, eventsSeq });
    } catch (err) {
      if (err instanceof CheckpointFencedError) throw err;
      this.#log.warn({ err, appliedSeq, delta }, 'checkpoint could not be stored; retrying at the next interval');
      return;
    }
    const cost = built + (performance.now() - t1);
    const gap = Math.min(MAX_CHECKPOINT_INTERVAL_S * 1000, Math.max(this.#o.checkpointIntervalMs, cost * CHECKPOINT_COST_FACTOR));
    if (gap > this.#o.checkpointIntervalMs && this.#checkpointGapMs <= this.#o.checkpointIntervalMs) {
      this.#log.info({ appliedSeq, bytes, ms: Math.round(cost), nextInMs: Math.round(gap) }, 'checkpoints of this disk take long: spacing them out to keep their share of the work small');
    }
    this.#checkpointGapMs = gap;
    this.#lastCheckpoint = delta ? { ...this.#lastCheckpoint, deltaBytes: bytes, seconds: cost / 1000 } : { ...this.#lastCheckpoint, bytes, seconds: cost / 1000 };
    this.#checkpointedSeq = appliedSeq;
    this.#stats.checkpoints++;
    if (delta) this.#stats.deltaCheckpoints++;
    this.#log.debug({ appliedSeq, bytes, ms: Math.round(cost), delta }, 'checkpoint stored');
  }

  async #finalCheckpoint(engine: DiskInferencer): Promise<void> {
    if (this.#revoked) return;
    await this.#enqueue(async () => {
      if (this.#revoked) return;
      if (engine.appliedSeq > this.#checkpointedSeq) await this.#checkpoint(engine, true);
      else await this.#publisher!.flush(); // ok: set for the whole session
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }
}

function isClosedConnection(err: unknown): boolean {
  return err instanceof Error && (err.name === 'ClosedConnectionError' || err.name === 'DrainingConnectionError');
}

/**
 * The msg-id tag of a crawl that replaces checkpoint `state` (and its deltas): 12 hex digits of their SHA-256. The
 * same checkpoint gives the same tag (a retried crawl's events are dropped as duplicates); another one, another tag.
 */
export function crawlTag(state: Uint8Array, ...deltas: readonly Uint8Array[]): string {
  const h = createHash('sha256').update(state);
  for (const d of deltas) h.update(d);
  return `c${h.digest('hex').slice(0, 12)}`;
}
