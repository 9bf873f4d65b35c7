/**
 * Every cap on work or memory that untrusted bytes could otherwise inflate.
 * Each exists so that a loop provably ends or an allocation stays bounded.
 */

/** Deepest extent tree ext4 can build (the kernel refuses deeper trees). */
export const MAX_EXTENT_DEPTH = 5;
/** Extents collected for one inode before the map is declared corrupt. */
export const MAX_EXTENTS_PER_INODE = 1 << 20;
/** Extent-tree or indirect blocks read for one inode. */
export const MAX_MAP_BLOCKS_PER_INODE = 1 << 17;
/** Longest file name ext4 allows, in bytes. */
export const MAX_NAME_BYTES = 255;
/** Longest path produced, in bytes (PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Symlink hops followed during a lookup (the kernel's MAXSYMLINKS is 40). */
export const MAX_SYMLINK_HOPS = 40;
/** Longest symlink target read, in bytes (a page). */
export const MAX_SYMLINK_BYTES = 65536;
/** Entries read from one directory. */
export const MAX_DIR_ENTRIES = 4_000_000;
/** Corrupt blocks tolerated in one directory before the rest of it is given up (each costs an error object). */
export const MAX_DIR_BLOCK_ERRORS = 64;
/** Bytes of one directory that are scanned (largedir allows ~ 2^32 blocks; we stop well before). */
export const MAX_DIR_BYTES = 2 ** 31;
/** Extended attributes in one inode or block. */
export const MAX_XATTRS = 1024;
/** Largest xattr value read, in bytes (the VFS limit XATTR_SIZE_MAX). */
export const MAX_XATTR_VALUE_BYTES = 65536;
/** Deepest directory nesting walked (bounded separately by MAX_PATH_BYTES too). */
export const MAX_TREE_DEPTH = 2048;
/** Largest file system block size (64 KiB). */
export const MAX_BLOCK_SIZE = 65536;
/** Group descriptors accepted (2^32 groups would need far more memory than a descriptor table is worth). */
export const MAX_GROUPS = 1 << 22;
/** Bytes the block cache keeps. */
export const BLOCK_CACHE_BYTES = 64 * 1024 * 1024;
/** Size of one inode-table cache chunk (aligned reads of this many bytes). */
export const CACHE_CHUNK_BYTES = 64 * 1024;
