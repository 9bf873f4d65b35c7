/**
 * Oracle: The Sleuth Kit 4.11 (`fls`, `istat`, `icat`), a third ext4 reader written independently of both the
 * kernel and e2fsprogs. A second opinion on structure, not an oracle of record: where it answers it was right in
 * every check, but it is blind in several places.
 *
 * Trust (measured by test/fixtures/fixtures.test.ts over the whole matrix, small and full tree):
 * - `tskList` (fls): path, inode and type of every entry it lists match the kernel. Paths are lossy: fls prints
 *   each control byte 0x00-0x1f of a name as `^` ("a\nb" -> "a^b"); compare via {@link tskComparablePath}.
 *   Invalid UTF-8 is printed raw and decoded here like everywhere else. It silently MISSES entries:
 *   - every entry of a directory whose extent tree has index nodes (full tree, 1 KiB blocks: all of `big/`);
 *   - with meta_bg, every inode past the first meta group is unreadable (type `d/-`, `r/-`) and such
 *     directories are not descended;
 *   - bigalloc file systems do not open at all ("Cannot determine file system type").
 * - `tskStat` (istat): type, permission bits incl. setuid/setgid/sticky, uid/gid incl. the high 16 bits, size
 *   and link count match. Times: the low 32-bit word is read unsigned and the `*_extra` epoch bits are ignored,
 *   so only 0 <= t < 2^31 is reliable (pre-1970 shows as 2096, 2445 as 2037); time 0 prints as
 *   "0000-00-00 00:00:00" (parsed as 0); nanoseconds are printed only when TSK classifies the file system as
 *   ext4 (extents feature) - ext2, ext3 and `^extent` images show whole seconds.
 * - `tskSha256` (icat): matches for dense and sparse files, but fails on any file whose extent tree has index
 *   nodes ("fs_attr_add_run: ... No filler entry"), i.e. `sparse/fragmented`.
 * - Works on 64 KiB blocks, 1/2 KiB blocks, 128-byte inodes, inline_data, `^64bit`, `^flex_bg`, partitions.
 * - Deleted entries (`*`) and TSK's virtual `$OrphanFiles` directory are skipped.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { decodeName, sortEntries } from './entry.js';
import type { EntryType } from './entry.js';
import { run } from './exec.js';

/** Where the file system sits in the image, in 512-byte sectors (fls/istat/icat `-o`). */
export interface TskOptions {
  readonly offsetSectors?: number;
}

/** One line of `fls -r -p`. */
export interface TskEntry {
  /** Absolute path as fls prints it (control bytes already turned into `^`), then decoded by `decodeName`. */
  readonly path: string;
  readonly ino: number;
  /** From the inode's type letter; falls back to the directory entry's type letter. */
  readonly type: EntryType;
  /** fls' `NAME/META` type letters as printed, e.g. `s/h` for a socket. */
  readonly tskType: string;
}

/**
 * TSK's name-type letters (`tsk_fs_name_type_str`) and meta-type letters (`tsk_fs_meta_type_str`) differ only in
 * `s`/`h`: in the name column `s` is a socket and `h` a shadow entry, in the meta column `s` is shadow and `h`
 * a socket.
 */
const NAME_TYPES: Readonly<Record<string, EntryType>> = {
  r: 'file',
  d: 'dir',
  l: 'symlink',
  c: 'chr',
  b: 'blk',
  p: 'fifo',
  s: 'sock',
};
const META_TYPES: Readonly<Record<string, EntryType>> = {
  r: 'file',
  d: 'dir',
  l: 'symlink',
  c: 'chr',
  b: 'blk',
  p: 'fifo',
  h: 'sock',
};

function offsetArgs(options: TskOptions): string[] {
  return options.offsetSectors === undefined ? [] : ['-o', String(options.offsetSectors)];
}

/** The path the kernel's `path` becomes in fls output: control bytes in names become `^`. */
export function tskComparablePath(path: string): string {
  return path.replace(/[\x00-\x1f]/g, '^');
}

/**
 * Lists every allocated name with `fls -r -p`, sorted by path. Lines look like `r/r 12:\tdir/name`; deleted
 * names (`r/r * 15(realloc):`) and the virtual `$OrphanFiles` tree are skipped. A name holding a newline cannot
 * break the line structure because fls prints it as `^`.
 */
export async function tskList(image: string, options: TskOptions = {}): Promise<TskEntry[]> {
  const { stdout } = await run('fls', ['-r', '-p', ...offsetArgs(options), image]);
  const entries: TskEntry[] = [];
  for (const line of stdout.toString('latin1').split('\n')) {
    if (line === '') continue;
    const m = /^(.)\/(.) (\* )?(\d+)(?:\(realloc\))?:\t(.*)$/.exec(line);
    if (!m) throw new Error(`unparsed fls line: ${JSON.stringify(line)}`);
    const [, nameType = '', metaType = '', deleted, ino, rawPath = ''] = m;
    if (deleted !== undefined) continue;
    if (rawPath === '$OrphanFiles' || rawPath.startsWith('$OrphanFiles/')) continue;
    const type = META_TYPES[metaType] ?? NAME_TYPES[nameType];
    if (type === undefined) throw new Error(`unknown fls type ${nameType}/${metaType} in ${JSON.stringify(line)}`);
    const path = '/' + rawPath.split('/').map((c) => decodeName(Buffer.from(c, 'latin1'))).join('/');
    entries.push({ path, ino: Number(ino), type, tskType: `${nameType}/${metaType}` });
  }
  return sortEntries(entries);
}

/** What `istat` reports for one inode. Times are in UTC, split like `TreeEntry` times. */
export interface TskStat {
  readonly ino: number;
  readonly type: EntryType | undefined;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly nlink: number;
  readonly atime?: { sec: number; nsec: number };
  readonly mtime?: { sec: number; nsec: number };
  readonly ctime?: { sec: number; nsec: number };
  readonly crtime?: { sec: number; nsec: number };
}

/** `rwsr-xr-t` style permission string (9 chars) to bits, including setuid/setgid/sticky. */
export function parsePermString(perms: string): number {
  if (perms.length !== 9) throw new Error(`bad permission string ${perms}`);
  let mode = 0;
  const bit = (i: number, ch: string, value: number): void => {
    if (perms[i] === ch) mode |= value;
  };
  const exec = (i: number, special: string, value: number, specialValue: number): void => {
    const c = perms[i] ?? '-';
    if (c === 'x' || c === special) mode |= value;
    if (c === special || c === special.toUpperCase()) mode |= specialValue;
  };
  bit(0, 'r', 0o400);
  bit(1, 'w', 0o200);
  exec(2, 's', 0o100, 0o4000);
  bit(3, 'r', 0o040);
  bit(4, 'w', 0o020);
  exec(5, 's', 0o010, 0o2000);
  bit(6, 'r', 0o004);
  bit(7, 'w', 0o002);
  exec(8, 't', 0o001, 0o1000);
  return mode;
}

function parseTskTime(text: string, label: string): { sec: number; nsec: number } | undefined {
  const re = new RegExp(`^${label}:\\t(-?\\d{4})-(\\d\\d)-(\\d\\d) (\\d\\d):(\\d\\d):(\\d\\d)(?:\\.(\\d{9}))? \\(UTC\\)`, 'm');
  const m = re.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, ns] = m.map((x) => x ?? '0');
  if (y === '0000') return { sec: 0, nsec: 0 }; // TSK prints time 0 as "0000-00-00 00:00:00"
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  return { sec: ms / 1000, nsec: Number(ns) };
}

/** Parses `istat -z UTC` output for one inode of an ext2/3/4 file system. */
export function parseIstat(ino: number, out: string): TskStat {
  const mode = /^mode: (.)([-rwxsStT]{9})$/m.exec(out);
  const owner = /^uid \/ gid: (\d+) \/ (\d+)$/m.exec(out);
  const size = /^size: (\d+)$/m.exec(out);
  const links = /^num of links: (\d+)$/m.exec(out);
  if (!mode || !owner || !size || !links) throw new Error(`unparsed istat output for ${ino}: ${out.slice(0, 300)}`);
  const times = {
    atime: parseTskTime(out, 'Accessed'),
    mtime: parseTskTime(out, 'File Modified'),
    ctime: parseTskTime(out, 'Inode Modified'),
    crtime: parseTskTime(out, 'File Created'),
  };
  return {
    ino,
    type: META_TYPES[mode[1] ?? ''],
    mode: parsePermString(mode[2] ?? ''),
    uid: Number(owner[1]),
    gid: Number(owner[2]),
    size: Number(size[1]),
    nlink: Number(links[1]),
    ...Object.fromEntries(Object.entries(times).filter(([, v]) => v !== undefined)),
  };
}

/** `istat -z UTC` for one inode. */
export async function tskStat(image: string, ino: number, options: TskOptions = {}): Promise<TskStat> {
  const { stdout } = await run('istat', ['-z', 'UTC', ...offsetArgs(options), image, String(ino)]);
  return parseIstat(ino, stdout.toString('utf8'));
}

/** SHA-256 (hex) of an inode's content as `icat` extracts it, streamed so the big file never sits in memory. */
export function tskSha256(image: string, ino: number, options: TskOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('icat', [...offsetArgs(options), image, String(ino)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => hash.update(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(hash.digest('hex'));
      else reject(new Error(`icat ${image} ${ino} exited with ${code}: ${stderr.trim()}`));
    });
  });
}
