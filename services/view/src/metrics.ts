import { createServer, type Server } from 'node:http';
import { constants as osConstants } from 'node:os';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { ReplicaStatus } from '@gammaray/replica';

/** What the metrics and the health endpoints read from the service when asked. */
export interface ViewMetricsSource {
  /** Every replica's status (followed disks only). */
  replicas(): ReplicaStatus[];
  /** Whether the view can serve: started, connected to NATS, not stopping. */
  ready(): { ready: boolean; why?: string };
}

/** Seconds buckets for request latency: 50 µs (a Stat) to 30 s (a GetTree with hashes). */
const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

/**
 * The view's Prometheus metrics (prom-client, own registry, `gammaray_view_` prefix, base units) and its HTTP
 * endpoint: `/metrics`, `/healthz` (the process answers), `/readyz` (it can serve: 200, else 503 with the reason).
 * Labels are method names, status codes, FUSE operations, errno names and disk ids: never paths.
 */
export class ViewMetrics {
  readonly registry = new Registry();
  readonly grpcRequests: Counter<'method' | 'code'>;
  readonly grpcLatency: Histogram<'method'>;
  readonly fuseRequests: Counter<'op' | 'result'>;
  readonly fuseLatency: Histogram<'op'>;
  #server: Server | undefined;
  #address: { host: string; port: number } | undefined;

  constructor(private readonly source: ViewMetricsSource) {
    const registers = [this.registry];
    this.grpcRequests = new Counter({ name: 'gammaray_view_grpc_requests_total', help: 'gRPC calls finished, by method and status code name', labelNames: ['method', 'code'], registers });
    this.grpcLatency = new Histogram({ name: 'gammaray_view_grpc_request_duration_seconds', help: 'gRPC call duration (streams: until the status), by method', labelNames: ['method'], buckets: LATENCY_BUCKETS, registers });
    this.fuseRequests = new Counter({ name: 'gammaray_view_fuse_requests_total', help: 'FUSE operations answered, by operation and result (ok or the errno name)', labelNames: ['op', 'result'], registers });
    this.fuseLatency = new Histogram({ name: 'gammaray_view_fuse_request_duration_seconds', help: 'FUSE operation duration, by operation', labelNames: ['op'], buckets: LATENCY_BUCKETS, registers });
    new Gauge({
      name: 'gammaray_view_replica_applied_seq',
      help: 'Last GAMMARAY_WRITES sequence applied by the replica of the disk (-1 before its first restore)',
      labelNames: ['disk'],
      registers,
      collect() {
        this.reset();
        for (const s of source.replicas()) this.set({ disk: s.disk }, s.appliedSeq);
      },
    });
    new Gauge({
      name: 'gammaray_view_replica_lag_records',
      help: 'Records of the disk in GAMMARAY_WRITES the replica has still to apply',
      labelNames: ['disk'],
      registers,
      collect() {
        this.reset();
        for (const s of source.replicas()) this.set({ disk: s.disk }, s.pending);
      },
    });
    new Gauge({
      name: 'gammaray_view_replica_ready',
      help: 'Whether the replica of the disk has a state to answer from (1) or waits for its first checkpoint (0)',
      labelNames: ['disk'],
      registers,
      collect() {
        this.reset();
        for (const s of source.replicas()) this.set({ disk: s.disk }, s.appliedSeq >= 0 ? 1 : 0);
      },
    });
  }

  /** Records one finished gRPC call. */
  grpcCall(method: string, code: string, seconds: number): void {
    this.grpcRequests.inc({ method, code });
    this.grpcLatency.observe({ method }, seconds);
  }

  /** Records one FUSE operation (`errno` 0 or negative, as fuse-native callbacks take it). The FUSE layer calls it. */
  request(op: string, errno: number, seconds: number): void {
    const result = errno === 0 ? 'ok' : (ERRNO_NAMES.get(Math.abs(errno)) ?? `errno${Math.abs(errno)}`);
    this.fuseRequests.inc({ op, result });
    this.fuseLatency.observe({ op }, seconds);
  }

  /** The address it listens on (the real port when 0 was asked for). */
  get address(): { host: string; port: number } | undefined {
    return this.#address;
  }

  /** Serves /metrics, /healthz and /readyz on host:port. */
  async listen(host: string, port: number, log: Logger): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'GET') {
        res.writeHead(405).end();
      } else if (path === '/metrics') {
        this.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
          (err: unknown) => {
            log.warn({ err }, 'metrics could not be collected');
            res.writeHead(500).end();
          },
        );
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const r = this.source.ready();
        const disks = this.source.replicas().map((s) => ({ disk: s.disk, phase: s.phase, appliedSeq: s.appliedSeq, pending: s.pending }));
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify({ ready: r.ready, why: r.why, disks })}\n`);
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    const addr = server.address();
    this.#address = { host, port: typeof addr === 'object' && addr ? addr.port : port };
    log.info({ host, port: this.#address.port }, 'serving Prometheus metrics at /metrics, health at /healthz and /readyz');
  }

  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }
}
