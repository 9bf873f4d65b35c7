// Moved to @gammaray/replica (views restore the same checkpoints); kept so the service's modules import locally.
export { CheckpointStore, CheckpointFencedError } from '@gammaray/replica';
export type { Checkpoint } from '@gammaray/replica';
