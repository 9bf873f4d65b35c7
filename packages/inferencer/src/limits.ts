/**
 * Every cap on the inferencer's work or memory that a guest could otherwise inflate. A guest controls every
 * byte the inferencer reads, so each of these exists so that a loop ends or an allocation stays bounded.
 */

/** Default largest write carried inline in a `write` event, in bytes (else `dataOmitted: true`). */
export const DEFAULT_INLINE_LIMIT = 65536;
/** Default bytes of written-but-not-yet-mapped data blocks held for attribution (ordered mode, delalloc). */
export const DEFAULT_PENDING_BYTES = 64 * 1024 * 1024;
/** Blocks remembered (without their bytes) after being pushed out of the pending buffer. */
export const MAX_OMITTED_BLOCKS = 1 << 20;
/** Journal commits a pending data block survives unmapped before it is dropped (ordered mode maps it in the next). */
export const PENDING_MAX_COMMITS = 3;
/**
 * Consistency points a file's committed size stays hidden past the data seen (see DiskInferencer.visibleSize): a
 * guest slowed down (a TCG guest on a loaded host) was seen writing an append's data back one commit interval
 * after committing its size while other commits went by, and readers (`tail -f`) then read zeros.
 */
export const UNWRITTEN_MAX_COMMITS = 8;
/**
 * ...and at least this much capture time: Linux writes dirty data back once it is 30 s old (dirty_expire_centisecs)
 * on a 5 s tick, so an append's data follows its committed size within about 35 s, however many commits other
 * files make in between. (With commits alone, a busy guest committing every second or two revealed the size
 * before the data: `tail -f` through the mount read zeros, 2 of ~15 CI runs.)
 */
export const UNWRITTEN_MIN_MS = 40_000;
/** Longest run of contiguous file bytes reported by one `write` event. */
export const MAX_WRITE_RUN_BYTES = 16 * 1024 * 1024;
/**
 * Consistency points a held metadata block stays packed only without its zero words before it is deflated (see
 * StoredBlock): blocks used now and then skip the dearer deflate; those of files nobody touches end up small.
 */
export const DEFLATE_AFTER_ROUNDS = 4;
/** Blocks read in one fetch request (the capture answers up to 960 KiB per block read). */
export const MAX_FETCH_BLOCKS = 240;
/** Inodes derived in one consistency point before the rest is reported as corrupt (a runaway tree). */
export const MAX_INODES_PER_SETTLE = 4_000_000;
/**
 * Ops a create or rename waits through when ordering a consistency point's entry changes (see settle): a chain
 * of renames each into the name the next one leaves; beyond it the base order is kept (and the JS stack safe).
 */
export const MAX_ORDER_DEPTH = 1024;
/** Directory depth followed when building a path (a loop in a hostile tree ends here). */
export const MAX_PATH_DEPTH = 2048;
/** Journal blocks walked for one transaction (a circular chain in a hostile journal ends here). */
export const MAX_TX_BLOCKS = 1 << 20;
/**
 * Bytes of logged blocks a journal recovery holds (the crawl's, and the offline commands'): the largest journal
 * mke2fs makes is 1 GiB; a hostile journal inode mapping more of the disk ends here with a CorruptError.
 */
export const MAX_RECOVERY_BYTES = 1 << 30;
/** Journal blocks held in memory while their transaction is open. */
export const MAX_OPEN_JOURNAL_BLOCKS = 1 << 18;
/** Nodes per BSON chunk of a checkpoint (each chunk stays far below BSON's 16 MiB). */
export const CHECKPOINT_NODES_PER_CHUNK = 2000;
/** Entries of one directory per checkpoint chunk. */
export const CHECKPOINT_ENTRIES_PER_CHUNK = 20000;
/**
 * `corrupt` events one write record (or a crawl) gives at most; past it, one more says how many were left out. A
 * guest could otherwise turn one write into a million events (a directory block of entries naming free inodes).
 */
export const MAX_CORRUPT_EVENTS_PER_RECORD = 1000;
/** Bucket width, in blocks, of the physical-to-file reverse index. */
export const DATA_INDEX_BUCKET_BLOCKS = 16;
/**
 * Runs one bucket of the reverse index lists at most. A file system's runs do not overlap, so a bucket lists about
 * DATA_INDEX_BUCKET_BLOCKS of them; more means files whose extents claim the same blocks (a guest's crafted inodes:
 * removing each from a list of a million was quadratic). Runs past it are not listed there: writes to those
 * blocks go to the files listed first.
 */
export const MAX_RUNS_PER_DATA_BUCKET = 1024;
/** Files whose end-of-file block is remembered (for sizes committed after the data). */
export const MAX_TAILS = 1024;
/**
 * Files with preallocated (unwritten) blocks whose zeros are followed (see DiskInferencer.prealloc); beyond it a
 * file is not followed, and zeros written into its preallocated blocks are reported as any write.
 */
export const MAX_PREALLOC_FILES = 4096;
/** Preallocated blocks of one followed file that may be written before the file is no longer followed. */
export const MAX_PREALLOC_WRITTEN = 4096;
/** Without a journal: flushes in a row an inode may fail to derive before it is reported corrupt. */
export const NO_JOURNAL_RETRIES = 2;
/**
 * data=journal: bytes of logged file-data blocks remembered, as reported at their commit, until jbd2 writes them
 * home (a checkpoint that writes the same bytes is then not reported again); beyond it the oldest are dropped.
 */
export const MAX_LOGGED_DATA_BYTES = 16 * 1024 * 1024;
/** Without a journal: bytes of recently written data blocks kept for metadata reads of reused blocks. */
export const RECENT_DATA_BYTES = 16 * 1024 * 1024;
/** Unreadable inodes remembered with the directory naming them, to look at it again once they change. */
export const MAX_UNREADABLE = 65536;
/**
 * Largest file whose content foldEvents keeps (a guest makes a sparse file of terabytes with one truncate); a
 * larger file's content is unknown to the fold, as after a write without its bytes.
 */
export const MAX_FOLD_CONTENT_BYTES = 256 * 1024 * 1024;
