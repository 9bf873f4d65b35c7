// Moved to @gammaray/replica (views read disks the same way); kept so the service's modules import locally.
export { BlockFetchError, NatsBlockFetcher } from '@gammaray/replica';
export type { BlockFetchFailure, NatsBlockFetcherOptions } from '@gammaray/replica';
