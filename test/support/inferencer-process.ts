/**
 * Runs `gammaray inferencer` as a real process for integration tests: waits for a log line, and stops it with
 * SIGTERM (resolving with its exit status) or SIGKILL.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnService } from './service-process.js';

/** A running inferencer process. */
export interface InferencerProcess {
  readonly child: ChildProcess;
  /** Everything it logged so far (stdout and stderr). */
  logs(): string;
  /** Resolves once a log line matches `re` (rejects after `timeoutMs` or if the process exits). */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then its exit status. Idempotent. */
  stop(): Promise<number | null>;
  /** SIGKILL (no final checkpoint, no flush), then wait for the exit. */
  kill9(): Promise<void>;
}

/** Starts `gammaray inferencer --nats NATS ...args` and waits until it logs "inferencer started". */
export async function startInferencer(nats: string, args: readonly string[] = []): Promise<InferencerProcess> {
  const p = spawnService(['inferencer', '--nats', nats, ...args]);
  await p.waitForLog(/inferencer started/);
  return p;
}
