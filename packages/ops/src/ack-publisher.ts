import { createInbox, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import type { NatsConnectionImpl } from '@nats-io/nats-core/internal';

/** Where JetStream stored a published message. */
export interface PublishAck {
  readonly seq: number;
  readonly duplicate: boolean;
}

/** Options of one {@link AckPublisher.publish} call. */
export interface AckPublishOptions {
  /** Nats-Msg-Id: JetStream de-duplicates a retry carrying the same id. Printable ASCII. */
  readonly msgID: string;
  /** ms to wait for the ack before the promise rejects. */
  readonly timeout: number;
  /**
   * More header lines, each `Name: value\r\n` (see {@link headerLine}), sent after Nats-Msg-Id.
   */
  readonly headers?: string;
  /**
   * The caller lends the publisher the PUBLISH_HEADROOM bytes of `data.buffer` right before `data` and the 2 right
   * after it until the promise settles, and promises `data` is still unchanged then: the message is framed around
   * the payload in place and handed to the socket without a copy. Give it only for a buffer's first attempt (an
   * earlier attempt may still sit in the connection's outbound queue, framed in those very bytes).
   */
  readonly headroom?: boolean;
}

/** Bytes a payload buffer keeps free before the payload for {@link AckPublishOptions.headroom}; 2 more after it. */
export const PUBLISH_HEADROOM = 512;

/** Options of an {@link AckPublisher}. */
export interface AckPublisherOptions {
  /**
   * Frames of at least this many bytes go to the socket at once and on their own; smaller ones wait for the end
   * of the turn of the event loop and leave together in one write. nats.js sends what is queued as one buffer,
   * so two large frames queued in one turn would be copied into a new zero-filled one. Default 64 KiB; 0 sends
   * every frame at once (the capture: its records are acknowledged to the VM only after their ack).
   */
  readonly sendAloneBytes?: number;
}

/** Default {@link AckPublisherOptions.sendAloneBytes}. */
const SEND_ALONE_BYTES = 64 * 1024;

const decoder = new TextDecoder();
const CRLF = 0x0d0a;
const CRLF_BYTES = Uint8Array.of(0x0d, 0x0a);
const PRINTABLE = /^[!-~]+$/;
/** A header value: printable ASCII and spaces, not starting or ending with a space. */
const HEADER_VALUE = /^(?:[!-~](?:[ -~]*[!-~])?)?$/;

/**
 * One header line for {@link AckPublishOptions.headers}. Throws when the name is not a header token or the value
 * holds anything but printable ASCII and inner spaces (a CR or LF would end the header block).
 */
export function headerLine(name: string, value: string): string {
  if (!/^[!-9;-~]+$/.test(name)) throw new Error(`header name ${JSON.stringify(name)} is not a token`);
  if (!HEADER_VALUE.test(value)) throw new Error(`header ${name} value ${JSON.stringify(value)} is not printable ASCII`);
  return `${name}: ${value}\r\n`;
}

interface Pending {
  readonly resolve: (a: PublishAck) => void;
  readonly reject: (e: Error) => void;
  readonly msgID: string;
  readonly deadline: number;
}

/**
 * JetStream publishing without a request per message: each message is a core NATS publish whose reply subject
 * is a token under one inbox subscription, where JetStream's PubAck arrives. The same guarantees as
 * `js.publish` (Nats-Msg-Id de-duplication, an ack or an error per message, a timeout), at a fraction of the
 * CPU: nats.js' request path builds a request, a timer and Error objects with stack captures per message, which
 * at thousands of messages a second cost more than the publish itself (the inferencer's events went from ~7,400
 * to ~30,000 a second here).
 *
 * The message is framed here (`HPUB subject reply hlen tlen`, the NATS/1.0 header block with Nats-Msg-Id and
 * the caller's lines, the payload, CRLF: what `nc.publish` sends with `headers` and `reply`) and queued on the
 * connection's outbound buffer as one piece, so nats.js neither builds a header object, strings and buffers per
 * message nor copies the payload into a zero-filled frame of its own; with `headroom` the frame is the payload's
 * own buffer. Acks are timed out by one timer for all pending publishes, not one each. Messages published in one
 * turn of the event loop leave in one socket write.
 */
export class AckPublisher {
  private readonly prefix = createInbox();
  private readonly sub: Subscription;
  private readonly pending = new Map<number, Pending>();
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  /** When `timer` fires (performance.now() time). */
  private timerAt = Infinity;
  private readonly sweep = (): void => this.expire();
  private closed = false;
  private readonly sendAloneBytes: number;

  constructor(
    private readonly nc: NatsConnection,
    opts: AckPublisherOptions = {},
  ) {
    this.sendAloneBytes = opts.sendAloneBytes ?? SEND_ALONE_BYTES;
    this.sub = nc.subscribe(`${this.prefix}.*`, { callback: (err, msg) => this.onAck(err, msg) });
  }

  /** Publishes and resolves with JetStream's ack; rejects on an error ack, no responders, the timeout or close(). */
  publish(subject: string, data: Uint8Array, opts: AckPublishOptions): Promise<PublishAck> {
    return this.publishParts(subject, [data], opts);
  }

  /**
   * Publishes the concatenation of `parts` as one message, as {@link publish}. The parts go to the socket as they
   * are, one after the other (no copy into one frame: a 1 MiB record made of a receive buffer and its BSON
   * framing is not copied in this process). Each part must stay unchanged until the promise settles; `headroom`
   * lends the bytes before the first part and the 2 after the last one.
   */
  publishParts(subject: string, parts: readonly Uint8Array[], opts: AckPublishOptions): Promise<PublishAck> {
    if (this.closed) return Promise.reject(new Error(`publisher closed before ${opts.msgID} was sent`));
    if (parts.length === 0) return Promise.reject(new Error(`message ${opts.msgID} has no parts`));
    const id = ++this.next;
    return new Promise<PublishAck>((resolve, reject) => {
      try {
        this.send(subject, `${this.prefix}.${id}`, parts, opts);
      } catch (err) {
        reject(err as Error);
        return;
      }
      const deadline = performance.now() + opts.timeout;
      this.pending.set(id, { resolve, reject, msgID: opts.msgID, deadline });
      if (deadline < this.timerAt) this.arm(deadline);
    });
  }

  /** Messages published and not yet acknowledged, refused or timed out. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Frames and queues one message; throws as `nc.publish` would (closed or draining connection, too large). */
  private send(subject: string, reply: string, parts: readonly Uint8Array[], opts: AckPublishOptions): void {
    const nc = this.nc as NatsConnectionImpl; // ok: the connections of @nats-io/transport-node are this class
    if (nc.isClosed()) throw new Error('NATS connection closed');
    if (nc.isDraining() || nc.protocol.noMorePublishing) throw new Error('NATS connection draining');
    if (nc.info && !nc.info.headers) throw new Error('this NATS server does not support headers');
    if (!PRINTABLE.test(opts.msgID)) throw new Error(`msg id ${JSON.stringify(opts.msgID)} is not printable ASCII`);
    if (!PRINTABLE.test(subject)) throw new Error(`subject ${JSON.stringify(subject)} is not printable ASCII`);
    const hdr = `NATS/1.0\r\nNats-Msg-Id: ${opts.msgID}\r\n${opts.headers ?? ''}\r\n`;
    let length = 0;
    for (const p of parts) length += p.length;
    const total = hdr.length + length;
    const max = nc.info?.max_payload;
    if (max !== undefined && total > max) throw new Error(`message of ${total} bytes (${length} of payload, the rest headers) exceeds max_payload ${max}`);
    const head = `HPUB ${subject} ${reply} ${hdr.length} ${total}\r\n${hdr}`;
    const first = parts[0]!; // ok: publishParts refuses no parts
    const last = parts[parts.length - 1]!; // ok: as above
    const lent = opts.headroom === true && head.length <= PUBLISH_HEADROOM;
    let frames: Uint8Array[];
    if (parts.length === 1) {
      let frame: Buffer;
      if (lent) {
        // The caller lent PUBLISH_HEADROOM bytes before data and 2 after it (AckPublishOptions.headroom).
        frame = Buffer.from(first.buffer, first.byteOffset - head.length, head.length + first.length + 2);
        frame.write(head, 0, 'latin1');
        frame.writeUInt16BE(CRLF, head.length + first.length);
      } else {
        frame = Buffer.allocUnsafe(head.length + first.length + 2);
        frame.write(head, 0, 'latin1');
        frame.set(first, head.length);
        frame.writeUInt16BE(CRLF, head.length + first.length);
      }
      frames = [frame];
    } else if (lent) {
      const f = Buffer.from(first.buffer, first.byteOffset - head.length, head.length + first.length);
      f.write(head, 0, 'latin1');
      const l = Buffer.from(last.buffer, last.byteOffset, last.length + 2);
      l.writeUInt16BE(CRLF, last.length);
      frames = [f, ...parts.slice(1, -1), l];
    } else {
      frames = [Buffer.from(head, 'latin1'), ...parts, CRLF_BYTES];
    }
    nc.protocol.outMsgs++;
    nc.protocol.outBytes += total;
    // ok: these are plain members of nats.js 3's ProtocolHandler, private or absent in its typings
    const protocol = nc.protocol as unknown as { sendCommand(b: Uint8Array, ...more: Uint8Array[]): void; flushPending(): void; connected: boolean; infoReceived: boolean; transport: { send(b: Uint8Array): void } };
    if (frames.length === 1 && frames[0]!.length < this.sendAloneBytes) {
      protocol.sendCommand(frames[0]!); // ok: one frame
      return;
    }
    protocol.flushPending(); // what smaller frames queued this turn, packed without this one
    if (frames.length > 1 && protocol.connected && protocol.infoReceived) {
      // Straight to the socket, in order, after what was queued: nats.js would pack the pieces into one copy.
      for (const f of frames) protocol.transport.send(f);
      return;
    }
    // Disconnected: nats.js keeps the frame (packed) and sends it after reconnecting, as it does any publish.
    protocol.sendCommand(frames[0]!, ...frames.slice(1)); // ok: at least one frame
    protocol.flushPending(); // connected: this frame alone, sent as it is, not copied
  }

  private onAck(err: Error | null, msg: Msg): void {
    if (err) return; // the subscription failed: every pending publish times out and is retried
    const id = Number(msg.subject.slice(this.prefix.length + 1));
    const p = this.pending.get(id);
    if (!p) return; // late ack of a publish that already timed out (its retry carries the same msg id)
    this.pending.delete(id);
    if (msg.headers?.hasError || msg.data.length === 0) {
      const why = msg.headers?.hasError ? `${msg.headers.code} ${msg.headers.description}` : 'no responders (is the stream there?)';
      p.reject(new Error(`JetStream did not store ${p.msgID}: ${why}`));
      return;
    }
    let body: { seq?: number; duplicate?: boolean; error?: { code?: number; description?: string } };
    try {
      body = JSON.parse(decoder.decode(msg.data)) as typeof body;
    } catch {
      p.reject(new Error(`JetStream sent an unreadable ack for ${p.msgID}`));
      return;
    }
    if (body.error || typeof body.seq !== 'number') {
      p.reject(new Error(`JetStream refused ${p.msgID}: ${body.error?.description ?? 'no sequence in the ack'} (${body.error?.code ?? '?'})`));
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
    if (this.closed) return;
    this.closed = true;
    this.sub.unsubscribe();
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    for (const p of this.pending.values()) p.reject(new Error(`publisher closed before ${p.msgID} was acknowledged`));
    this.pending.clear();
  }
}
