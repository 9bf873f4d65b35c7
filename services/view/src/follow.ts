import { natsConnectOptions, type NatsAuth } from '@gammaray/ops';
/**
 * The client side of `gammaray follow`: a NATS connection and an {@link EventWatch} of one disk, read straight
 * from stream GAMMARAY_EVENTS (no view needed).
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
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
