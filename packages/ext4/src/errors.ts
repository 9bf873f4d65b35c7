/**
 * Every error this package throws for any input bytes. Bad disk data can only
 * ever produce these, never a TypeError or RangeError.
 */

/** What was found damaged. Each value names one structure and field family. */
export const CorruptKind = {
  SuperblockMagic: 'SuperblockMagic',
  SuperblockField: 'SuperblockField',
  SuperblockChecksum: 'SuperblockChecksum',
  GroupDescriptor: 'GroupDescriptor',
  GroupDescriptorChecksum: 'GroupDescriptorChecksum',
  InodeNumber: 'InodeNumber',
  InodeField: 'InodeField',
  InodeChecksum: 'InodeChecksum',
  ExtentHeader: 'ExtentHeader',
  ExtentEntry: 'ExtentEntry',
  ExtentLoop: 'ExtentLoop',
  ExtentChecksum: 'ExtentChecksum',
  BlockMapLoop: 'BlockMapLoop',
  BlockNumber: 'BlockNumber',
  BlockMapBudget: 'BlockMapBudget',
  DirEntryRecLen: 'DirEntryRecLen',
  DirEntryNameLen: 'DirEntryNameLen',
  DirEntryName: 'DirEntryName',
  DirEntryInode: 'DirEntryInode',
  DirBlockChecksum: 'DirBlockChecksum',
  DirTooLarge: 'DirTooLarge',
  HtreeRoot: 'HtreeRoot',
  InlineData: 'InlineData',
  XattrHeader: 'XattrHeader',
  XattrEntry: 'XattrEntry',
  XattrChecksum: 'XattrChecksum',
  Symlink: 'Symlink',
  JournalSuperblock: 'JournalSuperblock',
  JournalChecksum: 'JournalChecksum',
  JournalBlock: 'JournalBlock',
  JournalTag: 'JournalTag',
  JournalRevoke: 'JournalRevoke',
  PathTooLong: 'PathTooLong',
  DirectoryLoop: 'DirectoryLoop',
  TreeBudget: 'TreeBudget',
} as const;
/** See {@link CorruptKind}. */
export type CorruptKind = (typeof CorruptKind)[keyof typeof CorruptKind];

/** Where a corrupt structure was found. All optional: fill in what is known. */
export interface CorruptLocation {
  readonly inode?: number;
  readonly group?: number;
  readonly block?: number;
  readonly field?: string;
}

/** Base class of every error of this package. */
export class Ext4Error extends Error {
  override name = 'Ext4Error';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The bytes on disk violate the format; names the structure, where, and the field. */
export class CorruptError extends Ext4Error {
  override name = 'CorruptError';
  readonly kind: CorruptKind;
  readonly inode: number | undefined;
  readonly group: number | undefined;
  readonly block: number | undefined;
  readonly field: string | undefined;
  constructor(kind: CorruptKind, message: string, where: CorruptLocation = {}, options?: { cause?: unknown }) {
    super(`${kind}: ${message}${describeLocation(where)}`, options);
    this.kind = kind;
    this.inode = where.inode;
    this.group = where.group;
    this.block = where.block;
    this.field = where.field;
  }
}

function describeLocation(w: CorruptLocation): string {
  const parts: string[] = [];
  if (w.inode !== undefined) parts.push(`inode ${w.inode}`);
  if (w.group !== undefined) parts.push(`group ${w.group}`);
  if (w.block !== undefined) parts.push(`block ${w.block}`);
  if (w.field !== undefined) parts.push(`field ${w.field}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** The file system uses features this reader does not understand; it refuses to guess. */
export class IncompatibleError extends Ext4Error {
  override name = 'IncompatibleError';
  /** Names of the unsupported features (e.g. `compression`, `incompat_0x80000`). */
  readonly features: readonly string[];
  constructor(message: string, features: readonly string[]) {
    super(message);
    this.features = Object.freeze([...features]);
  }
}

/** The block source failed (I/O error, read past its end). */
export class IoError extends Ext4Error {
  override name = 'IoError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A caller asked for something that does not exist or is the wrong type (not damage). */
export class LookupError extends Ext4Error {
  override name = 'LookupError';
  readonly code: 'ENOENT' | 'ENOTDIR' | 'EISDIR' | 'ELOOP' | 'EINVAL';
  constructor(code: LookupError['code'], message: string) {
    super(message);
    this.code = code;
  }
}
