/**
 * `gammaray view`: connects to NATS, keeps a replica of every attached disk (packages/replica), serves them over
 * gRPC, optionally mounts them with FUSE, and exposes metrics and health over HTTP.
 */
import { hostname } from 'node:os';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { OpsServer, natsConnectOptions, watchNatsLink } from '@gammaray/ops';
import { ReplicaSet } from '@gammaray/replica';
import type { Logger } from 'pino';
import { createViewHandlers, type ViewHandlers } from './api.js';
import { isLoopback, type ViewConfig } from './config.js';
import { mountFuse, type FuseMount } from './fuse/index.js';
import { ViewMetrics } from './metrics.js';
import { VIEW_SERVICE_NAME } from './proto.js';
import { startGrpcServer, type GrpcServer } from './server.js';

/** How long stop() lets unary calls and short streams finish before cancelling them. */
const STOP_GRACE_MS = 3_000;

/** A view instance. */
export interface ViewService {
  readonly metrics: ViewMetrics;
  /** The /metrics, /healthz, /readyz server (listening only with `--metrics`). */
  readonly ops: OpsServer;
  /** The gRPC port once started (the real one when 0 was asked for). */
  readonly grpcPort: number | undefined;
  /** The replicas once started. */
  readonly replicas: ReplicaSet | undefined;
  start(): Promise<void>;
  /** Health NOT_SERVING, ends watches, drains calls, unmounts, stops the replicas, closes NATS. Idempotent. */
  stop(): Promise<void>;
}

/** Builds a view instance from its configuration (nothing is started before `start()`). */
export function create(cfg: ViewConfig, log: Logger): ViewService {
  const instanceId = `view-${hostname()}-${process.pid}`;
  let nc: NatsConnection | undefined;
  let replicas: ReplicaSet | undefined;
  let handlers: ViewHandlers | undefined;
  let grpcServer: GrpcServer | undefined;
  let fuse: FuseMount | undefined;
  let started = false;
  let stopping: Promise<void> | undefined;

  const statuses = () => (replicas?.list() ?? []).flatMap((d) => (d.replica ? [d.replica.status()] : []));
  const metrics = new ViewMetrics({ replicas: statuses });
  let natsUp = (): boolean => false;
  // Ready = able to answer; a disk still waiting for its first checkpoint is per-disk (FAILED_PRECONDITION), not
  // a reason to take the whole view out of a load balancer.
  const ops = new OpsServer(metrics.registry, () => {
    const detail = { disks: statuses().map((s) => ({ disk: s.disk, phase: s.phase, appliedSeq: s.appliedSeq, pending: s.pending })) };
    if (stopping) return { ready: false, why: 'stopping', detail };
    if (!started) return { ready: false, why: 'starting', detail };
    if (!nc || !natsUp() || nc.isDraining()) return { ready: false, why: 'not connected to NATS', detail };
    return { ready: true, detail };
  });

  return {
    metrics,
    ops,
    get grpcPort() {
      return grpcServer?.port;
    },
    get replicas() {
      return replicas;
    },
    async start() {
      log.info({ nats: cfg.nats, grpc: cfg.grpc, mount: cfg.mount, tls: !!cfg.tls, clientCerts: !!cfg.tls?.clientCa, token: !!cfg.token, disks: cfg.disks ?? 'all', instanceId }, 'starting view');
      if (!isLoopback(cfg.grpc.host) && !cfg.tls && !cfg.token) {
        log.warn({ grpc: cfg.grpc }, 'serving gRPC beyond loopback in plaintext without a token: anyone who reaches the port reads every disk; use --tls-cert/--tls-key and --token');
      }
      if (cfg.metrics) await ops.listen(cfg.metrics.host, cfg.metrics.port, log.child({ component: 'ops' }));
      const conn = await connect(natsConnectOptions(cfg.nats, instanceId, cfg.natsAuth));
      nc = conn;
      natsUp = watchNatsLink(conn);
      const set = new ReplicaSet({ nc: conn, log: log.child({ component: 'replica' }), replicas: cfg.replicas, disks: cfg.disks });
      await set.start();
      replicas = set;
      handlers = createViewHandlers({ replicas: set, js: jetstream(conn), jsm: await jetstreamManager(conn), log: log.child({ component: 'grpc' }) });
      grpcServer = await startGrpcServer({
        address: cfg.grpc,
        implementation: handlers.implementation,
        tls: cfg.tls,
        token: cfg.token,
        log: log.child({ component: 'grpc' }),
        onCall: (method, code, seconds) => metrics.grpcCall(method, code, seconds),
      });
      grpcServer.health.setStatus('', 'SERVING');
      grpcServer.health.setStatus(VIEW_SERVICE_NAME, 'SERVING');
      log.info({ host: cfg.grpc.host, port: grpcServer.port, tls: !!cfg.tls }, 'serving gRPC');
      if (cfg.mount) {
        fuse = await mountFuse({ replicas: set, dir: cfg.mount, log: log.child({ component: 'fuse' }), allowOther: cfg.allowOther, metrics });
        log.info({ mount: cfg.mount, allowOther: cfg.allowOther }, 'mounted');
      }
      started = true;
      log.info({ instanceId, disks: set.list().map((d) => d.entry.disk) }, 'view started');
    },
    stop() {
      stopping ??= (async () => {
        log.info('stopping view');
        grpcServer?.health.setStatus('', 'NOT_SERVING');
        grpcServer?.health.setStatus(VIEW_SERVICE_NAME, 'NOT_SERVING');
        handlers?.closeWatches();
        if (fuse) {
          await fuse.unmount().catch((err: unknown) => log.error({ err, mount: cfg.mount }, 'unmount failed; run: fusermount -u DIR'));
        }
        await grpcServer?.stop(STOP_GRACE_MS);
        await replicas?.stop();
        if (nc && !nc.isClosed()) await nc.close().catch((err: unknown) => log.warn({ err }, 'closing the NATS connection failed'));
        await ops.stop();
        log.info('view stopped');
      })();
      return stopping;
    },
  };
}
