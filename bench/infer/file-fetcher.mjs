// Block reads for the inference replays, answered by pread on the starting image: nothing of the image sits in
// the replaying process's heap, and every block reads as of stream sequence `seq`.
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
