/**
 * CRC-32 as used by GPT (IEEE 802.3, reflected polynomial 0xEDB88320, initial
 * value and final xor 0xFFFFFFFF; the same CRC as zlib and PNG).
 *
 * Slicing-by-8: eight 256-entry tables let the inner loop consume 8 bytes per
 * iteration, several times faster than the byte-at-a-time table for the
 * 16 KiB GPT entry arrays.
 */

const POLY = 0xedb88320;

const TABLES: readonly Uint32Array[] = buildTables();

function buildTables(): Uint32Array[] {
  const t: Uint32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256));
  const t0 = t[0] as Uint32Array; // ok: 8 tables were just pushed
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let i = 0; i < 8; i++) c = c & 1 ? POLY ^ (c >>> 1) : c >>> 1;
    t0[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t0[n] as number; // ok: n < 256
    for (let k = 1; k < 8; k++) {
      c = (t0[c & 0xff] as number) ^ (c >>> 8); // ok: index < 256
      (t[k] as Uint32Array)[n] = c >>> 0; // ok: k < 8
    }
  }
  return t;
}

/**
 * Computes the CRC-32 of `data`. Pass a previous result as `crc` to continue a
 * running checksum over several chunks: `crc32(b, crc32(a))` equals
 * `crc32(concat(a, b))`.
 *
 * @returns the checksum as an unsigned 32-bit number.
 */
export function crc32(data: Uint8Array, crc = 0): number {
  // Local aliases: typed-array element reads on locals are what V8 optimises well.
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array]; // ok: buildTables makes exactly 8
  let c = ~crc >>> 0;
  let i = 0;
  const n = data.length;
  const end8 = n - (n % 8);
  while (i < end8) {
    const lo = c ^ ((data[i] as number) | ((data[i + 1] as number) << 8) | ((data[i + 2] as number) << 16) | ((data[i + 3] as number) << 24)); // ok: i + 7 < n
    const hi = (data[i + 4] as number) | ((data[i + 5] as number) << 8) | ((data[i + 6] as number) << 16) | ((data[i + 7] as number) << 24);
    c =
      (t7[lo & 0xff] as number) ^
      (t6[(lo >>> 8) & 0xff] as number) ^
      (t5[(lo >>> 16) & 0xff] as number) ^
      (t4[lo >>> 24] as number) ^
      (t3[hi & 0xff] as number) ^
      (t2[(hi >>> 8) & 0xff] as number) ^
      (t1[(hi >>> 16) & 0xff] as number) ^
      (t0[hi >>> 24] as number); // ok: every index is a byte
    i += 8;
  }
  while (i < n) {
    c = (t0[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8); // ok: i < n, index is a byte
    i++;
  }
  return ~c >>> 0;
}
