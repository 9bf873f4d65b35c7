import { natsConnectOptions, type NatsAuth } from '@gammaray/ops';
/**
 * The client side of `gammaray follow`: a NATS connection and an {@link EventWatch} of one disk, read straight
 * from stream GAMMARAY_EVENTS (no view needed).
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { createConnection } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { EventWatch, ReplicaError, ReplicaErrorCode, type EventWatchOptions, type WatchFrom } from '@gammaray/replica';
import { KV_DISKS, isDiskId } from '@gammaray/wire';

/** Options of {@link openFollow}. */
export interface FollowOptions {
  readonly nats: string;
  /** NATS credentials and TLS (see readNatsAuth). */
  readonly natsAuth?: NatsAuth;
  readonly disk: string;
  readonly glob?: string;
  readonly kinds?: readonly string[];
  readonly from?: WatchFrom;
  readonly onUndecodable?: (seq: number, subject: string, err: unknown) => void;
  /** The connection to NATS was lost (`lost`), or is back (`back`); the follow resumes by itself. */
  readonly onConnection?: (state: 'lost' | 'back') => void;
  /** The consumer went quiet while events waited (after a NATS node was lost); the follow reads on with a new one. */
  readonly onStall?: EventWatchOptions['onStall'];
}

/** An open follow: iterate `watch`; `close()` stops it and closes the connection. */
export interface Follow {
  readonly watch: EventWatch;
  close(): Promise<void>;
}

/** NATS could not be reached. */
export class NatsUnreachableError extends Error {
  override name = 'NatsUnreachableError';
}

/**
 * Connects, checks that the disk is in the registry (KV gammaray-disks), and opens the watch. Throws
 * ReplicaError (InvalidArgument, NotFound, NotReady, Unavailable) or {@link NatsUnreachableError}.
 */
export async function openFollow(o: FollowOptions): Promise<Follow> {
  if (!isDiskId(o.disk)) throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `${JSON.stringify(o.disk)} is not a disk id (lowercase letters, digits, - and _, at most 64)`);
  let nc: NatsConnection;
  try {
    nc = await connect(natsConnectOptions(o.nats, `gammaray-follow-${process.pid}`, o.natsAuth));
  } catch (err) {
    throw new NatsUnreachableError(`cannot connect to NATS at ${o.nats}: ${(err as Error).message}; start nats-server or pass --nats URL`, { cause: err });
  }
  if (o.onConnection) {
    const notify = o.onConnection;
    void (async () => {
      for await (const st of nc.status()) {
        if (st.type === 'disconnect') notify('lost');
        else if (st.type === 'reconnect') notify('back');
      }
    })().catch(() => undefined);
  }
  try {
    let known = false;
    try {
      const kv = await new Kvm(nc).open(KV_DISKS);
      known = (await kv.get(o.disk))?.operation === 'PUT';
    } catch {
      known = false; // no registry bucket: no capture ever ran here
    }
    if (!known) throw new ReplicaError(ReplicaErrorCode.NotFound, `disk ${o.disk} is not in the disk registry (KV ${KV_DISKS}) at ${o.nats}: check the id, or start its capture first`);
    const watch = await EventWatch.open({ js: jetstream(nc), jsm: await jetstreamManager(nc), disk: o.disk, glob: o.glob, kinds: o.kinds, from: o.from, onUndecodable: o.onUndecodable, onStall: o.onStall });
    return {
      watch,
      close: async () => {
        watch.stop();
        if (!nc.isClosed()) await nc.close();
      },
    };
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw err;
  }
}

/** Why {@link checkNats} found a NATS server unusable. */
export const NatsProblemKind = {
  /** No server answered: nothing listens there, a firewall, or not a NATS server. */
  Unreachable: 'unreachable',
  /** The server refused the credentials (or asked for some that were not given). */
  Auth: 'auth',
  /** Connected, but JetStream does not answer for this account. */
  NoJetStream: 'no-jetstream',
} as const;
export type NatsProblemKind = (typeof NatsProblemKind)[keyof typeof NatsProblemKind];

/** A NATS server the gammaray services cannot use; `reason` is the client's own words. */
export class NatsProblemError extends Error {
  override name = 'NatsProblemError';
  constructor(
    readonly kind: NatsProblemKind,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`NATS ${kind}: ${reason}`, options);
  }
}

/**
 * Connects once (no reconnects) and asks JetStream for the account's info: resolves when the services could work
 * there, else throws {@link NatsProblemError}, all within about `timeoutMs` (a server that accepts the connection
 * and says nothing included). For `gammaray up --nats`, whose services would otherwise each fail with their logs.
 */
export async function checkNats(o: { readonly nats: string; readonly natsAuth?: NatsAuth; readonly timeoutMs: number }): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let nc: NatsConnection | undefined;
  let late = false;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NatsProblemError(NatsProblemKind.Unreachable, `no answer within ${Math.round(o.timeoutMs / 1000)} s`)), o.timeoutMs);
  });
  const check = async (): Promise<void> => {
    // nats.js leaves the socket of a connect that timed out open (a server that accepts and says nothing held the
    // process for good): a socket of its own, destroyed either way, sees first whether anything answers as NATS.
    const silence = await natsSilence(o.nats, o.timeoutMs, o.natsAuth?.tls !== undefined);
    if (silence !== undefined) throw new NatsProblemError(NatsProblemKind.Unreachable, silence);
    if (late) return;
    try {
      nc = await connect({ ...natsConnectOptions(o.nats, `gammaray-check-${process.pid}`, o.natsAuth), reconnect: false, maxReconnectAttempts: 0, timeout: o.timeoutMs });
    } catch (err) {
      const message = (err as Error).message;
      const auth = /authori[sz]ation|authentication|permissions? violation|user credentials|auth/i.test(`${(err as Error).name} ${message}`);
      throw new NatsProblemError(auth ? NatsProblemKind.Auth : NatsProblemKind.Unreachable, message, { cause: err });
    }
    if (late) {
      await nc.close().catch(() => undefined); // the deadline answered already
      return;
    }
    try {
      await (await jetstreamManager(nc, { timeout: o.timeoutMs })).getAccountInfo();
    } catch (err) {
      throw new NatsProblemError(NatsProblemKind.NoJetStream, (err as Error).message, { cause: err });
    }
  };
  try {
    await Promise.race([check(), deadline]);
  } finally {
    late = true;
    clearTimeout(timer);
    // ok: assigned in check(); TypeScript cannot see the closure's assignment
    await (nc as NatsConnection | undefined)?.close().catch(() => undefined);
  }
}

/**
 * Undefined when one of `servers` sends a NATS INFO line on a plain TCP connection within `timeoutMs`; else why
 * none did (`connection refused`, `no answer within 5 s`, `not a NATS server`). WebSocket servers, and any when the
 * connection is TLS (a server may want TLS first), are not probed: undefined.
 */
async function natsSilence(servers: string, timeoutMs: number, tls: boolean): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  let why = 'no server given';
  for (const entry of servers.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(entry) ? entry : `nats://${entry}`);
    if (tls || url.protocol !== 'nats:') return undefined;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = url.port === '' ? 4222 : Number(url.port);
    const reason = await new Promise<string | undefined>((resolve) => {
      const sock = createConnection({ host, port });
      let got = '';
      const done = (reason: string | undefined): void => {
        clearTimeout(timer);
        sock.destroy();
        resolve(reason);
      };
      const timer = setTimeout(() => done(`no answer within ${Math.round(timeoutMs / 1000)} s`), Math.max(0, deadline - Date.now()));
      sock.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'connection refused' : (err.code ?? err.message)));
      sock.on('data', (b: Buffer) => {
        got += b.toString('latin1');
        if (got.length >= 5 || got.includes('\n')) done(got.startsWith('INFO') ? undefined : 'not a NATS server');
      });
      sock.once('end', () => done(got.startsWith('INFO') ? undefined : 'the connection was closed without a NATS greeting'));
    });
    if (reason === undefined) return undefined;
    why = reason;
  }
  return why;
}
