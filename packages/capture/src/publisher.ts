import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import type { NatsConnectionImpl } from '@nats-io/nats-core/internal';

/** What a record publisher returns: where JetStream stored the message. */
export interface PublishAck {
  readonly seq: number;
  readonly duplicate: boolean;
}

/** Options of one {@link RecordPublisher.publish} call. */
export interface RecordPublishOptions {
  /** Nats-Msg-Id: JetStream de-duplicates a retry carrying the same id. */
  readonly msgID: string;
  /** ms to wait for the ack before the promise rejects. */
  readonly timeout: number;
  /**
   * The caller lends the publisher the PUBLISH_HEADROOM bytes of `data.buffer` right before `data` and the 2 right
   * after it until the promise settles, and promises `data` is still unchanged then: the message is framed around
   * the record in place and handed to the socket without a copy. Give it only for a buffer's first attempt (an
   * earlier attempt may still sit in the connection's outbound queue, framed in those very bytes).
   */
  readonly headroom?: boolean;
}

/** Publishes one record and resolves with JetStream's ack (a JetStreamClient fits this shape). */
export interface RecordPublisher {
  publish(subject: string, data: Uint8Array, opts: RecordPublishOptions): Promise<PublishAck>;
}

/** Bytes a record buffer keeps free before the record for {@link RecordPublishOptions.headroom}; 2 more after it. */
export const PUBLISH_HEADROOM = 512;

const decoder = new TextDecoder();
const CRLF = 0x0d0a;
const PRINTABLE = /^[!-~]+$/;

interface Pending {
  readonly resolve: (a: PublishAck) => void;
  readonly reject: (e: Error) => void;
  readonly msgID: string;
  readonly deadline: number;
}

/**
 * JetStream publishing without a request per message: each record is a core NATS publish whose reply subject
 * is a token under one inbox subscription, and JetStream's PubAck arrives there. Same guarantees as
 * `js.publish` (Nats-Msg-Id de-duplication, an ack or an error per message, a timeout), at a fraction of the
 * CPU: nats.js' request path builds several Error objects (stack captures) per request, which at thousands of
 * records a second cost more than the publish itself.
 *
 * The message is framed here (`HPUB subject reply hlen tlen`, the NATS/1.0 header block with Nats-Msg-Id, the
 * record, CRLF: what `nc.publish` sends with `headers` and `reply`) and queued on the connection's outbound
 * buffer as one piece, so nats.js neither builds a header object, strings and buffers per message nor copies the
 * record into a zero-filled frame of its own; with `headroom` the frame is the record's own buffer. Acks are timed
 * out by one timer for all pending publishes, not one each.
 */
export class AsyncAckPublisher implements RecordPublisher {
  private readonly prefix = createInbox();
  private readonly sub: Subscription;
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  /** When `timer` fires (performance.now() time). */
  private timerAt = Infinity;
  private readonly sweep = (): void => this.expire();

  constructor(private readonly nc: NatsConnection) {
    this.sub = nc.subscribe(`${this.prefix}.*`, { callback: (err, msg) => this.onAck(err, msg) });
  }

  publish(subject: string, data: Uint8Array, opts: RecordPublishOptions): Promise<PublishAck> {
    const id = ++this.next;
    return new Promise<PublishAck>((resolve, reject) => {
      try {
        this.send(subject, `${this.prefix}.${id}`, data, opts);
      } catch (err) {
        reject(err as Error);
        return;
      }
      const deadline = performance.now() + opts.timeout;
      this.pending.set(id, { resolve, reject, msgID: opts.msgID, deadline });
      if (deadline < this.timerAt) this.arm(deadline);
    });
  }

  /** Frames and queues one message; throws as `nc.publish` would (closed or draining connection, too large). */
  private send(subject: string, reply: string, data: Uint8Array, opts: RecordPublishOptions): void {
    const nc = this.nc as NatsConnectionImpl; // ok: the connections of @nats-io/transport-node are this class
    if (nc.isClosed()) throw new Error('NATS connection closed');
    if (nc.isDraining() || nc.protocol.noMorePublishing) throw new Error('NATS connection draining');
    if (nc.info && !nc.info.headers) throw new Error('this NATS server does not support headers');
    // Both go into the protocol line and header block as they are: no space, CR or LF may break the frame.
    if (!PRINTABLE.test(subject)) throw new Error(`subject ${JSON.stringify(subject)} is not printable ASCII without spaces`);
    if (!PRINTABLE.test(opts.msgID)) throw new Error(`msg id ${JSON.stringify(opts.msgID)} is not printable ASCII without spaces`);
    const hdr = `NATS/1.0\r\nNats-Msg-Id: ${opts.msgID}\r\n\r\n`;
    const total = hdr.length + data.length;
    const max = nc.info?.max_payload;
    if (max !== undefined && total > max) throw new Error(`record of ${data.length} bytes exceeds max_payload ${max}`);
    const head = `HPUB ${subject} ${reply} ${hdr.length} ${total}\r\n${hdr}`;
    let frame: Buffer;
    if (opts.headroom === true && head.length <= PUBLISH_HEADROOM) {
      // The caller lent PUBLISH_HEADROOM bytes before data and 2 after it (RecordPublishOptions.headroom).
      frame = Buffer.from(data.buffer, data.byteOffset - head.length, head.length + data.length + 2);
      frame.write(head, 0, 'latin1');
      frame.writeUInt16BE(CRLF, head.length + data.length);
    } else {
      frame = Buffer.allocUnsafe(head.length + data.length + 2);
      frame.write(head, 0, 'latin1');
      frame.set(data, head.length);
      frame.writeUInt16BE(CRLF, head.length + data.length);
    }
    nc.protocol.outMsgs++;
    nc.protocol.outBytes += total;
    nc.protocol.sendCommand(frame);
    // Sent now, on its own: left for nats.js' end-of-tick flush, two frames queued in one tick (a 1 MiB write
    // makes two records) would be packed into a new zero-filled buffer, megabytes copied and left to the GC.
    (nc.protocol as unknown as { flushPending(): void }).flushPending(); // ok: private in the typings, a plain method of nats.js 3
  }

  private onAck(err: Error | null, msg: Msg): void {
    if (err) return; // the subscription failed: every pending publish times out and is retried
    const id = Number(msg.subject.slice(this.prefix.length + 1));
    const p = this.pending.get(id);
    if (!p) return; // late ack of a publish that already timed out (its retry carries the same msg id)
    this.pending.delete(id);
    if (msg.headers?.hasError || msg.data.length === 0) {
      p.reject(new Error(`JetStream did not store the record: ${msg.headers?.code ?? ''} ${msg.headers?.description ?? 'no responders (is the stream there?)'}`));
      return;
    }
    let body: { seq?: number; duplicate?: boolean; error?: { code?: number; description?: string } };
    try {
      body = JSON.parse(decoder.decode(msg.data)) as typeof body;
    } catch {
      p.reject(new Error('JetStream sent an unreadable ack'));
      return;
    }
    if (body.error || typeof body.seq !== 'number') {
      p.reject(new Error(`JetStream refused the record: ${body.error?.description ?? 'no sequence in ack'} (${body.error?.code ?? '?'})`));
      return;
    }
    p.resolve({ seq: body.seq, duplicate: body.duplicate === true });
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.sweep, Math.max(0, at - performance.now()) + 1).unref();
  }

  /** Rejects the publishes whose ack is overdue and re-arms for the next deadline. */
  private expire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    for (const [id, p] of this.pending) {
      if (p.deadline > now) {
        next = Math.min(next, p.deadline);
        continue;
      }
      this.pending.delete(id);
      p.reject(new Error(`no JetStream ack for ${p.msgID} within the publish timeout`));
    }
    if (next < Infinity) this.arm(next);
  }

  /** Stops listening; publishes still waiting are rejected. */
  close(): void {
    this.sub.unsubscribe();
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    for (const p of this.pending.values()) p.reject(new Error('publisher closed'));
    this.pending.clear();
  }
}
