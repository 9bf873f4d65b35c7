import { runUntilSignal } from '@gammaray/ops';
import { pino } from 'pino';
import { readConfig, type InferencerFlags } from './config.js';
import { create } from './service.js';

export {
  ConfigError,
  readConfig,
  parseHostPort,
  DEFAULT_NATS,
  DEFAULT_INLINE_LIMIT,
  MAX_INLINE_LIMIT,
  DEFAULT_CHECKPOINT_INTERVAL_S,
  MAX_CHECKPOINT_INTERVAL_S,
  DEFAULT_LEASE_TTL_S,
  DEFAULT_HEARTBEAT_S,
} from './config.js';
export type { InferencerConfig, InferencerFlags } from './config.js';
export { create } from './service.js';
export type { InferencerService, WorkerRegistration } from './service.js';
export { DiskWorker, CHECKPOINT_COST_FACTOR, CHECKPOINT_DELTA_FRACTION, CheckpointChain } from './disk-worker.js';
export type { DiskWorkerOptions, DiskWorkerStats, DiskFence } from './disk-worker.js';
export { assignDisks, rendezvousScore } from './assignment.js';
export { HeldLease, LeaseLostError, LeaseUnconfirmedError, encodeLease, decodeLease, isCasFailure } from './leases.js';
export type { LeaseValue, HeldLeaseOptions } from './leases.js';
export { KvView } from './kv-view.js';
export type { ObservedEntry } from './kv-view.js';
export { InferencerMetrics, TakeoverReason } from './metrics.js';
export type { MetricsSource } from './metrics.js';
export { NatsBlockFetcher, BlockFetchError } from './block-fetcher.js';
export type { NatsBlockFetcherOptions, BlockFetchFailure } from './block-fetcher.js';
export { EventPublisher } from './event-publisher.js';
export type { EventPublisherOptions } from './event-publisher.js';
export { CheckpointStore, CheckpointFencedError } from './checkpoints.js';
export type { Checkpoint } from './checkpoints.js';
export { ensureEventsStream, EVENTS_MAX_MSG_SIZE, EVENTS_DUPLICATE_WINDOW_MS } from './events-stream.js';

/**
 * `gammaray inferencer`: readConfig -> create -> start; SIGTERM/SIGINT -> stop. Resolves with the exit status
 * once the service has stopped.
 */
export async function runInferencer(flags: InferencerFlags): Promise<number> {
  const cfg = readConfig(flags);
  const log = pino({ name: 'gammaray-inferencer' });
  return runUntilSignal(create(cfg, log), log);
}
