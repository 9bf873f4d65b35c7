import { decodeDevice, decodeName, Ext4Error, toTreeEntry, walk, type Ext4Inode, type Ext4Volume } from '@gammaray/ext4';
import { ExitCode, pathError } from '../errors.js';
import { isoSeconds, modeString, permBits } from '../format.js';
import { sha256Of } from '../hash.js';
import { volumeOptions, withVolume } from '../image.js';
import { escapeControls, type Terminal } from '../output.js';
import { normalizePath } from '../paths.js';

/** Options of `gammaray ls`. */
export interface LsOptions {
  /** `-l`: mode, links, owner, size, mtime, name, symlink target. */
  readonly long: boolean;
  /** `-R`: the whole subtree, the start included, as full paths. */
  readonly recursive: boolean;
  /** `--json`: one tree entry per line (CLI.md). */
  readonly json: boolean;
  /** `--hash`: SHA-256 of each regular file. */
  readonly hash: boolean;
  /** `--partition N`. */
  readonly partition: number | undefined;
  /** `--noload`: do not replay the journal (see VolumeOptions). */
  readonly noload?: boolean;
  /** `--lv VG/LV`: the LVM logical volume to read. */
  readonly lv?: string;
}

/**
 * `gammaray ls IMAGE [PATH]`. A directory lists its entries (with -R the
 * directory itself first, then its subtree in preorder, sorted by name
 * bytes); anything else lists itself. A final symlink is not followed
 * unless PATH ends in "/". Unreadable entries are skipped with a warning
 * each and make the exit status 1.
 */
export async function runLs(term: Terminal, image: string, path: string | undefined, opts: LsOptions): Promise<ExitCode> {
  return withVolume(image, opts.partition, async (vol) => {
    const { fs, label } = vol;
    const userPath = path ?? '/';
    const start = normalizePath(userPath);
    const follow = userPath.length > 1 && userPath.endsWith('/');
    let startInode: Ext4Inode;
    try {
      startInode = await fs.lookup(userPath, follow);
    } catch (err) {
      throw pathError(err, vol, userPath);
    }
    const listingDir = startInode.type === 'dir';
    const prefixLength = start === '/' ? 1 : start.length + 1;
    // Escaped into pipes and files too, as follow does: one line per entry, so a guest's name with a newline
    // cannot make lines of its choosing in a script reading the listing (--json is exact either way).
    const show = escapeControls;
    const out = term.out;
    for await (const item of walk(fs, { startIno: startInode.ino, startPath: start, recursive: opts.recursive })) {
      for (const e of item.errors) term.warn(item.path, e.message);
      const inode = item.inode;
      if (inode === undefined) continue;
      if (item.depth === 0 && listingDir && !opts.recursive) continue;
      const name = opts.recursive || item.depth === 0 ? item.path : item.path.slice(prefixLength);
      const target = inode.type === 'symlink' && (opts.json || opts.long) ? await readTarget(term, fs, item.path, inode) : undefined;
      const sha256 = opts.hash && inode.type === 'file' ? await hashFile(term, fs, item.path, inode) : undefined;
      let line: string;
      if (opts.json) {
        line = JSON.stringify(toTreeEntry(item.path, inode, { target, sha256 }));
      } else {
        const hashColumn = opts.hash ? `${sha256 ?? '-'}  ` : '';
        line = opts.long ? `${longColumns(inode)} ${hashColumn}${show(name)}${target ? ` -> ${show(decodeName(target))}` : ''}` : `${hashColumn}${show(name)}`;
      }
      const p = out.text(`${line}\n`);
      if (p) await p;
    }
    await out.flush();
    return term.warnings > 0 ? ExitCode.failure : ExitCode.ok;
  }, volumeOptions(term, opts));
}

/** `drwxr-xr-x   2     0     0       4096 2024-05-01T12:00:00Z`; devices show `major, minor` for the size. */
export function longColumns(inode: Ext4Inode): string {
  let size: string;
  if (inode.type === 'chr' || inode.type === 'blk') {
    const d = decodeDevice(inode.iBlock);
    size = `${d.major}, ${d.minor}`;
  } else {
    size = String(inode.size);
  }
  return `${modeString(inode.type, permBits(inode))} ${String(inode.linksCount).padStart(3)} ${String(inode.uid).padStart(5)} ${String(inode.gid).padStart(5)} ${size.padStart(10)} ${isoSeconds(inode.mtime.sec)}`;
}

/** A symlink's target, or undefined with a warning if it cannot be read. */
export async function readTarget(term: Terminal, fs: Ext4Volume, path: string, inode: Ext4Inode): Promise<Uint8Array | undefined> {
  try {
    return await fs.readLink(inode);
  } catch (err) {
    if (!(err instanceof Ext4Error)) throw err;
    term.warn(path, `cannot read the symlink target: ${err.message}`);
    return undefined;
  }
}

async function hashFile(term: Terminal, fs: Ext4Volume, path: string, inode: Ext4Inode): Promise<string | undefined> {
  try {
    return await sha256Of(fs, inode);
  } catch (err) {
    if (!(err instanceof Ext4Error)) throw err;
    term.warn(path, `cannot read the content: ${err.message}`);
    return undefined;
  }
}
