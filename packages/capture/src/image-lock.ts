import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskBusyError } from './errors.js';

/** Where image locks live: $GAMMARAY_LOCK_DIR, else `gammaray-image-locks` in the OS temp directory. */
export function imageLockDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['GAMMARAY_LOCK_DIR'] ?? join(tmpdir(), 'gammaray-image-locks');
}

/** What a lock file holds: who serves the image. */
interface Holder {
  readonly pid: number;
  /** The holder's start time (/proc/PID/stat field 22), so that a reused pid is not taken for the holder. */
  readonly started?: string;
  readonly image: string;
  readonly disk: string;
}

/**
 * A machine-wide lock on one disk image, held by the capture serving it: a second capture on the same machine (a
 * second `gammaray up` with its own NATS, or a capture under another disk id) would be a second writer, and two
 * writers corrupt a disk. The lock is a file named by the image's device and inode (so symlinks and hard links
 * meet), created exclusively, holding the pid. A holder that has exited (kill -9 included) leaves a stale file,
 * which the next capture takes over. Captures on other machines, or in containers with their own temp
 * directory, do not see it.
 */
export class ImageLock {
  private constructor(
    readonly path: string,
    private readonly mine: string,
  ) {}

  /**
   * Takes the lock of the image whose `fstat` is `st`. Throws DiskBusyError when a live process holds it. When the
   * lock directory cannot be used, returns undefined (serving goes on without a lock; the caller logs it).
   */
  static acquire(st: Pick<Stats, 'dev' | 'ino'>, image: string, disk: string, dir = imageLockDir()): ImageLock | undefined {
    try {
      mkdirSync(dir, { recursive: true });
      chmodSync(dir, 0o1777); // like /tmp: every user's captures share it, none removes another's lock
    } catch {
      // not ours to chmod (another user made it): it is usable if it is already 1777
    }
    const path = join(dir, `${st.dev}-${st.ino}.lock`);
    const me: Holder = { pid: process.pid, started: startTime(process.pid), image, disk };
    const mine = JSON.stringify(me);
    for (let attempt = 0; attempt < 3; attempt++) {
      let fd: number;
      try {
        fd = openSync(path, 'wx', 0o644);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST') return undefined;
        const holder = readHolder(path);
        if (holder && alive(holder)) {
          throw new DiskBusyError(
            `image ${image} is already served on this machine by process ${holder.pid} (disk ${holder.disk}, as ${holder.image}): two writers would corrupt it; stop that capture first`,
          );
        }
        try {
          unlinkSync(path); // stale: its holder is gone
        } catch {
          // another capture took it over first: try again
        }
        continue;
      }
      try {
        writeSync(fd, mine);
      } finally {
        closeSync(fd);
      }
      return new ImageLock(path, mine);
    }
    throw new DiskBusyError(`image ${image}: its lock ${path} keeps changing hands; is another capture starting on it?`);
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

function readHolder(path: string): Holder | undefined {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as Holder;
    return Number.isInteger(h.pid) && h.pid > 0 ? h : undefined;
  } catch {
    return undefined; // unreadable or half written: a holder that died while writing it
  }
}

function alive(h: Holder): boolean {
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
function startTime(pid: number): string | undefined {
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
