import { readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { DiskError, IoError } from './errors.js';

/**
 * Where disk bytes come from. The same readers run over an image file, a
 * window of it (a partition), NATS block reads, or an in-memory cache, so a
 * reader never knows or cares which.
 *
 * `read` returns exactly `length` bytes or rejects; reading past `size`
 * rejects with {@link IoError} (callers bound offsets against `size` first).
 */
export interface BlockSource {
  /** Total addressable bytes. */
  readonly size: number;
  /** Reads `length` bytes at byte `offset`. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases the underlying resource, if any. */
  close?(): Promise<void>;
}

function checkRange(src: BlockSource, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > src.size) {
    throw new IoError(`read of ${length} bytes at ${offset} is outside the ${src.size}-byte source`, { offset, length });
  }
}

/** Options for {@link FileBlockSource.open}. */
export interface FileBlockSourceOptions {
  /**
   * Read with synchronous pread (default true). A crawl makes tens of
   * thousands of small reads that the page cache answers in microseconds; a
   * trip through libuv's thread pool costs more than the read itself. Long-
   * running servers that must not block their event loop pass false.
   */
  readonly syncReads?: boolean;
}

/** A {@link BlockSource} over a read-only file (a raw disk image). */
export class FileBlockSource implements BlockSource {
  private constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    readonly path: string,
    private readonly syncReads: boolean,
  ) {}

  /** Opens `path` read-only; rejects with {@link IoError} naming the path. */
  static async open(path: string, options: FileBlockSourceOptions = {}): Promise<FileBlockSource> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : String(code ?? cause);
      throw new IoError(`cannot open image ${path}: ${why}`, { cause });
    }
    try {
      const st = await fh.stat();
      let size = st.size;
      if (st.isBlockDevice()) {
        // Block devices report size 0 from stat; find the end by probing reads.
        size = await probeDeviceSize(fh);
      } else if (!st.isFile()) {
        throw new IoError(`cannot use ${path}: not a regular file or block device`);
      }
      return new FileBlockSource(fh, size, path, options.syncReads ?? true);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length);
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = this.syncReads ? readSync(this.fh.fd, buf, done, length - done, offset + done) : (await this.fh.read(buf, done, length - done, offset + done)).bytesRead;
      } catch (cause) {
        throw new IoError(`read of ${length} bytes at ${offset} from ${this.path} failed`, { cause, offset, length });
      }
      if (n === 0) throw new IoError(`short read at ${offset + done} from ${this.path} (file shrank?)`, { offset, length });
      done += n;
    }
    return buf;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/** The size of the block device open as `fh`, which stat reports as 0: the end found by probing reads. */
export async function probeDeviceSize(fh: FileHandle): Promise<number> {
  // Binary search for the last readable byte; at most ~53 reads.
  const one = Buffer.alloc(1);
  let lo = 0;
  let hi = 2 ** 52;
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2);
    const { bytesRead } = await fh.read(one, 0, 1, mid - 1);
    if (bytesRead === 1) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** A {@link BlockSource} over bytes in memory (tests, caches, fuzzing). */
export class MemoryBlockSource implements BlockSource {
  readonly size: number;
  constructor(private readonly bytes: Uint8Array) {
    this.size = bytes.length;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length);
    return this.bytes.slice(offset, offset + length);
  }
}

/**
 * A window `[start, start + size)` of another source, e.g. one partition of a
 * disk. Reads outside the window reject, so a file system inside a partition
 * can never read its neighbours.
 */
export class SliceBlockSource implements BlockSource {
  constructor(
    private readonly inner: BlockSource,
    readonly start: number,
    readonly size: number,
  ) {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size < 0 || start + size > inner.size) {
      throw new DiskError(`window ${start}+${size} does not fit in the ${inner.size}-byte source`);
    }
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length);
    return this.inner.read(this.start + offset, length);
  }
}
