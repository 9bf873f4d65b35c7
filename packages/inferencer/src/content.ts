/**
 * File content from the replicated state: a node's data map plus block reads. What a view serves without an
 * inferencer: holes (and blocks past the map) read as zeros, inline data comes from the node itself.
 */
import type { BlockFetcher } from './store.js';
import type { FsNode } from './node.js';
import { MAX_FETCH_BLOCKS } from './limits.js';

/**
 * Reads up to `length` bytes of `node` at `offset` (clipped to its size) through `fetcher`. Returns the bytes and
 * the lowest stream sequence any block read reported (the content is at least that recent).
 */
export async function readContent(node: FsNode, blockSize: number, fetcher: BlockFetcher, offset = 0, length = node.size): Promise<{ data: Uint8Array; seq: number }> {
  const end = Math.min(node.size, offset + length);
  if (end <= offset) return { data: new Uint8Array(0), seq: 0 };
  const out = new Uint8Array(end - offset);
  if (node.inline) {
    out.set(node.inline.subarray(offset, end));
    return { data: out, seq: 0 };
  }
  let seq = Number.MAX_SAFE_INTEGER;
  for (const r of node.runs ?? []) {
    if (r.unwritten) continue; // preallocated: zeros, like a hole
    const rs = r.logical * blockSize;
    const re = (r.logical + r.length) * blockSize;
    const from = Math.max(rs, offset);
    const to = Math.min(re, end);
    if (from >= to) continue;
    // Whole blocks, in pieces no bigger than one block read answers.
    for (let at = from; at < to; ) {
      const firstBlock = Math.floor(at / blockSize);
      const piece = Math.min(to - at, MAX_FETCH_BLOCKS * blockSize - (at - firstBlock * blockSize));
      const phys = (r.physical + (firstBlock - r.logical)) * blockSize + (at - firstBlock * blockSize);
      if (phys + piece > fetcher.size) break; // a map past the disk's end reads as zeros (the reader reports it)
      const got = await fetcher.read(phys, piece);
      out.set(got.data.subarray(0, piece), at - offset);
      seq = Math.min(seq, got.seq);
      at += piece;
    }
  }
  return { data: out, seq: seq === Number.MAX_SAFE_INTEGER ? 0 : seq };
}
