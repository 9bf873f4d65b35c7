import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { NbdExportProvider } from './backend.js';
import { NbdConnection } from './connection.js';
import { adoptSocket } from './socket-reader.js';
import type { ConnectionLimits, ConnectionTls } from './connection.js';
import {
  DEFAULT_DRAIN_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_IN_FLIGHT_BYTES,
} from './limits.js';
import { silentLogger } from './logger.js';
import type { NbdLogger } from './logger.js';

/** Options of an NbdServer. */
export interface NbdServerOptions {
  provider: NbdExportProvider;
  /** pino-compatible; silent when omitted. */
  logger?: NbdLogger;
  /** Connections beyond this are closed right after accept. Unlimited when omitted. */
  maxConnections?: number;
  /** Time from accept to the end of negotiation (default 10 s); slower clients are dropped. */
  handshakeTimeoutMs?: number;
  /** Requests in flight per connection before the server stops reading from it (default 128). */
  maxInFlight?: number;
  /** Payload and reply bytes in flight per connection before the server stops reading from it (default 64 MiB). */
  maxInFlightBytes?: number;
  /**
   * Require TLS (the NBD protocol's FORCEDTLS mode): a client must send NBD_OPT_STARTTLS before anything else
   * (other options get NBD_REP_ERR_TLS_REQD; NBD_OPT_EXPORT_NAME ends the session), then negotiates over TLS
   * with this context. With `requireClientCert`, a client without a certificate the context's CA signed fails
   * the handshake: that is the authentication.
   */
  tls?: ConnectionTls;
}

/**
 * An NBD server (fixed newstyle negotiation, simple replies) over an NbdExportProvider. Each accepted socket
 * negotiates on its own and then serves one export; a misbehaving client only ever ends its own connection.
 */
export class NbdServer {
  private readonly provider: NbdExportProvider;
  private readonly log: NbdLogger;
  private readonly limits: ConnectionLimits;
  private readonly maxConnections: number;
  private readonly tls: ConnectionTls | undefined;
  private readonly live = new Set<NbdConnection>();
  private server: Server | undefined;
  /** The unix socket listened on (removed at close). */
  private socketPath: string | undefined;
  private closing = false;

  constructor(opts: NbdServerOptions) {
    this.provider = opts.provider;
    this.log = opts.logger ?? silentLogger;
    this.maxConnections = positive(opts.maxConnections, Infinity, 'maxConnections');
    this.tls = opts.tls;
    this.limits = {
      handshakeTimeoutMs: positive(opts.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS, 'handshakeTimeoutMs'),
      maxInFlight: positive(opts.maxInFlight, DEFAULT_MAX_IN_FLIGHT, 'maxInFlight'),
      maxInFlightBytes: positive(opts.maxInFlightBytes, DEFAULT_MAX_IN_FLIGHT_BYTES, 'maxInFlightBytes'),
    };
  }

  /** Connections accepted and not yet completely finished (export released, socket closed). */
  get connections(): number {
    return this.live.size;
  }

  /** Start accepting on host:port (port 0 picks a free port); resolves with the bound address. */
  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    if (this.server) return Promise.reject(new Error('NbdServer.listen called twice'));
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (s) => this.accept(s));
    this.server = server;
    server.on('error', (err) => this.log.error({ err }, 'nbd server error'));
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        const a = server.address() as AddressInfo; // ok: a TCP listener always has an AddressInfo
        this.log.info({ host: a.address, port: a.port }, 'nbd server listening');
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  /**
   * Start accepting on the unix socket `path` (mode 0660: the owner and its group, e.g. the hypervisor's, may
   * connect). A socket file a dead server left behind is replaced; one a live server answers on, or any other
   * file, is refused (EADDRINUSE / EEXIST). The file is removed at close.
   */
  async listenUnix(path: string): Promise<string> {
    if (this.server) throw new Error('NbdServer.listen called twice');
    await removeStaleSocket(path);
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.accept(s));
    this.server = server;
    this.socketPath = path;
    server.on('error', (err) => this.log.error({ err }, 'nbd server error'));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(path, () => {
        server.off('error', onError);
        resolve();
      });
    });
    chmodSync(path, 0o660);
    this.log.info({ socket: path }, 'nbd server listening');
    return path;
  }

  /**
   * Stop accepting, stop reading new requests, let in-flight requests finish and be replied for up to
   * `drainMs` (default 5 s), then close every socket. Resolves once every connection has released its export.
   */
  async close(opts: { drainMs?: number } = {}): Promise<void> {
    this.closing = true;
    const drainMs = opts.drainMs ?? DEFAULT_DRAIN_MS;
    const server = this.server;
    const stopped = server
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    const conns = [...this.live];
    for (const c of conns) c.shutdown();
    const all = Promise.all(conns.map((c) => c.done));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const c of this.live) c.destroy();
        resolve();
      }, drainMs);
    });
    await Promise.race([all, timedOut]);
    clearTimeout(timer);
    await all;
    await stopped;
    if (this.socketPath !== undefined) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already gone
      }
    }
    this.log.info({}, 'nbd server closed');
  }

  private accept(accepted: Socket): void {
    const peer = this.socketPath !== undefined ? `unix:${this.socketPath}` : `${accepted.remoteAddress ?? '?'}:${accepted.remotePort ?? '?'}`;
    if (this.closing || this.live.size >= this.maxConnections) {
      this.log.warn({ peer, connections: this.live.size }, 'nbd connection refused');
      accepted.on('error', () => {});
      accepted.destroy();
      return;
    }
    // Paused until here (pauseOnConnect). With TLS the socket stays as it is (reads as 'data' events): it is
    // wrapped by TLS after NBD_OPT_STARTTLS, which the recycled-buffer reads of adoptSocket would not allow.
    const { socket, reader } = this.tls ? { socket: accepted, reader: undefined } : adoptSocket(accepted);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    const conn = new NbdConnection(socket, this.provider, this.log, this.limits, peer, reader, this.tls);
    if (this.tls) socket.resume();
    this.live.add(conn);
    this.log.debug({ peer, connections: this.live.size }, 'nbd connection accepted');
    void conn.done.finally(() => {
      this.live.delete(conn);
      this.log.debug({ peer, connections: this.live.size }, 'nbd connection closed');
    });
  }
}

/**
 * Makes room for a unix socket at `path`: nothing there, or a socket no server answers on (removed). A socket
 * a server answers on is EADDRINUSE, any other file EEXIST (errors with `code` and `path`, like listen's own).
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  const fail = (code: string, message: string): Error => Object.assign(new Error(message), { code, path });
  if (!isSocket) throw fail('EEXIST', `${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw fail('EADDRINUSE', `${path} is a socket another server listens on`);
  unlinkSync(path);
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!(v > 0)) throw new RangeError(`NbdServerOptions.${name} must be positive, got ${v}`);
  return v;
}
