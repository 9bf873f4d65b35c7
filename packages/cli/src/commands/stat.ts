import { decodeDevice, decodeName, Ext4Error, toTreeEntry, type Ext4Inode } from '@gammaray/ext4';
import { ExitCode, pathError } from '../errors.js';
import { modeString, permBits, statTime, TYPE_DESCRIPTION, xattrValueText } from '../format.js';
import { volumeOptions, withVolume } from '../image.js';
import { escapeControls, type Terminal } from '../output.js';
import { normalizePath, requirePath } from '../paths.js';
import { readTarget } from './ls.js';

/** Options of `gammaray stat`. */
export interface StatOptions {
  /** `--json`: the tree entry (CLI.md) as one line. */
  readonly json: boolean;
  /** `--partition N`. */
  readonly partition: number | undefined;
  /** `--noload`: do not replay the journal (see VolumeOptions). */
  readonly noload?: boolean;
  /** `--lv VG/LV`: the LVM logical volume to read. */
  readonly lv?: string;
}

/**
 * `gammaray stat IMAGE PATH`: one entry with lstat semantics (a final
 * symlink is described, not followed). Plain output follows coreutils
 * `stat`, in UTC, plus flags and extended attributes.
 */
export async function runStat(term: Terminal, image: string, path: string, opts: StatOptions): Promise<ExitCode> {
  requirePath(path, 'stat');
  return withVolume(image, opts.partition, async (vol) => {
    const { fs, label } = vol;
    let inode: Ext4Inode;
    try {
      inode = await fs.lookup(path, false);
    } catch (err) {
      throw pathError(err, vol, path);
    }
    const p = normalizePath(path);
    const target = inode.type === 'symlink' ? await readTarget(term, fs, p, inode) : undefined;
    if (opts.json) {
      await term.out.text(`${JSON.stringify(toTreeEntry(p, inode, { target }))}\n`);
    } else {
      let xattrs: { name: string; value: Uint8Array }[] = [];
      try {
        xattrs = await fs.readXattrs(inode);
      } catch (err) {
        if (!(err instanceof Ext4Error)) throw err;
        term.warn(p, `cannot read the extended attributes: ${err.message}`);
      }
      await term.out.text(statText(p, inode, target, xattrs, fs.superblock.blockSize));
    }
    await term.out.flush();
    return term.warnings > 0 ? ExitCode.failure : ExitCode.ok;
  }, volumeOptions(term, opts));
}

/** The plain `stat` text of one inode. */
export function statText(path: string, inode: Ext4Inode, target: Uint8Array | undefined, xattrs: readonly { name: string; value: Uint8Array }[], blockSize: number): string {
  const perm = permBits(inode);
  const dev = inode.type === 'chr' || inode.type === 'blk' ? decodeDevice(inode.iBlock) : undefined;
  const lines = [
    `  File: ${escapeControls(path)}${target ? ` -> ${escapeControls(decodeName(target))}` : ''}`,
    `  Size: ${String(inode.size).padEnd(15)} Blocks: ${String(inode.blocks512).padEnd(10)} IO Block: ${String(blockSize).padEnd(6)} ${TYPE_DESCRIPTION[inode.type]}`,
    `Inode: ${String(inode.ino).padEnd(11)} Links: ${inode.linksCount}${dev ? `     Device type: ${dev.major},${dev.minor}` : ''}`,
    `Access: (${perm.toString(8).padStart(4, '0')}/${modeString(inode.type, perm)})  Uid: (${String(inode.uid).padStart(5)})   Gid: (${String(inode.gid).padStart(5)})`,
    `Access: ${statTime(inode.atime)}`,
    `Modify: ${statTime(inode.mtime)}`,
    `Change: ${statTime(inode.ctime)}`,
    ` Birth: ${inode.crtime ? statTime(inode.crtime) : '-'}`,
    ` Flags: 0x${inode.flags.toString(16).padStart(8, '0')}`,
  ];
  for (const x of xattrs) lines.push(` Xattr: ${escapeControls(x.name)}=${xattrValueText(x.value)}`);
  return `${lines.join('\n')}\n`;
}
