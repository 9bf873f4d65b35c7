import type { Ext4Inode } from '@gammaray/ext4';
import { ExitCode, isReaderError, pathError, RuntimeFailure, UserError } from '../errors.js';
import { shellWord, TYPE_DESCRIPTION } from '../format.js';
import { CONTENT_CHUNK_BYTES } from '../hash.js';
import { volumeOptions, withVolume } from '../image.js';
import type { Terminal } from '../output.js';

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
  return withVolume(image, opts.partition, async (vol) => {
    const { fs, label } = vol;
    let inode: Ext4Inode;
    try {
      inode = await fs.lookup(path, true);
    } catch (err) {
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
