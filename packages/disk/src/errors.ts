/** Kinds of damage a partition table can have. */
export const DiskCorruptKind = {
  MbrSignature: 'MbrSignature',
  MbrEntry: 'MbrEntry',
  MbrExtendedChain: 'MbrExtendedChain',
  GptHeader: 'GptHeader',
  GptHeaderCrc: 'GptHeaderCrc',
  GptEntries: 'GptEntries',
  GptEntriesCrc: 'GptEntriesCrc',
  PartitionRange: 'PartitionRange',
  /** An LVM2 label, PV header, metadata area or metadata text. */
  Lvm: 'Lvm',
} as const;
/** See {@link DiskCorruptKind}. */
export type DiskCorruptKind = (typeof DiskCorruptKind)[keyof typeof DiskCorruptKind];

/** Base class of every error this package throws. */
export class DiskError extends Error {
  override name = 'DiskError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A partition table is damaged in a way that prevents using it. */
export class CorruptError extends DiskError {
  override name = 'CorruptError';
  readonly kind: DiskCorruptKind;
  readonly block: number | undefined;
  readonly field: string | undefined;
  constructor(kind: DiskCorruptKind, message: string, details: { block?: number; field?: string; cause?: unknown } = {}) {
    super(message, { cause: details.cause });
    this.kind = kind;
    this.block = details.block;
    this.field = details.field;
  }
}

/** Reading the underlying source failed or was out of range. */
export class IoError extends DiskError {
  override name = 'IoError';
  readonly offset: number | undefined;
  readonly length: number | undefined;
  constructor(message: string, details: { cause?: unknown; offset?: number; length?: number } = {}) {
    super(message, { cause: details.cause });
    this.offset = details.offset;
    this.length = details.length;
  }
}
