/**
 * A guard for a JetStream ordered consumer that follows one disk's records: after the NATS node holding the
 * consumer is lost, nats.js can leave the consumer quiet for tens of seconds (its idle heartbeat) or for good,
 * while the stream holds records past the last one handled. The watch notices that silence and tells its owner,
 * which restarts its session with a fresh consumer.
 */
import type { JetStreamManager } from '@nats-io/jetstream';

/** What {@link StallWatch} reports when it sees the consumer quiet while records wait. */
export interface Stall {
  /** The highest sequence handled so far. */
  readonly handledSeq: number;
  /** The stream's last sequence of the consumer's subject, when it looked. */
  readonly lastSeq: number;
  /** How long nothing was delivered (busy time left out), ms. */
  readonly silentMs: number;
}

/** Options of a {@link StallWatch}. */
export interface StallWatchOptions {
  /** Silence (ms, time spent busy on delivered records not counted) after which the stream is looked at. */
  readonly stallMs: number;
  /** The stream's last sequence of the consumer's subject (one message-get request); 0 when it holds none. */
  readonly lastSeq: () => Promise<number>;
  /** The highest sequence handled so far. */
  readonly handledSeq: () => number;
  /** Called once per stall found; the owner ends its session (and makes a new watch for the next). */
  readonly onStall: (stall: Stall) => void;
  /** Clock in ms (tests); default performance.now(). */
  readonly now?: () => number;
}

/**
 * Call {@link delivered} for each message, {@link busy} around the work done for it (and any other task that
 * keeps the owner from asking the consumer for more), and {@link tick} periodically (every second or so).
 *
 * The silence clock starts at the last delivery. Work pushes it forward by the time the work took, not to "now":
 * a periodic task that finds nothing to do (the checkpoint timer's) must not hide a silent consumer. (Resetting
 * the clock after every task did: the watch never fired, and after a NATS node restart disks stayed behind for
 * 80-95 s until nats.js noticed on its own.) After a look that found nothing waiting, the next look is another
 * `stallMs` later, so an idle disk costs one request per `stallMs`.
 */
export class StallWatch {
  readonly #o: StallWatchOptions;
  readonly #now: () => number;
  #quietSince: number;
  #busy = 0;
  #busySince = 0;
  #looking = false;
  #fired = false;

  constructor(opts: StallWatchOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#quietSince = this.#now();
  }

  /** A message was delivered. */
  delivered(): void {
    this.#quietSince = this.#now();
  }

  /** Runs `work` counted as busy time: while it runs, and for as long as it took, silence is not counted. */
  async busy<T>(work: () => Promise<T>): Promise<T> {
    this.begin();
    try {
      return await work();
    } finally {
      this.end();
    }
  }

  /** Busy from now until the matching {@link end} (for work that is not one callback, e.g. a generator's yield). */
  begin(): void {
    if (this.#busy++ === 0) this.#busySince = this.#now();
  }

  /** Ends what {@link begin} started. */
  end(): void {
    if (this.#busy === 0) return;
    if (--this.#busy === 0) {
      const now = this.#now();
      this.#quietSince = Math.min(now, this.#quietSince + (now - this.#busySince));
    }
  }

  /** Looks at the stream when the consumer has been quiet for `stallMs`; reports a stall once. Never rejects. */
  async tick(): Promise<void> {
    if (this.#fired || this.#looking || this.#busy > 0 || this.#now() - this.#quietSince < this.#o.stallMs) return;
    this.#looking = true;
    try {
      const last = await this.#o.lastSeq();
      const handled = this.#o.handledSeq();
      const silentMs = this.#now() - this.#quietSince;
      if (last > handled && this.#busy === 0 && silentMs >= this.#o.stallMs) {
        this.#fired = true;
        this.#o.onStall({ handledSeq: handled, lastSeq: last, silentMs: Math.round(silentMs) });
      }
    } catch {
      // NATS unreachable: look again after another stallMs
    } finally {
      this.#quietSince = Math.max(this.#quietSince, this.#now());
      this.#looking = false;
    }
  }
}

/** Default silence before a {@link ConsumerGuard} looks at the stream, ms. */
export const CONSUMER_STALL_MS = 4_000;
/** How often a {@link ConsumerGuard} looks at its clock, ms. */
const CONSUMER_GUARD_TICK_MS = 1_000;

/** Options of a {@link ConsumerGuard}. */
export interface ConsumerGuardOptions {
  readonly jsm: JetStreamManager;
  /** The stream, and the subject (wildcards allowed) the consumer filters on. */
  readonly stream: string;
  readonly subject: string;
  /** The highest stream sequence handled so far (messages skipped by the reader count as handled). */
  readonly handledSeq: () => number;
  /** Default {@link CONSUMER_STALL_MS}. */
  readonly stallMs?: number;
  /** Called once, when the stall is found (after the consumer was stopped). */
  readonly onStall?: (stall: Stall) => void;
}

/**
 * A {@link StallWatch} over one ordered consumer's messages: it looks at its clock every second, asks the stream
 * for the subject's last sequence (a message-get request) once the consumer has been quiet long enough, and on a
 * stall stops the messages, which ends their iteration; {@link stalled} then says why. Report deliveries and
 * busy time on {@link watch}; {@link close} when the iteration is over.
 */
export class ConsumerGuard {
  readonly watch: StallWatch;
  #stalled: Stall | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(messages: { stop(): void }, o: ConsumerGuardOptions) {
    this.watch = new StallWatch({
      stallMs: o.stallMs ?? CONSUMER_STALL_MS,
      lastSeq: async () => (await o.jsm.streams.getMessage(o.stream, { last_by_subj: o.subject }))?.seq ?? 0,
      handledSeq: o.handledSeq,
      onStall: (st) => {
        this.#stalled = st;
        messages.stop();
        o.onStall?.(st);
      },
    });
    this.#timer = setInterval(() => void this.watch.tick(), CONSUMER_GUARD_TICK_MS).unref(); // never what keeps a process alive
  }

  /** The stall that stopped the consumer, if one did. */
  get stalled(): Stall | undefined {
    return this.#stalled;
  }

  /** Stops looking. */
  close(): void {
    clearInterval(this.#timer);
  }
}
