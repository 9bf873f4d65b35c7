/**
 * File content through block reads, untorn: every byte of one call comes from one state of the disk.
 */
import { limits, type BlockFetcher, type FsNode } from '@gammaray/inferencer';

/** Rounds of re-reads before a read whose pieces keep moving is returned as it stands. */
export const MAX_CONSISTENCY_ROUNDS = 8;
/** Largest read one call answers (FUSE asks for 128 KiB; gRPC ReadFile chunks are smaller). */
export const MAX_READ_BYTES = 16 * 1024 * 1024;
/** Block reads in flight at once for one call. */
const CONCURRENCY = 8;

interface Piece {
  /** Where in the output. */
  readonly at: number;
  /** Byte offset on the disk. */
  readonly disk: number;
  readonly length: number;
  data?: Uint8Array;
  /** The sequences over which `data` is known to be the piece's content: [lo, hi]. */
  lo: number;
  hi: number;
}

/** What {@link readUntorn} returns: the bytes, the state they are from, and whether that needed re-reads. */
export interface UntornRead {
  readonly data: Uint8Array;
  /** The stream sequence every byte is consistent with (0 when no block was read: holes, inline data). */
  readonly seq: number;
  /** Re-read rounds it took (0: every piece came back at one sequence). */
  readonly rounds: number;
  /** True if pieces still disagreed after MAX_CONSISTENCY_ROUNDS (the disk is being rewritten under the file). */
  readonly unsettled: boolean;
}

/**
 * Reads `length` bytes of `node` at `offset` (clipped to its size; holes and blocks mapped past the disk read as
 * zeros; inline data from the node).
 *
 * Untorn: a file's blocks may need several block reads, each answered at the sequence of the last write it
 * includes. When they disagree, the pieces read at an older sequence are read again: a piece whose bytes did
 * not change held them over the whole interval between its two reads; one that changed starts a new interval.
 * The read is done when one sequence lies in every piece's interval. Without an ABA rewrite (a block changed and changed back
 * between two reads of it), the result is the file as of one sequence.
 */
export async function readUntorn(node: FsNode, blockSize: number, fetcher: BlockFetcher, offset: number, length: number): Promise<UntornRead> {
  const end = Math.min(node.size, offset + Math.min(length, MAX_READ_BYTES));
  if (end <= offset) return { data: new Uint8Array(0), seq: 0, rounds: 0, unsettled: false };
  const out = new Uint8Array(end - offset);
  if (node.inline) {
    out.set(node.inline.subarray(offset, Math.min(end, node.inline.length)));
    return { data: out, seq: 0, rounds: 0, unsettled: false };
  }
  const pieces = piecesOf(node, blockSize, fetcher.size, offset, end);
  await readAll(pieces, fetcher);
  let rounds = 0;
  let unsettled = false;
  for (;;) {
    // A common sequence exists when the latest start of a validity interval is inside every interval.
    const point = Math.max(0, ...pieces.map((p) => p.lo));
    const lagging = pieces.filter((p) => p.hi < point);
    if (lagging.length === 0) break;
    if (rounds === MAX_CONSISTENCY_ROUNDS) {
      unsettled = true;
      break;
    }
    rounds++;
    const before = lagging.map((p) => ({ data: p.data, lo: p.lo }));
    await readAll(lagging, fetcher);
    lagging.forEach((p, i) => {
      // Bytes unchanged between two reads were those bytes at every sequence in between (no ABA assumed).
      const b = before[i]!; // ok: same index as lagging
      if (equalBytes(p.data, b.data)) p.lo = b.lo;
    });
  }
  for (const p of pieces) out.set(p.data!.subarray(0, p.length), p.at); // ok: readAll filled every piece
  return { data: out, seq: Math.max(0, ...pieces.map((p) => p.lo)), rounds, unsettled };
}

/** The block reads that cover [offset, end) of the file, each within one run and at most MAX_FETCH_BLOCKS. */
function piecesOf(node: FsNode, blockSize: number, diskSize: number, offset: number, end: number): Piece[] {
  const pieces: Piece[] = [];
  for (const r of node.runs ?? []) {
    if (r.unwritten) continue; // preallocated: zeros, like a hole
    const from = Math.max(r.logical * blockSize, offset);
    const to = Math.min((r.logical + r.length) * blockSize, end);
    for (let at = from; at < to; ) {
      const block = Math.floor(at / blockSize);
      const within = at - block * blockSize;
      const n = Math.min(to - at, limits.MAX_FETCH_BLOCKS * blockSize - within);
      const disk = (r.physical + (block - r.logical)) * blockSize + within;
      if (disk + n > diskSize) break; // a map past the disk's end reads as zeros
      pieces.push({ at: at - offset, disk, length: n, lo: -1, hi: -1 });
      at += n;
    }
  }
  return pieces;
}

async function readAll(pieces: readonly Piece[], fetcher: BlockFetcher): Promise<void> {
  for (let i = 0; i < pieces.length; i += CONCURRENCY) {
    await Promise.all(
      pieces.slice(i, i + CONCURRENCY).map(async (p) => {
        const got = await fetcher.read(p.disk, p.length);
        p.data = got.data;
        p.lo = got.seq;
        p.hi = got.seq;
      }),
    );
  }
}

function equalBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
