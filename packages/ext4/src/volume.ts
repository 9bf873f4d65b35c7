import type { BlockSource } from '@gammaray/disk';
import { ChunkCache } from './cache.js';
import { crc32cU32 } from './crc.js';
import { CorruptError, CorruptKind, Ext4Error, LookupError } from './errors.js';
import {
  BLOCK_CACHE_BYTES,
  CACHE_CHUNK_BYTES,
  MAX_DIR_BLOCK_ERRORS,
  MAX_DIR_BYTES,
  MAX_DIR_ENTRIES,
  MAX_EXTENTS_PER_INODE,
  MAX_NAME_BYTES,
  MAX_MAP_BLOCKS_PER_INODE,
  MAX_SYMLINK_BYTES,
  MAX_SYMLINK_HOPS,
  MAX_XATTR_VALUE_BYTES,
} from './limits.js';
import { decodeDirBlock, dirTailLength, verifyDirTail, type DirEntry } from './ondisk/dirent.js';
import { decodeDxRoot } from './ondisk/dx.js';
import { decodeExtentNode, verifyExtentBlock, type Extent, type ExtentIndex } from './ondisk/extent.js';
import { decodeGroupDesc, descriptorBlock, GroupFlags, type Ext4GroupDesc } from './ondisk/group-desc.js';
import { decodeInode, FileType, InodeFlags, inodeInUse, ROOT_INO, type Ext4Inode } from './ondisk/inode.js';
import { decodeJournalSuperblock, type JournalSuperblock } from './ondisk/journal-superblock.js';
import { decodeSuperblock, groupHasSuper, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, type Ext4Superblock } from './ondisk/superblock.js';
import { decodeInodeXattrs, decodeXattrBlock, type Xattr } from './ondisk/xattr.js';
import { decodeName, encodeName } from './names.js';

/** A directory listing: the entries read and the problems met on the way (a partial result). */
export interface DirListing {
  readonly entries: DirEntry[];
  readonly errors: Ext4Error[];
}

/** Which ext generation a superblock describes, by its features. */
export type FsKind = 'ext2' | 'ext3' | 'ext4';

/** Options for {@link Ext4Volume.open}. */
export interface OpenOptions {
  /** Bytes of metadata cache (default 64 MiB). */
  readonly cacheBytes?: number;
}

const EMPTY = new Uint8Array(0);

/**
 * An ext2/3/4 file system read from an untrusted {@link BlockSource}.
 * Every method either returns decoded, validated data or throws an
 * {@link Ext4Error}; none loops without bound.
 */
export class Ext4Volume {
  /** Decoded descriptors (or why not), filled on first use. */
  private readonly decoded: (Ext4GroupDesc | CorruptError | undefined)[];
  private readonly mapCache = new Map<number, readonly Extent[]>();

  private constructor(
    readonly superblock: Ext4Superblock,
    /** Raw descriptor bytes per group; a CorruptError where the descriptor block is unreadable. */
    private readonly rawDescs: (Uint8Array | CorruptError)[],
    private readonly cache: ChunkCache,
    private readonly itableCache: ChunkCache,
  ) {
    this.decoded = new Array<Ext4GroupDesc | CorruptError | undefined>(rawDescs.length);
  }

  /**
   * Reads and validates the superblock and reads the group descriptor
   * table. Descriptors are decoded (and checksum-verified) on first use, so
   * a superblock that claims absurd geometry costs bytes, not millions of
   * error objects; descriptor blocks past the end of the source share one
   * error.
   */
  static async open(source: BlockSource, opts: OpenOptions = {}): Promise<Ext4Volume> {
    if (source.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE) {
      throw new CorruptError(CorruptKind.SuperblockMagic, `the ${source.size}-byte volume is too small to hold an ext2/3/4 file system`);
    }
    // The superblock says the block size the caches are cut to, so it is read on its own, uncached.
    const boot = new ChunkCache(source, SUPERBLOCK_SIZE, SUPERBLOCK_SIZE);
    const sb = decodeSuperblock(await boot.readDirect(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
    // Inode tables are read in large runs (neighbouring inodes are wanted together);
    // everything else block by block, so scattered directory blocks cost one block each.
    const blockCache = new ChunkCache(source, sb.blockSize, opts.cacheBytes ?? BLOCK_CACHE_BYTES);
    const itableCache = new ChunkCache(source, Math.max(CACHE_CHUNK_BYTES, sb.blockSize), opts.cacheBytes ?? BLOCK_CACHE_BYTES);
    const descPerBlock = sb.blockSize / sb.descSize;
    const metaGroups = Math.ceil(sb.groupCount / descPerBlock);
    const raws: (Uint8Array | CorruptError)[] = [];
    let outside: CorruptError | undefined;
    for (let m = 0; m < metaGroups; m++) {
      const blk = descriptorBlock(sb, m, (g) => groupHasSuper(sb, g));
      const n = Math.min(descPerBlock, sb.groupCount - m * descPerBlock);
      if (blk >= sb.blocksCount || (blk + 1) * sb.blockSize > source.size) {
        outside ??= new CorruptError(CorruptKind.GroupDescriptor, `descriptor block ${blk} (groups ${m * descPerBlock}..) is outside the ${source.size}-byte volume`, { block: blk, group: m * descPerBlock });
        for (let i = 0; i < n; i++) raws.push(outside);
        continue;
      }
      const bytes = await blockCache.read(blk * sb.blockSize, sb.blockSize);
      for (let i = 0; i < n; i++) raws.push(bytes.subarray(i * sb.descSize, (i + 1) * sb.descSize));
    }
    return new Ext4Volume(sb, raws, blockCache, itableCache);
  }

  private descOrError(group: number): Ext4GroupDesc | CorruptError | undefined {
    const hit = this.decoded[group];
    if (hit !== undefined || group < 0 || group >= this.rawDescs.length) return hit;
    const raw = this.rawDescs[group]!; // ok: bounds checked
    let d: Ext4GroupDesc | CorruptError;
    if (raw instanceof CorruptError) d = raw;
    else {
      try {
        d = decodeGroupDesc(raw, group, this.superblock);
      } catch (err) {
        if (!(err instanceof CorruptError)) throw err;
        d = err;
      }
    }
    this.decoded[group] = d;
    return d;
  }

  /** ext2, ext3 or ext4, judged by features as blkid does. */
  get kind(): FsKind {
    const sb = this.superblock;
    const ext4Only = sb.has.extents || sb.has.is64bit || sb.has.flexBg || sb.has.metaBg || sb.has.inlineData || sb.has.bigalloc || sb.metadataCsum || sb.has.hugeFile || sb.has.gdtCsum;
    if (ext4Only) return 'ext4';
    return sb.has.journal ? 'ext3' : 'ext2';
  }

  /** The descriptor of `group`, or throws the error found decoding it. */
  groupDesc(group: number): Ext4GroupDesc {
    const g = this.descOrError(group);
    if (g === undefined) throw new CorruptError(CorruptKind.InodeNumber, `group ${group} does not exist`, { group });
    if (g instanceof CorruptError) throw g;
    return g;
  }

  /** Number of block groups. */
  get groupCount(): number {
    return this.rawDescs.length;
  }

  /** Reads whole file-system blocks [block, block+count) through the metadata cache. */
  async readBlocks(block: number, count = 1, where: { inode?: number } = {}): Promise<Uint8Array> {
    this.checkBlockRange(block, count, where);
    return this.cache.read(block * this.superblock.blockSize, count * this.superblock.blockSize);
  }

  private checkBlockRange(block: number, count: number, where: { inode?: number; field?: string }): void {
    const sb = this.superblock;
    if (block < sb.firstDataBlock || count < 0 || block + count > sb.blocksCount) {
      throw new CorruptError(CorruptKind.BlockNumber, `block ${block}+${count} is outside the file system (${sb.blocksCount} blocks)`, { ...where, block });
    }
  }

  /**
   * Decodes inode `ino` without waiting if its inode-table bytes are already
   * cached; undefined means "call readInode". Throws like readInode.
   */
  readInodeCached(ino: number): Ext4Inode | undefined {
    const sb = this.superblock;
    if (!Number.isInteger(ino) || ino < 1 || ino > sb.inodesCount) return undefined;
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const gd = this.descOrError(group);
    if (gd === undefined || gd instanceof CorruptError) return undefined;
    if ((sb.metadataCsum || sb.has.gdtCsum) && (gd.flags & GroupFlags.inodeUninit || index >= sb.inodesPerGroup - gd.itableUnused)) return undefined;
    const raw = this.itableCache.peek(gd.inodeTable * sb.blockSize + index * sb.inodeSize, sb.inodeSize);
    return raw === undefined ? undefined : decodeInode(raw, ino, sb);
  }

  /** Reads and decodes inode `ino`. */
  async readInode(ino: number): Promise<Ext4Inode> {
    const sb = this.superblock;
    if (!Number.isInteger(ino) || ino < 1 || ino > sb.inodesCount) {
      throw new CorruptError(CorruptKind.InodeNumber, `inode ${ino} is outside 1..${sb.inodesCount}`, { inode: ino });
    }
    const group = Math.floor((ino - 1) / sb.inodesPerGroup);
    const index = (ino - 1) % sb.inodesPerGroup;
    const gd = this.groupDesc(group);
    if ((sb.metadataCsum || sb.has.gdtCsum) && (gd.flags & GroupFlags.inodeUninit || index >= sb.inodesPerGroup - gd.itableUnused)) {
      // Never-initialized inode table slots are free by definition (lazy_itable_init).
      return decodeInode(new Uint8Array(sb.inodeSize), ino, sb);
    }
    const off = gd.inodeTable * sb.blockSize + index * sb.inodeSize;
    const raw = await this.itableCache.read(off, sb.inodeSize);
    return decodeInode(raw, ino, sb);
  }

  private inodeSeed(inode: Ext4Inode): number {
    return crc32cU32(crc32cU32(this.superblock.csumSeed, inode.ino), inode.generation);
  }

  /**
   * The inode's block map as sorted, non-overlapping extents (from the
   * extent tree or the indirect block map). Holes are gaps between extents.
   */
  async blockMap(inode: Ext4Inode): Promise<readonly Extent[]> {
    // Maps held in the inode itself (depth-0 extents, inline data, fast symlinks) are cheaper to decode than to cache.
    const inInode = this.blockMapCached(inode);
    if (inInode) return inInode;
    const cached = this.mapCache.get(inode.ino);
    if (cached) return cached;
    const map = inode.flags & InodeFlags.extents ? await this.extentMap(inode) : await this.indirectMap(inode);
    if (this.mapCache.size >= 64) this.mapCache.delete(this.mapCache.keys().next().value as number); // ok: non-empty
    this.mapCache.set(inode.ino, map);
    return map;
  }

  private checkLeaves(extents: Extent[], ino: number): Extent[] {
    const sb = this.superblock;
    for (const e of extents) {
      if (e.physical < sb.firstDataBlock || e.physical + e.length > sb.blocksCount) {
        throw new CorruptError(CorruptKind.BlockNumber, `extent ${e.logical}+${e.length} maps to blocks ${e.physical}.. outside the file system`, { inode: ino, block: e.physical, field: 'ee_start_lo' });
      }
    }
    return extents;
  }

  private async extentMap(inode: Ext4Inode): Promise<Extent[]> {
    const sb = this.superblock;
    const ino = inode.ino;
    const root = decodeExtentNode(inode.iBlock, { inode: ino }, undefined);
    const out: Extent[] = [];
    const visited = new Set<number>();
    let nextLogical = 0;
    // Iterative DFS keeping leaves in order; each level's depth is one less than its parent's.
    const stack: { entries: readonly ExtentIndex[]; i: number; depth: number }[] = [];
    const pushNode = (node: ReturnType<typeof decodeExtentNode>) => {
      if (node.depth === 0) {
        for (const e of node.entries as readonly Extent[]) {
          if (e.logical < nextLogical) throw new CorruptError(CorruptKind.ExtentEntry, `extent at logical ${e.logical} is out of order`, { inode: ino, field: 'ee_block' });
          if (e.physical < sb.firstDataBlock || e.physical + e.length > sb.blocksCount) {
            throw new CorruptError(CorruptKind.BlockNumber, `extent ${e.logical}+${e.length} maps to blocks ${e.physical}.. outside the file system`, { inode: ino, block: e.physical, field: 'ee_start_lo' });
          }
          nextLogical = e.logical + e.length;
          if (out.length >= MAX_EXTENTS_PER_INODE) throw new CorruptError(CorruptKind.BlockMapBudget, `more than ${MAX_EXTENTS_PER_INODE} extents`, { inode: ino });
          out.push(e);
        }
      } else {
        stack.push({ entries: node.entries as readonly ExtentIndex[], i: 0, depth: node.depth });
      }
    };
    pushNode(root);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!; // ok: non-empty
      if (top.i >= top.entries.length) {
        stack.pop();
        continue;
      }
      const idx = top.entries[top.i++]!; // ok: bounds checked above
      if (visited.has(idx.leaf)) throw new CorruptError(CorruptKind.ExtentLoop, `extent tree block ${idx.leaf} is referenced twice`, { inode: ino, block: idx.leaf });
      if (visited.size >= MAX_MAP_BLOCKS_PER_INODE) throw new CorruptError(CorruptKind.BlockMapBudget, `extent tree has more than ${MAX_MAP_BLOCKS_PER_INODE} blocks`, { inode: ino });
      visited.add(idx.leaf);
      this.checkBlockRange(idx.leaf, 1, { inode: ino, field: 'ei_leaf_lo' });
      const block = await this.readBlocks(idx.leaf, 1, { inode: ino });
      const where = { inode: ino, block: idx.leaf };
      if (sb.metadataCsum) verifyExtentBlock(block, this.inodeSeed(inode), where);
      const node = decodeExtentNode(block, where, top.depth - 1);
      pushNode(node);
    }
    return out;
  }

  private async indirectMap(inode: Ext4Inode): Promise<Extent[]> {
    const sb = this.superblock;
    const ino = inode.ino;
    const bs = sb.blockSize;
    const per = bs / 4;
    const nblocks = Math.ceil(inode.size / bs);
    const out: Extent[] = [];
    const visited = new Set<number>();
    const iv = new DataView(inode.iBlock.buffer, inode.iBlock.byteOffset, 60);
    const add = (logical: number, physical: number) => {
      if (physical >= sb.blocksCount || physical < sb.firstDataBlock) {
        throw new CorruptError(CorruptKind.BlockNumber, `logical block ${logical} maps to block ${physical} outside the file system`, { inode: ino, block: physical, field: 'i_block' });
      }
      const last = out[out.length - 1];
      if (last && last.logical + last.length === logical && last.physical + last.length === physical && last.length < 32768) {
        out[out.length - 1] = { logical: last.logical, physical: last.physical, length: last.length + 1, initialized: true };
      } else {
        if (out.length >= MAX_EXTENTS_PER_INODE) throw new CorruptError(CorruptKind.BlockMapBudget, `more than ${MAX_EXTENTS_PER_INODE} runs`, { inode: ino });
        out.push({ logical, physical, length: 1, initialized: true });
      }
    };
    for (let i = 0; i < 12 && i < nblocks; i++) {
      const p = iv.getUint32(i * 4, true);
      if (p !== 0) add(i, p);
    }
    // level 1..3: logical range start and span of one pointer at that level.
    const walk = async (blk: number, level: number, firstLogical: number): Promise<void> => {
      if (visited.has(blk)) throw new CorruptError(CorruptKind.BlockMapLoop, `indirect block ${blk} is referenced twice`, { inode: ino, block: blk });
      if (visited.size >= MAX_MAP_BLOCKS_PER_INODE) throw new CorruptError(CorruptKind.BlockMapBudget, `more than ${MAX_MAP_BLOCKS_PER_INODE} indirect blocks`, { inode: ino });
      visited.add(blk);
      this.checkBlockRange(blk, 1, { inode: ino, field: 'i_block' });
      const data = await this.readBlocks(blk, 1, { inode: ino });
      const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
      const span = per ** (level - 1);
      for (let i = 0; i < per; i++) {
        const logical = firstLogical + i * span;
        if (logical >= nblocks) break;
        const p = dv.getUint32(i * 4, true);
        if (p === 0) continue;
        if (level === 1) add(logical, p);
        else await walk(p, level - 1, logical);
      }
    };
    let base = 12;
    for (let level = 1; level <= 3; level++) {
      const p = iv.getUint32((11 + level) * 4, true);
      if (base >= nblocks) break;
      if (p !== 0) await walk(p, level, base);
      base += per ** level;
    }
    return out;
  }

  /**
   * The bytes an inline_data inode stores: i_block then the system.data
   * xattr, at most `i_size` of them. A size beyond what is stored reads as
   * zeros (the kernel zero-fills the rest of the page), so the result may be
   * shorter than i_size; callers pad.
   */
  async inlineData(inode: Ext4Inode): Promise<Uint8Array> {
    const first = inode.iBlock.subarray(0, Math.min(60, inode.size));
    if (inode.size <= 60) return first.slice();
    const xattrs = decodeInodeXattrs(inode.raw, inode.extraIsize, inode.ino);
    const data = xattrs.find((x) => x.name === 'system.data');
    const rest = (data?.value ?? EMPTY).subarray(0, inode.size - 60);
    const out = new Uint8Array(60 + rest.length);
    out.set(first, 0);
    out.set(rest, 60);
    return out;
  }

  /**
   * Reads up to `length` bytes of the file at `offset` (clipped to its size).
   * Holes and unwritten extents read as zeros.
   */
  async readFile(inode: Ext4Inode, offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || !Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) throw new LookupError('EINVAL', `bad range ${offset}+${length}`);
    const end = Math.min(inode.size, offset + length);
    if (end <= offset) return new Uint8Array(0);
    if (inode.flags & InodeFlags.inlineData) {
      const stored = await this.inlineData(inode);
      const out = new Uint8Array(end - offset);
      if (offset < stored.length) out.set(stored.subarray(offset, Math.min(end, stored.length)));
      return out;
    }
    const bs = this.superblock.blockSize;
    const map = await this.blockMap(inode);
    const out = new Uint8Array(end - offset);
    const firstBlock = Math.floor(offset / bs);
    const lastBlock = Math.floor((end - 1) / bs);
    // Binary search the first extent that could overlap.
    let lo = 0;
    let hi = map.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = map[mid]!; // ok: mid < map.length
      if (e.logical + e.length <= firstBlock) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < map.length; i++) {
      const e = map[i]!; // ok: i < map.length
      if (e.logical > lastBlock) break;
      if (!e.initialized) continue;
      const b0 = Math.max(e.logical, firstBlock);
      const b1 = Math.min(e.logical + e.length - 1, lastBlock);
      const byteStart = Math.max(b0 * bs, offset);
      const byteEnd = Math.min((b1 + 1) * bs, end);
      const phys = (e.physical + (b0 - e.logical)) * bs + (byteStart - b0 * bs);
      const data = await this.cache.readDirect(phys, byteEnd - byteStart);
      out.set(data, byteStart - offset);
    }
    return out;
  }

  /** The target of a symlink, as the guest's bytes. */
  async readLink(inode: Ext4Inode): Promise<Uint8Array> {
    if (inode.type !== FileType.symlink) throw new LookupError('EINVAL', `inode ${inode.ino} is not a symlink`);
    if (inode.size > MAX_SYMLINK_BYTES) throw new CorruptError(CorruptKind.Symlink, `symlink of ${inode.size} bytes`, { inode: inode.ino, field: 'i_size' });
    if (inode.flags & InodeFlags.inlineData) return this.readFile(inode, 0, inode.size);
    if (this.isFastSymlink(inode)) {
      if (inode.size >= 60) throw new CorruptError(CorruptKind.Symlink, `fast symlink of ${inode.size} bytes does not fit i_block`, { inode: inode.ino, field: 'i_size' });
      return inode.iBlock.slice(0, inode.size);
    }
    return this.readFile(inode, 0, inode.size);
  }

  /** The kernel's ext4_inode_is_fast_symlink(): the target lives in i_block (no data blocks besides an xattr block). */
  isFastSymlink(inode: Ext4Inode): boolean {
    if (inode.type !== FileType.symlink || inode.flags & InodeFlags.inlineData) return false;
    const eaBlocks = inode.fileAcl !== 0 ? this.superblock.clusterSize / 512 : 0;
    return inode.blocks512 - eaBlocks === 0;
  }

  /**
   * The extended attributes when they need no I/O (no xattr block, no EA
   * inode), else undefined: then call {@link readXattrs}.
   */
  readXattrsCached(inode: Ext4Inode): Xattr[] | undefined {
    if (inode.fileAcl !== 0) return undefined;
    const list = decodeInodeXattrs(inode.raw, inode.extraIsize, inode.ino);
    if (list.length === 0) return list;
    if (list.some((x) => x.valueInode !== undefined)) return undefined;
    return list.filter((x) => x.name !== 'system.data');
  }

  /**
   * The block map when it is held in the inode itself (extent depth 0,
   * inline data, fast symlink, special file), else undefined: then call
   * {@link blockMap}. Throws like blockMap.
   */
  blockMapCached(inode: Ext4Inode): readonly Extent[] | undefined {
    if (inode.flags & InodeFlags.inlineData) return [];
    if (inode.type !== FileType.file && inode.type !== FileType.dir && inode.type !== FileType.symlink) return [];
    if (inode.type === FileType.symlink && this.isFastSymlink(inode)) return [];
    if (inode.flags & InodeFlags.extents && inode.iBlock[6] === 0 && inode.iBlock[7] === 0) {
      return this.checkLeaves(decodeExtentNode(inode.iBlock, { inode: inode.ino }, undefined).entries as Extent[], inode.ino);
    }
    return undefined;
  }

  /** All extended attributes: in-inode, then the xattr block (system.data excluded). */
  async readXattrs(inode: Ext4Inode): Promise<Xattr[]> {
    const inInode = this.readXattrsCached(inode);
    if (inInode) return inInode;
    const sb = this.superblock;
    const out = decodeInodeXattrs(inode.raw, inode.extraIsize, inode.ino).filter((x) => x.name !== 'system.data');
    if (inode.fileAcl !== 0) {
      const blk = inode.fileAcl;
      this.checkBlockRange(blk, 1, { inode: inode.ino, field: 'i_file_acl' });
      const block = await this.readBlocks(blk, 1, { inode: inode.ino });
      out.push(...decodeXattrBlock(block, blk, { inode: inode.ino, block: blk }, sb.metadataCsum ? sb.csumSeed : undefined));
    }
    const resolved: Xattr[] = [];
    for (const x of out) {
      if (x.valueInode === undefined) {
        resolved.push(x);
        continue;
      }
      const vi = await this.readInode(x.valueInode);
      if (!(vi.flags & InodeFlags.eaInode) || vi.size !== x.valueSize || vi.size > MAX_XATTR_VALUE_BYTES) {
        throw new CorruptError(CorruptKind.XattrEntry, `value inode ${x.valueInode} of ${x.name} is not a matching EA inode`, { inode: inode.ino, field: 'e_value_inum' });
      }
      resolved.push({ name: x.name, value: await this.readFile(vi, 0, vi.size), valueSize: x.valueSize, valueInode: x.valueInode });
    }
    return resolved;
  }

  /**
   * Lists a directory. Corrupt blocks are skipped and reported in `errors`;
   * entries from good blocks are still returned. "." and ".." are included
   * when stored (inline directories store only the parent: it is reported as "..").
   */
  async readDir(inode: Ext4Inode): Promise<DirListing> {
    if (inode.type !== FileType.dir) throw new LookupError('ENOTDIR', `inode ${inode.ino} is not a directory`);
    const sb = this.superblock;
    const ino = inode.ino;
    const errors: Ext4Error[] = [];
    const entries: DirEntry[] = [];
    const opts = { blockSize: sb.blockSize, fileTypeFeature: sb.has.fileType, inodesCount: sb.inodesCount };
    const push = (list: DirEntry[]) => {
      for (const e of list) {
        if (entries.length >= MAX_DIR_ENTRIES) {
          throw new CorruptError(CorruptKind.DirTooLarge, `more than ${MAX_DIR_ENTRIES} entries`, { inode: ino });
        }
        entries.push(e);
      }
    };
    if (inode.flags & InodeFlags.inlineData) {
      const data = await this.inlineData(inode);
      if (data.length < 4) throw new CorruptError(CorruptKind.InlineData, 'inline directory shorter than its parent pointer', { inode: ino });
      const parent = new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true);
      entries.push({ ino: parent, name: DOTDOT, fileType: 2 });
      const first = decodeDirBlock(data.subarray(4, Math.min(60, data.length)), { ...opts, blockSize: 56, where: { inode: ino } });
      push(first.entries);
      if (first.error) errors.push(first.error);
      if (data.length > 60) {
        const rest = decodeDirBlock(data.subarray(60), { ...opts, blockSize: data.length - 60, where: { inode: ino } });
        push(rest.entries);
        if (rest.error) errors.push(rest.error);
      }
      return { entries, errors };
    }
    if (inode.size > MAX_DIR_BYTES) throw new CorruptError(CorruptKind.DirTooLarge, `directory of ${inode.size} bytes`, { inode: ino, field: 'i_size' });
    const map = await this.blockMap(inode);
    const nblocks = Math.ceil(inode.size / sb.blockSize);
    const seed = sb.metadataCsum ? this.inodeSeed(inode) : 0;
    const indexed = (inode.flags & InodeFlags.index) !== 0 && sb.has.dirIndex;
    for (const e of map) {
      if (!e.initialized) continue;
      for (let k = 0; k < e.length; k++) {
        const logical = e.logical + k;
        if (logical >= nblocks) break;
        const phys = e.physical + k;
        try {
          const block = await this.readBlocks(phys, 1, { inode: ino });
          const where = { inode: ino, block: phys };
          if (indexed && logical === 0) {
            try {
              decodeDxRoot(block, where, (sb.featureIncompat & 0x4000) !== 0);
            } catch (err) {
              if (err instanceof CorruptError) errors.push(err);
              else throw err;
            }
          }
          let region = block;
          // An htree node ends in a dx_tail, not a dirent tail; when the kernel turns a linear directory into
          // an htree it leaves the old block's dirent tail bytes in place, which would look like one.
          const dx = indexed && isDxNode(block, logical, sb.blockSize);
          const tail = dx ? undefined : dirTailLength(block, sb.blockSize);
          if (tail !== undefined) {
            if (sb.metadataCsum) verifyDirTail(block, tail, seed, where);
            region = block.subarray(0, tail);
          } else if (sb.metadataCsum && !dx) {
            throw new CorruptError(CorruptKind.DirBlockChecksum, 'leaf block has no checksum tail', { ...where, field: 'det_checksum' });
          }
          const res = decodeDirBlock(region, { ...opts, where });
          push(res.entries);
          if (res.error) errors.push(res.error);
        } catch (err) {
          if (err instanceof CorruptError && err.kind !== CorruptKind.DirTooLarge) errors.push(err);
          else throw err;
        }
        if (errors.length >= MAX_DIR_BLOCK_ERRORS) {
          errors.push(new CorruptError(CorruptKind.TreeBudget, `gave up on the directory after ${MAX_DIR_BLOCK_ERRORS} corrupt blocks`, { inode: ino }));
          return { entries, errors };
        }
      }
    }
    return { entries, errors };
  }

  /** The jbd2 journal superblock, if the file system has an internal journal. */
  async journalSuperblock(): Promise<JournalSuperblock | undefined> {
    const sb = this.superblock;
    if (!sb.has.journal || sb.journalInum === 0) return undefined;
    const ji = await this.readInode(sb.journalInum);
    const map = await this.blockMap(ji);
    const first = map[0];
    if (!first || first.logical !== 0) throw new CorruptError(CorruptKind.JournalSuperblock, 'journal block 0 is not mapped', { inode: ji.ino });
    const bytes = await this.readBlocks(first.physical, 1, { inode: ji.ino });
    return decodeJournalSuperblock(bytes.subarray(0, 1024), { inode: ji.ino, block: first.physical });
  }

  /**
   * Resolves `path` (absolute from the file system root) to an inode,
   * following symlinks in the middle of the path (at most MAX_SYMLINK_HOPS)
   * and, if `followLast`, at the end. Throws LookupError for a missing path.
   */
  async lookup(path: string, followLast = false): Promise<Ext4Inode> {
    // Components are compared in their printed form (decodeName), so any path
    // a walk printed can be looked up again, including names with invalid
    // UTF-8 (printed as \xNN). The user's spelling is printed the same way
    // first: a control byte the commands show as \x0a (a newline) names it.
    // A trailing "/" or "/." follows a final symlink and requires a
    // directory, as in the kernel.
    const trailingDir = /\/\.?$/.test(path) && path.replace(/[/.]/g, '') !== '';
    const todo: string[] = path.split('/').filter((c) => c !== '' && c !== '.').reverse();
    for (const c of todo) {
      if (encodeName(c).length > MAX_NAME_BYTES) throw new LookupError('EINVAL', `a component of ${JSON.stringify(path)} is longer than 255 bytes`);
    }
    const stack: Ext4Inode[] = [await this.readInode(ROOT_INO)];
    let hops = 0;
    while (todo.length > 0) {
      const name = todo.pop()!; // ok: non-empty
      const cur = stack[stack.length - 1]!; // ok: root never popped
      if (cur.type !== FileType.dir) throw new LookupError('ENOTDIR', `${path}: a component is not a directory`);
      if (name === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const listing = await this.readDir(cur);
      const want = decodeName(encodeName(name));
      const hit = listing.entries.find((e) => decodeName(e.name) === want);
      if (!hit) {
        if (listing.errors.length > 0) throw listing.errors[0]!; // ok: non-empty
        throw new LookupError('ENOENT', `${path}: no such file or directory`);
      }
      const child = await this.readInode(hit.ino);
      if (!inodeInUse(child)) throw new CorruptError(CorruptKind.DirEntryInode, `entry names free inode ${hit.ino}`, { inode: cur.ino });
      const last = todo.length === 0;
      if (child.type === FileType.symlink && (!last || followLast || trailingDir)) {
        if (++hops > MAX_SYMLINK_HOPS) throw new LookupError('ELOOP', `${path}: too many levels of symbolic links`);
        const target = await this.readLink(child);
        const parts = splitBytes(target);
        if (target[0] === 0x2f) stack.length = 1;
        for (let i = parts.length - 1; i >= 0; i--) todo.push(decodeName(parts[i]!)); // ok: in range
        continue;
      }
      stack.push(child);
    }
    const result = stack[stack.length - 1]!; // ok: at least root
    if (trailingDir && result.type !== FileType.dir) throw new LookupError('ENOTDIR', `${path}: not a directory`);
    return result;
  }
}

const DOTDOT = new Uint8Array([0x2e, 0x2e]);

/** Whether `a` and `b` hold the same bytes. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** An htree node: block 0 (root) or a block that is one empty entry spanning the block. */
function isDxNode(block: Uint8Array, logical: number, blockSize: number): boolean {
  if (logical === 0) return true;
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const rec = v.getUint16(4, true);
  return v.getUint32(0, true) === 0 && (rec === blockSize || (blockSize === 65536 && (rec === 0 || rec === 65535)));
}

/** Splits raw path bytes on '/', dropping empty and "." components. */
function splitBytes(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= b.length; i++) {
    if (i === b.length || b[i] === 0x2f) {
      const part = b.subarray(start, i);
      if (part.length > 0 && !(part.length === 1 && part[0] === 0x2e)) out.push(part);
      start = i + 1;
    }
  }
  return out;
}
