// Moved to @gammaray/replica (views restore the same checkpoints, the same way); kept so the service's modules
// import locally.
export { CheckpointStore, CheckpointFencedError, DirectCheckpointStore, MAX_CHECKPOINT_DELTAS } from '@gammaray/replica';
export type { Checkpoint, CheckpointSaveMeta } from '@gammaray/replica';
