import { createInbox, headers as newHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/nats-core';

/** Where JetStream stored a published message. */
export interface PublishAck {
  readonly seq: number;
  readonly duplicate: boolean;
}

/** Options of {@link AckPublisher}. */
export interface AckPublisherOptions {
  /** How long a publish waits for its ack before it is rejected (one value per publisher). Default 5 s. */
  readonly timeoutMs?: number;
}

/** How often deadlines are checked: a publish is rejected at most this late after its timeout. */
const SWEEP_MS = 100;
const decoder = new TextDecoder();

interface Pending {
  readonly resolve: (a: PublishAck) => void;
  readonly reject: (e: Error) => void;
  readonly msgId: string;
  readonly deadline: number;
}

/**
 * JetStream publishing without a request per message: each message is a core NATS publish whose reply subject
 * is a token under one inbox subscription, where JetStream's PubAck arrives. The same guarantees as
 * `js.publish` (`Nats-Msg-Id` de-duplication, an ack or an error per message, a timeout), at a fraction of the
 * CPU: nats.js' request path builds a request object, a timer and Error objects with stack captures per
 * message, which at thousands of messages a second cost more than the publish itself (the inferencer's events:
 * ~7,400/s through `js.publish` here). Deadlines are kept by one sweep timer, not a timer per message.
 */
export class AckPublisher {
  readonly #nc: NatsConnection;
  readonly #prefix = createInbox();
  readonly #sub: Subscription;
  readonly #timeoutMs: number;
  /** In publish order, so deadlines (one timeout for all) are in order too. */
  readonly #pending = new Map<number, Pending>();
  #sweep: NodeJS.Timeout | undefined;
  #next = 0;
  #closed = false;

  constructor(nc: NatsConnection, opts: AckPublisherOptions = {}) {
    this.#nc = nc;
    this.#timeoutMs = opts.timeoutMs ?? 5_000;
    this.#sub = nc.subscribe(`${this.#prefix}.*`, { callback: (err, msg) => this.#onAck(err, msg) });
  }

  /** Publishes with `Nats-Msg-Id: msgId` (plus `headers`, which it sets the id on) and resolves with the ack. */
  publish(subject: string, data: Uint8Array, msgId: string, headers?: MsgHdrs): Promise<PublishAck> {
    if (this.#closed) return Promise.reject(new Error('the publisher is closed'));
    const id = ++this.#next;
    return new Promise<PublishAck>((resolve, reject) => {
      const h = headers ?? newHeaders();
      h.set('Nats-Msg-Id', msgId);
      try {
        this.#nc.publish(subject, data, { reply: `${this.#prefix}.${id}`, headers: h });
      } catch (err) {
        reject(err as Error);
        return;
      }
      this.#pending.set(id, { resolve, reject, msgId, deadline: performance.now() + this.#timeoutMs });
      this.#sweep ??= setInterval(() => this.#expire(), SWEEP_MS).unref();
    });
  }

  /** Messages published and not yet acknowledged or timed out. */
  get pending(): number {
    return this.#pending.size;
  }

  #expire(): void {
    const now = performance.now();
    for (const [id, p] of this.#pending) {
      if (p.deadline > now) break; // ok: in publish order with one timeout, so the rest are later
      this.#pending.delete(id);
      p.reject(new Error(`no JetStream ack for ${p.msgId} within ${this.#timeoutMs} ms`));
    }
    if (this.#pending.size === 0) {
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  #onAck(err: Error | null, msg: Msg): void {
    if (err) return; // the subscription failed: every pending publish times out and is retried
    const id = Number(msg.subject.slice(this.#prefix.length + 1));
    const p = this.#pending.get(id);
    if (!p) return; // late ack of a publish that already timed out (its retry carries the same msg id)
    this.#pending.delete(id);
    if (msg.headers?.hasError || msg.data.length === 0) {
      const why = msg.headers?.hasError ? `${msg.headers.code} ${msg.headers.description}` : 'no responders (is the stream there?)';
      p.reject(new Error(`JetStream did not store ${p.msgId}: ${why}`));
      return;
    }
    let body: { seq?: number; duplicate?: boolean; error?: { code?: number; description?: string } };
    try {
      body = JSON.parse(decoder.decode(msg.data)) as typeof body;
    } catch {
      p.reject(new Error(`JetStream sent an unreadable ack for ${p.msgId}`));
      return;
    }
    if (body.error || typeof body.seq !== 'number') {
      p.reject(new Error(`JetStream refused ${p.msgId}: ${body.error?.description ?? 'no sequence in the ack'} (${body.error?.code ?? '?'})`));
      return;
    }
    p.resolve({ seq: body.seq, duplicate: body.duplicate === true });
  }

  /** Stops listening; publishes still waiting are rejected. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sub.unsubscribe();
    clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const p of this.#pending.values()) p.reject(new Error(`publisher closed before ${p.msgId} was acknowledged`));
    this.#pending.clear();
  }
}
