import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude, type KvWatchEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/nats-core';
import { Objm, StorageType } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { CorruptError, DiskState, KV_DISKS, OBJ_STATE, decodeDiskEntry, isDiskId, type DiskRegistryEntry } from '@gammaray/wire';
import { pino, type Logger } from 'pino';
import { CheckpointStore } from './checkpoints.js';
import type { InferencerConfig } from './config.js';
import { DiskWorker, type DiskWorkerOptions } from './disk-worker.js';
import { ensureEventsStream } from './events-stream.js';

/** History kept per key of the disk registry (as capture creates it). */
const REGISTRY_HISTORY = 5;
/** How long stop() lets workers flush and checkpoint before giving up on their publishes. */
const STOP_GRACE_MS = 20_000;

/** A running inferencer instance. */
export interface InferencerService {
  readonly instanceId: string;
  /** The disks being followed, by id. */
  readonly workers: ReadonlyMap<string, DiskWorker>;
  start(): Promise<void>;
  /** Stops watching the registry, stops every worker (flush, final checkpoint), closes the connection. */
  stop(): Promise<void>;
}

/**
 * Builds the service from a validated configuration; nothing runs until start(). Every instance follows every
 * disk of the registry (or the configured ones): two instances publish the same events under the same msg ids,
 * and the events stream keeps one copy. `tuning` shortens the restart backoff and poison-record rule in tests.
 */
export function create(
  cfg: InferencerConfig,
  log: Logger = pino({ name: 'gammaray-inferencer' }),
  tuning: Partial<Pick<DiskWorkerOptions, 'restartBackoffMs' | 'poisonAttempts'>> = {},
): InferencerService {
  const instanceId = `inferencer-${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const workers = new Map<string, { worker: DiskWorker; entry: DiskRegistryEntry }>();
  const view = new Map<string, DiskWorker>();
  let nc: NatsConnection | undefined;
  let watcher: QueuedIterator<KvWatchEntry> | undefined;
  let watching: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;

  const stopWorker = async (disk: string): Promise<void> => {
    const w = workers.get(disk);
    if (!w) return;
    workers.delete(disk);
    view.delete(disk);
    await w.worker.stop();
  };

  const onEntry = async (e: KvWatchEntry, start: (entry: DiskRegistryEntry) => void): Promise<void> => {
    if (!isDiskId(e.key)) return;
    if (cfg.disks && !cfg.disks.includes(e.key)) return;
    if (e.operation !== 'PUT') {
      log.info({ disk: e.key }, 'disk left the registry; stopping its worker');
      await stopWorker(e.key);
      return;
    }
    let entry: DiskRegistryEntry;
    try {
      entry = decodeDiskEntry(e.value);
    } catch (err) {
      if (!(err instanceof CorruptError)) throw err;
      log.warn({ err, disk: e.key }, 'registry entry does not decode; ignoring it');
      return;
    }
    if (entry.disk !== e.key) {
      log.warn({ key: e.key, disk: entry.disk }, 'registry entry names another disk; ignoring it');
      return;
    }
    const have = workers.get(entry.disk);
    if (have && have.entry.size === entry.size) {
      have.entry = entry;
      if (entry.state === DiskState.Detached) log.info({ disk: entry.disk }, 'disk detached from its capture; block reads wait for it to return');
      return;
    }
    if (have) {
      log.warn({ disk: entry.disk, was: have.entry.size, size: entry.size }, 'disk size changed; restarting its worker');
      await stopWorker(entry.disk);
    }
    start(entry);
  };

  const service: InferencerService = {
    instanceId,
    workers: view,
    async start() {
      log.info({ nats: cfg.nats, disks: cfg.disks ?? 'all', instanceId, inlineLimit: cfg.inlineLimit, checkpointIntervalMs: cfg.checkpointIntervalMs }, 'starting inferencer');
      if (cfg.metrics) log.warn({ metrics: cfg.metrics }, '--metrics is accepted but not served yet');
      const conn = await connect({ servers: cfg.nats, name: instanceId, maxReconnectAttempts: -1, reconnectTimeWait: 250, noAsyncTraces: true });
      nc = conn;
      const jsm = await jetstreamManager(conn);
      const js = jetstream(conn);
      await ensureEventsStream(jsm, { replicas: cfg.replicas });
      const os = await new Objm(conn).create(OBJ_STATE, { replicas: cfg.replicas, storage: StorageType.File, description: 'gammaray inferencer checkpoints, one object per disk' });
      const checkpoints = new CheckpointStore(os);
      // Created here too (same settings as capture) so the services may start in either order.
      const kv = await new Kvm(conn).create(KV_DISKS, { replicas: cfg.replicas, history: REGISTRY_HISTORY });
      const start = (entry: DiskRegistryEntry): void => {
        const worker = new DiskWorker({
          nc: conn,
          js,
          jsm,
          checkpoints,
          disk: entry.disk,
          size: entry.size,
          inlineLimit: cfg.inlineLimit,
          checkpointIntervalMs: cfg.checkpointIntervalMs,
          log: log.child({ component: 'disk-worker', disk: entry.disk }),
          ...tuning,
        });
        workers.set(entry.disk, { worker, entry });
        view.set(entry.disk, worker);
        log.info({ disk: entry.disk, size: entry.size, state: entry.state }, 'following disk');
        worker.start();
      };
      const w = await kv.watch({ include: KvWatchInclude.LastValue });
      watcher = w;
      watching = (async () => {
        for await (const e of w) {
          if (stopping) break;
          try {
            await onEntry(e, start);
          } catch (err) {
            log.error({ err, disk: e.key }, 'could not handle a registry change');
          }
        }
        if (!stopping) log.error('the disk registry watch ended; disks added from now on are not followed until a restart');
      })();
      for (const d of cfg.disks ?? []) {
        if ((await kv.get(d))?.operation !== 'PUT') log.info({ disk: d }, 'disk is not in the registry yet; waiting for its capture');
      }
      log.info('inferencer started');
    },
    stop() {
      stopping ??= (async () => {
        log.info('stopping inferencer');
        watcher?.stop();
        await watching;
        const all = [...workers.values()].map((w) => w.worker);
        const done = Promise.all(all.map((w) => w.stop()));
        let timer: NodeJS.Timeout | undefined;
        const late = await Promise.race([done.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), STOP_GRACE_MS)))]);
        clearTimeout(timer);
        if (late) {
          log.warn('workers did not finish within the grace period; abandoning unstored events (they are re-published on the next start)');
          for (const w of all) w.abort();
          await done;
        }
        workers.clear();
        view.clear();
        await nc?.drain();
        log.info('inferencer stopped');
      })();
      return stopping;
    },
  };
  return service;
}
