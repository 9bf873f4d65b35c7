import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/nats-core';
import { Objm, StorageType } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { CorruptError, DiskState, KV_DISKS, KV_LEASES, KV_WORKERS, OBJ_STATE, decodeDiskEntry, isDiskId, type DiskRegistryEntry } from '@gammaray/wire';
import { pino, type Logger } from 'pino';
import { assignDisks } from './assignment.js';
import { DirectCheckpointStore, type CheckpointStore } from './checkpoints.js';
import type { InferencerConfig } from './config.js';
import { DiskWorker, type DiskWorkerOptions, type DiskWorkerStats } from './disk-worker.js';
import { ensureEventsStream } from './events-stream.js';
import { KvView } from './kv-view.js';
import { HeldLease, decodeLease, encodeLease, isCasFailure } from './leases.js';
import { InferencerMetrics, TakeoverReason } from './metrics.js';
import { OpsServer, natsConnectOptions, watchNatsLink } from '@gammaray/ops';

/** History kept per key of the disk registry (as capture creates it). */
const REGISTRY_HISTORY = 5;
/** How long stop() lets workers flush and checkpoint before giving up on their publishes. */
const STOP_GRACE_MS = 20_000;
/** How often the status line (owned disks, lag) is logged. */
const STATUS_LOG_INTERVAL_MS = 10_000;
/** Registrations of instances gone for this long leave KV_WORKERS (at least; the bucket's max age). */
const WORKERS_MAX_AGE_MS = 60_000;

/** How long start() retries a JetStream setup request that failed because JetStream was briefly unavailable. */
const SETUP_RETRY_MS = 60_000;

/**
 * JetStream unavailable for now rather than a wrong request: a timeout or no responders while a cluster elects a
 * leader (a NATS node was lost), or the API's 503.
 */
function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (['TimeoutError', 'NoResponders', 'JetStreamNotEnabled', 'RequestError'].includes(err.name)) return true;
  return err.name === 'JetStreamApiError' && (err as Error & { status?: number }).status === 503;
}

/** Runs one idempotent setup step of start(), again while it fails with a transient error, for SETUP_RETRY_MS. */
async function setupStep<T>(what: string, log: Logger, step: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + SETUP_RETRY_MS;
  for (;;) {
    try {
      return await step();
    } catch (err) {
      if (!isTransient(err) || Date.now() > deadline) throw err;
      log.warn({ err, step: what }, 'JetStream not available yet; retrying a start-up step');
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** An instance's registration in KV_WORKERS. */
export interface WorkerRegistration {
  readonly id: string;
  readonly startedAt: string;
  readonly heartbeatAt: string;
}

/** A running inferencer instance. */
export interface InferencerService {
  readonly instanceId: string;
  /** The disks this instance owns (holds the lease of) and follows, by id. */
  readonly workers: ReadonlyMap<string, DiskWorker>;
  /** The Prometheus metrics (also served on `--metrics`). */
  readonly metrics: InferencerMetrics;
  start(): Promise<void>;
  /**
   * Leaves the group: deregisters, then hands every disk over (stops its worker: flush, final checkpoint; then
   * releases its lease so another instance takes it at once), and closes the connection.
   */
  stop(): Promise<void>;
}

/** One owned disk. */
interface Owned {
  readonly lease: HeldLease;
  readonly worker: DiskWorker;
  entry: DiskRegistryEntry;
  releasing?: Promise<void>;
}

/**
 * Builds the service from a validated configuration; nothing runs until start().
 *
 * Scale-out: instances register in KV `gammaray-workers` (a put every heartbeat) and each disk of the registry is
 * owned by exactly one of them, through its lease in KV `gammaray-leases`. Every heartbeat each instance
 * computes the same balanced assignment of disks to the live instances ({@link assignDisks}), hands over the
 * disks assigned to someone else (final checkpoint, lease released) and takes the disks assigned to it whose
 * lease is free, released, or has not been renewed for a lease TTL (a compare-and-set that bumps the epoch). A
 * worker confirms its lease before each publish batch and checkpoint, so an owner that was paused or partitioned
 * stops as soon as it runs again. `tuning` shortens the restart backoff and poison-record rule in tests.
 */
export function create(
  cfg: InferencerConfig,
  log: Logger = pino({ name: 'gammaray-inferencer' }),
  tuning: Partial<Pick<DiskWorkerOptions, 'restartBackoffMs' | 'poisonAttempts' | 'resyncLimit'>> = {},
): InferencerService {
  const instanceId = `inferencer-${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`.replace(/[^A-Za-z0-9_=-]/g, '_');
  const startedAt = new Date().toISOString();
  const registry = new Map<string, DiskRegistryEntry>();
  const held = new Map<string, Owned>();
  const view = new Map<string, DiskWorker>();
  /** Workers stopped after their lease was lost, until they have ended (the disk is not taken again before). */
  const draining = new Map<string, Promise<void>>();
  let nc: NatsConnection | undefined;
  let kvWorkers: KV | undefined;
  let kvLeases: KV | undefined;
  let workersView: KvView | undefined;
  let leasesView: KvView | undefined;
  let checkpoints: CheckpointStore | undefined;
  let startWorker: ((disk: string, lease: HeldLease) => DiskWorker) | undefined;
  let watcher: QueuedIterator<KvWatchEntry> | undefined;
  let watching: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;
  let leaving = false;
  let ticker: NodeJS.Timeout | undefined;
  let lastTick = performance.now();
  let lastStatus = performance.now();
  let reconciling: Promise<void> | undefined;
  let again = false;
  /** False until the registry watch delivered the current disks: no assignment is computed from a partial set. */
  let registryReady = false;

  const liveInstances = (): string[] => {
    const now = performance.now();
    const ids = new Set<string>();
    for (const e of workersView?.entries() ?? []) {
      if (e.operation === 'PUT' && now - e.seenAt < cfg.leaseTtlMs) ids.add(e.key);
    }
    if (leaving) ids.delete(instanceId);
    else ids.add(instanceId);
    return [...ids];
  };

  const ownedStats = (): Map<string, DiskWorkerStats> => new Map([...held].map(([d, o]) => [d, o.worker.stats]));
  const metrics = new InferencerMetrics({ ownedDisks: ownedStats, liveInstances: () => liveInstances().length });
  let natsUp = (): boolean => false;
  const ops = new OpsServer(metrics.registry, () => {
    if (!nc || !natsUp()) return { ready: false, why: 'not connected to NATS' };
    if (!registryReady) return { ready: false, why: 'starting: reading the disk registry' };
    const disks = [...ownedStats()].map(([disk, s]) => ({ disk, appliedSeq: s.appliedSeq, lagRecords: s.lagRecords }));
    return { ready: true, detail: { liveInstances: liveInstances().length, disks } };
  });

  const register = async (): Promise<void> => {
    const value: WorkerRegistration = { id: instanceId, startedAt, heartbeatAt: new Date().toISOString() };
    const bytes = new TextEncoder().encode(JSON.stringify(value));
    const rev = await kvWorkers!.put(instanceId, bytes); // ok: set in start()
    workersView?.note(instanceId, rev, 'PUT', bytes);
  };

  const onLost = (lease: HeldLease, reason: string): void => {
    const o = held.get(lease.disk);
    if (!o || o.lease !== lease) return;
    held.delete(lease.disk);
    view.delete(lease.disk);
    metrics.leasesLost.inc();
    log.warn({ disk: lease.disk, epoch: lease.epoch, reason }, 'stopping the worker of a disk whose lease was lost');
    const done = o.worker.revoke().finally(() => draining.delete(lease.disk));
    draining.set(lease.disk, done);
  };

  /** Hands a disk over: stop its worker (flush, final checkpoint), then release the lease. */
  const release = (disk: string, why: string): Promise<void> => {
    const o = held.get(disk);
    if (!o) return Promise.resolve();
    o.releasing ??= (async () => {
      log.info({ disk, epoch: o.lease.epoch, why }, 'handing the disk over');
      await o.worker.stop();
      await o.lease.release();
      if (held.get(disk) === o) {
        held.delete(disk);
        view.delete(disk);
      }
      metrics.handovers.inc();
    })();
    return o.releasing;
  };

  /** Takes the disk's lease if it is free, released or expired; a lost compare-and-set means someone else won. */
  const acquire = async (disk: string): Promise<void> => {
    const kv = kvLeases!; // ok: set in start()
    const e = leasesView!.get(disk); // ok: set in start()
    const sentAt = performance.now();
    let reason: TakeoverReason;
    let epoch: number;
    let previous: string | undefined;
    let bytes: Uint8Array;
    let rev: number;
    try {
      if (!e || e.operation !== 'PUT') {
        reason = TakeoverReason.Free;
        // A lease key that was deleted lost its epoch; the checkpoint keeps the last one.
        epoch = ((await checkpoints!.epoch(disk)) ?? 0) + 1; // ok: set in start()
        bytes = encodeLease({ owner: instanceId, epoch, renewedAt: new Date().toISOString() });
        rev = await kv.create(disk, bytes);
      } else {
        const v = decodeLease(e.value);
        const age = leasesView!.age(disk); // ok: set in start()
        if (v.owner === '') reason = TakeoverReason.Released;
        else if (v.owner === instanceId || age >= cfg.leaseTtlMs) reason = TakeoverReason.Expired;
        else return; // its owner is alive: it hands the disk over once it sees this instance
        previous = v.owner || undefined;
        // Above the checkpoint's epoch too, in case the lease bucket lost its history.
        epoch = Math.max(v.epoch, (await checkpoints!.epoch(disk)) ?? 0) + 1; // ok: set in start()
        bytes = encodeLease({ owner: instanceId, epoch, renewedAt: new Date().toISOString() });
        rev = await kv.update(disk, bytes, e.revision);
        if (reason === TakeoverReason.Expired) log.warn({ disk, previous, epoch, leaseAgeMs: Math.round(age) }, 'taking over an expired disk lease');
      }
    } catch (err) {
      if (isCasFailure(err)) return; // another instance wrote the lease first; the watch brings its value
      throw err;
    }
    leasesView!.note(disk, rev, 'PUT', bytes); // ok: set in start()
    const lease = new HeldLease(kv, disk, instanceId, epoch, rev, sentAt, { ttlMs: cfg.leaseTtlMs, log, onLost });
    metrics.takeovers.inc({ reason });
    log.info({ disk, epoch, reason, previous }, 'disk lease acquired');
    startWorker!(disk, lease); // ok: set in start()
  };

  const reconcileOnce = async (): Promise<void> => {
    if (stopping || !leasesView || !registryReady) return;
    const live = liveInstances();
    const target = assignDisks(registry.keys(), live);
    for (const disk of held.keys()) {
      if (target.get(disk) !== instanceId) void release(disk, registry.has(disk) ? 'assigned to another instance' : 'left the registry').catch((err: unknown) => log.error({ err, disk }, 'handover failed'));
    }
    const want = [...target].filter(([disk, owner]) => owner === instanceId && !held.has(disk) && !draining.has(disk)).map(([disk]) => disk);
    await Promise.all(want.map((disk) => acquire(disk).catch((err: unknown) => log.warn({ err, disk }, 'could not acquire the disk lease; retrying at the next heartbeat'))));
  };

  /** Runs reconcileOnce, one at a time; a request while one runs makes it run once more afterwards. */
  const reconcile = (): void => {
    if (reconciling) {
      again = true;
      return;
    }
    reconciling = (async () => {
      do {
        again = false;
        await reconcileOnce();
      } while (again && !stopping);
    })()
      .catch((err: unknown) => log.error({ err }, 'rebalancing failed'))
      .finally(() => (reconciling = undefined));
  };

  const tick = async (): Promise<void> => {
    const now = performance.now();
    const gap = now - lastTick;
    lastTick = now;
    if (gap > cfg.leaseTtlMs) {
      // This process did not run for longer than a lease (SIGSTOP, a stall): what it observed is stale, and
      // every other instance looks dead. Re-arm the observations; its own leases are settled by their renewals.
      log.warn({ stalledMs: Math.round(gap) }, 'this instance was stalled for longer than a lease TTL');
      workersView?.touchAll();
      leasesView?.touchAll();
    }
    await register().catch((err: unknown) => log.warn({ err }, 'heartbeat could not be stored'));
    await Promise.all([...held.values()].map((o) => o.lease.renew()));
    reconcile();
    if (now - lastStatus >= STATUS_LOG_INTERVAL_MS) {
      lastStatus = now;
      const disks = [...held].map(([disk, o]) => {
        const s = o.worker.stats;
        return { disk, epoch: o.lease.epoch, appliedSeq: s.appliedSeq, lagRecords: s.lagRecords, lagSeconds: Math.round(s.lagSeconds * 10) / 10 };
      });
      log.info({ ownedDisks: held.size, liveInstances: liveInstances().length, registryDisks: registry.size, disks }, 'inferencer status');
    }
  };

  const onEntry = async (e: KvWatchEntry): Promise<void> => {
    if (!isDiskId(e.key)) return;
    if (cfg.disks && !cfg.disks.includes(e.key)) return;
    if (e.operation !== 'PUT') {
      log.info({ disk: e.key }, 'disk left the registry');
      registry.delete(e.key);
      reconcile();
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
    const was = registry.get(entry.disk);
    registry.set(entry.disk, entry);
    const have = held.get(entry.disk);
    if (have && have.entry.size === entry.size && have.entry.partition === entry.partition && have.entry.source === entry.source) {
      have.entry = entry;
      if (entry.state === DiskState.Detached) log.info({ disk: entry.disk }, 'disk detached from its capture; block reads wait for it to return');
    } else if (have) {
      // Hand it over and take it again: the new worker starts with the new size or partition.
      const what = have.entry.size !== entry.size ? 'size' : have.entry.source !== entry.source ? 'source disk' : 'partition';
      log.warn({ disk: entry.disk, was: have.entry.size, size: entry.size, wasPartition: have.entry.partition, partition: entry.partition }, `disk ${what} changed; restarting its worker`);
      await release(entry.disk, `disk ${what} changed`);
    } else if (!was) {
      log.info({ disk: entry.disk, size: entry.size }, 'disk in the registry');
    }
    reconcile();
  };

  const service: InferencerService = {
    instanceId,
    workers: view,
    metrics,
    async start() {
      log.info(
        { nats: cfg.nats, disks: cfg.disks ?? 'all', instanceId, inlineLimit: cfg.inlineLimit, checkpointIntervalMs: cfg.checkpointIntervalMs, leaseTtlMs: cfg.leaseTtlMs, heartbeatMs: cfg.heartbeatMs },
        'starting inferencer',
      );
      if (cfg.metrics) await ops.listen(cfg.metrics.host, cfg.metrics.port, log.child({ component: 'ops' }));
      const conn = await connect(natsConnectOptions(cfg.nats, instanceId, cfg.natsAuth));
      nc = conn;
      natsUp = watchNatsLink(conn);
      const jsm = await jetstreamManager(conn);
      const js = jetstream(conn);
      await setupStep('events stream', log, () => ensureEventsStream(jsm, { replicas: cfg.replicas }));
      const os = await setupStep('checkpoint store', log, () => new Objm(conn).create(OBJ_STATE, { replicas: cfg.replicas, storage: StorageType.File, description: 'gammaray inferencer checkpoints, one object per disk' }));
      const store = new DirectCheckpointStore(os, jsm);
      checkpoints = store;
      const kvm = new Kvm(conn);
      // Created here too (same settings as capture) so the services may start in either order.
      const kv = await setupStep(KV_DISKS, log, () => kvm.create(KV_DISKS, { replicas: cfg.replicas, history: REGISTRY_HISTORY }));
      kvWorkers = await setupStep(KV_WORKERS, log, () => kvm.create(KV_WORKERS, { replicas: cfg.replicas, history: 1, ttl: Math.max(WORKERS_MAX_AGE_MS, 10 * cfg.leaseTtlMs) }));
      kvLeases = await setupStep(KV_LEASES, log, () => kvm.create(KV_LEASES, { replicas: cfg.replicas, history: 1 }));
      startWorker = (disk, lease) => {
        const entry = registry.get(disk)!; // ok: only disks of the registry are assigned
        const worker = new DiskWorker({
          nc: conn,
          js,
          jsm,
          checkpoints: store,
          disk,
          size: entry.size,
          partition: entry.partition,
          source: entry.source,
          inlineLimit: cfg.inlineLimit,
          checkpointIntervalMs: cfg.checkpointIntervalMs,
          log: log.child({ component: 'disk-worker', disk }),
          fence: lease,
          workerId: instanceId,
          onFenced: () => {
            // A newer owner's checkpoint refused ours: give the lease up; it is taken again above that epoch.
            void release(disk, 'checkpoint fenced by a newer epoch').catch((err: unknown) => log.error({ err, disk }, 'handover failed'));
          },
          ...tuning,
        });
        held.set(disk, { lease, worker, entry });
        view.set(disk, worker);
        log.info({ disk, size: entry.size, state: entry.state, epoch: lease.epoch }, 'following disk');
        worker.start();
        return worker;
      };
      await setupStep('registration', log, register);
      // Rebalance at once when membership or ownership changes; renewals alone only refresh the ages.
      workersView = new KvView(kvWorkers, log.child({ component: 'workers-view' }), (e, prev) => {
        if (!prev || prev.operation !== e.operation || performance.now() - prev.seenAt >= cfg.leaseTtlMs) reconcile();
      });
      leasesView = new KvView(kvLeases, log.child({ component: 'leases-view' }), (e, prev) => {
        if (!prev || prev.operation !== e.operation || decodeLease(prev.value).owner !== decodeLease(e.value).owner) reconcile();
      });
      await Promise.all([workersView.start(), leasesView.start()]);
      const registered = (await setupStep('registry status', log, () => kv.status())).values;
      let ready: () => void = () => {};
      const initial = new Promise<void>((r) => (ready = r));
      const markReady = (): void => {
        if (registryReady) return;
        registryReady = true;
        ready();
        reconcile();
      };
      if (registered === 0) markReady();
      const w = await kv.watch({ include: KvWatchInclude.LastValue });
      watcher = w;
      watching = (async () => {
        for await (const e of w) {
          if (stopping) break;
          try {
            await onEntry(e);
          } catch (err) {
            log.error({ err, disk: e.key }, 'could not handle a registry change');
          }
          if (e.isUpdate || e.delta === 0) markReady();
        }
        if (!stopping) log.error('the disk registry watch ended; disks added from now on are not followed until a restart');
      })();
      for (const d of cfg.disks ?? []) {
        if ((await kv.get(d))?.operation !== 'PUT') log.info({ disk: d }, 'disk is not in the registry yet; waiting for its capture');
      }
      let readyTimer: NodeJS.Timeout | undefined;
      await Promise.race([initial, new Promise<void>((r) => (readyTimer = setTimeout(r, 2_000)))]);
      clearTimeout(readyTimer);
      markReady();
      lastTick = performance.now();
      ticker = setInterval(() => void tick().catch((err: unknown) => log.error({ err }, 'heartbeat failed')), cfg.heartbeatMs);
      reconcile();
      log.info({ instanceId }, 'inferencer started');
    },
    stop() {
      stopping ??= (async () => {
        log.info('stopping inferencer');
        clearInterval(ticker);
        watcher?.stop();
        await watching;
        await reconciling;
        // Leave first, so the others assign this instance's disks among themselves and wait for the handover.
        leaving = true;
        await kvWorkers?.delete(instanceId).catch((err: unknown) => log.warn({ err }, 'could not deregister'));
        // Keep the leases renewed while the workers finish.
        const keepAlive = setInterval(() => {
          for (const o of held.values()) void o.lease.renew();
        }, cfg.heartbeatMs);
        const owned = [...held.values()];
        const done = Promise.all([...held.keys()].map((d) => release(d, 'instance stopping')));
        let timer: NodeJS.Timeout | undefined;
        const late = await Promise.race([done.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), STOP_GRACE_MS)))]);
        clearTimeout(timer);
        if (late) {
          log.warn('workers did not finish within the grace period; abandoning unstored events (they are re-published by the next owner)');
          for (const o of owned) o.worker.abort();
          await done;
        }
        clearInterval(keepAlive);
        await Promise.all(draining.values());
        held.clear();
        view.clear();
        await workersView?.stop();
        await leasesView?.stop();
        await ops.stop();
        await nc?.drain();
        log.info('inferencer stopped');
      })();
      return stopping;
    },
  };
  return service;
}
