// Block reads for the inference replays, answered by pread on the starting image: nothing of the image sits in
// the replaying process's heap, and every block reads as of stream sequence `seq`; and the records of a cached
// recording (`records.bin`), read one at a time.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** A BlockFetcher over the image file at `path`, and close() for its descriptor. */
export function fileFetcher(path, seq = 0) {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  return {
    fetcher: {
      size,
      read: async (offset, length) => {
        const data = Buffer.allocUnsafe(length);
        let done = 0;
        while (done < length) {
          const n = readSync(fd, data, done, length - done, offset + done);
          if (n === 0) throw new Error(`short read of ${path} at ${offset + done}`);
          done += n;
        }
        return { data, seq };
      },
    },
    close: () => closeSync(fd),
  };
}

/**
 * The records of a recording's `records.bin` (each: uint64 LE stream sequence, uint32 LE length, the record), each
 * read from the file into a buffer of its own when it is asked for (as messages arrive).
 */
export function* streamRecords(path) {
  const fd = openSync(path, 'r');
  const head = Buffer.alloc(12);
  for (let at = 0; readSync(fd, head, 0, 12, at) === 12; ) {
    const len = head.readUInt32LE(8);
    const data = Buffer.allocUnsafe(len);
    readSync(fd, data, 0, len, at + 12);
    yield { seq: Number(head.readBigUInt64LE(0)), data };
    at += 12 + len;
  }
  closeSync(fd);
}
