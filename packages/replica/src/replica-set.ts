/**
 * Every attached disk's replica, kept in step with the disk registry (KV `gammaray-disks`).
 */
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/nats-core';
import { Objm, StorageType } from '@nats-io/obj';
import { CorruptError, DiskState, KV_DISKS, OBJ_STATE, decodeDiskEntry, isDiskId, type DiskRegistryEntry } from '@gammaray/wire';
import type { Logger } from 'pino';
import { DirectCheckpointStore, type CheckpointStore } from './checkpoints.js';
import { DiskReplica } from './disk-replica.js';
import { ReplicaError, ReplicaErrorCode } from './errors.js';

/** Options of {@link ReplicaSet}. */
export interface ReplicaSetOptions {
  readonly nc: NatsConnection;
  readonly log: Logger;
  /** Replicas of the KV bucket and object store when this process is the first to create them. Default 1. */
  readonly replicas?: number;
  /** Only these disks (default: every disk of the registry). */
  readonly disks?: readonly string[];
  /** See DiskReplicaOptions.retryMs. */
  readonly retryMs?: number;
}

/** A disk as the registry describes it, with its replica when attached. */
export interface KnownDisk {
  readonly entry: DiskRegistryEntry;
  readonly replica: DiskReplica | undefined;
}

/**
 * Watches the registry; for each attached disk keeps a {@link DiskReplica}. A disk re-attached with another
 * image or size gets a new replica; a detached disk keeps its replica (its last state stays readable).
 */
export class ReplicaSet {
  readonly #o: ReplicaSetOptions;
  readonly #log: Logger;
  readonly #disks = new Map<string, { entry: DiskRegistryEntry; replica: DiskReplica | undefined }>();
  #js!: JetStreamClient;
  #jsm!: JetStreamManager;
  #checkpoints!: CheckpointStore;
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;

  constructor(opts: ReplicaSetOptions) {
    this.#o = opts;
    this.#log = opts.log.child({ component: 'replicas' });
  }

  /** Opens the registry and the checkpoints and starts a replica per attached disk; resolves once the registry's current entries are in. */
  async start(): Promise<void> {
    const nc = this.#o.nc;
    this.#js = jetstream(nc);
    this.#jsm = await jetstreamManager(nc);
    const kv: KV = await new Kvm(nc).create(KV_DISKS, { replicas: this.#o.replicas ?? 1, history: 1 });
    const os = await new Objm(nc).create(OBJ_STATE, { replicas: this.#o.replicas ?? 1, storage: StorageType.File, description: 'gammaray inferencer checkpoints, one object per disk' });
    this.#checkpoints = new DirectCheckpointStore(os, this.#jsm);
    const status = await kv.status();
    let initial = status.values;
    let markInitial!: () => void;
    const current = new Promise<void>((r) => (markInitial = r));
    if (initial === 0) markInitial();
    const w = await kv.watch({ include: KvWatchInclude.LastValue });
    this.#watch = w;
    this.#loop = (async () => {
      for await (const e of w) {
        if (this.#stopping) break;
        try {
          await this.#onEntry(e);
        } catch (err) {
          this.#log.error({ err, disk: e.key }, 'could not handle a registry change');
        }
        if (--initial <= 0 || e.delta === 0) markInitial();
      }
    })();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([current, new Promise<void>((r) => (timer = setTimeout(r, 2_000)))]);
    clearTimeout(timer);
  }

  /** Stops the watch and every replica. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#watch?.stop();
    await this.#loop;
    await Promise.all([...this.#disks.values()].map((d) => d.replica?.stop()));
  }

  /** Every disk of the registry, sorted by id. */
  list(): KnownDisk[] {
    return [...this.#disks.values()].sort((a, b) => (a.entry.disk < b.entry.disk ? -1 : 1));
  }

  /** The replica of `disk`; throws ReplicaError NotFound/InvalidArgument. */
  get(disk: string): DiskReplica {
    if (!isDiskId(disk)) throw new ReplicaError(ReplicaErrorCode.InvalidArgument, `${JSON.stringify(disk)} is not a disk id (lowercase letters, digits, - and _, at most 64)`);
    const d = this.#disks.get(disk);
    if (!d) throw new ReplicaError(ReplicaErrorCode.NotFound, `disk ${disk} is not in the disk registry: no capture ever attached it (list the disks with ListDisks, or gammaray tree with another DISK)`);
    if (!d.replica) throw new ReplicaError(ReplicaErrorCode.NotFound, `disk ${disk} is ${d.entry.state} (its capture ${d.entry.capture} stopped serving it): start a capture for it again`);
    return d.replica;
  }

  async #onEntry(e: KvWatchEntry): Promise<void> {
    if (!isDiskId(e.key) || (this.#o.disks && !this.#o.disks.includes(e.key))) return;
    if (e.operation !== 'PUT') {
      const gone = this.#disks.get(e.key);
      this.#disks.delete(e.key);
      await gone?.replica?.stop();
      return;
    }
    let entry: DiskRegistryEntry;
    try {
      entry = decodeDiskEntry(e.value);
    } catch (err) {
      if (!(err instanceof CorruptError)) throw err;
      this.#log.warn({ err, disk: e.key }, 'registry entry does not decode; ignoring it');
      return;
    }
    if (entry.disk !== e.key) return;
    const known = this.#disks.get(entry.disk);
    const sameImage = known && known.entry.size === entry.size && known.entry.image === entry.image && known.entry.capture === entry.capture && known.entry.partition === entry.partition && known.entry.source === entry.source;
    if (known?.replica && (sameImage || entry.state === DiskState.Detached)) {
      this.#disks.set(entry.disk, { entry, replica: known.replica });
      return;
    }
    await known?.replica?.stop();
    if (entry.state !== DiskState.Attached) {
      this.#disks.set(entry.disk, { entry, replica: undefined });
      return;
    }
    const replica = new DiskReplica({ nc: this.#o.nc, js: this.#js, jsm: this.#jsm, checkpoints: this.#checkpoints, entry, log: this.#o.log, retryMs: this.#o.retryMs });
    this.#disks.set(entry.disk, { entry, replica });
    this.#log.info({ disk: entry.disk, size: entry.size }, 'following disk');
    replica.start();
  }
}
