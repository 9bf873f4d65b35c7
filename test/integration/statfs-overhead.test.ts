/**
 * `df`'s size: the view's FUSE statfs reports a disk's blocks less its metadata, as the guest's kernel does
 * (`metadataOverhead` in @gammaray/ext4, fed with the journal size the inference engine follows). Checked against
 * the real kernel (a read-only loop mount, `stat -f -c %b`) on file systems of every layout mke2fs makes here:
 * block sizes, inode sizes, flex_bg or not, meta_bg, sparse_super off, sparse_super2, no journal, ext2/ext3, and
 * sizes of one group and of many, bigalloc (1 KiB blocks: mke2fs's default at this size).
 */
import { execFile } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metadataOverhead } from '@gammaray/ext4';
import { DiskInferencer, type BlockFetcher } from '@gammaray/inferencer';
import { kernelStatfs } from '../oracle/kernel.js';

const exec = promisify(execFile);

/** name, mkfs.ext4 arguments, size. */
const CASES: readonly (readonly [string, readonly string[], string])[] = [
  ['ext4, 4 KiB blocks, one group', [], '64M'],
  ['ext4, 4 KiB blocks, 5 groups', [], '600M'],
  ['ext4, 1 KiB blocks', ['-b', '1024'], '64M'],
  ['ext4, 2 KiB blocks', ['-b', '2048'], '200M'],
  ['ext4, 128-byte inodes', ['-I', '128'], '300M'],
  ['ext4 without flex_bg', ['-O', '^flex_bg'], '300M'],
  ['ext4 with meta_bg (1 KiB blocks)', ['-b', '1024', '-O', 'meta_bg,^resize_inode'], '100M'],
  ['ext4 without sparse_super', ['-O', '^sparse_super,^resize_inode'], '600M'],
  ['ext4 with bigalloc (the stored count)', ['-O', 'bigalloc', '-C', '16384'], '300M'],
  ['ext4 with sparse_super2', ['-O', 'sparse_super2'], '600M'],
  ['ext4 without a journal', ['-O', '^has_journal'], '300M'],
  ['ext4 without 64bit', ['-O', '^64bit'], '300M'],
  ['ext3', ['-t', 'ext3'], '300M'],
  ['ext2', ['-t', 'ext2'], '300M'],
];

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-statfs-'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Block reads answered from the image file (sparse images of hundreds of MiB are not read whole). */
function fileFetcher(image: string): { fetcher: BlockFetcher; close: () => void } {
  const fd = openSync(image, 'r');
  const size = statSync(image).size;
  const fetcher: BlockFetcher = {
    size,
    read: async (offset, length) => {
      const data = new Uint8Array(length);
      readSync(fd, data, 0, length, offset);
      return { data, seq: 0 };
    },
  };
  return { fetcher, close: () => closeSync(fd) };
}

describe('statfs size (f_blocks) of a disk, as the kernel reports it', () => {
  it.each(CASES)('%s', async (name, args, size) => {
    const image = join(work, `${name.replace(/[^a-z0-9]+/gi, '-')}.img`);
    const fsType = args.includes('-t') ? [] : ['-t', 'ext4'];
    await exec('mkfs.ext4', ['-q', '-F', ...fsType, ...args, image, size]);
    const { fetcher, close } = fileFetcher(image);
    let ours: number;
    try {
      const { inferencer, events } = await DiskInferencer.bootstrap(fetcher, { disk: 'statfs' }, 0, new Date(0));
      // Every layout is read whole (1 KiB blocks with bigalloc put the descriptors after block 1, not after
      // s_first_data_block 0: that crawl once failed at the root).
      expect(events.filter((e) => e.kind === 'corrupt')).toEqual([]);
      const sb = inferencer.superblock;
      const overhead = metadataOverhead(sb, inferencer.journalBlocks());
      expect(overhead).toBeDefined();
      ours = sb.blocksCount - overhead!; // ok: checked just above
      if (!args.includes('^has_journal') && !args.includes('ext2')) expect(inferencer.journalBlocks()).toBeGreaterThan(0);
    } finally {
      close();
    }
    expect(ours).toBe((await kernelStatfs(image)).blocks);
  });
});
