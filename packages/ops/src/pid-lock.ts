/**
 * A lock file held by a live process: created exclusively, holding the holder's pid and start time as JSON. A
 * holder that has exited (kill -9 included) leaves a stale file, which the next taker removes and takes over; a
 * reused pid is not taken for the holder (its start time differs). Only processes that see the same file meet.
 */
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';

/** What a lock file holds: the pid and start time, and whatever the taker adds. */
export interface PidLockHolder {
  readonly pid: number;
  /** The holder's start time (/proc/PID/stat field 22), so that a reused pid is not taken for the holder. */
  readonly started?: string;
  readonly [key: string]: unknown;
}

/** A lock taken by {@link PidLock.acquire}. */
export class PidLock {
  private constructor(
    readonly path: string,
    private readonly mine: string,
  ) {}

  /**
   * Takes the lock file at `path` for this process, with `info` written beside the pid. When a live process holds
   * it, throws what `busy(holder)` returns; a stale file is taken over. Errors of the file system (no such
   * directory, no permission) are thrown as they are.
   */
  static acquire(path: string, info: Readonly<Record<string, unknown>>, busy: (holder: PidLockHolder) => Error): PidLock {
    const mine = JSON.stringify({ ...info, pid: process.pid, started: startTime(process.pid) });
    let waits = 0;
    for (let attempt = 0; attempt < 3; attempt++) {
      let fd: number;
      try {
        fd = openSync(path, 'wx', 0o644);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const text = readText(path);
        if (text === undefined) continue; // removed meanwhile: try again
        const holder = parseHolder(text);
        if (holder && holderAlive(holder)) throw busy(holder);
        if (!holder && youngerThan(path, HALF_WRITTEN_MS)) {
          // Empty or half written: most likely a taker between creating it and writing its pid. Wait for it.
          sleepSync(20);
          attempt--;
          if (++waits > HALF_WRITTEN_MS / 40) throw busy({ pid: 0 }); // about half that age: busy, not stale
          continue;
        }
        // Stale: its holder is gone. Removed only if it still holds what was read (another taker may have
        // replaced it with a live lock meanwhile; a window remains between this read and the unlink).
        if (readText(path) === text) {
          try {
            unlinkSync(path);
          } catch {
            // another taker removed it first: try again
          }
        }
        continue;
      }
      try {
        writeSync(fd, mine);
      } finally {
        closeSync(fd);
      }
      return new PidLock(path, mine);
    }
    throw busy({ pid: 0 });
  }

  /** Gives the lock up (only if the file is still this holder's). */
  release(): void {
    try {
      if (readFileSync(this.path, 'utf8') === this.mine) unlinkSync(this.path);
    } catch {
      // gone already
    }
  }
}

/** The holder a lock file names, or undefined when it is unreadable or half written (its writer died). */
export function readHolder(path: string): PidLockHolder | undefined {
  const text = readText(path);
  return text === undefined ? undefined : parseHolder(text);
}

function parseHolder(text: string): PidLockHolder | undefined {
  try {
    const h = JSON.parse(text) as PidLockHolder;
    return Number.isInteger(h.pid) && h.pid > 0 ? h : undefined;
  } catch {
    return undefined;
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** How long an empty or unparsable lock file is taken for one being written, ms. */
const HALF_WRITTEN_MS = 2_000;

function youngerThan(path: string, ms: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs < ms;
  } catch {
    return false;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether the holder's process still runs (the same process: its start time matches when it was recorded). */
export function holderAlive(h: Pick<PidLockHolder, 'pid' | 'started'>): boolean {
  try {
    process.kill(h.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false; // ESRCH: no such process
  }
  const fields = statFields(h.pid);
  if (fields === undefined) return true; // no /proc: believe kill(0)
  if (fields[0] === 'Z' || fields[0] === 'X') return false; // exited, not yet reaped
  return h.started === undefined || fields[19] === h.started;
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot); undefined off Linux. */
export function startTime(pid: number): string | undefined {
  return statFields(pid)?.[19];
}

/** The fields of /proc/PID/stat from field 3 (state) on; undefined off Linux or when the process is gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}
