import { decodeName, Ext4Error, LookupError, type Ext4Inode, type Ext4Volume } from '@gammaray/ext4';
import { ExitCode, isReaderError, pathError, RuntimeFailure, UserError, type PathContext } from '../errors.js';
import { shellWord, TYPE_DESCRIPTION } from '../format.js';
import { CONTENT_CHUNK_BYTES } from '../hash.js';
import { volumeOptions, withVolume } from '../image.js';
import { escapeControls, type Terminal } from '../output.js';
import { requirePath } from '../paths.js';

/** Options of `gammaray cat`. */
export interface CatOptions {
  /** `--partition N`. */
  readonly partition: number | undefined;
  /** `--noload`: do not replay the journal (see VolumeOptions). */
  readonly noload?: boolean;
  /** `--lv VG/LV`: the LVM logical volume to read. */
  readonly lv?: string;
}

/**
 * `gammaray cat IMAGE PATH`: the content of a regular file (symlinks
 * followed, as cat does) to stdout in 4 MiB chunks, waiting for the reader;
 * holes and unwritten extents read as zeros.
 */
export async function runCat(term: Terminal, image: string, path: string, opts: CatOptions): Promise<ExitCode> {
  requirePath(path, 'cat');
  return withVolume(image, opts.partition, async (vol) => {
    const { fs, label } = vol;
    let inode: Ext4Inode;
    try {
      inode = await fs.lookup(path, true);
    } catch (err) {
      if (err instanceof LookupError && err.code === 'ENOENT') await refuseDanglingLink(fs, vol, path);
      throw pathError(err, vol, path);
    }
    if (inode.type === 'dir') throw new UserError(`${path}: is a directory in ${label}; list it with: gammaray ls ${vol.selector} ${shellWord(path)}`);
    if (inode.type !== 'file') throw new UserError(`${path}: is a ${TYPE_DESCRIPTION[inode.type]} in ${label}, not a regular file; only regular files have content to print`);
    for (let off = 0; off < inode.size; off += CONTENT_CHUNK_BYTES) {
      let chunk: Uint8Array;
      try {
        chunk = await fs.readFile(inode, off, CONTENT_CHUNK_BYTES);
      } catch (err) {
        if (isReaderError(err)) throw new RuntimeFailure(`${path}: read failed at byte ${off} in ${label}: ${err.message}`, { cause: err });
        throw err;
      }
      if (chunk.length === 0) break;
      const p = term.out.bytes(chunk);
      if (p) await p;
    }
    await term.out.flush();
    return ExitCode.ok;
  }, volumeOptions(term, opts));
}

/**
 * Throws the UserError for a path that is itself a symlink whose target does not resolve (cat follows it and
 * finds nothing, while stat and ls show the link); returns when the path is something else or missing.
 */
async function refuseDanglingLink(fs: Ext4Volume, where: PathContext, path: string): Promise<void> {
  let link: Ext4Inode;
  let target: Uint8Array;
  try {
    link = await fs.lookup(path, false);
    if (link.type !== 'symlink') return;
    target = await fs.readLink(link);
  } catch (err) {
    if (err instanceof Ext4Error) return; // the path itself is missing or unreadable: pathError says so
    throw err;
  }
  throw new UserError(
    `${path}: is a symbolic link to ${escapeControls(decodeName(target))}, which does not exist in ${where.label} (a dangling link); see the link with: gammaray stat ${where.selector} ${shellWord(path)}`,
  );
}
