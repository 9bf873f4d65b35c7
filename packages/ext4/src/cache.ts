import type { BlockSource } from '@gammaray/disk';
import { IoError } from './errors.js';

/**
 * A bounded read cache over a {@link BlockSource}: reads whole aligned
 * chunks, keeps at most `capacityBytes`, evicts least recently used. Metadata
 * (inode tables, directory and tree blocks) is read through it; bulk file
 * content bypasses it.
 */
export class ChunkCache {
  private readonly chunks = new Map<number, Promise<Uint8Array>>();
  private bytes = 0;

  constructor(
    readonly source: BlockSource,
    private readonly chunkBytes: number,
    private readonly capacityBytes: number,
  ) {}

  /** Reads `length` bytes at `offset`, which must lie inside the source. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.source.size) {
      throw new IoError(`read of ${length} bytes at ${offset} is past the end of the ${this.source.size}-byte disk (image truncated?)`);
    }
    const first = Math.floor(offset / this.chunkBytes);
    const last = Math.floor((offset + length - 1) / this.chunkBytes);
    if (length === 0) return new Uint8Array(0);
    if (first === last) {
      const chunk = await this.chunk(first);
      const at = offset - first * this.chunkBytes;
      return chunk.subarray(at, at + length);
    }
    const out = new Uint8Array(length);
    for (let c = first; c <= last; c++) {
      const chunk = await this.chunk(c);
      const base = c * this.chunkBytes;
      const from = Math.max(offset, base);
      const to = Math.min(offset + length, base + chunk.length);
      out.set(chunk.subarray(from - base, to - base), from - offset);
    }
    return out;
  }

  /** Reads bypassing the cache (large file content). */
  async readDirect(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.source.size) {
      throw new IoError(`read of ${length} bytes at ${offset} is past the end of the ${this.source.size}-byte disk (image truncated?)`);
    }
    try {
      return await this.source.read(offset, length);
    } catch (cause) {
      throw new IoError(`reading ${length} bytes at ${offset} failed: ${(cause as Error).message}`, { cause });
    }
  }

  private chunk(index: number): Promise<Uint8Array> {
    const hit = this.chunks.get(index);
    if (hit) {
      this.chunks.delete(index);
      this.chunks.set(index, hit);
      return hit;
    }
    const start = index * this.chunkBytes;
    const len = Math.min(this.chunkBytes, this.source.size - start);
    const p = this.readDirect(start, len);
    this.chunks.set(index, p);
    this.bytes += len;
    p.catch(() => {
      if (this.chunks.get(index) === p) {
        this.chunks.delete(index);
        this.bytes -= len;
      }
    });
    while (this.bytes > this.capacityBytes && this.chunks.size > 1) {
      const oldest = this.chunks.keys().next().value as number; // ok: size > 1
      this.chunks.delete(oldest);
      this.bytes -= Math.min(this.chunkBytes, this.source.size - oldest * this.chunkBytes);
    }
    return p;
  }
}
