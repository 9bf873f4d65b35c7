import { constants as osConstants } from 'node:os';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ReplicaStatus } from '@gammaray/replica';

/** What the metrics read from the service when scraped. */
export interface ViewMetricsSource {
  /** Every replica's status (followed disks only). */
  replicas(): ReplicaStatus[];
}

/** Seconds buckets for request latency: 50 µs (a Stat) to 30 s (a GetTree with hashes). */
const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

/**
 * The view's Prometheus metrics (prom-client, own registry, `gammaray_view_` prefix, base units), served with
 * /healthz and /readyz by @gammaray/ops. Labels are method names, status codes, FUSE operations, errno names and
 * disk ids: never paths.
 */
export class ViewMetrics {
  readonly registry = new Registry();
  readonly grpcRequests: Counter<'method' | 'code'>;
  readonly grpcLatency: Histogram<'method'>;
  readonly fuseRequests: Counter<'op' | 'result'>;
  readonly fuseLatency: Histogram<'op'>;
  constructor(source: ViewMetricsSource) {
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
}
