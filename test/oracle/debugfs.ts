/**
 * Oracle: e2fsprogs `debugfs`, a user-space ext2/3/4 reader independent of the kernel. It is the oracle of
 * record for images the kernel cannot mount (block size > page size).
 *
 * Trust (measured by test/fixtures/fixtures.test.ts): identical to the kernel on every {@link TreeEntry} field
 * for every spec of the matrix, small and full tree: uid/gid high bits, nanoseconds and epoch bits (decoded
 * here from the raw `0xLO:EXTRA` words debugfs prints), inline_data, bigalloc, meta_bg, block-mapped files,
 * htree directories, hashes, partitions. Quirks this module works around:
 * - `ls -p` prints raw name bytes between `/` separators; names cannot contain `/`, so records are parsed
 *   structurally and newlines or invalid UTF-8 in names survive. It also lists empty slots (inode 0, e.g. in
 *   lost+found), which are skipped, and prints uid/gid with `%d` (4294967294 as -2).
 * - `dump` of an inline_data inode writes the whole inline area (60+ bytes) regardless of i_size; the content
 *   is cut or zero-extended to i_size as the kernel reads it.
 * - Directories and inodes are always addressed as `<ino>`, never by path, so no name is re-parsed by
 *   debugfs' command line. Paths come from the walk, so a directory linked twice is reported, not looped.
 * - It reads the image as it is: the journal is not replayed, like the kernel with `noload`.
 * - `Fast link dest` is printed with `%.*s`, which stops at a NUL byte; ext4 targets never hold one.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeExt4Time, decodeName, sortEntries, typeFromMode } from './entry.js';
import type { EntryType, TreeEntry } from './entry.js';
import { mapLimit, run } from './exec.js';

/** Where the file system sits in the image and whether to hash regular files. */
export interface DebugfsTreeOptions {
  /** Byte offset of the file system inside the image (passed as `IMAGE?offset=N`, an e2fsprogs io option). */
  readonly offsetBytes?: number;
  /** Compute `sha256` of regular files (dumps each one to a temp file). */
  readonly hash: boolean;
}

const ROOT_INO = 2;
const DUMP_READ_CONCURRENCY = 16;
const DEBUGFS_ENV = { DEBUGFS_PAGER: '__none__', PAGER: '__none__' };

/** The device argument debugfs understands for a file system at a byte offset. */
export function debugfsDevice(image: string, offsetBytes?: number): string {
  return offsetBytes === undefined || offsetBytes === 0 ? image : `${image}?offset=${offsetBytes}`;
}

/**
 * Runs a batch of debugfs commands in one process (`-f cmdfile`) and returns each command's raw output.
 * debugfs echoes `debugfs: CMD` before each command's output; outputs are cut at those echoes, found in order.
 */
export async function debugfsBatch(device: string, commands: readonly string[], write = false): Promise<Buffer[]> {
  if (commands.length === 0) return [];
  const dir = await mkdtemp(join(tmpdir(), 'gammaray-debugfs-'));
  try {
    const cmdFile = join(dir, 'commands');
    await writeFile(cmdFile, commands.map((c) => `${c}\n`).join(''));
    const args = write ? ['-w', '-f', cmdFile, device] : ['-f', cmdFile, device];
    const { stdout, stderr } = await run('debugfs', args, { env: DEBUGFS_ENV });
    const starts: { at: number; body: number }[] = [];
    let from = 0;
    for (const c of commands) {
      const marker = Buffer.from(`debugfs: ${c}\n`);
      const at = stdout.indexOf(marker, from);
      if (at < 0) throw new Error(`debugfs output lost the echo of "${c}"; stderr: ${stderr.slice(0, 500)}`);
      starts.push({ at, body: at + marker.length });
      from = at + marker.length;
    }
    const errors = stderr
      .split('\n')
      .filter((l) => l.trim() !== '' && !/^debugfs \d/.test(l) && !/catastrophic mode/.test(l));
    if (errors.length > 0) throw new Error(`debugfs on ${device} reported: ${errors.slice(0, 5).join(' | ')}`);
    return starts.map((s, i) => stdout.subarray(s.body, starts[i + 1]?.at ?? stdout.length));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One record of `ls -p`: `/ino/mode/uid/gid/name/size/` where dirs have an empty size. */
interface LsRecord {
  readonly ino: number;
  readonly mode: number;
  readonly name: Buffer;
}

/** Parses `ls -p` output structurally: a name can hold any byte but `/` and NUL, including newlines. */
export function parseLsP(out: Buffer): LsRecord[] {
  const text = out.toString('latin1'); // one char per byte, so names convert back losslessly
  const re = /\/(\d+)\/([0-7]+)\/(-?\d+)\/(-?\d+)\/([^/]*)\/(\d*)\/\n/gy;
  const records: LsRecord[] = [];
  let lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    lastIndex = re.lastIndex;
    const [, ino, mode, , , name] = m;
    // `ls` includes empty slots (inode 0, e.g. the pre-allocated blocks of lost+found); they are no names.
    if (name === '.' || name === '..' || ino === '0') continue;
    records.push({ ino: Number(ino), mode: parseInt(mode ?? '', 8), name: Buffer.from(name ?? '', 'latin1') });
  }
  const rest = text.slice(lastIndex).trim();
  if (rest !== '') throw new Error(`unparsed debugfs ls -p output: ${JSON.stringify(rest.slice(0, 200))}`);
  return records;
}

/** What `stat <ino>` tells beyond `ls -p`. */
export interface DebugfsStat {
  readonly ino: number;
  readonly type: EntryType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  readonly flags: number;
  readonly mtime: { sec: number; nsec: number };
  readonly atime: { sec: number; nsec: number };
  readonly ctime: { sec: number; nsec: number };
  /** Raw bytes of an in-inode (fast or inline_data) symlink target. */
  readonly fastLink?: Buffer;
  /** Character and block devices: `[(New-style) ]Device major/minor number: %02d:%02d (hex ...)`. */
  readonly rdev?: { major: number; minor: number };
}

const DEBUGFS_TYPES: Readonly<Record<string, EntryType>> = {
  regular: 'file',
  directory: 'dir',
  symlink: 'symlink',
  'character special': 'chr',
  'block special': 'blk',
  FIFO: 'fifo',
  socket: 'sock',
};

/** Parses one `stat <ino>` output (see `dump_inode()` in e2fsprogs debugfs/debugfs.c). */
export function parseStat(out: Buffer): DebugfsStat {
  const text = out.toString('latin1');
  const head = /Inode: (\d+)\s+Type: ([A-Za-z ]+?)\s+Mode:\s+(0[0-7]+)\s+Flags: 0x([0-9a-f]+)/.exec(text);
  const owner = /User:\s+(-?\d+)\s+Group:\s+(-?\d+)(?:\s+Project:\s+-?\d+)?\s+Size: (\d+)/.exec(text);
  const links = /Links: (\d+)/.exec(text);
  if (!head || !owner || !links) throw new Error(`unparsed debugfs stat output: ${JSON.stringify(text.slice(0, 300))} ${out.length}`);
  const type = DEBUGFS_TYPES[head[2] ?? ''];
  if (type === undefined) throw new Error(`debugfs reports unknown type "${head[2]}"`);
  const time = (field: string): { sec: number; nsec: number } => {
    const t = new RegExp(`(?:^|\\n)\\s*${field}: 0x([0-9a-f]{8})(?::([0-9a-f]{8}))? --`).exec(text);
    if (!t) throw new Error(`debugfs stat lacks ${field}: ${text.slice(0, 300)}`);
    return decodeExt4Time(parseInt(t[1] ?? '', 16), t[2] === undefined ? undefined : parseInt(t[2], 16));
  };
  const size = Number(owner[3]);
  const stat: DebugfsStat = {
    ino: Number(head[1]),
    type,
    mode: parseInt(head[3] ?? '', 8),
    // debugfs prints the 32-bit ids with %d: 4294967294 appears as -2.
    uid: Number(owner[1]) >>> 0,
    gid: Number(owner[2]) >>> 0,
    size,
    nlink: Number(links[1]),
    flags: parseInt(head[4] ?? '', 16),
    mtime: time('mtime'),
    atime: time('atime'),
    ctime: time('ctime'),
  };
  if (type === 'chr' || type === 'blk') {
    const dev = /Device major\/minor number: (\d+):(\d+)/.exec(text);
    if (!dev) throw new Error(`debugfs stat of a device lacks its number: ${text.slice(0, 300)}`);
    return { ...stat, rdev: { major: Number(dev[1]), minor: Number(dev[2]) } };
  }
  // `Fast link dest: "%.*s"` with the length of the target: cut by that length, since a target may hold `"`.
  const marker = 'Fast link dest: "';
  const fast = text.indexOf(marker);
  if (fast >= 0) {
    const start = fast + marker.length;
    const end = text.startsWith('"\n', start + size) ? start + size : text.lastIndexOf('"\n');
    return { ...stat, fastLink: Buffer.from(text.slice(start, end), 'latin1') };
  }
  return stat;
}

/** `EXT4_INLINE_DATA_FL`: the content lives in i_block and the `system.data` xattr. */
const EXT4_INLINE_DATA_FL = 0x10000000;

/**
 * SHA-256 of a dumped file's first `size` (i_size) bytes. debugfs 1.47.0 `dump` of an inline_data inode writes
 * the whole inline area instead: 60+ bytes, zero padded, even for a 16 MiB i_size (mkfs -d stores an all-hole
 * file as inline data). Like the kernel, bytes past the inline data read as zeros, so for inline inodes the dump
 * is cut or zero-extended to i_size; any other short dump is an error.
 */
async function sha256OfSize(path: string, size: number, inline: boolean): Promise<string> {
  const hash = createHash('sha256');
  let seen = 0;
  if (size > 0) {
    for await (const chunk of createReadStream(path, { start: 0, end: size - 1 })) {
      hash.update(chunk as Buffer);
      seen += (chunk as Buffer).length;
    }
  }
  if (seen < size && inline) {
    const zeros = Buffer.alloc(64 * 1024);
    for (; seen < size; seen += Math.min(zeros.length, size - seen)) hash.update(zeros.subarray(0, Math.min(zeros.length, size - seen)));
  }
  if (seen !== size) throw new Error(`debugfs dumped ${seen} bytes of a ${size}-byte file (${path})`);
  return hash.digest('hex');
}

/**
 * Lists the whole tree of the file system in `image` with debugfs, in the same shape and order as
 * `kernelTree`. Breadth-first: one debugfs run per directory depth level for `ls -p`, then one run that `stat`s
 * every inode and one that `dump`s regular files (for hashes) and slow symlinks (for targets).
 */
export async function debugfsTree(image: string, options: DebugfsTreeOptions): Promise<TreeEntry[]> {
  const device = debugfsDevice(image, options.offsetBytes);
  const paths = new Map<string, number>([['/', ROOT_INO]]);
  let level: { ino: number; path: string }[] = [{ ino: ROOT_INO, path: '/' }];
  const seenDirs = new Set<number>([ROOT_INO]);
  while (level.length > 0) {
    const outputs = await debugfsBatch(device, level.map((d) => `ls -p <${d.ino}>`));
    const next: { ino: number; path: string }[] = [];
    level.forEach((dir, i) => {
      for (const rec of parseLsP(outputs[i] ?? Buffer.alloc(0))) {
        const path = (dir.path === '/' ? '/' : `${dir.path}/`) + decodeName(rec.name);
        paths.set(path, rec.ino);
        if (typeFromMode(rec.mode) === 'dir') {
          // A directory reached twice would be a corrupt image; the fixtures never have one, so stop, don't loop.
          if (seenDirs.has(rec.ino)) throw new Error(`directory inode ${rec.ino} linked twice (${path})`);
          seenDirs.add(rec.ino);
          next.push({ ino: rec.ino, path });
        }
      }
    });
    level = next;
  }

  const inodes = [...new Set(paths.values())];
  const statOut = await debugfsBatch(device, inodes.map((ino) => `stat <${ino}>`));
  const stats = new Map<number, DebugfsStat>();
  inodes.forEach((ino, i) => stats.set(ino, parseStat(statOut[i] ?? Buffer.alloc(0))));

  const toDump = inodes.filter((ino) => {
    const st = stats.get(ino);
    return (st?.type === 'file' && options.hash) || (st?.type === 'symlink' && st.fastLink === undefined);
  });
  const dumpDir = await mkdtemp(join(tmpdir(), 'gammaray-debugfs-dump-'));
  try {
    const dumped = new Map<number, string>(toDump.map((ino) => [ino, join(dumpDir, String(ino))]));
    await debugfsBatch(device, toDump.map((ino) => `dump <${ino}> ${dumped.get(ino)}`));
    const entries = await mapLimit([...paths], DUMP_READ_CONCURRENCY, async ([path, ino]): Promise<TreeEntry> => {
      const st = stats.get(ino);
      if (st === undefined) throw new Error(`no stat for inode ${ino}`); // every ino was stat'ed above
      const entry: TreeEntry = {
        path,
        ino,
        type: st.type,
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        nlink: st.nlink,
        mtime: st.mtime.sec,
        mtimeNsec: st.mtime.nsec,
        atime: st.atime.sec,
        atimeNsec: st.atime.nsec,
        ctime: st.ctime.sec,
        ctimeNsec: st.ctime.nsec,
      };
      const dumpPath = dumped.get(ino);
      if (st.rdev !== undefined) entry.rdev = st.rdev;
      if (st.type === 'symlink') {
        entry.target = decodeName(st.fastLink ?? (await readFile(dumpPath ?? '')).subarray(0, st.size));
      }
      if (st.type === 'file' && options.hash && dumpPath !== undefined) {
        entry.sha256 = await sha256OfSize(dumpPath, st.size, (st.flags & EXT4_INLINE_DATA_FL) !== 0);
      }
      return entry;
    });
    return sortEntries(entries);
  } finally {
    await rm(dumpDir, { recursive: true, force: true });
  }
}
