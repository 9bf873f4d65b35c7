import { createHash } from 'node:crypto';
import type { Ext4Inode, Ext4Volume } from '@gammaray/ext4';

/** Bytes read per call when hashing or copying file content. */
export const CONTENT_CHUNK_BYTES = 4 * 1024 * 1024;

/** Lowercase hex SHA-256 of a file's content (holes read as zeros), read in 4 MiB chunks. */
export async function sha256Of(fs: Ext4Volume, inode: Ext4Inode): Promise<string> {
  const h = createHash('sha256');
  for (let off = 0; off < inode.size; off += CONTENT_CHUNK_BYTES) {
    h.update(await fs.readFile(inode, off, CONTENT_CHUNK_BYTES));
  }
  return h.digest('hex');
}
