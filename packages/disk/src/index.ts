export type { BlockSource } from './block-source.js';
export { FileBlockSource, MemoryBlockSource, SliceBlockSource } from './block-source.js';
export { DiskError, CorruptError, IoError, DiskCorruptKind } from './errors.js';
