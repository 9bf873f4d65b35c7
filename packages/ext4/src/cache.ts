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
  /** Chunks whose read completed, for the synchronous fast path. */
  private readonly ready = new Map<number, Uint8Array>();
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

  /**
   * The bytes if they lie in one chunk that is already loaded, else
   * undefined. Lets hot loops (decoding a directory's inodes) skip a promise
   * per inode.
   */
  peek(offset: number, length: number): Uint8Array | undefined {
    const first = Math.floor(offset / this.chunkBytes);
    if (Math.floor((offset + length - 1) / this.chunkBytes) !== first) return undefined;
    const chunk = this.ready.get(first);
    if (chunk === undefined) return undefined;
    const at = offset - first * this.chunkBytes;
    return at + length <= chunk.length ? chunk.subarray(at, at + length) : undefined;
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
    // Plain Uint8Array views: Buffer#subarray costs a JS constructor call per slice.
    const p = this.readDirect(start, len).then((b) => {
      const u = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      if (this.chunks.get(index) === p) this.ready.set(index, u);
      return u;
    });
    this.chunks.set(index, p);
    this.bytes += len;
    p.catch(() => {
      if (this.chunks.get(index) === p) {
        this.chunks.delete(index);
        this.ready.delete(index);
        this.bytes -= len;
      }
    });
    while (this.bytes > this.capacityBytes && this.chunks.size > 1) {
      const oldest = this.chunks.keys().next().value as number; // ok: size > 1
      this.chunks.delete(oldest);
      this.ready.delete(oldest);
      this.bytes -= Math.min(this.chunkBytes, this.source.size - oldest * this.chunkBytes);
    }
    return p;
  }
}
