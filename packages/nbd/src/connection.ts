import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { NbdExport, NbdExportInfo, NbdExportProvider } from './backend.js';
import { NbdError, NbdExportBusyError } from './backend.js';
import { SocketReader, connectionClosed } from './socket-reader.js';
import { NbdProtocolError, NbdProtocolErrorKind } from './errors.js';
import {
  EXPORT_NAME_PATTERN,
  MAX_MIN_BLOCK_SIZE,
  MAX_OPTION_LENGTH,
  MAX_OPTION_SKIP,
  MAX_OPTIONS,
  MAX_REQUEST_LENGTH,
  WRITE_HIGH_WATER,
} from './limits.js';
import type { NbdLogger } from './logger.js';
import {
  ClientFlag,
  CmdFlag,
  EXPORT_NAME_PADDING,
  GREETING_SIZE,
  HandshakeFlag,
  NBD_IHAVEOPT,
  NBD_MAGIC,
  NBD_OPT_REPLY_MAGIC,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NbdCmd,
  NbdErrno,
  NbdInfo,
  NbdOpt,
  NbdRep,
  OPTION_HEADER_SIZE,
  OPTION_REPLY_HEADER_SIZE,
  REQUEST_SIZE,
  SIMPLE_REPLY_SIZE,
  TransmissionFlag,
} from './protocol.js';

/** Per-connection bounds, resolved from NbdServerOptions. */
export interface ConnectionLimits {
  handshakeTimeoutMs: number;
  maxInFlight: number;
  maxInFlightBytes: number;
}

/** TLS for every connection (the NBD protocol's FORCEDTLS mode): see NbdServerOptions.tls. */
export interface ConnectionTls {
  readonly secureContext: SecureContext;
  /** Ask for a client certificate and refuse the handshake without one the context's CA signed. */
  readonly requireClientCert: boolean;
}

/** Time a finished connection waits for its unsent replies before the socket is destroyed. */
const LINGER_MS = 5_000;
/** Reply headers are written into slabs of this size and sent as one buffer per batch (see simpleReply). */
const REPLY_SLAB = 16 * 1024;
const EMPTY = Buffer.alloc(0);
const KNOWN_ERRNOS: ReadonlySet<number> = new Set(Object.values(NbdErrno));

/** Outcome of trying to open an export during negotiation. */
type OpenResult = { ok: true; exp: NbdExport } | { ok: false; rep: NbdRep; message: string };

/**
 * One client socket from accept to close: fixed newstyle negotiation, then transmission. Never throws; every
 * failure ends in `done` resolving after in-flight backend calls settled, the export was closed once and the
 * socket closed.
 */
export class NbdConnection {
  /** Resolves when the connection is completely finished. */
  readonly done: Promise<void>;
  private reader: SocketReader;
  /** The socket replies go to: the accepted one, or the TLS socket over it after NBD_OPT_STARTTLS. */
  private socket: Socket;
  /** TLS is up (after NBD_OPT_STARTTLS): further STARTTLS is invalid, options are no longer refused. */
  private secured = false;
  /** Resolves `closed` (see the constructor) once the current socket has closed. */
  private onClosed!: () => void;
  /** Resolves finish()'s wait once inFlight drops to 0. */
  private idle: (() => void) | undefined;
  private opened: NbdExport | undefined;
  private noZeroes = false;
  private inFlight = 0;
  private inFlightBytes = 0;
  private wake: (() => void) | undefined;
  private corked = false;
  private socketClosed = false;
  /** Reply headers not yet sent: slab[slabStart, slabEnd). */
  private slab = Buffer.allocUnsafe(REPLY_SLAB);
  private slabStart = 0;
  private slabEnd = 0;
  private flushQueued = false;
  private readonly flushReplies = (): void => this.sendReplies();
  /** Set while a TLS handshake runs: ends it when the negotiation's time is up. */
  private tlsTimeout: (() => void) | undefined;

  constructor(
    socket: Socket,
    private readonly provider: NbdExportProvider,
    private readonly log: NbdLogger,
    private readonly limits: ConnectionLimits,
    private readonly peer: string,
    reader?: SocketReader,
    /** Required TLS (clients must send NBD_OPT_STARTTLS before anything else); none when undefined. */
    private readonly tls?: ConnectionTls,
  ) {
    this.socket = socket;
    this.reader = reader ?? new SocketReader(socket);
    const closed = new Promise<void>((resolve) => {
      this.onClosed = resolve;
    });
    this.watch(socket);
    this.done = Promise.all([this.run(), closed]).then(() => undefined);
  }

  /** Follows `socket`'s end, errors and drains (the accepted socket, then the TLS one). */
  private watch(socket: Socket): void {
    socket.once('close', () => {
      if (socket !== this.socket) return; // the plaintext socket under TLS: the TLS socket reports
      this.socketClosed = true;
      this.reader.fail(connectionClosed());
      this.notify();
      this.onClosed();
    });
    socket.on('error', (err) => {
      if (socket !== this.socket) return;
      this.log.debug({ peer: this.peer, err }, 'nbd socket error');
      this.reader.fail(connectionClosed(err));
    });
    socket.on('end', () => {
      if (socket === this.socket) this.reader.end(connectionClosed());
    });
    socket.on('drain', () => this.notify());
  }

  /** Stop reading requests; in-flight requests still get their replies, then the socket closes. */
  shutdown(): void {
    this.reader.fail(new NbdProtocolError(NbdProtocolErrorKind.Shutdown, 'server shutting down'));
    this.notify();
  }

  /** Close the socket now; replies still pending are dropped (backend calls still run to completion). */
  destroy(): void {
    this.socket.destroy();
  }

  private async run(): Promise<void> {
    const timer = setTimeout(() => {
      this.reader.fail(new NbdProtocolError(NbdProtocolErrorKind.HandshakeTimeout, 'handshake timed out'));
      this.tlsTimeout?.();
    }, this.limits.handshakeTimeoutMs);
    try {
      const exp = await this.negotiate();
      clearTimeout(timer);
      if (exp) {
        this.log.info({ peer: this.peer, export: exp.name }, 'nbd transmission started');
        await this.transmit(exp);
      }
    } catch (err) {
      this.logEnd(err);
    } finally {
      clearTimeout(timer);
      await this.finish();
    }
  }

  private logEnd(err: unknown): void {
    if (err instanceof NbdProtocolError) {
      if (err.kind === NbdProtocolErrorKind.ConnectionClosed || err.kind === NbdProtocolErrorKind.Shutdown) {
        this.log.debug({ peer: this.peer, kind: err.kind }, 'nbd connection ended');
      } else {
        this.log.warn({ peer: this.peer, kind: err.kind }, 'nbd client dropped');
      }
    } else {
      this.log.error({ peer: this.peer, err }, 'nbd connection failed');
    }
  }

  /** Let in-flight requests settle, release the export once, then close the socket. */
  private async finish(): Promise<void> {
    this.reader.fail(connectionClosed());
    while (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        this.idle = resolve;
      });
    }
    const exp = this.opened;
    this.opened = undefined;
    if (exp) {
      try {
        await exp.close();
      } catch (err) {
        this.log.error({ peer: this.peer, export: exp.name, err }, 'nbd export close failed');
      }
      this.log.info({ peer: this.peer, export: exp.name }, 'nbd export released');
    }
    if (this.socketClosed) return;
    this.sendReplies();
    this.uncork();
    const linger = setTimeout(() => this.socket.destroy(), LINGER_MS);
    linger.unref();
    this.socket.end(() => {
      clearTimeout(linger);
      this.socket.destroy();
    });
  }

  // ---- output -------------------------------------------------------------------------------------------

  /** Queue bytes; writes in the same tick are sent together. */
  private send(...bufs: Uint8Array[]): void {
    if (this.socketClosed || this.socket.destroyed || !this.socket.writable) return;
    this.cork();
    for (const b of bufs) this.socket.write(b);
  }

  /** Cork the socket until the end of this tick. */
  private cork(): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => this.uncork());
    }
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  private optReply(opt: number, rep: number, data: Uint8Array = EMPTY): void {
    const h = Buffer.allocUnsafe(OPTION_REPLY_HEADER_SIZE);
    h.writeBigUInt64BE(NBD_OPT_REPLY_MAGIC, 0);
    h.writeUInt32BE(opt >>> 0, 8);
    h.writeUInt32BE(rep >>> 0, 12);
    h.writeUInt32BE(data.length, 16);
    this.send(h, data);
  }

  private optError(opt: number, rep: number, message: string): void {
    this.optReply(opt, rep, Buffer.from(message, 'utf8'));
  }

  /**
   * A simple reply. Headers are appended to a slab and everything queued until the end of this tick goes out in
   * one socket write (replies completing together, e.g. all writes of one JetStream ack, share a syscall), with
   * no buffer or stream write per reply. READ data follows its header in order.
   */
  private simpleReply(cookieHi: number, cookieLo: number, error: number, data?: Uint8Array): void {
    if (this.socketClosed || this.socket.destroyed || !this.socket.writable) return;
    if (this.slabEnd + SIMPLE_REPLY_SIZE > this.slab.length) {
      this.sendReplies();
      this.slab = Buffer.allocUnsafe(REPLY_SLAB);
      this.slabStart = 0;
      this.slabEnd = 0;
    }
    const h = this.slab;
    const at = this.slabEnd;
    h.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, at);
    h.writeUInt32BE(error, at + 4);
    h.writeUInt32BE(cookieHi, at + 8);
    h.writeUInt32BE(cookieLo, at + 12);
    this.slabEnd = at + SIMPLE_REPLY_SIZE;
    if (data) {
      this.cork(); // header and data in one syscall
      this.sendReplies();
      this.socket.write(data);
    } else if (!this.flushQueued) {
      this.flushQueued = true;
      process.nextTick(this.flushReplies);
    }
  }

  /** Sends the queued reply headers (the slab region stays untouched afterwards: the socket may still hold it). */
  private sendReplies(): void {
    this.flushQueued = false;
    if (this.slabEnd === this.slabStart) return;
    const out = this.slab.subarray(this.slabStart, this.slabEnd);
    this.slabStart = this.slabEnd;
    if (this.socketClosed || this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(out);
  }

  // ---- negotiation --------------------------------------------------------------------------------------

  /** Returns the export to serve, or undefined when the client aborted. */
  private async negotiate(): Promise<NbdExport | undefined> {
    const greeting = Buffer.allocUnsafe(GREETING_SIZE);
    greeting.writeBigUInt64BE(NBD_MAGIC, 0);
    greeting.writeBigUInt64BE(NBD_IHAVEOPT, 8);
    greeting.writeUInt16BE(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES, 16);
    this.send(greeting);

    const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    const known = ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES;
    if ((clientFlags & ClientFlag.FIXED_NEWSTYLE) === 0 || (clientFlags & ~known) !== 0) {
      throw new NbdProtocolError(NbdProtocolErrorKind.BadClientFlags, `client flags 0x${clientFlags.toString(16)}`);
    }
    this.noZeroes = (clientFlags & ClientFlag.NO_ZEROES) !== 0;

    for (let count = 0; ; count++) {
      if (count >= MAX_OPTIONS) throw new NbdProtocolError(NbdProtocolErrorKind.TooManyOptions);
      const h = await this.reader.read(OPTION_HEADER_SIZE);
      if (h.readBigUInt64BE(0) !== NBD_IHAVEOPT) throw new NbdProtocolError(NbdProtocolErrorKind.BadOptionMagic);
      const opt = h.readUInt32BE(8);
      const len = h.readUInt32BE(12);
      if (len > MAX_OPTION_LENGTH) {
        // NBD_OPT_EXPORT_NAME has no error reply; past MAX_OPTION_SKIP skipping costs more than it is worth.
        if (opt === NbdOpt.EXPORT_NAME || len > MAX_OPTION_SKIP) {
          if (opt !== NbdOpt.EXPORT_NAME) this.optError(opt, NbdRep.ERR_TOO_BIG, 'option data too long');
          throw new NbdProtocolError(NbdProtocolErrorKind.OptionTooBig, `option ${opt} length ${len}`);
        }
        await this.reader.skip(len);
        this.optError(opt, NbdRep.ERR_TOO_BIG, 'option data too long');
        continue;
      }
      const data = len > 0 ? await this.reader.read(len) : EMPTY;
      if (this.tls && !this.secured) {
        // FORCEDTLS: nothing but STARTTLS and ABORT before TLS; EXPORT_NAME cannot be refused, so it ends the session.
        if (opt === NbdOpt.EXPORT_NAME) throw new NbdProtocolError(NbdProtocolErrorKind.TlsRequired, 'NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS');
        if (opt !== NbdOpt.STARTTLS && opt !== NbdOpt.ABORT) {
          this.optError(opt, NbdRep.ERR_TLS_REQD, 'this server requires TLS: send NBD_OPT_STARTTLS first');
          continue;
        }
      }
      switch (opt) {
        case NbdOpt.STARTTLS:
          if (!this.tls) this.optError(opt, NbdRep.ERR_UNSUP, 'this server does not offer TLS');
          else if (this.secured) this.optError(opt, NbdRep.ERR_INVALID, 'TLS is already negotiated');
          else if (len !== 0) this.optError(opt, NbdRep.ERR_INVALID, 'NBD_OPT_STARTTLS takes no data');
          else await this.startTls(this.tls);
          break;
        case NbdOpt.EXPORT_NAME: {
          const r = await this.open(data.toString('latin1'));
          if (!r.ok) {
            throw new NbdProtocolError(NbdProtocolErrorKind.ExportNameRejected, r.message);
          }
          const reply = Buffer.alloc(10 + (this.noZeroes ? 0 : EXPORT_NAME_PADDING));
          reply.writeBigUInt64BE(BigInt(r.exp.size), 0);
          reply.writeUInt16BE(transmissionFlags(r.exp), 8);
          this.send(reply);
          return r.exp;
        }
        case NbdOpt.ABORT:
          this.optReply(opt, NbdRep.ACK);
          return undefined;
        case NbdOpt.LIST:
          this.list(opt, len);
          break;
        case NbdOpt.INFO:
        case NbdOpt.GO: {
          const exp = await this.infoOrGo(opt, data);
          if (exp) return exp;
          break;
        }
        default:
          // STRUCTURED_REPLY, meta contexts, extended headers and anything unknown.
          this.optError(opt, NbdRep.ERR_UNSUP, 'option not supported');
      }
    }
  }

  /**
   * NBD_OPT_STARTTLS: the ACK in plaintext, then the TLS handshake on the same socket; negotiation goes on over
   * TLS (no new greeting, as the protocol says). The accepted socket is paused first, so that the client's
   * ClientHello, sent once it has the ACK, reaches TLS and not the plaintext reader. A client that sent anything
   * after STARTTLS without waiting for the ACK is dropped: those bytes would be taken as plaintext options.
   */
  private async startTls(tls: ConnectionTls): Promise<void> {
    if (this.reader.length > 0) throw new NbdProtocolError(NbdProtocolErrorKind.TlsPipelined, 'bytes after NBD_OPT_STARTTLS before its reply');
    const plain = this.socket;
    plain.pause();
    this.uncork();
    const ack = Buffer.allocUnsafe(OPTION_REPLY_HEADER_SIZE);
    ack.writeBigUInt64BE(NBD_OPT_REPLY_MAGIC, 0);
    ack.writeUInt32BE(NbdOpt.STARTTLS, 8);
    ack.writeUInt32BE(NbdRep.ACK, 12);
    ack.writeUInt32BE(0, 16);
    await new Promise<void>((resolve, reject) => plain.write(ack, (err) => (err ? reject(connectionClosed(err)) : resolve())));
    const secure = new TLSSocket(plain, {
      isServer: true,
      secureContext: tls.secureContext,
      requestCert: tls.requireClientCert,
      rejectUnauthorized: tls.requireClientCert,
    });
    const reader = new SocketReader(secure);
    try {
      await new Promise<void>((resolve, reject) => {
        const fail = (err?: Error): void => {
          this.tlsTimeout = undefined;
          secure.destroy();
          reject(new NbdProtocolError(NbdProtocolErrorKind.TlsHandshakeFailed, err?.message ?? 'the TLS handshake did not finish', { cause: err }));
        };
        this.tlsTimeout = () => fail(new Error('the TLS handshake timed out'));
        secure.once('secure', () => {
          this.tlsTimeout = undefined;
          resolve();
        });
        secure.once('error', fail);
        secure.once('close', () => fail());
      });
    } catch (err) {
      // Both sockets are gone (the TLS socket may have closed already, before a listener could see it).
      plain.destroy();
      this.socketClosed = true;
      this.reader.fail(err as NbdProtocolError);
      this.notify();
      this.onClosed();
      throw err;
    }
    secure.setNoDelay(true);
    this.socket = secure;
    this.reader = reader;
    this.watch(secure);
    this.secured = true;
    const cert = tls.requireClientCert ? secure.getPeerCertificate() : undefined;
    this.log.info({ peer: this.peer, protocol: secure.getProtocol(), client: cert?.subject?.CN }, 'nbd TLS negotiated');
  }

  private list(opt: number, len: number): void {
    if (len !== 0) {
      this.optError(opt, NbdRep.ERR_INVALID, 'NBD_OPT_LIST takes no data');
      return;
    }
    let entries: readonly { name: string; description?: string }[];
    try {
      entries = this.provider.list();
    } catch (err) {
      this.log.error({ peer: this.peer, err }, 'nbd export provider list failed');
      this.optError(opt, NbdRep.ERR_PLATFORM, 'cannot list exports');
      return;
    }
    for (const e of entries) {
      const name = Buffer.from(e.name, 'utf8');
      const desc = Buffer.from(e.description ?? '', 'utf8').subarray(0, MAX_OPTION_LENGTH);
      const d = Buffer.allocUnsafe(4 + name.length + desc.length);
      d.writeUInt32BE(name.length, 0);
      name.copy(d, 4);
      desc.copy(d, 4 + name.length);
      this.optReply(opt, NbdRep.SERVER, d);
    }
    this.optReply(opt, NbdRep.ACK);
  }

  /**
   * NBD_OPT_INFO / NBD_OPT_GO data: `u32 name length, name, u16 count, count x u16 info type`.
   * Returns the opened export for a successful GO.
   */
  private async infoOrGo(opt: number, data: Buffer): Promise<NbdExport | undefined> {
    if (data.length < 6) return this.invalid(opt, 'option data too short');
    const nameLen = data.readUInt32BE(0);
    if (nameLen > data.length - 6) return this.invalid(opt, 'name length exceeds option data');
    const nreq = data.readUInt16BE(4 + nameLen);
    if (6 + nameLen + 2 * nreq !== data.length) return this.invalid(opt, 'info request count mismatch');
    const name = data.toString('latin1', 4, 4 + nameLen);
    const requested = new Set<number>();
    for (let i = 0; i < nreq; i++) requested.add(data.readUInt16BE(6 + nameLen + 2 * i));

    let info: NbdExportInfo;
    let exp: NbdExport | undefined;
    if (opt === NbdOpt.GO) {
      const r = await this.open(name);
      if (!r.ok) {
        this.optError(opt, r.rep, r.message);
        return undefined;
      }
      exp = r.exp;
      info = exp;
    } else {
      if (!EXPORT_NAME_PATTERN.test(name)) {
        this.optError(opt, NbdRep.ERR_UNKNOWN, 'unknown export');
        return undefined;
      }
      let d: NbdExportInfo | undefined;
      try {
        d = this.provider.describe(name);
      } catch (err) {
        this.log.error({ peer: this.peer, export: name, err }, 'nbd export provider describe failed');
        this.optError(opt, NbdRep.ERR_PLATFORM, 'cannot describe export');
        return undefined;
      }
      if (!d) {
        this.optError(opt, NbdRep.ERR_UNKNOWN, 'unknown export');
        return undefined;
      }
      const bad = geometryProblem(d);
      if (bad) {
        this.log.error({ peer: this.peer, export: name, problem: bad }, 'nbd export has invalid geometry');
        this.optError(opt, NbdRep.ERR_PLATFORM, 'export unavailable');
        return undefined;
      }
      info = d;
    }

    const ex = Buffer.allocUnsafe(12);
    ex.writeUInt16BE(NbdInfo.EXPORT, 0);
    ex.writeBigUInt64BE(BigInt(info.size), 2);
    ex.writeUInt16BE(transmissionFlags(info), 10);
    this.optReply(opt, NbdRep.INFO, ex);
    // Always sent: the export's alignment is a hard constraint, and clients (qemu, libnbd) ask for it anyway.
    const bs = Buffer.allocUnsafe(14);
    bs.writeUInt16BE(NbdInfo.BLOCK_SIZE, 0);
    bs.writeUInt32BE(info.minBlockSize, 2);
    bs.writeUInt32BE(info.preferredBlockSize, 6);
    bs.writeUInt32BE(info.maxBlockSize, 10);
    this.optReply(opt, NbdRep.INFO, bs);
    if (requested.has(NbdInfo.NAME)) {
      const n = Buffer.from(name, 'latin1');
      const b = Buffer.allocUnsafe(2 + n.length);
      b.writeUInt16BE(NbdInfo.NAME, 0);
      n.copy(b, 2);
      this.optReply(opt, NbdRep.INFO, b);
    }
    if (requested.has(NbdInfo.DESCRIPTION)) {
      const desc = this.describeText(name);
      if (desc !== undefined) {
        const t = Buffer.from(desc, 'utf8').subarray(0, MAX_OPTION_LENGTH);
        const b = Buffer.allocUnsafe(2 + t.length);
        b.writeUInt16BE(NbdInfo.DESCRIPTION, 0);
        t.copy(b, 2);
        this.optReply(opt, NbdRep.INFO, b);
      }
    }
    this.optReply(opt, NbdRep.ACK);
    return exp;
  }

  private describeText(name: string): string | undefined {
    try {
      return this.provider.list().find((e) => e.name === name)?.description;
    } catch {
      return undefined;
    }
  }

  private invalid(opt: number, message: string): undefined {
    this.optError(opt, NbdRep.ERR_INVALID, message);
    return undefined;
  }

  /** Open `name` for this connection; on success it is owned by the connection and closed in finish(). */
  private async open(name: string): Promise<OpenResult> {
    if (!EXPORT_NAME_PATTERN.test(name)) return { ok: false, rep: NbdRep.ERR_UNKNOWN, message: 'unknown export' };
    let exp: NbdExport | undefined;
    try {
      exp = await this.provider.open(name);
    } catch (err) {
      if (err instanceof NbdExportBusyError) {
        this.log.info({ peer: this.peer, export: name }, 'nbd export busy');
        // The protocol has no "busy" reply; POLICY keeps it distinct from UNKNOWN and the session usable.
        return { ok: false, rep: NbdRep.ERR_POLICY, message: 'export is in use by another connection' };
      }
      this.log.error({ peer: this.peer, export: name, err }, 'nbd export open failed');
      return { ok: false, rep: NbdRep.ERR_PLATFORM, message: 'export unavailable' };
    }
    if (!exp) return { ok: false, rep: NbdRep.ERR_UNKNOWN, message: 'unknown export' };
    const bad = geometryProblem(exp);
    if (bad || this.reader.failed) {
      if (bad) this.log.error({ peer: this.peer, export: name, problem: bad }, 'nbd export has invalid geometry');
      try {
        await exp.close();
      } catch (err) {
        this.log.error({ peer: this.peer, export: name, err }, 'nbd export close failed');
      }
      return { ok: false, rep: NbdRep.ERR_PLATFORM, message: 'export unavailable' };
    }
    this.opened = exp;
    return { ok: true, exp };
  }

  // ---- transmission -------------------------------------------------------------------------------------

  /**
   * Requests already buffered are taken synchronously (tryTake), so a burst that arrived in one socket read is
   * handed to the backend in one go, without a promise per header and payload; only a request still on the wire
   * (or a full in-flight window) waits.
   */
  private async transmit(exp: NbdExport): Promise<void> {
    for (;;) {
      if (this.mustWait()) await this.waitForSlot();
      const h = this.reader.tryTake(REQUEST_SIZE) ?? (await this.reader.read(REQUEST_SIZE));
      if (h.readUInt32BE(0) !== NBD_REQUEST_MAGIC) throw new NbdProtocolError(NbdProtocolErrorKind.BadRequestMagic);
      const flags = h.readUInt16BE(4);
      const type = h.readUInt16BE(6);
      // The cookie as two numbers: echoed into the reply without keeping `h` (which may pin a socket chunk).
      const cookieHi = h.readUInt32BE(8);
      const cookieLo = h.readUInt32BE(12);
      const offHi = h.readUInt32BE(16);
      // Offsets past 2^53 cannot be inside any export; Infinity makes every bounds check fail.
      const offset = offHi >= 0x20_0000 ? Infinity : offHi * 0x1_0000_0000 + h.readUInt32BE(20);
      const length = h.readUInt32BE(24);
      const fua = (flags & CmdFlag.FUA) !== 0;

      switch (type) {
        case NbdCmd.DISC:
          return;
        case NbdCmd.READ: {
          const err = checkFlags(flags, 0) ?? checkRange(exp, offset, length, NbdErrno.EINVAL);
          if (err) this.simpleReply(cookieHi, cookieLo, err);
          else this.start(cookieHi, cookieLo, length, true, () => exp.read(offset, length));
          break;
        }
        case NbdCmd.WRITE: {
          if (length > exp.maxBlockSize) {
            // The payload is too large to buffer and skipping it means trusting a hostile length: give up.
            this.simpleReply(cookieHi, cookieLo, NbdErrno.EINVAL);
            throw new NbdProtocolError(NbdProtocolErrorKind.RequestTooBig, `write length ${length}`);
          }
          const alloc = exp.receiveBuffer ? () => exp.receiveBuffer?.(length) : undefined;
          const data = length > 0 ? (this.reader.tryTake(length, alloc) ?? (await this.reader.read(length, alloc))) : EMPTY;
          const err =
            checkFlags(flags, CmdFlag.FUA) ??
            (exp.readOnly ? NbdErrno.EPERM : undefined) ??
            checkRange(exp, offset, length, NbdErrno.ENOSPC);
          if (err) this.simpleReply(cookieHi, cookieLo, err);
          else this.start(cookieHi, cookieLo, length, false, () => exp.write(offset, data, { fua }));
          break;
        }
        case NbdCmd.FLUSH: {
          const err = checkFlags(flags, 0);
          if (err) this.simpleReply(cookieHi, cookieLo, err);
          else this.start(cookieHi, cookieLo, 0, false, () => exp.flush());
          break;
        }
        case NbdCmd.TRIM: {
          const err =
            checkFlags(flags, CmdFlag.FUA) ??
            (exp.readOnly ? NbdErrno.EPERM : undefined) ??
            checkRange(exp, offset, length, NbdErrno.EINVAL);
          if (err) this.simpleReply(cookieHi, cookieLo, err);
          else this.start(cookieHi, cookieLo, 0, false, () => exp.trim(offset, length, { fua }));
          break;
        }
        case NbdCmd.WRITE_ZEROES: {
          const noHole = (flags & CmdFlag.NO_HOLE) !== 0;
          const err =
            checkFlags(flags, CmdFlag.FUA | CmdFlag.NO_HOLE) ??
            (exp.readOnly ? NbdErrno.EPERM : undefined) ??
            checkRange(exp, offset, length, NbdErrno.ENOSPC);
          if (err) this.simpleReply(cookieHi, cookieLo, err);
          else this.start(cookieHi, cookieLo, 0, false, () => exp.writeZeroes(offset, length, { fua, noHole }));
          break;
        }
        default:
          // CACHE and BLOCK_STATUS are not advertised/negotiated; neither carries a payload, nor may an
          // unknown command without extended headers.
          this.simpleReply(cookieHi, cookieLo, NbdErrno.EINVAL);
      }
    }
  }

  /** Call the backend now (arrival order is disk order) and reply whenever it settles. */
  private start(cookieHi: number, cookieLo: number, bytes: number, isRead: boolean, op: () => Promise<Uint8Array | void>): void {
    this.inFlight++;
    this.inFlightBytes += bytes;
    let p: Promise<Uint8Array | void>;
    try {
      p = op();
    } catch (err) {
      p = Promise.reject(err);
    }
    // One reaction per request (no then/catch/finally chain): reply, then release the slot.
    Promise.resolve(p).then(
      (value) => {
        try {
          if (!isRead) {
            this.simpleReply(cookieHi, cookieLo, 0);
          } else if (!(value instanceof Uint8Array) || value.length !== bytes) {
            this.log.error({ peer: this.peer, expected: bytes, got: value instanceof Uint8Array ? value.length : typeof value }, 'nbd backend read returned wrong length');
            this.simpleReply(cookieHi, cookieLo, NbdErrno.EIO);
          } else {
            this.simpleReply(cookieHi, cookieLo, 0, value);
          }
        } catch (err) {
          this.log.error({ peer: this.peer, err }, 'nbd reply failed');
        }
        this.settled(bytes);
      },
      (err: unknown) => {
        try {
          this.simpleReply(cookieHi, cookieLo, this.errnoOf(err));
        } catch (e) {
          this.log.error({ peer: this.peer, err: e }, 'nbd reply failed');
        }
        this.settled(bytes);
      },
    );
  }

  private settled(bytes: number): void {
    this.inFlight--;
    this.inFlightBytes -= bytes;
    this.notify();
    if (this.inFlight === 0 && this.idle) {
      const idle = this.idle;
      this.idle = undefined;
      idle();
    }
  }

  private errnoOf(err: unknown): number {
    if (err instanceof NbdError) return KNOWN_ERRNOS.has(err.errno) ? err.errno : NbdErrno.EINVAL;
    this.log.warn({ peer: this.peer, err }, 'nbd backend call failed');
    return NbdErrno.EIO;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Whether this connection has too much outstanding to read another request. */
  private mustWait(): boolean {
    return (
      !this.reader.failed &&
      (this.inFlight >= this.limits.maxInFlight ||
        this.inFlightBytes >= this.limits.maxInFlightBytes ||
        this.socket.writableLength >= WRITE_HIGH_WATER)
    );
  }

  /** Backpressure: hold off reading the next request while this connection has too much outstanding. */
  private async waitForSlot(): Promise<void> {
    while (this.mustWait()) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

/** Transmission flags for an export: everything this server implements, no multi-conn, not rotational. */
function transmissionFlags(e: { readOnly: boolean }): number {
  return (
    TransmissionFlag.HAS_FLAGS |
    TransmissionFlag.SEND_FLUSH |
    TransmissionFlag.SEND_FUA |
    TransmissionFlag.SEND_TRIM |
    TransmissionFlag.SEND_WRITE_ZEROES |
    (e.readOnly ? TransmissionFlag.READ_ONLY : 0)
  );
}

function checkFlags(flags: number, allowed: number): number | undefined {
  return (flags & ~allowed) !== 0 ? NbdErrno.EINVAL : undefined;
}

/**
 * Length 0, length past maxBlockSize and misalignment are EINVAL; past the end is `beyondEnd` (ENOSPC for
 * writes, EINVAL for reads and trims, as the protocol recommends). A final partial block of an export whose
 * size is not a multiple of minBlockSize may be addressed exactly up to the end.
 */
function checkRange(e: NbdExport, offset: number, length: number, beyondEnd: number): number | undefined {
  if (length === 0 || length > e.maxBlockSize) return NbdErrno.EINVAL;
  if (!(offset + length <= e.size)) return beyondEnd;
  const m = e.minBlockSize;
  if (offset % m !== 0 || (length % m !== 0 && offset + length !== e.size)) return NbdErrno.EINVAL;
  return undefined;
}

const isPow2 = (n: number): boolean => Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** Why a backend's geometry cannot be advertised, or undefined when it is fine. */
function geometryProblem(g: NbdExportInfo): string | undefined {
  if (!Number.isSafeInteger(g.size) || g.size < 0) return 'size';
  if (!isPow2(g.minBlockSize) || g.minBlockSize > MAX_MIN_BLOCK_SIZE) return 'minBlockSize';
  if (!isPow2(g.preferredBlockSize) || g.preferredBlockSize < g.minBlockSize) return 'preferredBlockSize';
  if (
    !Number.isSafeInteger(g.maxBlockSize) ||
    g.maxBlockSize < g.minBlockSize ||
    g.maxBlockSize % g.minBlockSize !== 0 ||
    g.maxBlockSize > MAX_REQUEST_LENGTH
  ) {
    return 'maxBlockSize';
  }
  return undefined;
}
