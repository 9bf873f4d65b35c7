/**
 * Runs `gammaray view` as a real process for integration tests: `--grpc 127.0.0.1:0` unless given, waits for its
 * "serving gRPC" log line and reads the bound port from it; stops it with SIGTERM (resolving with its exit status).
 */
import type { ChildProcess } from 'node:child_process';
import { spawnService } from './service-process.js';

/** A running view process. */
export interface ViewProcess {
  readonly child: ChildProcess;
  /** The gRPC port it bound. */
  readonly port: number;
  /** `127.0.0.1:PORT`. */
  readonly address: string;
  /** The /metrics, /healthz, /readyz port when started with `--metrics`. */
  readonly metricsPort: number | undefined;
  /** Everything it logged so far (stdout and stderr). */
  logs(): string;
  /** Resolves once a log line matches `re` (rejects after `timeoutMs` or if the process exits). */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then its exit status. Idempotent. */
  stop(): Promise<number | null>;
}

/** Starts `gammaray view --nats NATS --grpc 127.0.0.1:0 ...args` and waits until it serves gRPC. */
export async function startView(nats: string, args: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<ViewProcess> {
  const grpcArgs = args.includes('--grpc') ? [] : ['--grpc', '127.0.0.1:0'];
  const p = spawnService(['view', '--nats', nats, ...grpcArgs, ...args], env);
  const { child, waitForLog, logs: allLogs } = p;
  await waitForLog(/"msg":"view started"/);
  const logs = allLogs();
  const m = /"port":(\d+),"tls":(?:true|false),"msg":"serving gRPC"/.exec(logs);
  if (!m) throw new Error(`view logged no gRPC port:\n${logs}`);
  const port = Number(m[1]);
  const mm = /"port":(\d+),"msg":"serving Prometheus metrics/.exec(logs);
  return {
    metricsPort: mm ? Number(mm[1]) : undefined,
    child,
    port,
    address: `127.0.0.1:${port}`,
    logs: allLogs,
    waitForLog,
    stop: p.stop,
  };
}
