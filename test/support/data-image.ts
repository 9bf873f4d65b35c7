/**
 * A small ext4 image holding one file, /data.bin, of `count` blocks, and where those blocks are on the disk: for
 * tests that write a file's data through the capture and watch the `write` events it gives.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Makes `dir`/`name` (mkfs.ext4 -d, 32 MiB) and returns its path and /data.bin's physical block numbers. */
export async function dataFileImage(dir: string, name: string, count: number, blockSize: number): Promise<{ image: string; blocks: number[] }> {
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'data.bin'), Buffer.alloc(count * blockSize, 'd'));
  const image = join(dir, name);
  await exec('mkfs.ext4', ['-q', '-F', '-b', String(blockSize), '-d', src, image, '32M']);
  const blocks: number[] = [];
  for (let i = 0; i < count; i++) {
    const { stdout } = await exec('debugfs', ['-R', `bmap /data.bin ${i}`, image]);
    blocks.push(Number(stdout.trim()));
  }
  return { image, blocks };
}
