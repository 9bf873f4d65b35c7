import { runUntilSignal } from '@gammaray/ops';
import { pino } from 'pino';
import { readConfig, type CaptureFlags } from './config.js';
import { create } from './service.js';

export { ConfigError, readConfig, parseHostPort, DEFAULT_LISTEN, DEFAULT_NATS } from './config.js';
export type { CaptureConfig, CaptureFlags, DiskConfig } from './config.js';
export { create } from './service.js';
export type { CaptureService } from './service.js';
export { DiskProvider } from './provider.js';
export { ImageLock, imageLockDir, imageLockHolder } from '@gammaray/capture';

/**
 * `gammaray capture`: readConfig -> create -> start; SIGTERM/SIGINT -> stop. Resolves with the exit status
 * when the service has stopped (or, with --trace, when the trace is applied).
 */
export async function runCapture(flags: CaptureFlags): Promise<number> {
  const cfg = readConfig(flags);
  const log = pino({ name: 'gammaray-capture' });
  const service = create(cfg, log);
  return runUntilSignal(service, log, () =>
    service.traceDone?.then((n) => {
      log.info({ records: n }, 'trace applied');
    }),
  );
}
