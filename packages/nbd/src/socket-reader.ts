import type { Socket } from 'node:net';
import { NbdProtocolError, NbdProtocolErrorKind } from './errors.js';
import { READ_HIGH_WATER } from './limits.js';

/**
 * Socket bytes held as a list of received chunks. `take(n)` returns a zero-copy view when the bytes lie in one
 * chunk and assembles them with one copy otherwise, so a large WRITE payload is copied at most once.
 * Reading pauses once more than max(need, READ_HIGH_WATER) bytes are buffered, so memory per connection is
 * bounded by the largest request the parser will wait for.
 */
export class SocketReader {
  private readonly chunks: Buffer[] = [];
  private head = 0;
  private buffered = 0;
  private need = 0;
  private waiter: { n: number; alloc: Alloc | undefined; resolve: (b: Buffer) => void; reject: (e: unknown) => void } | undefined;
  private failure: NbdProtocolError | undefined;
  private paused = false;

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  /** Bytes received and not yet consumed. */
  get length(): number {
    return this.buffered;
  }

  /**
   * Resolve with exactly `n` bytes; reject once the reader has failed. One outstanding call at a time. `alloc`
   * supplies the buffer when the bytes span chunks (see take).
   */
  read(n: number, alloc?: Alloc): Promise<Buffer> {
    if (this.buffered >= n) return Promise.resolve(this.take(n, alloc));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<Buffer>((resolve, reject) => {
      this.waiter = { n, alloc, resolve, reject };
      this.need = n;
      this.resume();
    });
  }

  /** Exactly `n` bytes if that many are buffered now (a zero-copy view when they lie in one chunk), else undefined. */
  tryTake(n: number, alloc?: Alloc): Buffer | undefined {
    return this.buffered >= n ? this.take(n, alloc) : undefined;
  }

  /** Discard `n` bytes as they arrive without holding more than one chunk of them. */
  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0) {
        await this.read(1);
        left -= 1;
        continue;
      }
      const k = Math.min(left, this.buffered);
      this.discard(k);
      left -= k;
    }
  }

  /** Stop delivering: every current and future read rejects with `err`. Buffered bytes are released. */
  fail(err: NbdProtocolError): void {
    if (this.failure) return;
    this.failure = err;
    this.chunks.length = 0;
    this.buffered = 0;
    this.head = 0;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }

  /** The peer sent FIN: bytes already buffered can still be read, any read needing more rejects with `err`. */
  end(err: NbdProtocolError): void {
    if (this.failure) return;
    this.failure = err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(err);
  }

  /** Whether fail() or end() was called. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  private onData(chunk: Buffer): void {
    if (this.failure) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const w = this.waiter;
    if (w && this.buffered >= w.n) {
      this.waiter = undefined;
      this.need = 0;
      w.resolve(this.take(w.n, w.alloc));
    }
    if (this.buffered >= Math.max(this.need, READ_HIGH_WATER)) this.pause();
  }

  private pause(): void {
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private resume(): void {
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** `n` buffered bytes: a view when they lie in one chunk, else copied into `alloc()`'s buffer or a new one. */
  private take(n: number, alloc?: Alloc): Buffer {
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first !== undefined && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.consume(n);
      return out;
    }
    const given = alloc?.();
    const out = given && given.length === n ? Buffer.from(given.buffer, given.byteOffset, n) : Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!; // ok: buffered >= n guarantees enough chunks
      const k = Math.min(n - filled, c.length - this.head);
      c.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.consume(k);
    }
    return out;
  }

  private discard(n: number): void {
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!; // ok: callers never discard more than buffered
      const k = Math.min(left, c.length - this.head);
      this.consume(k);
      left -= k;
    }
  }

  /** Advance past `k` bytes that lie within the first chunk. */
  private consume(k: number): void {
    this.head += k;
    this.buffered -= k;
    if (this.head === this.chunks[0]?.length) {
      this.chunks.shift();
      this.head = 0;
    }
    if (this.buffered < READ_HIGH_WATER && !this.waiter) this.resume();
  }
}

/** Supplies the buffer a multi-chunk read is assembled in (undefined: allocate one). */
export type Alloc = () => Uint8Array | undefined;

/** The error a reader fails with when its socket ends. */
export function connectionClosed(cause?: unknown): NbdProtocolError {
  return new NbdProtocolError(NbdProtocolErrorKind.ConnectionClosed, 'connection closed', { cause });
}
