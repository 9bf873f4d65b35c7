/**
 * crc32c (Castagnoli), as ext4 and jbd2 use for metadata_csum, and crc16 (the
 * ANSI/IBM polynomial, reflected) as used for uninit_bg group descriptor
 * checksums. Slicing-by-8 for crc32c since every inode and directory block is
 * checked. And crc32_be, the big-endian CRC-32 of jbd2's v1 transaction checksum.
 */

const CRC32C_TABLES: Uint32Array[] = (() => {
  const tables: Uint32Array[] = [];
  const t0 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t0[i] = c >>> 0;
  }
  tables.push(t0);
  for (let t = 1; t < 8; t++) {
    const prev = tables[t - 1]!; // ok: built in order
    const cur = new Uint32Array(256);
    for (let i = 0; i < 256; i++) cur[i] = (prev[i]! >>> 8) ^ t0[prev[i]! & 0xff]!;
    tables.push(cur);
  }
  return tables;
})();

let lastBuffer: ArrayBufferLike | undefined;
let lastWords: Uint32Array = new Uint32Array(0);

function wordView(buffer: ArrayBufferLike): Uint32Array {
  if (buffer !== lastBuffer) {
    lastWords = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
    lastBuffer = buffer;
  }
  return lastWords;
}

/**
 * Continues a raw crc32c (no final inversion, like the kernel's `crc32c()`
 * helper that ext4 calls with seed ~0 or a previous value).
 */
export function crc32c(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC32C_TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = crc >>> 0;
  let i = start;
  // Byte-wise up to 4-byte alignment, then two little-endian words at a time.
  while (i < end && ((data.byteOffset + i) & 3) !== 0) c = t0[(c ^ data[i++]!) & 0xff]! ^ (c >>> 8);
  if (end - i >= 8) {
    // One word view per underlying buffer, reused across calls: most calls
    // checksum slices of the same cache chunk, and a view per call is garbage.
    const words = wordView(data.buffer);
    const w0 = (data.byteOffset + i) >>> 2;
    const n = ((end - i) >>> 3) << 1;
    for (let w = w0; w < w0 + n; w += 2) {
      const a = (c ^ words[w]!) >>> 0;
      const b = words[w + 1]!;
      c = t7[a & 0xff]! ^ t6[(a >>> 8) & 0xff]! ^ t5[(a >>> 16) & 0xff]! ^ t4[a >>> 24]! ^ t3[b & 0xff]! ^ t2[(b >>> 8) & 0xff]! ^ t1[(b >>> 16) & 0xff]! ^ t0[b >>> 24]!;
    }
    i += n * 4;
  }
  while (i < end) c = t0[(c ^ data[i++]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** crc32c of a little-endian u32, continuing `crc`. */
export function crc32cU32(crc: number, value: number): number {
  const t0 = CRC32C_TABLES[0]!; // ok: built above
  let c = crc >>> 0;
  const v = value >>> 0;
  c = t0[(c ^ v) & 0xff]! ^ (c >>> 8);
  c = t0[(c ^ (v >>> 8)) & 0xff]! ^ (c >>> 8);
  c = t0[(c ^ (v >>> 16)) & 0xff]! ^ (c >>> 8);
  c = t0[(c ^ (v >>> 24)) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

const CRC16_TABLE: Uint16Array = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    t[i] = c;
  }
  return t;
})();

/** The kernel's `crc16()` (reflected 0x8005), continuing `crc`. */
export function crc16(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc & 0xffff;
  for (let i = start; i < end; i++) c = (c >>> 8) ^ CRC16_TABLE[(c ^ data[i]!) & 0xff]!;
  return c;
}

const CRC32_BE_TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/**
 * The kernel's `crc32_be()` (polynomial 0x04C11DB7, not reflected, no final
 * inversion), continuing `crc`: jbd2's v1 transaction checksum
 * (JBD2_FEATURE_COMPAT_CHECKSUM) over a transaction's descriptor and data blocks.
 */
export function crc32Be(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc >>> 0;
  for (let i = start; i < end; i++) c = ((c << 8) ^ CRC32_BE_TABLE[((c >>> 24) ^ data[i]!) & 0xff]!) >>> 0;
  return c;
}
