import type { Logger } from 'pino';

/** A service as its `index.ts` runs it. */
export interface Runnable {
  start(): Promise<void>;
  /** Stops cleanly; safe to call after a failed start. */
  stop(): Promise<void>;
}

/**
 * Runs a service until SIGTERM/SIGINT (or until `until()`, when it returns a promise after the start, settles):
 * the signal handlers are set before the start, so a signal during a slow start still stops it cleanly; a
 * failed start stops what was started and rethrows. Resolves with exit status 0 once the service has stopped.
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
    await service.stop();
  }
}
