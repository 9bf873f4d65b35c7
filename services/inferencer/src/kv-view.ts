import { KvWatchInclude, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/nats-core';
import type { Logger } from 'pino';

/** The last entry seen for a key, and when (this process's monotonic clock) its revision last moved. */
export interface ObservedEntry {
  readonly key: string;
  readonly revision: number;
  readonly operation: 'PUT' | 'DEL' | 'PURGE';
  readonly value: Uint8Array;
  /** performance.now() when this revision was first seen here. */
  readonly seenAt: number;
}

/** How long start() waits for the watch's initial values when it cannot tell they are complete. */
const INITIAL_WAIT_MS = 2_000;

/**
 * A local mirror of a KV bucket kept by a watch, recording when each key's revision last moved **on this
 * process's monotonic clock**. Liveness is judged from that age ("the revision has not moved for a TTL"), never
 * from timestamps written by another host, so clock skew between machines cannot expire a live lease early.
 * A stall of this process (SIGSTOP, a long GC) would make every entry look old when it resumes; {@link
 * touchAll} re-arms the ages after one is detected.
 */
export class KvView {
  readonly #kv: KV;
  readonly #log: Logger;
  readonly #entries = new Map<string, ObservedEntry>();
  readonly #onChange: (e: ObservedEntry, previous: ObservedEntry | undefined) => void;
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #loop: Promise<void> | undefined;
  #stopped = false;

  /** `onChange` is called for every new revision the watch brings (with the entry it replaces). */
  constructor(kv: KV, log: Logger, onChange: (e: ObservedEntry, previous: ObservedEntry | undefined) => void = () => {}) {
    this.#kv = kv;
    this.#log = log;
    this.#onChange = onChange;
  }

  /** Starts the watch; resolves once the bucket's current values are in the mirror. */
  async start(): Promise<void> {
    const values = (await this.#kv.status()).values;
    const w = await this.#kv.watch({ include: KvWatchInclude.LastValue });
    this.#watch = w;
    let initialDone: () => void = () => {};
    const initial = new Promise<void>((r) => (initialDone = r));
    if (values === 0) initialDone();
    this.#loop = (async () => {
      for await (const e of w) {
        this.#apply(e);
        if (e.isUpdate || e.delta === 0) initialDone();
      }
      if (!this.#stopped) this.#log.error('a KV watch ended unexpectedly');
    })();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([initial, new Promise<void>((r) => (timer = setTimeout(r, INITIAL_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** Records an entry this process wrote itself (its put returned the revision) ahead of the watch. */
  note(key: string, revision: number, operation: ObservedEntry['operation'], value: Uint8Array): void {
    const have = this.#entries.get(key);
    if (have && have.revision >= revision) return;
    this.#entries.set(key, { key, revision, operation, value, seenAt: performance.now() });
  }

  #apply(e: KvWatchEntry): void {
    const have = this.#entries.get(e.key);
    if (have && have.revision >= e.revision) return;
    const o: ObservedEntry = { key: e.key, revision: e.revision, operation: e.operation, value: e.value, seenAt: performance.now() };
    this.#entries.set(e.key, o);
    this.#onChange(o, have);
  }

  get(key: string): ObservedEntry | undefined {
    return this.#entries.get(key);
  }

  entries(): IterableIterator<ObservedEntry> {
    return this.#entries.values();
  }

  /** How long (ms) the key's revision has not moved, as seen here; Infinity for a key never seen. */
  age(key: string, now = performance.now()): number {
    const e = this.#entries.get(key);
    return e ? now - e.seenAt : Infinity;
  }

  /** Treats every entry as just seen (after this process was stalled and could not watch). */
  touchAll(): void {
    const now = performance.now();
    for (const [k, e] of this.#entries) this.#entries.set(k, { ...e, seenAt: now });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#watch?.stop();
    await this.#loop;
  }
}
