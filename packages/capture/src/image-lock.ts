import { chmodSync, mkdirSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PidLock, holderAlive, readHolder, type PidLockHolder } from '@gammaray/ops/pid-lock';
import { DiskBusyError } from './errors.js';

/** Where image locks live: $GAMMARAY_LOCK_DIR, else `gammaray-image-locks` in the OS temp directory. */
export function imageLockDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['GAMMARAY_LOCK_DIR'] ?? join(tmpdir(), 'gammaray-image-locks');
}

/** The lock file of the image whose `stat` is `st`: named by its device and inode, so that links meet. */
function imageLockPath(st: Pick<Stats, 'dev' | 'ino'>, dir: string): string {
  return join(dir, `${st.dev}-${st.ino}.lock`);
}

/**
 * The live process holding the lock of the image whose `stat` is `st` (its pid, and the `image` and `disk` it
 * serves it as), or undefined when none does: what a capture would refuse the image for, found without taking
 * the lock (`gammaray up` asks before it starts anything).
 */
export function imageLockHolder(st: Pick<Stats, 'dev' | 'ino'>, dir = imageLockDir()): PidLockHolder | undefined {
  const holder = readHolder(imageLockPath(st, dir));
  return holder !== undefined && holderAlive(holder) ? holder : undefined;
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
  private constructor(private readonly lock: PidLock) {}

  /** The lock file. */
  get path(): string {
    return this.lock.path;
  }

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
    const path = imageLockPath(st, dir);
    try {
      return new ImageLock(
        PidLock.acquire(path, { image, disk }, (h) =>
          h.pid === 0
            ? new DiskBusyError(`image ${image}: its lock ${path} keeps changing hands; is another capture starting on it?`)
            : new DiskBusyError(`image ${image} is already served on this machine by process ${h.pid} (disk ${String(h['disk'])}, as ${String(h['image'])}): two writers would corrupt it; stop that capture first`),
        ),
      );
    } catch (err) {
      if (err instanceof DiskBusyError) throw err;
      return undefined;
    }
  }

  /** Gives the lock up (only if the file is still this holder's). */
  release(): void {
    this.lock.release();
  }
}
