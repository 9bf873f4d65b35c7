/**
 * The CLI's user-facing output: the only module that writes to the
 * terminal. Commands print through a {@link Terminal}; nothing else touches
 * process.stdout or process.stderr.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { RuntimeFailure } from './errors.js';

/** Characters (or bytes) gathered before one write to the stream. */
export const FLUSH_AT = 1 << 20;
/** Minimum time between two progress updates. */
const PROGRESS_INTERVAL_MS = 100;
/** A crawl shorter than this never shows a progress line. */
const PROGRESS_DELAY_MS = 1000;

/** The reader of stdout went away (EPIPE, e.g. `| head`): the command stops quietly. */
export class OutputClosedError extends Error {
  override name = 'OutputClosedError';
}

/**
 * Gathers text and bytes into large writes and respects backpressure: the
 * producer only awaits when a flush happened, so printing an entry costs no
 * await. Stream errors are remembered and rethrown on the next flush: EPIPE
 * as {@link OutputClosedError} when `closedOk`, anything else as a
 * RuntimeFailure naming `what`.
 */
export class BufferedWriter {
  private textParts: string[] = [];
  private textLength = 0;
  private pendingChunks: Uint8Array[] = [];
  private pendingBytes = 0;
  private error: Error | undefined;
  /** Bytes handed to the stream so far. */
  written = 0;

  constructor(
    private readonly stream: Writable,
    private readonly what: string,
    private readonly closedOk: boolean,
    private readonly flushAt = FLUSH_AT,
  ) {
    // A permanent listener: an 'error' without one would crash the process with a stack.
    stream.on('error', (err: Error) => {
      this.error ??= err;
    });
  }

  /** Appends text; returns a promise (to await) only when it started a flush. */
  text(s: string): Promise<void> | undefined {
    // Parts are joined once per flush: appending to one long string builds a
    // rope of cons-strings that the GC then walks and flattens.
    this.textParts.push(s);
    this.textLength += s.length;
    if (this.textLength >= this.flushAt) return this.flush();
    return undefined;
  }

  /** Appends bytes (kept, not copied); returns a promise only when it started a flush. */
  bytes(b: Uint8Array): Promise<void> | undefined {
    this.moveText();
    this.pendingChunks.push(b);
    this.pendingBytes += b.length;
    if (this.pendingBytes >= this.flushAt) return this.flush();
    return undefined;
  }

  private takeText(): string {
    const t = this.textParts.length === 1 ? this.textParts[0]! : this.textParts.join(''); // ok: length checked
    this.textParts = [];
    this.textLength = 0;
    return t;
  }

  private moveText(): void {
    if (this.textParts.length === 0) return;
    const b = Buffer.from(this.takeText(), 'utf8');
    this.pendingChunks.push(b);
    this.pendingBytes += b.length;
  }

  /** Writes everything gathered; resolves when the stream can take more. */
  async flush(): Promise<void> {
    this.check();
    let data: string | Uint8Array;
    if (this.pendingChunks.length === 0) {
      if (this.textParts.length === 0) return;
      data = this.takeText();
      this.written += Buffer.byteLength(data);
    } else {
      this.moveText();
      data = this.pendingChunks.length === 1 ? this.pendingChunks[0]! : Buffer.concat(this.pendingChunks); // ok: length checked
      this.pendingChunks = [];
      this.pendingBytes = 0;
      this.written += data.length;
    }
    let ok: boolean;
    try {
      ok = this.stream.write(data);
    } catch (err) {
      this.error ??= err as Error;
      this.check();
      return;
    }
    if (!ok) {
      try {
        await once(this.stream, 'drain');
      } catch (err) {
        this.error ??= err as Error;
      }
    }
    this.check();
  }

  /** Flushes, and for an owned stream (a file) ends it and waits until it is closed. */
  async end(closeStream: boolean): Promise<void> {
    await this.flush();
    if (!closeStream) return;
    const done = once(this.stream, 'close');
    this.stream.end();
    try {
      await done;
    } catch (err) {
      this.error ??= err as Error;
    }
    this.check();
  }

  private check(): void {
    const err = this.error;
    if (err === undefined) return;
    const code = (err as NodeJS.ErrnoException).code;
    if (this.closedOk && (code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ECONNRESET')) throw new OutputClosedError(`${this.what} closed`);
    throw new RuntimeFailure(`cannot write ${this.what}: ${err.message}`, { cause: err });
  }
}

/** Options of a {@link Terminal}: the streams, so tests can capture them. */
export interface TerminalStreams {
  readonly stdout: Writable & { isTTY?: boolean };
  readonly stderr: Writable & { isTTY?: boolean };
}

/**
 * stdout (buffered, for results) and stderr (immediate, for warnings,
 * errors and the progress line) of one command run.
 */
export class Terminal {
  /** Buffered stdout. */
  readonly out: BufferedWriter;
  /** Warnings printed so far (each one means exit status 1 at the end). */
  warnings = 0;
  private progressShown = false;

  constructor(private readonly streams: TerminalStreams) {
    this.out = new BufferedWriter(streams.stdout, 'standard output', true);
  }

  /** Whether stdout is a terminal. */
  get stdoutIsTty(): boolean {
    return this.streams.stdout.isTTY === true;
  }

  /** Whether stderr is a terminal (progress lines only go there). */
  get stderrIsTty(): boolean {
    return this.streams.stderr.isTTY === true;
  }

  /** `gammaray: warning: WHERE: MESSAGE` on stderr, and counts it. */
  warn(where: string, message: string): void {
    this.warnings++;
    this.stderrLine(`gammaray: warning: ${where}: ${oneLine(message)}`);
  }

  /** `gammaray: note: MESSAGE` on stderr: information that is not a problem. */
  note(message: string): void {
    this.stderrLine(`gammaray: note: ${oneLine(message)}`);
  }

  /** The one line of a failed command: `gammaray: MESSAGE`. */
  fail(message: string): void {
    this.stderrLine(`gammaray: ${oneLine(message)}`);
  }

  /** Writes raw text to stderr (commander's help and usage output). */
  stderrRaw(s: string): void {
    this.clearProgress();
    this.streams.stderr.write(s);
  }

  /** Writes raw text to stdout, unbuffered (commander's help output). */
  stdoutRaw(s: string): void {
    this.streams.stdout.write(s);
  }

  private stderrLine(s: string): void {
    this.clearProgress();
    this.streams.stderr.write(`${s}\n`);
  }

  /** A progress reporter that draws on stderr only if `enabled` (see {@link Progress}). */
  progress(enabled: boolean): Progress {
    return new Progress(enabled, (line) => {
      this.streams.stderr.write(`\r${line}\x1b[K`);
      this.progressShown = true;
    }, () => this.clearProgress());
  }

  private clearProgress(): void {
    if (!this.progressShown) return;
    this.progressShown = false;
    this.streams.stderr.write('\r\x1b[K');
  }
}

/**
 * A "crawled N entries…" line for long runs: shown after a second, redrawn
 * at most ten times a second, cleared by {@link Progress.done}. `tick` is
 * cheap enough to call per entry.
 */
export class Progress {
  private readonly start = Date.now();
  private last = 0;

  constructor(
    private readonly enabled: boolean,
    private readonly draw: (line: string) => void,
    private readonly clear: () => void,
  ) {}

  /** Reports that `count` entries are done. */
  tick(count: number): void {
    if (!this.enabled || (count & 255) !== 0) return;
    const now = Date.now();
    if (now - this.start < PROGRESS_DELAY_MS || now - this.last < PROGRESS_INTERVAL_MS) return;
    this.last = now;
    this.draw(`crawled ${count} entries\u2026`);
  }

  /** Removes the line. */
  done(): void {
    if (this.enabled) this.clear();
  }
}

/**
 * Guest-controlled text (names, symlink targets) may hold newlines or
 * terminal escapes; a message stays one harmless line.
 */
function oneLine(s: string): string {
  return escapeControls(s.trimEnd());
}

/** Replaces C0 control characters and DEL with `\xNN`, as names of invalid UTF-8 are shown. */
export function escapeControls(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
