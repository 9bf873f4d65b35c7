/**
 * Oracle: the Linux ext4 driver itself. The image is loop-mounted read-only and walked with `lstat`.
 *
 * Trust (checked by test/fixtures/fixtures.test.ts against debugfs and The Sleuth Kit):
 * - Authoritative for every field of {@link TreeEntry}: path, ino, type, mode, uid/gid (incl. high 16 bits),
 *   size, nlink, all three times with nanoseconds and the epoch bits past 2038, symlink target, device number
 *   (st_rdev of character and block devices), content hash.
 *   debugfs agrees with it on every field of every mountable spec of the matrix (small and full tree).
 * - Content past the inline area of an inline_data inode reads as zeros (mkfs -d stores the all-hole
 *   `sparse/hole-only` as a 16 MiB inline_data inode with 60 bytes of inline data).
 * - Only for file systems this kernel mounts: not for block size > page size (the 64 KiB-block image), and it
 *   needs root and loop devices. Use `debugfsTree` (./debugfs.ts) there.
 * - `-o noload` keeps the driver from replaying the journal, so it shows exactly the bytes the image has, as
 *   gammaray must. A read-only mount never updates atime, so walking does not disturb what it measures.
 * - Times with `-I 128` inodes (no `*_extra` fields) are the signed 32-bit base with nsec 0.
 * - `lost+found` is listed like any other directory, because it is one.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, readdir, readlink, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BigIntStats } from 'node:fs';
import { decodeName, sortEntries, splitNs } from './entry.js';
import type { EntryType, TreeEntry } from './entry.js';
import { mapLimit, run, ToolError } from './exec.js';

/** Where the file system sits in the image and whether to hash regular files. */
export interface KernelTreeOptions {
  /** Byte offset of the file system inside the image (a partition's start). */
  readonly offsetBytes?: number;
  /** Length in bytes the loop device exposes from `offsetBytes` (a partition's size). */
  readonly sizelimit?: number;
  /** Compute `sha256` of regular files. */
  readonly hash: boolean;
  /**
   * Let the kernel replay the journal (a read-write mount, noatime). It writes to the image: pass a copy.
   * Default: `noload`, the metadata as written home.
   */
  readonly replay?: boolean;
}

const UMOUNT_ATTEMPTS = 20;
const UMOUNT_RETRY_MS = 250;

/**
 * Mounts `image` read-only (`-t ext4 -o ro,loop,noload`; ext2/ext3 mount fine with the ext4 driver), lists the
 * whole tree like `gammaray ls IMAGE / -R --json [--hash]`, and always unmounts and detaches the loop device.
 * Entries are sorted by path (see `comparePaths`).
 */
export async function kernelTree(image: string, options: KernelTreeOptions): Promise<TreeEntry[]> {
  const mnt = await mkdtemp(join(tmpdir(), 'gammaray-oracle-mnt-'));
  try {
    // Replaying needs a writable device (util-linux makes the loop device of a `ro` mount read-only).
    const mountOptions = options.replay ? ['loop', 'noatime'] : ['ro', 'loop', 'noload'];
    if (options.offsetBytes !== undefined) mountOptions.push(`offset=${options.offsetBytes}`);
    if (options.sizelimit !== undefined) mountOptions.push(`sizelimit=${options.sizelimit}`);
    await run('mount', ['-t', 'ext4', '-o', mountOptions.join(','), image, mnt]);
    try {
      return sortEntries(await walk(mnt, options.hash));
    } finally {
      await unmount(mnt);
    }
  } finally {
    await rmdir(mnt);
  }
}

/**
 * The kernel's statfs of `image` (a read-only loop mount): block size (f_frsize), size (f_blocks: the blocks less
 * the metadata), free and available blocks (f_bfree, f_bavail), inodes and free inodes (f_files, f_ffree).
 */
export async function kernelStatfs(image: string): Promise<{ blockSize: number; blocks: number; free: number; avail: number; inodes: number; freeInodes: number }> {
  const mnt = await mkdtemp(join(tmpdir(), 'gammaray-oracle-mnt-'));
  try {
    await run('mount', ['-t', 'ext4', '-o', 'ro,loop,noload', image, mnt]);
    try {
      const [blockSize, blocks, free, avail, inodes, freeInodes] = (await run('stat', ['-f', '-c', '%S %b %f %a %c %d', mnt])).stdout.toString().trim().split(' ').map(Number);
      return { blockSize: blockSize!, blocks: blocks!, free: free!, avail: avail!, inodes: inodes!, freeInodes: freeInodes! }; // ok: six numbers asked for
    } finally {
      await unmount(mnt);
    }
  } finally {
    await rmdir(mnt);
  }
}

/** `umount -d` detaches the loop device even if autoclear was not set; a busy mount is retried. */
async function unmount(mnt: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await run('umount', ['-d', mnt]);
      return;
    } catch (e) {
      const busy = e instanceof ToolError && /busy/i.test(e.stderr);
      if (!busy || attempt >= UMOUNT_ATTEMPTS) throw e;
      await new Promise((r) => setTimeout(r, UMOUNT_RETRY_MS));
    }
  }
}

/** glibc's major(3) and minor(3) of a 64-bit dev_t (st_rdev). */
export function splitDev(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn & 0xffffffffn);
  return { major: Number(major), minor: Number(minor) };
}

function typeOf(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'chr';
  if (st.isBlockDevice()) return 'blk';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'sock';
  throw new Error(`unknown file type in mode 0o${st.mode.toString(8)}`);
}

async function sha256File(path: Buffer): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Concurrent lstat/readlink/hash calls; libuv's thread pool does the rest. */
const IO_CONCURRENCY = 16;

async function entryFor(host: Buffer, path: string, hash: boolean): Promise<TreeEntry> {
  const st = await lstat(host, { bigint: true });
  const type = typeOf(st);
  const m = splitNs(st.mtimeNs);
  const a = splitNs(st.atimeNs);
  const c = splitNs(st.ctimeNs);
  const entry: TreeEntry = {
    path,
    ino: Number(st.ino),
    type,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    nlink: Number(st.nlink),
    mtime: m.sec,
    mtimeNsec: m.nsec,
    atime: a.sec,
    atimeNsec: a.nsec,
    ctime: c.sec,
    ctimeNsec: c.nsec,
  };
  if (type === 'symlink') entry.target = decodeName(await readlink(host, { encoding: 'buffer' }));
  if (type === 'chr' || type === 'blk') entry.rdev = splitDev(st.rdev);
  if (type === 'file' && hash) entry.sha256 = await sha256File(host);
  return entry;
}

/**
 * Breadth-first walk, one directory level at a time with bounded concurrency. Host paths stay `Buffer`s end to
 * end, because names with invalid UTF-8 would not survive a round trip through a JS string.
 */
async function walk(mnt: string, hash: boolean): Promise<TreeEntry[]> {
  const entries: TreeEntry[] = [];
  let level: { host: Buffer; path: string }[] = [{ host: Buffer.from(mnt), path: '/' }];
  while (level.length > 0) {
    const got = await mapLimit(level, IO_CONCURRENCY, (item) => entryFor(item.host, item.path, hash));
    entries.push(...got);
    const next: { host: Buffer; path: string }[] = [];
    const dirs = level.filter((_, i) => got[i]?.type === 'dir');
    const listings = await mapLimit(dirs, IO_CONCURRENCY, (d) => readdir(d.host, { encoding: 'buffer' }));
    dirs.forEach((dir, i) => {
      for (const name of listings[i] ?? []) {
        next.push({
          host: Buffer.concat([dir.host, Buffer.from('/'), name]),
          path: (dir.path === '/' ? '/' : `${dir.path}/`) + decodeName(name),
        });
      }
    });
    level = next;
  }
  return entries;
}
