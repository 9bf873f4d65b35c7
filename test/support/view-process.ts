/**
 * Runs `gammaray view` as a real process for integration tests: `--grpc 127.0.0.1:0` unless given, waits for its
 * "serving gRPC" log line and reads the bound port from it; stops it with SIGTERM (resolving with its exit status).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from './capture-process.js';

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
  let logs = '';
  const grpcArgs = args.includes('--grpc') ? [] : ['--grpc', '127.0.0.1:0'];
  const child = spawn('node', [CLI, 'view', '--nats', nats, ...grpcArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const listeners = new Set<() => void>();
  const onData = (b: Buffer): void => {
    logs += b.toString();
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData); // ok: piped
  child.stderr!.on('data', onData); // ok: piped
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const waitForLog = (re: RegExp, timeoutMs = 20_000): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (re.test(logs)) done(undefined);
      };
      const done = (err: Error | undefined): void => {
        clearTimeout(timer);
        listeners.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => done(new Error(`view did not log ${re} within ${timeoutMs} ms:\n${logs}`)), timeoutMs);
      listeners.add(check);
      void exited.then((code) => done(re.test(logs) ? undefined : new Error(`view exited with ${code} before logging ${re}:\n${logs}`)));
      check();
    });
  await waitForLog(/"msg":"view started"/);
  const m = /"port":(\d+),"tls":(?:true|false),"msg":"serving gRPC"/.exec(logs);
  if (!m) throw new Error(`view logged no gRPC port:\n${logs}`);
  const port = Number(m[1]);
  const mm = /"port":(\d+),"msg":"serving Prometheus metrics/.exec(logs);
  return {
    metricsPort: mm ? Number(mm[1]) : undefined,
    child,
    port,
    address: `127.0.0.1:${port}`,
    logs: () => logs,
    waitForLog,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
  };
}
