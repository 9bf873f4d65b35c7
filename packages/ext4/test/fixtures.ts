// Test fixtures: real ext2/3/4 images built by e2fsprogs from a generated source tree, and helpers that damage
// one field of an image and re-seal every checksum that covers it, so a test hits the field check it aims at
// rather than the checksum in front of it.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBlockSource, type BlockSource } from '@gammaray/disk';
import { expect } from 'vitest';
import {
  CorruptError,
  Ext4Volume,
  crc32c,
  groupDescChecksum,
  inodeChecksum,
  type CorruptKind,
  type Ext4Superblock,
  type OpenOptions,
} from '../src/index.js';

/** How to build one image. */
export interface ImageSpec {
  readonly mkfs?: 'mkfs.ext4' | 'mkfs.ext3' | 'mkfs.ext2';
  readonly blockSize?: 1024 | 2048 | 4096 | 65536;
  /** mke2fs size argument, e.g. `16M`. */
  readonly size?: string;
  /** `-O` value, e.g. `^metadata_csum,uninit_bg`. */
  readonly features?: string;
  /** Further mke2fs arguments (`-N 4096`, `-g 1024`, `-L label`). */
  readonly args?: readonly string[];
  /** Fills the source directory that `mke2fs -d` copies. */
  readonly populate?: (root: string) => void;
  /** Rebuild directories as htrees (`e2fsck -fyD`) after mkfs. */
  readonly indexDirs?: boolean;
  /** debugfs -w commands run after mkfs (one script, in order). */
  readonly debugfs?: readonly string[];
}

const UUID = '5a1e0c0d-e000-4b1d-9a11-0123456789ab';

/** Builds an image in a temp dir with e2fsprogs and returns its bytes. */
export function buildImage(spec: ImageSpec): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'gammaray-ext4-'));
  try {
    const src = join(dir, 'src');
    mkdirSync(src);
    spec.populate?.(src);
    const img = join(dir, 'fs.img');
    const args = ['-q', '-F', '-U', UUID, '-E', `hash_seed=${UUID}`, '-b', String(spec.blockSize ?? 4096)];
    if (spec.features !== undefined) args.push('-O', spec.features);
    args.push(...(spec.args ?? []), '-d', src, img, spec.size ?? '16M');
    execFileSync(spec.mkfs ?? 'mkfs.ext4', args, { stdio: 'pipe', env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' } });
    if (spec.indexDirs) {
      try {
        execFileSync('e2fsck', ['-fyD', img], { stdio: 'pipe' });
      } catch (err) {
        // e2fsck exits 1 when it changed something, which -D always may.
        if ((err as { status?: number }).status !== 1) throw err;
      }
    }
    if (spec.debugfs && spec.debugfs.length > 0) {
      const script = join(dir, 'cmds');
      writeFileSync(script, `${spec.debugfs.join('\n')}\n`);
      execFileSync('debugfs', ['-w', '-f', script, img], { stdio: 'pipe' });
    }
    return new Uint8Array(readFileSync(img));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a read-only debugfs request against `img` and returns its stdout. */
export function debugfs(img: Uint8Array, request: string): string {
  return runOnImage(img, 'debugfs', ['-R', request]);
}

/** Target of the slow symlink `/slow` (longer than the 60 bytes of i_block). */
export const SLOW_TARGET = 't'.repeat(80);
/** Value of user.big on /dir/a.txt: too large for the inode, so it lives in the xattr block. */
export const BIG_XATTR = 'a'.repeat(2000);
/** Number of files in /big (enough for several blocks, and an htree with indexDirs). */
export const BIG_DIR_FILES = 300;
/** Data islands in /sparse: one block every other block, so the extent tree needs index nodes. */
export const SPARSE_ISLANDS = 400;

/**
 * The tree most tests use:
 * ```
 * /dir/a.txt          "hello\n", user.big (2000 bytes, xattr block), user.small (in the inode)
 * /dir/sub/deep/      empty directory
 * /big/file1..300     empty files
 * /sparse             SPARSE_ISLANDS 4 KiB islands of 'x' at even 4 KiB blocks, holes between
 * /small.txt          "0123456789"
 * /slow -> SLOW_TARGET, /fast -> dir/a.txt, /lnkdir -> dir/sub, /abs -> /dir/sub/deep, /loop1 <-> /loop2, /self -> self
 * ```
 */
export function standardTree(root: string): void {
  mkdirSync(join(root, 'dir/sub/deep'), { recursive: true });
  const a = join(root, 'dir/a.txt');
  writeFileSync(a, 'hello\n');
  execFileSync('setfattr', ['-n', 'user.big', '-v', BIG_XATTR, a]);
  execFileSync('setfattr', ['-n', 'user.small', '-v', 'tiny', a]);
  mkdirSync(join(root, 'big'));
  for (let i = 1; i <= BIG_DIR_FILES; i++) writeFileSync(join(root, `big/file${i}`), '');
  writeFileSync(join(root, 'small.txt'), '0123456789');
  const fd = openSync(join(root, 'sparse'), 'w');
  const island = Buffer.alloc(4096, 0x78);
  for (let i = 0; i < SPARSE_ISLANDS; i++) writeSync(fd, island, 0, island.length, i * 2 * 4096);
  closeSync(fd);
  symlinkSync(SLOW_TARGET, join(root, 'slow'));
  symlinkSync('dir/a.txt', join(root, 'fast'));
  symlinkSync('dir/sub', join(root, 'lnkdir'));
  symlinkSync('/dir/sub/deep', join(root, 'abs'));
  symlinkSync('loop2', join(root, 'loop1'));
  symlinkSync('loop1', join(root, 'loop2'));
  symlinkSync('self', join(root, 'self'));
}

/** Opens `img` as a volume. */
export function openImage(img: Uint8Array, opts?: OpenOptions): Promise<Ext4Volume> {
  return Ext4Volume.open(new MemoryBlockSource(img), opts);
}

/** Opens a copy of `img` after `damage` changed it. */
export async function openDamaged(img: Uint8Array, damage: (copy: Uint8Array) => void | Promise<void>): Promise<Ext4Volume> {
  const copy = img.slice();
  await damage(copy);
  return openImage(copy);
}

// ---- little/big-endian access ----

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
export const rd8 = (b: Uint8Array, off: number): number => view(b).getUint8(off);
export const rd16 = (b: Uint8Array, off: number): number => view(b).getUint16(off, true);
export const rd32 = (b: Uint8Array, off: number): number => view(b).getUint32(off, true);
export const wr8 = (b: Uint8Array, off: number, v: number): void => view(b).setUint8(off, v);
export const wr16 = (b: Uint8Array, off: number, v: number): void => view(b).setUint16(off, v, true);
export const wr32 = (b: Uint8Array, off: number, v: number): void => view(b).setUint32(off, v >>> 0, true);
export const rdBe32 = (b: Uint8Array, off: number): number => view(b).getUint32(off, false);
export const wrBe32 = (b: Uint8Array, off: number, v: number): void => view(b).setUint32(off, v >>> 0, false);
/** XORs `mask` into byte `off`. */
export function flip(b: Uint8Array, off: number, mask = 0x01): void {
  b[off] = (b[off] ?? 0) ^ mask;
}

// ---- locating structures ----

/** Byte offset of the primary superblock. */
export const SB = 1024;

/** Byte offset of inode `ino` in the image, from the volume's own descriptors. */
export function inodeOffset(vol: Ext4Volume, ino: number): number {
  const sb = vol.superblock;
  const group = Math.floor((ino - 1) / sb.inodesPerGroup);
  const index = (ino - 1) % sb.inodesPerGroup;
  return vol.groupDesc(group).inodeTable * sb.blockSize + index * sb.inodeSize;
}

/** Byte offset of group descriptor `group` (classic, non-meta_bg layout). */
export function groupDescOffset(sb: Ext4Superblock, group: number): number {
  return (Math.floor(1024 / sb.blockSize) + 1) * sb.blockSize + group * sb.descSize; // after the superblock's block
}

/** Physical block of logical block `logical` of the file at `path`. */
export async function physicalBlock(vol: Ext4Volume, path: string, logical = 0): Promise<number> {
  const inode = await vol.lookup(path);
  const map = await vol.blockMap(inode);
  const e = map.find((x) => x.logical <= logical && logical < x.logical + x.length);
  if (!e) throw new Error(`${path}: logical block ${logical} is a hole`);
  return e.physical + (logical - e.logical);
}

/** Byte offset, within a directory block starting at `base`, of the entry named `name`. */
export function direntOffset(img: Uint8Array, base: number, blockSize: number, name: string): number {
  const want = Buffer.from(name, 'utf8');
  let off = 0;
  while (off + 8 <= blockSize) {
    const recLen = rd16(img, base + off + 4);
    const nameLen = rd8(img, base + off + 6);
    if (rd32(img, base + off) !== 0 && Buffer.compare(Buffer.from(img.subarray(base + off + 8, base + off + 8 + nameLen)), want) === 0) return base + off;
    if (recLen < 8) break;
    off += recLen;
  }
  throw new Error(`no entry ${name} in the directory block at byte ${base}`);
}

// ---- re-sealing checksums after a deliberate change ----

/** Recomputes s_checksum (metadata_csum). */
export function resealSuperblock(img: Uint8Array): void {
  wr32(img, SB + 0x3fc, crc32c(0xffffffff, img, SB, SB + 0x3fc));
}

/** Recomputes the checksum of inode `ino` (metadata_csum). */
export function resealInode(img: Uint8Array, vol: Ext4Volume, ino: number): void {
  const sb = vol.superblock;
  if (!sb.metadataCsum) return;
  const off = inodeOffset(vol, ino);
  const raw = img.subarray(off, off + sb.inodeSize);
  const c = inodeChecksum(raw, ino, rd32(raw, 0x64), sb);
  wr16(raw, 0x7c, c & 0xffff);
  if (raw.length > 128 && rd16(raw, 0x80) >= 4) wr16(raw, 0x82, c >>> 16);
}

/** Recomputes bg_checksum of `group` (crc32c or crc16). */
export function resealGroupDesc(img: Uint8Array, sb: Ext4Superblock, group: number): void {
  const off = groupDescOffset(sb, group);
  const bytes = img.subarray(off, off + sb.descSize);
  wr16(bytes, 0x1e, groupDescChecksum(bytes, group, sb));
}

function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  wr32(b, 0, v);
  return b;
}

/** The per-inode checksum seed: crc32c(fs seed, le32 ino, le32 generation). */
export function inodeSeed(sb: Ext4Superblock, ino: number, generation: number): number {
  return crc32c(crc32c(sb.csumSeed, u32le(ino)), u32le(generation));
}

/** Recomputes the ext4_dir_entry_tail checksum of the directory block `block` of inode `ino`. */
export async function resealDirBlock(img: Uint8Array, vol: Ext4Volume, ino: number, block: number): Promise<void> {
  const sb = vol.superblock;
  if (!sb.metadataCsum) return;
  const inode = await vol.readInode(ino);
  const b = img.subarray(block * sb.blockSize, (block + 1) * sb.blockSize);
  const tail = sb.blockSize - 12;
  wr32(b, tail + 8, crc32c(inodeSeed(sb, ino, inode.generation), b, 0, tail));
}

/** Recomputes the ext4_extent_tail checksum of extent tree block `block` of inode `ino`. */
export async function resealExtentBlock(img: Uint8Array, vol: Ext4Volume, ino: number, block: number): Promise<void> {
  const sb = vol.superblock;
  const inode = await vol.readInode(ino);
  const b = img.subarray(block * sb.blockSize, (block + 1) * sb.blockSize);
  const tail = 12 + 12 * rd16(b, 4);
  wr32(b, tail, crc32c(inodeSeed(sb, ino, inode.generation), b, 0, tail));
}

/** Recomputes h_checksum of the xattr block `block`. */
export function resealXattrBlock(img: Uint8Array, sb: Ext4Superblock, block: number): void {
  const b = img.subarray(block * sb.blockSize, (block + 1) * sb.blockSize);
  wr32(b, 0x10, 0);
  const nr = new Uint8Array(8);
  wr32(nr, 0, block);
  wr32(b, 0x10, crc32c(crc32c(sb.csumSeed, nr), b));
}

/** Recomputes the big-endian s_checksum of the jbd2 superblock at byte `off`. */
export function resealJournalSuperblock(img: Uint8Array, off: number): void {
  const b = img.subarray(off, off + 1024);
  wrBe32(b, 0xfc, 0);
  wrBe32(b, 0xfc, crc32c(0xffffffff, b));
}

// ---- asserting errors ----

/** What a CorruptError must carry. */
export interface Expected {
  readonly inode?: number;
  readonly group?: number;
  readonly block?: number;
  readonly field?: string;
}

function check(err: unknown, kind: CorruptKind, where: Expected): CorruptError {
  expect(err).toBeInstanceOf(CorruptError);
  const e = err as CorruptError;
  expect({ kind: e.kind, ...pick(e, where) }).toEqual({ kind, ...where });
  expect(e.name).toBe('CorruptError');
  expect(e.message.startsWith(`${kind}:`)).toBe(true);
  return e;
}

function pick(e: CorruptError, where: Expected): Expected {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(where) as (keyof Expected)[]) out[k] = e[k];
  return out;
}

/** Awaits `p`, asserts it rejected with a CorruptError of `kind` and location `where`, returns the error. */
export async function rejectsCorrupt(p: Promise<unknown>, kind: CorruptKind, where: Expected = {}): Promise<CorruptError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return check(err, kind, where);
}

/** Calls `fn`, asserts it threw a CorruptError of `kind` and location `where`, returns the error. */
export function throwsCorrupt(fn: () => unknown, kind: CorruptKind, where: Expected = {}): CorruptError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  return check(err, kind, where);
}

/** Asserts a returned error (a partial result's) is a CorruptError of `kind` at `where`. */
export function isCorrupt(err: unknown, kind: CorruptKind, where: Expected = {}): CorruptError {
  return check(err, kind, where);
}

/**
 * A block source over `img` that reads as `totalBytes` long: bytes past the real image read as zeros. Lets a
 * test point block maps at a huge, mostly empty disk without allocating it.
 */
export class ZeroTailSource implements BlockSource {
  constructor(
    private readonly img: Uint8Array,
    readonly size: number,
  ) {}

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.size) throw new Error(`read ${offset}+${length} outside ${this.size}`);
    const out = new Uint8Array(length);
    if (offset < this.img.length) out.set(this.img.subarray(offset, Math.min(offset + length, this.img.length)));
    return out;
  }
}

/** `dumpe2fs -h` of `img` as a map from field name to value (the oracle for superblock fields). */
export function dumpe2fsHeader(img: Uint8Array): Map<string, string> {
  const out = runOnImage(img, 'dumpe2fs', ['-h']);
  const fields = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = /^([^:]+):\s+(.*)$/.exec(line);
    if (m) fields.set(m[1]!, m[2]!.trim()); // ok: both groups always match
  }
  return fields;
}

/** Full `dumpe2fs` output of `img` (group table included). */
export function dumpe2fs(img: Uint8Array): string {
  return runOnImage(img, 'dumpe2fs', []);
}

function runOnImage(img: Uint8Array, tool: string, args: readonly string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'gammaray-ext4-'));
  try {
    const path = join(dir, 'fs.img');
    writeFileSync(path, img);
    return execFileSync(tool, [...args, path], { stdio: ['ignore', 'pipe', 'ignore'] }).toString('latin1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
