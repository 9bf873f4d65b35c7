import type { NatsConnection } from '@nats-io/nats-core';
import { AckPublisher, headerLine } from '@gammaray/ops';
import { HEADER_EPOCH, HEADER_PATH, HEADER_WORKER, MAX_PATH_HEADER_CHARS, encodePathHeader } from '@gammaray/wire';
import type { Logger } from 'pino';

/** Options of {@link EventPublisher}. */
export interface EventPublisherOptions {
  /** Events whose ack may be outstanding at once. Default 256. */
  readonly window?: number;
  /** How long one publish attempt waits for its ack. Default 5 s. */
  readonly timeoutMs?: number;
  /**
   * How long an event is retried before the publisher fails. Default 60 s: well inside the events stream's
   * 2-minute duplicate window, so a retry of an event that was in fact stored is still dropped as a duplicate.
   */
  readonly retryForMs?: number;
  readonly log?: Logger;
  /** Instance id sent in the `Gammaray-Worker` header of every event. */
  readonly worker?: string;
  /** Lease epoch sent in the `Gammaray-Epoch` header of every event. */
  readonly epoch?: number;
  /** Checked before every retry of a publish (the lease fence); a rejection fails the publisher. */
  readonly fence?: () => Promise<void>;
}

const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 5_000;
/** While publishes keep failing, one of them is logged per this many ms. */
const FAILURE_LOG_MS = 2_000;

/**
 * Publishes one disk's events to JetStream, pipelined: up to `window` publishes in flight, each with its
 * `Nats-Msg-Id` (so a re-publish after a restart is dropped by the stream) and the `Gammaray-Path` header.
 * Acks come back on one inbox subscription ({@link AckPublisher}): `js.publish` managed ~7,400 events/s here.
 *
 * Order: publishes leave on one connection in call order, so JetStream stores them in that order. A publish that
 * fails is retried with the same msg id while later ones may already be stored; in that case (an ack lost or a
 * message dropped during a reconnect) one event can land after a later one of the same disk. Events carry
 * `(seq, idx)`, which is their true order.
 *
 * Once an event could not be stored within `retryForMs`, the publisher is failed: every later call throws, so
 * the worker restarts from its checkpoint (which never covers an unacknowledged event).
 */
export class EventPublisher {
  readonly #acks: AckPublisher;
  readonly #timeoutMs: number;
  readonly #window: number;
  readonly #retryForMs: number;
  readonly #log: Logger | undefined;
  /** The header lines every event carries (worker, epoch). */
  readonly #fixedHeaders: string;
  readonly #fence: (() => Promise<void>) | undefined;
  #inflight: Promise<void>[] = [];
  #error: Error | undefined;
  #aborted = false;
  #wakeRetries = new Set<() => void>();
  #published = 0;
  #duplicates = 0;
  /** The highest GAMMARAY_EVENTS sequence acknowledged so far (0: none). */
  #storedSeq = 0;
  /** Failed attempts since the last stored event, and when one was last logged (performance.now()). */
  #failures = 0;
  #failureLoggedAt = -Infinity;
  /** A failure of the current streak was logged (so its end is too: at most one pair per FAILURE_LOG_MS). */
  #failureWarned = false;

  constructor(nc: NatsConnection, opts: EventPublisherOptions = {}) {
    this.#window = Math.max(1, opts.window ?? 256);
    this.#timeoutMs = opts.timeoutMs ?? 5_000;
    this.#acks = new AckPublisher(nc);
    this.#retryForMs = opts.retryForMs ?? 60_000;
    this.#log = opts.log;
    this.#fixedHeaders = (opts.worker !== undefined ? headerLine(HEADER_WORKER, opts.worker) : '') + (opts.epoch !== undefined ? headerLine(HEADER_EPOCH, String(opts.epoch)) : '');
    this.#fence = opts.fence;
  }

  /** The highest GAMMARAY_EVENTS sequence of the events acknowledged so far (a duplicate's is its original's); 0 before any. */
  get storedSeq(): number {
    return this.#storedSeq;
  }

  /** Events stored so far, and how many of them the stream already had (re-published after a restart). */
  get stats(): { published: number; duplicates: number } {
    return { published: this.#published, duplicates: this.#duplicates };
  }

  /**
   * Sends an event: at once when the window has room (returns undefined), else after waiting for room (returns
   * the promise of that). Either way it is on its way, not yet stored: {@link flush} waits for that. Throws the
   * publisher's error once it has failed.
   *
   * Callers should not await when nothing is returned: the NATS client writes what was published when the
   * microtask queue runs, so events sent without an await in between leave in one socket write, not one each.
   */
  publish(subject: string, data: Uint8Array, msgId: string, path: string): Promise<void> | undefined {
    if (this.#inflight.length >= this.#window && !this.#error) return this.#publishWhenRoom(subject, data, msgId, path);
    if (this.#error) throw this.#error;
    if (this.#aborted) throw new Error('the event publisher was aborted');
    this.#inflight.push(this.#send(subject, data, msgId, path));
    return undefined;
  }

  /**
   * Waits until half the window is free, not one slot: resuming at every ack would send one event per turn of
   * the event loop, so one socket write each (a fifth of the service's time went to those writes).
   */
  async #publishWhenRoom(subject: string, data: Uint8Array, msgId: string, path: string): Promise<void> {
    while (this.#inflight.length > this.#window >> 1 && !this.#error) await this.#inflight.shift();
    this.publish(subject, data, msgId, path);
  }

  /** Publishes waiting for their ack now (retries waiting out their backoff are not counted). */
  get awaitingAcks(): number {
    return this.#acks.inFlight;
  }

  /** Resolves when every event sent so far is stored; throws the publisher's error if one could not be. */
  async flush(): Promise<void> {
    while (this.#inflight.length > 0) await this.#inflight.shift();
    if (this.#error) throw this.#error;
  }

  /** Stops listening for acks (after {@link flush}, or when giving up): publishes still waiting fail. */
  close(): void {
    this.#acks.close();
  }

  /**
   * Gives up on every retry at once (shutdown without NATS, or the disk's lease was lost); in-flight events fail
   * the publisher and no further event is sent.
   */
  abort(): void {
    this.#aborted = true;
    for (const wake of this.#wakeRetries) wake();
  }

  /** Never rejects: a final failure is kept in #error. */
  async #send(subject: string, data: Uint8Array, msgId: string, path: string): Promise<void> {
    const h = this.#pathHeader(path, msgId) + this.#fixedHeaders;
    const deadline = Date.now() + this.#retryForMs;
    for (let attempt = 0; ; attempt++) {
      if (this.#error) return; // an earlier event failed for good; the worker restarts and re-sends this one
      if (this.#aborted) {
        this.#error = new Error(`event ${msgId} was not sent: the publisher was aborted`);
        return;
      }
      if (attempt > 0 && this.#fence) {
        try {
          await this.#fence();
        } catch (err) {
          this.#error ??= err as Error;
          return;
        }
      }
      try {
        const ack = await this.#acks.publish(subject, data, { msgID: msgId, timeout: this.#timeoutMs, headers: h });
        this.#published++;
        if (ack.duplicate) this.#duplicates++;
        this.#storedSeq = Math.max(this.#storedSeq, ack.seq);
        if (this.#failureWarned) this.#log?.info({ failedAttempts: this.#failures }, 'events are being stored again');
        this.#failureWarned = false;
        this.#failures = 0;
        return;
      } catch (err) {
        if (this.#aborted || Date.now() >= deadline) {
          this.#error ??= new Error(`event ${msgId} was not stored: ${(err as Error).message}`, { cause: err });
          return;
        }
        // One line per FAILURE_LOG_MS, not one per event and attempt (a window of 256 events fails together).
        this.#failures++;
        const now = performance.now();
        if (now - this.#failureLoggedAt >= FAILURE_LOG_MS) {
          this.#failureLoggedAt = now;
          this.#failureWarned = true;
          this.#log?.warn({ err, msgId, attempt, failedAttempts: this.#failures }, 'event publish failed; retrying with the same msg id');
        }
        await this.#sleep(Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt));
      }
    }
  }

  /** The Gammaray-Path header line, or none for a disk-level event or a path too long for one (see MAX_PATH_HEADER_CHARS). */
  #pathHeader(path: string, msgId: string): string {
    if (path === '') return '';
    const value = encodePathHeader(path);
    if (value.length <= MAX_PATH_HEADER_CHARS) return headerLine(HEADER_PATH, value);
    this.#log?.warn({ msgId, headerChars: value.length, max: MAX_PATH_HEADER_CHARS }, 'path too long for the Gammaray-Path header: event published without it (its BSON path is complete)');
    return '';
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#wakeRetries.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wakeRetries.add(wake);
    });
  }
}
