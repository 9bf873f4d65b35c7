/**
 * A disk's file-level events as the inferencer published them (stream GAMMARAY_EVENTS), read with an ordered
 * consumer and filtered by kinds and a path glob: what `gammaray follow` prints and the view's Watch streams.
 */
import { DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { EventKind, decodeEvent, type FsEvent } from '@gammaray/inferencer';
import { STREAM_EVENTS, diskEventsFilter, eventsSubject, isDiskId } from '@gammaray/wire';
import { ReplicaError, ReplicaErrorCode } from './errors.js';
import { compileGlob, compileGlobParents, type PathMatcher } from './glob.js';
import { ConsumerGuard, type Stall } from './stall-watch.js';

/** After a stall: attempts to open the new consumer, WATCH_REOPEN_MS apart, before the watch fails. */
const WATCH_REOPEN_ATTEMPTS = 30;
const WATCH_REOPEN_MS = 1_000;

/** Where a watch starts in GAMMARAY_EVENTS. */
export type WatchFrom =
  /** Events published from now on (after the stream's last sequence when the watch opens). */
  | { readonly at: 'now' }
  /** The first event the stream still holds. */
  | { readonly at: 'first' }
  /** The first event at or after this stream sequence (a resume passes the last one received + 1). */
  | { readonly at: 'seq'; readonly seq: number }
  /**
   * The first event of the disk stored at or after this time (JetStream's time; resume by sequence). A time
   * still to come delivers the events stored from then on, none stored before it.
   */
  | { readonly at: 'time'; readonly time: Date };

/** Options of {@link EventWatch.open}. */
export interface EventWatchOptions {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly disk: string;
  /** Path glob ({@link compileGlob}); empty or absent: every path. */
  readonly glob?: string;
  /** Kinds to deliver; empty or absent: all. */
  readonly kinds?: readonly string[];
  /** Default: now. */
  readonly from?: WatchFrom;
  /** Called for a message of the stream that is not a valid event (it is skipped). */
  readonly onUndecodable?: (seq: number, subject: string, err: unknown) => void;
  /** Called when the consumer went quiet while events waited, before the watch reads on with a new one. */
  readonly onStall?: (stall: Stall) => void;
}

/** One event and where it is in the stream. */
export interface WatchedEvent {
  /** Sequence of the message in GAMMARAY_EVENTS (resume with seq + 1). */
  readonly seq: number;
  readonly subject: string;
  readonly event: FsEvent;
}

const KINDS: ReadonlySet<string> = new Set(Object.values(EventKind));

/**
 * An open watch: iterate it once; {@link stop} ends the iteration. Messages are delivered in stream order and
 * the filters are pure functions of each message, so a watch resumed at `seq + 1` of the last event it delivered
 * delivers every later matching event exactly once. The ordered consumer recreates itself after reconnects and
 * missed heartbeats from the last sequence it delivered.
 */
export class EventWatch implements AsyncIterable<WatchedEvent> {
  readonly #o: EventWatchOptions;
  /** The subject filter of the consumer. */
  readonly #filter: string;
  #messages: ConsumerMessages;
  readonly #match: (e: FsEvent) => boolean;
  readonly #kinds: ReadonlySet<string> | undefined;
  /** The stream sequence to read from next: one past the last message delivered, matched or not. */
  #next: number;
  #stopped = false;
  #iterated = false;
  /**
   * With a start time: messages stored before it are skipped (in ns since the epoch). A time later than the last
   * message when the watch opened starts after that message, and messages stored between then and that time
   * must not pass; cleared at the first message at or after it (storage times only grow along the stream).
   */
  #notBeforeNs: bigint | undefined;
  /** The last sequence of stream GAMMARAY_EVENTS (any disk's) when the watch opened; 0 when it was empty. */
  readonly lastSeqAtOpen: number;

  private constructor(o: EventWatchOptions, filter: string, messages: ConsumerMessages, startSeq: number, match: (e: FsEvent) => boolean, kinds: ReadonlySet<string> | undefined, lastSeq: number) {
    this.lastSeqAtOpen = lastSeq;
    const from = o.from;
    this.#notBeforeNs = from?.at === 'time' ? BigInt(from.time.getTime()) * 1_000_000n : undefined;
    this.#o = o;
    this.#filter = filter;
    this.#messages = messages;
    this.#next = startSeq;
    this.#match = match;
    this.#kinds = kinds;
  }

  /**
   * Validates the request and opens the consumer. Throws ReplicaError: InvalidArgument (disk id, kinds, glob,
   * sequence), NotReady (no events stream yet: no inferencer ever ran), Unavailable (NATS did not answer).
   */
  static async open(o: EventWatchOptions): Promise<EventWatch> {
    if (!isDiskId(o.disk)) throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `${JSON.stringify(o.disk)} is not a disk id (lowercase letters, digits, - and _, at most 64)`);
    const kinds = [...new Set(o.kinds ?? [])];
    for (const k of kinds) {
      if (!KINDS.has(k)) throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `${JSON.stringify(k)} is not an event kind; use some of: ${[...KINDS].join(', ')}`);
    }
    const pathOk: PathMatcher = compileGlob(o.glob ?? '');
    const byGlob = !!o.glob;
    const parentOk: PathMatcher = compileGlobParents(o.glob ?? '');
    // A directory's rename moves the paths below it with no event of their own: it passes when matching paths
    // could be below its old or its new path.
    const movesMatches = (e: FsEvent): boolean => e.kind === 'rename' && (e.type === 'dir' || e.exchange === true) && (parentOk(e.path) || (e.from !== undefined && parentOk(e.from)));
    const match = (e: FsEvent): boolean => !byGlob || e.path === '' || pathOk(e.path) || (e.from !== undefined && pathOk(e.from)) || movesMatches(e);
    const from = o.from ?? { at: 'now' };
    if (from.at === 'seq' && (!Number.isSafeInteger(from.seq) || from.seq < 0)) {
      throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `start sequence ${from.seq} is not a non-negative integer`);
    }
    if (from.at === 'time' && !Number.isFinite(from.time.getTime())) throw new ReplicaError(ReplicaErrorCode.InvalidArgument, 'start time is not a valid date');
    let lastSeq: number;
    try {
      lastSeq = (await o.jsm.streams.info(STREAM_EVENTS)).state.last_seq;
    } catch (err) {
      throw streamError(err);
    }
    // "now" is a start sequence rather than DeliverPolicy.New: an ordered consumer that has delivered nothing
    // yet recreates itself from its cursor, which for New would be the stream's start.
    // One kind: the server filters by subject. Several: by the disk's subjects, the rest here (nats-server 2.9
    // takes one filter per consumer).
    const filter = kinds.length === 1 ? eventsSubject(o.disk, kinds[0]!) : diskEventsFilter(o.disk); // ok: length 1
    const startSeq = from.at === 'now' ? lastSeq + 1 : from.at === 'seq' ? Math.max(1, from.seq) : from.at === 'time' ? await seqAt(o, filter, from.time, lastSeq) : 1;
    const messages = await consume(o, filter, startSeq);
    return new EventWatch(o, filter, messages, startSeq, match, kinds.length > 1 ? new Set(kinds) : undefined, lastSeq);
  }

  /** Ends the iteration (the consumer is ephemeral and goes away with it). */
  stop(): void {
    this.#stopped = true;
    this.#messages.stop();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchedEvent> {
    if (this.#iterated) throw new Error('an EventWatch is iterated once');
    this.#iterated = true;
    for (;;) {
      const messages = this.#messages;
      const guard = new ConsumerGuard(messages, { jsm: this.#o.jsm, stream: STREAM_EVENTS, subject: this.#filter, handledSeq: () => this.#next - 1 });
      try {
        for await (const m of messages) {
          if (guard.stalled || this.#stopped) break;
          guard.watch.delivered();
          this.#next = m.seq + 1;
          if (this.#notBeforeNs !== undefined) {
            if (m.timestampNanos < this.#notBeforeNs) continue;
            this.#notBeforeNs = undefined;
          }
          if (this.#kinds && !this.#kinds.has(m.subject.slice(m.subject.lastIndexOf('.') + 1))) continue;
          let event: FsEvent;
          try {
            event = decodeEvent(m.data);
          } catch (err) {
            this.#o.onUndecodable?.(m.seq, m.subject, err);
            continue;
          }
          if (!this.#match(event)) continue;
          // The reader's time with the event is not the consumer's silence.
          guard.watch.begin();
          try {
            yield { seq: m.seq, subject: m.subject, event };
          } finally {
            guard.watch.end();
          }
        }
      } finally {
        guard.close();
        messages.stop();
      }
      const stalled = guard.stalled;
      if (!stalled || this.#stopped) return;
      this.#o.onStall?.(stalled);
      // Read on from the message after the last one delivered: nothing is skipped or delivered twice.
      for (let attempt = 1; ; attempt++) {
        if (this.#stopped) return;
        try {
          this.#messages = await consume(this.#o, this.#filter, this.#next);
          break;
        } catch (err) {
          if (attempt >= WATCH_REOPEN_ATTEMPTS) throw err;
          await new Promise((r) => setTimeout(r, WATCH_REOPEN_MS));
        }
      }
    }
  }
}

/**
 * The sequence of the first message of `filter` stored at or after `time`, or the one after `lastSeq` (the
 * stream's last when the watch opened) when there is none: from then on every message is later. The watch itself
 * then starts at a sequence, as every other start, so a stall's new consumer reads on from where it was.
 */
async function seqAt(o: EventWatchOptions, filter: string, time: Date, lastSeq: number): Promise<number> {
  try {
    const probe = await o.js.consumers.get(STREAM_EVENTS, { filter_subjects: filter, deliver_policy: DeliverPolicy.StartTime, opt_start_time: time.toISOString(), headers_only: true });
    try {
      const m = await probe.next({ expires: 1_000 });
      return m !== null ? m.seq : lastSeq + 1;
    } finally {
      await probe.delete().catch(() => undefined);
    }
  } catch (err) {
    throw streamError(err);
  }
}

/** An ordered consumer of `filter` in GAMMARAY_EVENTS from `startSeq`. Throws ReplicaError (see EventWatch.open). */
async function consume(o: EventWatchOptions, filter: string, startSeq: number): Promise<ConsumerMessages> {
  try {
    const consumer = await o.js.consumers.get(STREAM_EVENTS, { filter_subjects: filter, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq });
    return await consumer.consume({ max_messages: 256 });
  } catch (err) {
    throw streamError(err);
  }
}

function streamError(err: unknown): ReplicaError {
  const msg = (err as Error)?.message ?? String(err);
  if (/stream not found/i.test(msg)) {
    return new ReplicaError(ReplicaErrorCode.NotReady, `stream ${STREAM_EVENTS} does not exist yet: no gammaray inferencer has run against this NATS; start one`, { cause: err });
  }
  return new ReplicaError(ReplicaErrorCode.Unavailable, `NATS did not answer for stream ${STREAM_EVENTS}: ${msg}`, { cause: err });
}
