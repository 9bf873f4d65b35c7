/**
 * Builds JSON lines as bytes, straight into a large buffer. A crawl prints
 * one record per file; building each as a JS string and encoding it later
 * makes most of the crawl's garbage. Constant parts are pre-encoded, integers
 * are written digit by digit, ASCII strings that need no escaping are copied
 * char by char, and anything else falls back to JSON.stringify for that one
 * string, so the output is exactly what JSON.stringify would produce.
 */

const CHUNK = 1 << 20;
/** Largest single value written without a bounds check first (a path is at most ~16 KiB escaped). */
const SLACK = 64 * 1024;
const ZERO = 0x30;
const QUOTE = 0x22;

/** Pre-encodes a constant piece of JSON. */
export function lit(s: string): Uint8Array {
  return Buffer.from(s, 'latin1');
}

/** A growing sequence of JSON bytes, handed out in chunks of about 1 MiB. */
export class JsonBytes {
  private buf: Buffer = Buffer.allocUnsafe(CHUNK + SLACK);
  private pos = 0;
  private readonly digits = new Uint8Array(24);

  /** Bytes written since the last {@link take}. */
  get length(): number {
    return this.pos;
  }

  /** Makes room for `n` more bytes (values larger than the slack go through here). */
  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n + SLACK));
    bigger.set(this.buf.subarray(0, this.pos));
    this.buf = bigger;
  }

  /** Appends pre-encoded bytes. */
  raw(b: Uint8Array): this {
    const n = b.length;
    if (this.pos + n > this.buf.length) this.room(n);
    const buf = this.buf;
    let p = this.pos;
    if (n <= 32) {
      // TypedArray#set costs more than a short loop for the small constants that dominate.
      for (let i = 0; i < n; i++) buf[p++] = b[i]!;
      this.pos = p;
    } else {
      buf.set(b, p);
      this.pos = p + n;
    }
    return this;
  }

  /** Appends a number as JSON.stringify would. */
  num(n: number): this {
    if (!Number.isSafeInteger(n)) return this.raw(lit(JSON.stringify(n)));
    if (this.pos + 24 > this.buf.length) this.room(24);
    const buf = this.buf;
    let p = this.pos;
    if (n < 0) {
      buf[p++] = 0x2d;
      n = -n;
    }
    if (n < 10) {
      buf[p++] = ZERO + n;
      this.pos = p;
      return this;
    }
    const d = this.digits;
    let k = 0;
    while (n >= 0x80000000) {
      d[k++] = ZERO + (n % 10);
      n = Math.floor(n / 10);
    }
    // Small integers: 32-bit arithmetic, much cheaper than float division.
    let m = n | 0;
    while (m > 0) {
      const q = (m / 10) | 0;
      d[k++] = ZERO + (m - q * 10);
      m = q;
    }
    while (k > 0) buf[p++] = d[--k]!; // ok: k > 0
    this.pos = p;
    return this;
  }

  /** Appends `true` or `false`. */
  bool(v: boolean): this {
    return this.raw(v ? TRUE : FALSE);
  }

  /** Appends a JSON string (quoted, escaped exactly as JSON.stringify does). */
  str(s: string): this {
    const n = s.length;
    this.room(n + 2);
    const buf = this.buf;
    const start = this.pos;
    let p = start;
    buf[p++] = QUOTE;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c >= 0x7f || c === QUOTE || c === 0x5c) {
        // Rare: escapes or non-ASCII. Redo this string the slow, exact way.
        this.pos = start;
        return this.raw(Buffer.from(JSON.stringify(s), 'utf8'));
      }
      buf[p++] = c;
    }
    buf[p++] = QUOTE;
    this.pos = p;
    return this;
  }

  /** Hands out what was written (a view the caller owns) and starts a new buffer. */
  take(): Uint8Array {
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(CHUNK + SLACK);
    this.pos = 0;
    return out;
  }

  /** Whether a chunk's worth is ready to hand out. */
  get full(): boolean {
    return this.pos >= CHUNK;
  }
}

const TRUE = lit('true');
const FALSE = lit('false');
