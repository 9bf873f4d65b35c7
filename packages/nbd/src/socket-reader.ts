import { Socket } from 'node:net';
import { NbdProtocolError, NbdProtocolErrorKind } from './errors.js';
import { READ_HIGH_WATER } from './limits.js';

/**
 * Sizes of the recycled buffers socket reads land in (pooled mode): a connection starts with small ones (an idle
 * or hostile connection holds 16 KiB, not a quarter MiB) and doubles them, up to the largest, each time a read
 * fills all the room it was given.
 */
const FIRST_SLAB = 16 << 10;
const MAX_SLAB = 256 << 10;
/** Payloads at least this large are read by the kernel straight into their destination (pooled mode). */
const DIRECT_MIN = 64 << 10;
/** Free slabs kept for reuse. */
const MAX_FREE_SLABS = 4;
/** Pooled mode: sizes of the arenas small takes are copied into (never reused: the GC frees an arena with its last view); they grow like the slabs. */
const FIRST_ARENA = 16 << 10;
const MAX_ARENA = 256 << 10;
/** Largest take copied into an arena. */
const ARENA_MAX = 64 << 10;

/** A recycled read buffer: bytes [0, used) were handed to reads; `refs` of its chunks are not consumed yet. */
class Slab {
  readonly buf: Buffer;
  used = 0;
  refs = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafeSlow(size);
  }
}

/** What `net.Socket`'s `onread` option takes: reads land in the buffers `buffer()` hands out. */
export interface OnRead {
  buffer: () => Uint8Array;
  callback: (nread: number, buf: Uint8Array) => boolean | void;
}

/**
 * Socket bytes held as a list of received chunks. `take(n)` returns a zero-copy view when the bytes lie in one
 * chunk and assembles them with one copy otherwise, so a large WRITE payload is copied at most once.
 * Reading pauses once more than max(need, READ_HIGH_WATER) bytes are buffered, so memory per connection is
 * bounded by the largest request the parser will wait for.
 *
 * Pooled mode (`new SocketReader()`, then the socket made with {@link SocketReader.onread} and {@link attach}ed):
 * the kernel reads into recycled slabs instead of a new 64 KiB ArrayBuffer per read, and a large payload read
 * with an `alloc` buffer is read straight into that buffer once its first bytes are in. Chunks are then reused,
 * so `take` always copies (headers and small payloads: a few bytes to a few KiB). A sequential writer's 1 MiB
 * writes then cost no garbage and no copy in Node (the per-read ArrayBuffers made V8 run a full collection about
 * every 20 MiB).
 */
export class SocketReader {
  private readonly chunks: Buffer[] = [];
  private head = 0;
  private buffered = 0;
  private need = 0;
  private waiter: { n: number; alloc: Alloc | undefined; resolve: (b: Buffer) => void; reject: (e: unknown) => void } | undefined;
  private failure: NbdProtocolError | undefined;
  private paused = false;
  private socket: Socket | undefined;
  /** Pooled mode: the slab reads currently go to, free slabs, and the slab of each chunk (parallel to `chunks`). */
  private readonly pooled: boolean;
  private current: Slab | undefined;
  private readonly free: Slab[] = [];
  private readonly owners: (Slab | undefined)[] = [];
  /** Pooled mode: the payload being read straight into its destination, `filled` bytes of it so far. */
  private direct: { target: Buffer; filled: number } | undefined;
  /** Pooled mode: where small takes are copied (one allocation per arena instead of one per take). */
  private arena: Buffer | undefined;
  private arenaUsed = 0;
  private arenaSize = FIRST_ARENA;
  /** Pooled mode: size of the next slab made, and the room the last read was given. */
  private slabSize = FIRST_SLAB;
  private offered = 0;
  /** The `onread` option for the socket this reader reads (pooled mode). */
  readonly onread: OnRead;

  /** With a socket: reads its 'data' events. Without: pooled mode (see the class comment). */
  constructor(socket?: Socket) {
    this.pooled = socket === undefined;
    this.onread = {
      buffer: () => this.nextBuffer(),
      callback: (nread, buf) => {
        this.received(nread, buf);
      },
    };
    if (socket) {
      this.socket = socket;
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
    }
  }

  /** Pooled mode: the socket made with {@link onread} (for pausing and resuming it). */
  attach(socket: Socket): void {
    this.socket = socket;
    if (this.paused) socket.pause();
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
      if (this.pooled && alloc && n >= DIRECT_MIN) this.goDirect();
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
    this.owners.length = 0;
    this.buffered = 0;
    this.head = 0;
    this.direct = undefined;
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

  private onData(chunk: Buffer, owner?: Slab): void {
    if (this.failure) return;
    this.chunks.push(chunk);
    this.owners.push(owner);
    if (owner) owner.refs++;
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
      this.socket?.pause();
    }
  }

  private resume(): void {
    if (this.paused) {
      this.paused = false;
      this.socket?.resume();
    }
  }

  /** Pooled mode: where the kernel puts the next read (called after each read, before the parser runs). */
  private nextBuffer(): Uint8Array {
    const d = this.direct;
    if (d) return d.target.subarray(d.filled);
    let slab = this.current;
    if (slab && slab.refs === 0) slab.used = 0;
    // A read gets the rest of the current slab while a quarter of it is left; a slab smaller than the size
    // reads have grown to is not reused.
    if (!slab || slab.buf.length - slab.used < slab.buf.length >>> 2 || (slab.used === 0 && slab.buf.length < this.slabSize)) {
      slab = this.free.pop();
      while (slab && slab.buf.length < this.slabSize) slab = this.free.pop();
      slab ??= new Slab(this.slabSize);
      slab.used = 0;
      this.current = slab;
    }
    this.offered = slab.buf.length - slab.used;
    return slab.buf.subarray(slab.used);
  }

  /** Pooled mode: `nread` bytes arrived in `buf`, the last buffer {@link nextBuffer} handed out. */
  private received(nread: number, buf: Uint8Array): void {
    if (this.failure) return;
    const d = this.direct;
    if (d && buf.buffer === d.target.buffer) {
      d.filled += nread;
      this.finishDirect();
      return;
    }
    const slab = this.current;
    if (!slab || buf.buffer !== slab.buf.buffer) return; // ok: cannot happen; never hand out bytes we do not own
    const chunk = slab.buf.subarray(slab.used, slab.used + nread);
    slab.used += nread;
    if (nread === this.offered && this.slabSize < MAX_SLAB) this.slabSize *= 2; // the socket had more: read more at once
    if (d) {
      // Read into the slab chosen before the payload's destination was known: copy its share over.
      const k = Math.min(nread, d.target.length - d.filled);
      chunk.copy(d.target, d.filled, 0, k);
      d.filled += k;
      if (k < nread) {
        slab.refs++; // held by the remainder pushed below
        this.chunks.push(chunk.subarray(k));
        this.owners.push(slab);
        this.buffered += nread - k;
      }
      this.finishDirect();
      return;
    }
    this.onData(chunk, slab);
  }

  /** Pooled mode: the waiting payload is read into its `alloc` buffer from here on (buffered bytes first). */
  private goDirect(): void {
    const w = this.waiter;
    if (!w?.alloc) return;
    const given = w.alloc();
    if (!given || given.length !== w.n) return;
    const target = Buffer.from(given.buffer, given.byteOffset, w.n);
    let filled = 0;
    while (this.buffered > 0) {
      const c = this.chunks[0]!; // ok: buffered > 0
      const k = c.length - this.head;
      c.copy(target, filled, this.head, this.head + k);
      filled += k;
      this.consume(k);
    }
    this.direct = { target, filled };
  }

  private finishDirect(): void {
    const d = this.direct;
    if (!d || d.filled < d.target.length) return;
    this.direct = undefined;
    const w = this.waiter;
    this.waiter = undefined;
    this.need = 0;
    w?.resolve(d.target);
    if (this.buffered >= READ_HIGH_WATER) this.pause();
  }

  /** `n` buffered bytes: a view when they lie in one chunk, else copied into `alloc()`'s buffer or a new one. */
  private take(n: number, alloc?: Alloc): Buffer {
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first !== undefined && first.length - this.head >= n && !this.pooled) {
      const out = first.subarray(this.head, this.head + n);
      this.consume(n);
      return out;
    }
    const given = alloc?.();
    const out = given && given.length === n ? Buffer.from(given.buffer, given.byteOffset, n) : this.pooled && n <= ARENA_MAX ? this.fromArena(n) : Buffer.allocUnsafe(n);
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

  /** `n` bytes of the current arena (8-byte aligned), starting a new arena when it is full. */
  private fromArena(n: number): Buffer {
    let a = this.arena;
    if (!a || a.length - this.arenaUsed < n) {
      if (a && this.arenaSize < MAX_ARENA) this.arenaSize *= 2;
      a = this.arena = Buffer.allocUnsafeSlow(Math.max(this.arenaSize, n));
      this.arenaUsed = 0;
    }
    const out = a.subarray(this.arenaUsed, this.arenaUsed + n);
    this.arenaUsed = (this.arenaUsed + n + 7) & ~7;
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
      const owner = this.owners.shift();
      this.head = 0;
      if (owner && --owner.refs === 0 && owner !== this.current && this.free.length < MAX_FREE_SLABS) this.free.push(owner);
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

/**
 * The accepted connection as a socket whose reads land in a pooled {@link SocketReader}'s recycled buffers
 * (`onread`), instead of a new ArrayBuffer per read. net.Server has no `onread` option, so the accepted (still
 * paused) socket's handle is moved to a new Socket made with one, and the first Socket is destroyed without it
 * (which only releases its server slot). Falls back to the accepted socket and a reader of its 'data' events if
 * Node ever stops exposing the handle.
 */
export function adoptSocket(accepted: Socket): { socket: Socket; reader: SocketReader } {
  const raw = accepted as unknown as { _handle: unknown };
  const handle = raw._handle;
  if (!handle || typeof handle !== 'object' || !('readStart' in handle) || !('useUserBuffer' in handle)) {
    const reader = new SocketReader(accepted);
    accepted.resume();
    return { socket: accepted, reader };
  }
  const reader = new SocketReader();
  raw._handle = null;
  accepted.destroy();
  // `handle` and `onread` are what net.connect itself passes to this constructor; the types only list `fd`.
  const socket = new Socket({ handle, allowHalfOpen: true, readable: true, writable: true, onread: reader.onread } as ConstructorParameters<typeof Socket>[0]);
  reader.attach(socket);
  return { socket, reader };
}
