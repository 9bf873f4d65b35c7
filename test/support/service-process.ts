/**
 * A `gammaray <service>` child process for integration tests: its output gathered, waits for log lines, stops
 * with SIGTERM (resolving with the exit status) or SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from './capture-process.js';

/** A running service process. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  /** Everything it logged so far (stdout and stderr). */
  logs(): string;
  /** Resolves once a log line matches `re` (rejects after `timeoutMs` or if the process exits). */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then its exit status. Idempotent. */
  stop(): Promise<number | null>;
  /** SIGKILL (no clean shutdown), then wait for the exit. */
  kill9(): Promise<void>;
}

/**
 * Spawns `node gammaray.js ...args` (e.g. `['view', '--nats', url]`). The service stops by itself once this test
 * process is gone (GAMMARAY_PARENT_PID, as `gammaray up` starts them): a test that fails before stopping it, or
 * starts another in the same variable, leaves no process running after the test file.
 */
export function spawnService(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ServiceProcess {
  const name = args[0] ?? 'gammaray';
  let logs = '';
  const child = spawn('node', [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { GAMMARAY_PARENT_PID: String(process.pid), ...env } });
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
      const timer = setTimeout(() => done(new Error(`${name} did not log ${re} within ${timeoutMs} ms:\n${logs}`)), timeoutMs);
      listeners.add(check);
      void exited.then((code) => done(re.test(logs) ? undefined : new Error(`${name} exited with ${code} before logging ${re}:\n${logs}`)));
      check();
    });
  return {
    child,
    logs: () => logs,
    waitForLog,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
    kill9: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}
