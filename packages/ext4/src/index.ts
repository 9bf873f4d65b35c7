export { Ext4Volume, bytesEqual } from './volume.js';
export type { DirListing, FsKind, OpenOptions } from './volume.js';
export { walk, walkBatches } from './walk.js';
export type { WalkItem, WalkOptions } from './walk.js';
export { toTreeEntry } from './tree-entry.js';
export type { TreeEntry } from './tree-entry.js';
export { decodeName, encodeName, splitPath } from './names.js';
export { CorruptError, CorruptKind, Ext4Error, IncompatibleError, IoError, LookupError } from './errors.js';
export type { CorruptLocation } from './errors.js';
export * as limits from './limits.js';
export { crc32c, crc16, crc32Be } from './crc.js';
export { decodeSuperblock, groupHasSuper, metadataOverhead, FeatureCompat, FeatureIncompat, FeatureRoCompat, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, EXT4_SUPER_MAGIC } from './ondisk/superblock.js';
export type { Ext4Superblock } from './ondisk/superblock.js';
export { decodeGroupDesc, groupDescChecksum, descriptorBlock, GroupFlags } from './ondisk/group-desc.js';
export type { Ext4GroupDesc } from './ondisk/group-desc.js';
export { decodeInode, decodeDevice, makedev, majorMinor, inodeInUse, inodeChecksum, FileType, FileMode, InodeFlags, ROOT_INO, JOURNAL_INO, S_IFMT } from './ondisk/inode.js';
export type { DeviceNumber, Ext4Inode, Ext4Time } from './ondisk/inode.js';
export { decodeExtentNode, verifyExtentBlock, EXT4_EXT_MAGIC } from './ondisk/extent.js';
export type { Extent, ExtentIndex, ExtentNode } from './ondisk/extent.js';
export { decodeDirBlock, recLenFromDisk, dirTailLength, DirFileType } from './ondisk/dirent.js';
export type { DirEntry, DirBlockResult } from './ondisk/dirent.js';
export { decodeDxRoot } from './ondisk/dx.js';
export type { DxRoot } from './ondisk/dx.js';
export { decodeInodeXattrs, decodeXattrBlock, XATTR_PREFIXES } from './ondisk/xattr.js';
export type { Xattr } from './ondisk/xattr.js';
export { decodeJournalSuperblock, JBD2_MAGIC, JBD2_DEFAULT_FAST_COMMIT_BLOCKS, JournalCompat, JournalIncompat } from './ondisk/journal-superblock.js';
export type { JournalSuperblock } from './ondisk/journal-superblock.js';
export {
  decodeJournalHeader,
  isJournalMetadataBlock,
  decodeDescriptorBlock,
  decodeCommitBlock,
  decodeRevokeBlock,
  unescapeBlock,
  journalTagChecksumOk,
  journalChecksumSeed,
  journalTagBytes,
  JournalTagFlag,
  JOURNAL_HEADER_SIZE,
} from './ondisk/journal-blocks.js';
export type { JournalHeader, JournalTag, JournalDescriptor, JournalCommit, JournalRevoke } from './ondisk/journal-blocks.js';
export { JournalBlockType } from './ondisk/journal-superblock.js';
