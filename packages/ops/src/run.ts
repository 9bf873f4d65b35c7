import type { Logger } from 'pino';

/**
 * Longest a service's stop may take before the process exits anyway: above the capture's 30 s drain and the
 * inferencer's 20 s handover grace, below the deploy files' 60 s termination grace.
 */
export const STOP_DEADLINE_MS = 50_000;

/** A service as its `index.ts` runs it. */
export interface Runnable {
  start(): Promise<void>;
  /** Stops cleanly; safe to call after a failed start. */
  stop(): Promise<void>;
}

/**
 * Runs a service until SIGTERM/SIGINT (or until `until()`, when it returns a promise after the start, settles):
 * the signal handlers are set before the start, so a signal during a slow start still stops it cleanly; a
 * failed start stops what was started and rethrows. Resolves with exit status 0 once the service has stopped;
 * signals during the stop are logged and do not interrupt it.
 */
export async function runUntilSignal(service: Runnable, log: Logger, until?: () => Promise<unknown> | undefined): Promise<number> {
  let onSignal!: (sig: NodeJS.Signals) => void;
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    onSignal = (sig) => resolve(sig);
  });
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    try {
      await service.start();
    } catch (err) {
      await service.stop();
      throw err;
    }
    const finished = until?.();
    const outcome = await Promise.race([signalled.then((signal) => ({ signal })), ...(finished ? [finished.then(() => ({ signal: undefined }))] : [])]);
    if (outcome.signal) log.info({ signal: outcome.signal }, 'signal received');
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    // A second signal (a terminal's Ctrl-C reaches a whole process group, and a supervisor may send its own
    // SIGTERM too) must not kill the stop half way: a FUSE mount would be left dead, a checkpoint unwritten.
    const again = (signal: NodeJS.Signals): void => log.warn({ signal }, 'already stopping; the stop goes on (SIGKILL ends it at once)');
    process.on('SIGTERM', again);
    process.on('SIGINT', again);
    // A stop that waits on a NATS that is gone (each request to its timeout, a drain that never ends) must still
    // end: past STOP_DEADLINE_MS the process exits (what was not checkpointed is done again from the last one).
    const deadline = setTimeout(() => {
      log.error({ afterMs: STOP_DEADLINE_MS }, 'the stop did not finish in time (is NATS reachable?); exiting without it');
      process.exit(1);
    }, STOP_DEADLINE_MS);
    deadline.unref();
    try {
      await service.stop();
    } finally {
      clearTimeout(deadline);
      process.off('SIGTERM', again);
      process.off('SIGINT', again);
    }
  }
}
