/**
 * Runs `gammaray capture` as a real process for integration tests: waits for its "serving NBD" log line, and
 * stops it with SIGTERM (resolving with its exit status).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

/** The built CLI. */
export const CLI = fileURLToPath(new URL('../../packages/cli/bin/gammaray.js', import.meta.url));

/** A running capture process. */
export interface CaptureProcess {
  readonly child: ChildProcess;
  readonly port: number;
  /** nbd:// URL of export `disk` (nbd+unix:// with --listen-unix). */
  url(disk: string): string;
  /** Everything it logged so far (stdout and stderr). */
  logs(): string;
  /** SIGTERM, then its exit status. Idempotent. */
  stop(): Promise<number | null>;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** Starts `gammaray capture --nats NATS --listen 127.0.0.1:PORT --disk ID=IMAGE ...` and waits until it serves. */
export async function startCapture(nats: string, disks: Record<string, string>, args: readonly string[] = []): Promise<CaptureProcess> {
  // With --listen-unix among `args` the capture serves that socket, not a TCP port (`port` is then 0).
  const sock = args.includes('--listen-unix') ? args[args.indexOf('--listen-unix') + 1] : undefined;
  const port = sock === undefined ? await freeTcpPort() : 0;
  let logs = '';
  const diskArgs = Object.entries(disks).flatMap(([id, image]) => ['--disk', `${id}=${image}`]);
  const listen = sock === undefined ? ['--listen', `127.0.0.1:${port}`] : [];
  // Stops by itself once this test process is gone (see spawnService).
  const child = spawn('node', [CLI, 'capture', '--nats', nats, ...listen, ...diskArgs, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { GAMMARAY_PARENT_PID: String(process.pid), ...process.env } });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`capture did not start within 20 s: ${logs}`)), 20_000);
    const onData = (b: Buffer) => {
      logs += b.toString();
      if (logs.includes('serving NBD')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData); // ok: piped
    child.stderr!.on('data', onData); // ok: piped
    child.once('exit', (code) => reject(new Error(`capture exited with ${code}: ${logs}`)));
  });
  return {
    child,
    port,
    url: (disk) => (sock === undefined ? `nbd://127.0.0.1:${port}/${disk}` : `nbd+unix:///${disk}?socket=${sock}`),
    logs: () => logs,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const done = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      return done;
    },
  };
}
