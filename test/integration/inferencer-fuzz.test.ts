/**
 * The inference engine against a guest that writes crafted metadata at random: seeded, reproducible rounds of
 * damage to real ext2/ext4 images made by mkfs (superblock and group descriptor fields, inode fields, directory
 * entries, extent headers and entries, random bytes over metadata blocks, zeroed ranges, well-formed jbd2
 * transactions that log garbage or subtly changed metadata, broken ones, revoke blocks), interleaved with
 * ordinary data overwrites and blocks healed back to their original bytes, each change fed to the engine as the
 * capture would publish it.
 *
 * What must hold after every record: `apply` settles within a time bound (no hang), it fails only with a typed
 * `Ext4Error` (anything else, a TypeError or RangeError, is a bug; after a typed failure the service's poison rule
 * crawls the disk again, and so does this test), every event it returns encodes and decodes (or fails with the
 * typed EncodeError, which the worker turns into a `corrupt` event), and the tree can be listed without growing
 * past what the disk can name. After each seed the engine's checkpoint restores to the same tree.
 *
 * GAMMARAY_FUZZ_SEEDS (default 3 per image) and GAMMARAY_FUZZ_ROUNDS (default 60) make longer runs; a failure
 * names its image, seed and round, and GAMMARAY_FUZZ_SEED=N runs that seed alone; GAMMARAY_FUZZ_DEBUG=1 prints why
 * a final crawl failed. The final crawl, with the original superblock and first descriptor block, must succeed:
 * a damaged root, directory or journal superblock gives corrupt events, not a failed crawl. The offline walker of
 * `gammaray ls/crawl` then walks the same bytes (block maps, symlinks, xattrs): typed errors only, bounded.
 * Damage includes xattr blocks (header, entries, values), made with debugfs ea_set after mkfs.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJournalSuperblock, Ext4Error, Ext4Volume, walk, JBD2_MAGIC, JOURNAL_INO, type JournalSuperblock } from '@gammaray/ext4';
import { decodeEvent, DiskInferencer, encodeEvent, type FsEvent } from '@gammaray/inferencer';
import { EncodeError, type WriteOp, type WriteRecord } from '@gammaray/wire';
import { Jbd2Writer } from '../support/jbd2-writer.js';

const exec = promisify(execFile);
const SEEDS = Number(process.env['GAMMARAY_FUZZ_SEEDS'] ?? 3);
const ROUNDS = Number(process.env['GAMMARAY_FUZZ_ROUNDS'] ?? 60);
const ONLY_SEED = process.env['GAMMARAY_FUZZ_SEED'];
/** Longest one record may take to apply (a healthy one takes milliseconds). */
const APPLY_LIMIT_MS = 10_000;
/** More tree entries than these images can hold names for (1,024 inodes, a few hundred directory blocks). */
const MAX_TREE = 20_000;

let work: string;
let src: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-infer-fuzz-'));
  src = join(work, 'src');
  for (const d of ['a/b/c', 'big', 'd2']) mkdirSync(join(src, d), { recursive: true });
  for (let i = 0; i < 40; i++) writeFileSync(join(src, 'a', `f${i}.txt`), `file ${i}\n`.repeat(1 + i * 13));
  // Enough names for an htree directory with 4 KiB blocks.
  for (let i = 0; i < 300; i++) writeFileSync(join(src, 'big', `entry-with-a-longer-name-${i}`), `${i}`);
  writeFileSync(join(src, 'a/b/c/deep.txt'), 'deep\n');
  writeFileSync(join(src, 'large.bin'), Buffer.alloc(300 * 1024, 0x5a));
  symlinkSync('a/f1.txt', join(src, 'short-link'));
  symlinkSync(`${'x'.repeat(100)}/target`, join(src, 'long-link'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** mulberry32: small, seedable, good enough to pick mutations. */
function prng(seed: number): { int(n: number): number; pick<T>(a: readonly T[]): T; chance(p: number): boolean } {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return { int, pick: (a) => a[int(a.length)]!, chance: (p) => next() < p }; // ok: int(length) is in range
}

/** Values that break arithmetic: zero, one, boundaries of 16 and 32 bits, and whatever the generator draws. */
function extreme(r: ReturnType<typeof prng>, bits: 8 | 16 | 32): number {
  const max = bits === 32 ? 0xffffffff : bits === 16 ? 0xffff : 0xff;
  return r.pick([0, 1, 2, max, max >>> 1, (max >>> 1) + 1, r.int(max + 1), r.int(64)]);
}

interface Layout {
  readonly bs: number;
  readonly blocks: number;
  /** Blocks holding metadata: superblock, descriptors, bitmaps, inode tables, directory, extent and xattr blocks. */
  readonly metadata: readonly number[];
  readonly itable: readonly number[];
  /** Inode number -> byte offset of its slot. */
  readonly inodeAt: ReadonlyMap<number, number>;
  readonly dirBlocks: readonly number[];
  readonly dataBlocks: readonly number[];
  /** External xattr blocks (i_file_acl). */
  readonly xattrBlocks: readonly number[];
  readonly journal?: { readonly sb: JournalSuperblock; readonly blocks: readonly number[] };
}

/** A disk the test damages, seen by the engine only through records and block reads. */
class FuzzDisk {
  seq = 0;
  readonly original: Buffer;
  constructor(public bytes: Buffer) {
    this.original = Buffer.from(bytes);
  }

  fetcher() {
    return { size: this.bytes.length, read: async (o: number, l: number) => ({ data: Uint8Array.from(this.bytes.subarray(o, o + l)), seq: this.seq }) };
  }

  source() {
    return { size: this.bytes.length, read: async (o: number, l: number) => Uint8Array.from(this.bytes.subarray(o, o + l)) };
  }
}

async function layoutOf(disk: FuzzDisk, inf: DiskInferencer): Promise<Layout> {
  const vol = await Ext4Volume.open(disk.source());
  const sb = vol.superblock;
  const bs = sb.blockSize;
  const metadata = new Set<number>([0, 1, 2]);
  const itable: number[] = [];
  const inodeAt = new Map<number, number>();
  const perGroupBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / bs);
  for (let g = 0; g < sb.groupCount; g++) {
    const gd = vol.groupDesc(g);
    metadata.add(gd.blockBitmap).add(gd.inodeBitmap);
    for (let i = 0; i < perGroupBlocks; i++) itable.push(gd.inodeTable + i);
    for (let i = 0; i < sb.inodesPerGroup; i++) inodeAt.set(g * sb.inodesPerGroup + i + 1, gd.inodeTable * bs + i * sb.inodeSize);
  }
  for (const b of itable) metadata.add(b);
  const dirBlocks: number[] = [];
  const dataBlocks: number[] = [];
  const xattrBlocks = new Set<number>();
  for (const n of inf.nodes.values()) {
    const acl = (await vol.readInode(n.ino)).fileAcl;
    if (acl !== 0) xattrBlocks.add(acl);
    for (const b of n.owned) metadata.add(b);
    if (n.type === 'dir') dirBlocks.push(...n.owned);
    for (const r of n.runs ?? []) for (let i = 0; i < Math.min(r.length, 4); i++) dataBlocks.push(r.physical + i);
  }
  let journal: Layout['journal'];
  if (sb.has.journal) {
    const map = await vol.blockMap(await vol.readInode(sb.journalInum || JOURNAL_INO));
    const blocks: number[] = [];
    for (const e of map) for (let i = 0; i < e.length; i++) blocks[e.logical + i] = e.physical + i;
    journal = { sb: decodeJournalSuperblock(disk.bytes.subarray(blocks[0]! * bs, blocks[0]! * bs + bs)), blocks }; // ok: a journal has block 0
  }
  return { bs, blocks: Math.floor(disk.bytes.length / bs), metadata: [...metadata].filter((b) => b * bs < disk.bytes.length), itable, inodeAt, dirBlocks, dataBlocks, xattrBlocks: [...xattrBlocks], journal };
}

/** One round's change: the blocks it rewrites (whole, as the guest's page cache writes them) and extra ops. */
interface Change {
  readonly what: string;
  readonly blocks: Map<number, Buffer>;
  readonly zero?: { readonly offset: number; readonly length: number };
}

function mutate(disk: FuzzDisk, lay: Layout, jw: Jbd2Writer | undefined, r: ReturnType<typeof prng>): Change {
  const bs = lay.bs;
  const blocks = new Map<number, Buffer>();
  const blockOf = (b: number): Buffer => {
    let buf = blocks.get(b);
    if (!buf) {
      buf = Buffer.from(disk.bytes.subarray(b * bs, b * bs + bs));
      blocks.set(b, buf);
    }
    return buf;
  };
  const put = (b: Buffer, at: number, bits: 8 | 16 | 32, v: number): void => {
    if (bits === 8) b.writeUInt8(v & 0xff, at);
    else if (bits === 16) b.writeUInt16LE(v & 0xffff, at);
    else b.writeUInt32LE(v >>> 0, at);
  };
  // The superblock sits at byte 1024: block 0 with blocks of 2 KiB and more, block 1 with 1 KiB.
  const sbAt = (): [Buffer, number] => (bs === 1024 ? [blockOf(1), 0] : [blockOf(0), 1024]);
  const kind = r.int(100);
  if (kind < 4) {
    const [b, at] = sbAt();
    const [off, bits] = r.pick([[0x0, 32], [0x4, 32], [0x14, 32], [0x18, 32], [0x20, 32], [0x28, 32], [0x38, 16], [0x58, 16], [0x60, 32], [0xfe, 16], [0xe0, 32], [0x174, 8]] as const);
    put(b, at + off, bits, extreme(r, bits));
    return { what: `superblock field 0x${off.toString(16)}`, blocks };
  }
  if (kind < 8) {
    const gdtBlock = bs === 1024 ? 2 : 1;
    const b = blockOf(gdtBlock);
    const at = r.int(Math.floor(bs / 32)) * 32;
    const off = r.pick([0x0, 0x4, 0x8, 0xc, 0xe, 0x10, 0x12, 0x1c, 0x1e]);
    put(b, at + off, off >= 0xc && off !== 0x1c ? 16 : 32, extreme(r, 32));
    return { what: `group descriptor byte ${at + off}`, blocks };
  }
  if (kind >= 25 && kind < 30 && lay.xattrBlocks.length > 0) {
    // An xattr block: header (magic, refcount, blocks, hash, checksum) or an entry (name length and index, value
    // offset, inode and size, hash), or the entry's value range.
    const blk = r.pick(lay.xattrBlocks);
    const b = blockOf(blk);
    const entries: number[] = [];
    for (let at = 32; at + 16 <= bs && entries.length < 64 && b.readUInt32LE(at) !== 0; at += (16 + b[at]! + 3) & ~3) entries.push(at); // ok: in range
    const which = r.int(entries.length > 0 ? 3 : 1);
    if (which === 0) {
      const [off, bits] = r.pick([[0x0, 32], [0x4, 32], [0x8, 32], [0x10, 32], [0x14, 32]] as const);
      put(b, off, bits, extreme(r, bits));
      return { what: `xattr block ${blk} header 0x${off.toString(16)}`, blocks };
    }
    const e = r.pick(entries);
    if (which === 1) {
      const [off, bits] = r.pick([[0x0, 8], [0x1, 8], [0x2, 16], [0x4, 32], [0x8, 32], [0xc, 32]] as const);
      put(b, e + off, bits, r.chance(0.3) ? r.pick([bs, bs - 1, bs + 1, 0x7fffffff, 2]) : extreme(r, bits));
      return { what: `xattr block ${blk} entry at ${e} field 0x${off.toString(16)}`, blocks };
    }
    const offs = b.readUInt16LE(e + 2);
    for (let i = 0; i < 1 + r.int(32) && offs + i < bs; i++) b[offs + i] = r.int(256);
    return { what: `xattr block ${blk} value of entry at ${e}`, blocks };
  }
  if (kind < 30) {
    const inos = [...lay.inodeAt.keys()].filter((i) => i <= 2 + 400);
    const ino = r.pick(inos);
    const at = lay.inodeAt.get(ino)!; // ok: picked from its keys
    const b = blockOf(Math.floor(at / bs));
    const slot = at % bs;
    const [off, bits] = r.pick([[0x0, 16], [0x4, 32], [0x1a, 16], [0x20, 32], [0x28, 16], [0x2a, 16], [0x2c, 16], [0x2e, 16], [0x34, 32], [0x38, 16], [0x3a, 16], [0x3c, 32], [0x40, 32], [0x44, 32], [0x68, 32], [0x6c, 32], [0x80, 16]] as const);
    put(b, slot + off, bits, extreme(r, bits));
    return { what: `inode ${ino} field 0x${off.toString(16)}`, blocks };
  }
  const dxRoots = lay.dirBlocks.filter((blk) => {
    const b = disk.bytes.subarray(blk * bs, blk * bs + bs);
    return b.readUInt16LE(4) === 12 && b.readUInt16LE(16) === bs - 12 && b[0x1d] === 8;
  });
  if (kind < 34 && dxRoots.length > 0) {
    // An htree root: dx_root_info (hash version, info length, indirect levels), dx_countlimit, dx_entry hashes
    // and blocks.
    const blk = r.pick(dxRoots);
    const b = blockOf(blk);
    const [off, bits] = r.pick([[0x1c, 8], [0x1d, 8], [0x1e, 8], [0x20, 16], [0x22, 16], [0x24, 32], [0x28, 32], [0x2c, 32], [0x30, 32]] as const);
    put(b, off, bits, extreme(r, bits));
    return { what: `htree root ${blk} byte 0x${off.toString(16)}`, blocks };
  }
  if (kind < 45 && lay.dirBlocks.length > 0) {
    const blk = r.pick(lay.dirBlocks);
    const b = blockOf(blk);
    // Walk the entries to one, then damage one of its fields.
    const entries: number[] = [];
    for (let at = 0; at + 8 <= bs && entries.length < 512; ) {
      entries.push(at);
      const len = b.readUInt16LE(at + 4);
      if (len < 8) break;
      at += len;
    }
    const at = r.pick(entries);
    const field = r.int(4);
    if (field === 0) b.writeUInt32LE(r.pick([0, 1, 2, 11, extreme(r, 32), 2 + r.int(500)]) >>> 0, at);
    else if (field === 1) b.writeUInt16LE(r.pick([0, 4, 8, 12, 13, bs, bs + 4, 0xffff, extreme(r, 16)]) & 0xffff, at + 4);
    else if (field === 2) b.writeUInt8(extreme(r, 8), at + 6);
    else b.writeUInt8(r.int(256), at + 7);
    return { what: `directory block ${blk} entry at ${at} field ${field}`, blocks };
  }
  if (kind < 58) {
    // Extent header and entries in an inode's i_block (offset 0x28, 60 bytes).
    const ino = r.pick([...lay.inodeAt.keys()].filter((i) => i >= 11 && i <= 400));
    const at = lay.inodeAt.get(ino)!; // ok: picked from its keys
    const b = blockOf(Math.floor(at / bs));
    const ib = (at % bs) + 0x28;
    const which = r.int(6);
    if (which === 0) b.writeUInt16LE(r.pick([0, 1, 4, 5, 0xffff]), ib + 2); // eh_entries
    else if (which === 1) b.writeUInt16LE(r.pick([0, 1, 4, 0xffff]), ib + 4); // eh_max
    else if (which === 2) b.writeUInt16LE(r.pick([0, 1, 2, 5, 6, 0xffff]), ib + 6); // eh_depth
    else {
      const e = ib + 12 + 12 * r.int(4);
      const targets = [lay.blocks - 1, lay.blocks, lay.blocks + 1000, 0, 1, r.pick(lay.itable), r.pick(lay.metadata), extreme(r, 32)];
      if (which === 3) b.writeUInt32LE(extreme(r, 32) >>> 0, e); // ee_block
      else if (which === 4) b.writeUInt16LE(r.pick([0, 1, 0x8000, 0x8001, 0xffff, 32768]), e + 4); // ee_len
      else {
        b.writeUInt16LE(r.chance(0.2) ? extreme(r, 16) : 0, e + 6);
        b.writeUInt32LE(r.pick(targets) >>> 0, e + 8);
      }
    }
    return { what: `inode ${ino} extent field ${which}`, blocks };
  }
  if (kind < 68) {
    const blk = r.pick(lay.metadata);
    const b = blockOf(blk);
    const from = r.int(bs);
    const len = 1 + r.int(Math.min(bs - from, r.chance(0.3) ? bs : 64));
    for (let i = 0; i < len; i++) b[from + i] = r.int(256);
    return { what: `random bytes ${from}+${len} over metadata block ${blk}`, blocks };
  }
  if (kind < 74) {
    const blk = r.pick(lay.metadata);
    const offset = blk * bs + (r.chance(0.5) ? 0 : r.int(bs / 512) * 512);
    const length = Math.min(disk.bytes.length - offset, 512 * (1 + r.int(r.chance(0.2) ? 64 : 8)));
    return { what: `zero ${length} bytes at ${offset}`, blocks, zero: { offset, length } };
  }
  if (kind < 88 && jw) {
    // A transaction logging damaged copies of metadata blocks, or blocks off the disk, or revoking some.
    const n = 1 + r.int(r.chance(0.1) ? 40 : 4);
    const images: [number, Buffer][] = [];
    for (let i = 0; i < n; i++) {
      const target = r.chance(0.1) ? r.pick([lay.blocks, lay.blocks + 7, extreme(r, 32)]) : r.pick(lay.metadata);
      const image = target < lay.blocks ? Buffer.from(disk.bytes.subarray(target * bs, target * bs + bs)) : Buffer.alloc(bs);
      const k = 1 + r.int(r.chance(0.2) ? bs : 16);
      for (let j = 0; j < k; j++) image[r.int(bs)] = r.int(256);
      if (r.chance(0.05)) image.writeUInt32BE(JBD2_MAGIC, 0);
      images.push([target, image]);
    }
    const revoke = r.chance(0.2) ? Array.from({ length: 1 + r.int(20) }, () => (r.chance(0.8) ? r.pick(lay.metadata) : extreme(r, 32))) : [];
    const broken = r.chance(0.15);
    for (const [j, bytes] of jw.transaction(images, revoke, { ...r, extreme: (bits) => extreme(r, bits) }, broken)) {
      const phys = jw.lay.blocks[j];
      if (phys !== undefined) blocks.set(phys, bytes);
    }
    return { what: `journal transaction of ${n} blocks${revoke.length ? `, ${revoke.length} revoked` : ''}${broken ? ', broken' : ''}`, blocks };
  }
  if (kind < 94 && lay.dataBlocks.length > 0) {
    const blk = r.pick(lay.dataBlocks);
    const b = blockOf(blk);
    for (let i = 0; i < 1 + r.int(64); i++) b[r.int(bs)] = 0x41 + r.int(26);
    return { what: `data overwrite of block ${blk}`, blocks };
  }
  // Heal: a damaged block gets its original bytes back.
  const blk = r.pick(lay.metadata);
  blocks.set(blk, Buffer.from(disk.original.subarray(blk * bs, blk * bs + bs)));
  return { what: `block ${blk} healed`, blocks };
}

function withLimit<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: ${what} did not settle in ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

/** Encodes and decodes every event; returns how many cannot be encoded (EncodeError: the worker publishes a corrupt event in their place). */
function checkEvents(events: readonly FsEvent[], where: string): number {
  let unencodable = 0;
  for (const e of events) {
    let back: FsEvent;
    try {
      back = decodeEvent(encodeEvent(e));
    } catch (err) {
      if (err instanceof EncodeError) {
        unencodable++;
        continue;
      }
      throw new Error(`${where}: a ${e.kind} event does not encode: ${(err as Error).message}`);
    }
    expect(back.kind, where).toBe(e.kind);
  }
  return unencodable;
}

/**
 * What `gammaray crawl` does with a disk: every path, with each file's block map, each symlink's target and each
 * inode's xattrs. Errors met on the way are typed (they come with the items, or thrown); returns the paths listed.
 */
async function offlineWalk(disk: FuzzDisk): Promise<number> {
  const vol = await Ext4Volume.open(disk.source());
  let n = 0;
  for await (const item of walk(vol)) {
    if (++n > MAX_TREE) throw new Error(`the offline walk listed more than ${MAX_TREE} paths`);
    for (const e of item.errors) typedOnly(e, `offline walk ${item.path}`);
    const inode = item.inode;
    if (!inode) continue;
    const tolerate = (err: unknown) => void typedOnly(err, `offline walk ${item.path}`);
    await vol.readXattrs(inode).catch(tolerate);
    if (inode.type === 'file') await vol.blockMap(inode).catch(tolerate);
    else if (inode.type === 'symlink') await vol.readLink(inode).catch(tolerate);
  }
  return n;
}

/** A failure that is not a typed Ext4Error is a bug in the engine: it names where it happened. */
function typedOnly(err: unknown, where: string): Ext4Error {
  if (err instanceof Ext4Error) return err;
  const e = err as Error;
  throw new Error(`${where}: untyped failure ${e?.name}: ${e?.message}\n${e?.stack ?? ''}`);
}

const IMAGES: { name: string; mkfs: string; args: string[]; size: string }[] = [
  { name: 'ext4-csum', mkfs: 'mkfs.ext4', args: ['-b', '4096'], size: '24M' },
  { name: 'ext4-nocsum-32', mkfs: 'mkfs.ext4', args: ['-b', '4096', '-O', '^metadata_csum,^64bit'], size: '24M' },
  { name: 'ext4-1k-inline', mkfs: 'mkfs.ext4', args: ['-b', '1024', '-O', '^metadata_csum,inline_data'], size: '24M' },
  { name: 'ext2', mkfs: 'mkfs.ext2', args: ['-b', '4096'], size: '16M' },
];

describe('the inference engine under random crafted metadata', () => {
  it.each(IMAGES)('$name: typed errors or corrupt events only, no hang, events encode, checkpoints restore', async ({ name, mkfs, args, size }) => {
    const img = join(work, `${name}.img`);
    await exec(mkfs, ['-q', '-F', '-N', '1024', '-E', 'lazy_itable_init=0', ...args, '-d', src, img, size]);
    // mkfs -d writes linear directories; e2fsck -D indexes the large one (an htree), as a kernel would have.
    await exec('e2fsck', ['-fyD', img]).catch((e: { code?: number }) => {
      if (e.code !== 1) throw e; // 1: the file system was changed (the directories were optimised)
    });
    // Extended attributes too large for the inode: xattr blocks (one shared by two files, as the kernel shares
    // identical ones), and a small one in the inode.
    const value = join(work, `${name}.xattr`);
    writeFileSync(value, 'v'.repeat(700));
    for (const [file, attr] of [['/a/f2.txt', 'user.big'], ['/a/f3.txt', 'user.big'], ['/a/f4.txt', 'user.other'], ['/big', 'user.dir']]) {
      await exec('debugfs', ['-w', '-R', `ea_set -f ${value} ${file} ${attr}`, img]);
    }
    await exec('debugfs', ['-w', '-R', 'ea_set /a/f5.txt user.small tiny', img]);
    const pristine = readFileSync(img);
    const seeds = ONLY_SEED !== undefined ? [Number(ONLY_SEED)] : Array.from({ length: SEEDS }, (_, i) => i + 1);
    const tally = { records: 0, corrupt: 0, unencodable: 0, typedFailures: 0, recrawls: 0, unmountable: 0, crawls: 0, failedCrawls: 0, walked: 0 };
    for (const seed of seeds) {
      const r = prng(seed * 7919 + name.length);
      const disk = new FuzzDisk(Buffer.from(pristine));
      let inf = (await DiskInferencer.bootstrap(disk.fetcher(), { disk: 'fuzz' }, 0, new Date(0))).inferencer;
      const lay = await layoutOf(disk, inf);
      const jw = lay.journal ? new Jbd2Writer(lay.journal) : undefined;
      expect(lay.xattrBlocks.length, `${name}: xattr blocks to damage`).toBeGreaterThanOrEqual(2);
      for (let round = 0; round < ROUNDS; round++) {
        const change = mutate(disk, lay, jw, r);
        const where = `${name} seed ${seed} round ${round} (${change.what})`;
        const ops: WriteOp[] = [];
        for (const [b, bytes] of [...change.blocks].sort((x, y) => x[0] - y[0])) {
          bytes.copy(disk.bytes, b * lay.bs);
          ops.push({ op: 'write', offset: b * lay.bs, length: lay.bs, data: Uint8Array.from(bytes), fua: false });
        }
        if (change.zero) {
          disk.bytes.fill(0, change.zero.offset, change.zero.offset + change.zero.length);
          ops.push({ op: 'zero', offset: change.zero.offset, length: change.zero.length, fua: false });
        }
        if (r.chance(0.5)) ops.push({ op: 'flush' });
        disk.seq++;
        tally.records++;
        let events: FsEvent[] | undefined;
        try {
          events = await withLimit(inf.apply(disk.seq, { v: 1, disk: 'fuzz', ts: new Date(disk.seq * 1000), ops } satisfies WriteRecord), APPLY_LIMIT_MS, where);
        } catch (err) {
          if ((err as Error).message?.startsWith('hang:')) throw err;
          typedOnly(err, where);
          tally.typedFailures++;
        }
        if (events) {
          tally.unencodable += checkEvents(events, where);
          tally.corrupt += events.filter((e) => e.kind === 'corrupt').length;
          // Every path is a directory entry on the disk: a tree larger than the inode table could ever name is
          // paths multiplied by damage (a directory reachable under several names).
          const size = inf.tree().length;
          if (size > MAX_TREE) throw new Error(`${where}: the tree grew to ${size} entries`);
          continue;
        }
        // What the service does once a record keeps failing: crawl the disk again. A file system too damaged
        // to open at all stays unfollowed until the guest repairs it; here the guest does, block by block.
        tally.recrawls++;
        let reopened: DiskInferencer | undefined;
        for (let attempt = 0; attempt < 2 && !reopened; attempt++) {
          try {
            reopened = (await withLimit(DiskInferencer.bootstrap(disk.fetcher(), { disk: 'fuzz' }, disk.seq, new Date()), APPLY_LIMIT_MS, `${where}: crawl`)).inferencer;
          } catch (err) {
            if ((err as Error).message?.startsWith('hang:')) throw err;
            typedOnly(err, `${where}: crawl`);
            tally.unmountable++;
            pristine.copy(disk.bytes);
          }
        }
        if (!reopened) throw new Error(`${where}: the pristine image does not open`);
        inf = reopened;
      }
      // The state after all this restores to the same tree.
      const restored = await DiskInferencer.restore(inf.checkpoint(), disk.fetcher(), { disk: 'fuzz' });
      expect(restored.tree(), `${name} seed ${seed}: restored tree`).toEqual(inf.tree());
      // A crawl of the damaged disk (a new inferencer, or a view's first state): the same rules. Its superblock
      // and first descriptor block are the original ones, or the crawl would stop there every time.
      const head = (lay.bs === 1024 ? 3 : 2) * lay.bs;
      const healed = new FuzzDisk(Buffer.concat([disk.original.subarray(0, head), disk.bytes.subarray(head)]));
      try {
        const crawled = (await withLimit(DiskInferencer.bootstrap(healed.fetcher(), { disk: 'fuzz' }, disk.seq, new Date()), APPLY_LIMIT_MS, `${name} seed ${seed}: crawl`)).inferencer;
        const size = crawled.tree().length;
        if (size > MAX_TREE) throw new Error(`${name} seed ${seed}: the crawled tree has ${size} entries`);
        tally.crawls++;
      } catch (err) {
        if ((err as Error).message?.startsWith('hang:') || (err as Error).message?.includes('crawled tree')) throw err;
        typedOnly(err, `${name} seed ${seed}: crawl`);
        if (process.env['GAMMARAY_FUZZ_DEBUG']) console.log(`crawl ${name} seed ${seed}: ${(err as Error).message}`);
        tally.failedCrawls++;
      }
      // With a readable superblock and descriptors, damage elsewhere (root, directories, journal superblock) is
      // reported by the crawl, not fatal to it: a crawl that failed was retried forever, the disk unmonitored.
      expect(tally.failedCrawls, `${name} seed ${seed}: final crawls that failed`).toBe(0);
      // The offline commands (ls, crawl, cat) walk the same damaged bytes: typed errors only, bounded.
      tally.walked += await withLimit(offlineWalk(healed), APPLY_LIMIT_MS, `${name} seed ${seed}: offline walk`).catch((err: unknown) => {
        if ((err as Error).message?.startsWith('hang:') || (err as Error).message?.includes('walk listed')) throw err;
        typedOnly(err, `${name} seed ${seed}: offline walk`);
        return 0;
      });
    }
    console.log(`fuzz ${name}: ${JSON.stringify(tally)}`);
    // The damage reached the engine: some of it must have been reported.
    expect(tally.corrupt + tally.typedFailures + tally.unmountable).toBeGreaterThan(0);
  }, 300_000);
});
