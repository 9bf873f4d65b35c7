import { connect } from 'node:net';
import type { Socket } from 'node:net';

/** Option reply as received. */
export interface OptReply {
  option: number;
  type: number;
  data: Buffer;
}

/** Simple reply as received. */
export interface SimpleReply {
  error: number;
  cookie: bigint;
  data?: Buffer;
}

export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const ERR = (n: number): number => (0x8000_0000 | n) >>> 0;

/** A byte-exact NBD client for tests that need to misbehave. */
export class RawClient {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed = false;
  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', noDelay: true }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`closed while waiting for ${n} bytes`);
      await new Promise<void>((r) => (this.waiter = r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves when the server closes the connection. */
  async waitClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => (this.waiter = r));
  }

  write(b: Uint8Array): void {
    this.socket.write(b);
  }

  /** Read the greeting and send client flags FIXED_NEWSTYLE | NO_ZEROES. */
  async greet(): Promise<number> {
    const g = await this.read(18);
    if (g.toString('latin1', 0, 8) !== 'NBDMAGIC' || g.toString('latin1', 8, 16) !== 'IHAVEOPT') throw new Error('bad greeting');
    const f = Buffer.alloc(4);
    f.writeUInt32BE(3);
    this.write(f);
    return g.readUInt16BE(16);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), declaredLength = data.length): void {
    const h = Buffer.alloc(16);
    h.write('IHAVEOPT', 0, 'latin1');
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(declaredLength, 12);
    this.write(Buffer.concat([h, data]));
  }

  async readOptReply(): Promise<OptReply> {
    const h = await this.read(20);
    if (h.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: Buffer.from(await this.read(len)) };
  }

  /** NBD_OPT_GO (or INFO with option 6): returns all replies up to and including the final one. */
  async go(name: string, option = 7, infos: number[] = [3]): Promise<OptReply[]> {
    const n = Buffer.from(name, 'latin1');
    const d = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
    d.writeUInt32BE(n.length, 0);
    n.copy(d, 4);
    d.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((t, i) => d.writeUInt16BE(t, 6 + n.length + 2 * i));
    this.sendOption(option, d);
    const out: OptReply[] = [];
    for (;;) {
      const r = await this.readOptReply();
      out.push(r);
      if (r.type !== REP_INFO) return out;
    }
  }

  /** Handshake into transmission on `name`; throws if GO fails. */
  static async open(port: number, name: string): Promise<RawClient> {
    const c = await RawClient.connect(port);
    await c.greet();
    const r = await c.go(name);
    if (r.at(-1)?.type !== REP_ACK) throw new Error(`GO failed: 0x${r.at(-1)?.type.toString(16)}`);
    return c;
  }

  request(type: number, cookie: bigint, offset: bigint | number, length: number, flags = 0, payload?: Uint8Array): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    this.write(payload ? Buffer.concat([h, payload]) : h);
  }

  /** Read one simple reply; `readLength` is how many data bytes follow a successful reply (READ). */
  async reply(readLength = 0): Promise<SimpleReply> {
    const h = await this.read(16);
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error('bad reply magic');
    const error = h.readUInt32BE(4);
    const cookie = h.readBigUInt64BE(8);
    if (error === 0 && readLength > 0) return { error, cookie, data: Buffer.from(await this.read(readLength)) };
    return { error, cookie };
  }

  async readAt(offset: number, length: number, cookie = 1n): Promise<SimpleReply> {
    this.request(0, cookie, offset, length);
    return this.reply(length);
  }

  async writeAt(offset: number, data: Uint8Array, cookie = 2n, flags = 0): Promise<SimpleReply> {
    this.request(1, cookie, offset, data.length, flags, data);
    return this.reply();
  }

  disconnect(): void {
    this.request(2, 0n, 0, 0);
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
