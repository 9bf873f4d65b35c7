/// <reference path="./fuse-native.d.ts" />
/**
 * The FUSE half of `gammaray view --mount DIR`: `DIR/<disk>/...` for every attached disk, read-only and live.
 *
 * Liveness: the kernel is told to cache nothing (attr_timeout=0, entry_timeout=0, negative_timeout=0) and to
 * bypass the page cache (direct_io), so every stat, lookup and read reaches the replica, which follows the write
 * stream: `tail -f` sees appends as soon as the guest's journal commits them.
 *
 * Safety: the mount is read-only (`ro`, and every mutating call answers EROFS anyway), nosuid/nodev/noexec,
 * default_permissions (the kernel checks the guest's mode bits against the caller, which matters with
 * allow_other), not allow_other unless asked, and, when the process may remount (root), nosymfollow: a guest's
 * symlink (`/etc`, `../../..`) is shown by readlink as stored but never followed by the host kernel, so no path
 * through the mount leaves the disk it starts on. Paths are resolved inside the replicas, which refuse `..`.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import Fuse from 'fuse-native';
import type { ReplicaSet } from '@gammaray/replica';
import type { Logger } from 'pino';
import { Errno, FsError, errnoOf, isExpected } from './errno.js';
import { ViewFs, type FuseStat } from './view-fs.js';

export { ViewFs } from './view-fs.js';
export type { FuseStat, FuseStatfs } from './view-fs.js';
export { Errno, FsError, errnoOf } from './errno.js';

const exec = promisify(execFile);

/** Where FUSE request outcomes are counted (errno 0 for success, else the positive errno answered). */
export interface FuseMetrics {
  request(op: string, errno: number, seconds: number): void;
}

/** Options of {@link mountFuse}. */
export interface MountFuseOptions {
  readonly replicas: ReplicaSet;
  /** The mount point (created if missing; a stale mount left by a killed view is cleared first). */
  readonly dir: string;
  /** Used as given (the service passes its `component: fuse` child); refusals log at debug, I/O failures warn. */
  readonly log: Logger;
  /** Let other users than the mounting one see the mount (needs root or user_allow_other in /etc/fuse.conf). */
  readonly allowOther?: boolean;
  readonly metrics?: FuseMetrics;
}

/** A mounted view. */
export interface FuseMount {
  /** Unmounts (lazily if something still holds a file open). Idempotent. */
  unmount(): Promise<void>;
}

/** Past this a request is answered ETIMEDOUT (a block read the capture never answers, say). */
const OP_TIMEOUT_MS = 15_000;

/** Operations that would change the file system: all answer EROFS. */
const MUTATING_OPS = ['write', 'create', 'mkdir', 'rmdir', 'unlink', 'rename', 'link', 'symlink', 'mknod', 'chmod', 'chown', 'truncate', 'ftruncate', 'utimens', 'setxattr', 'removexattr'] as const;

/** The libfuse options of the mount (see the module comment for why each). */
export function fuseMountOptions(allowOther: boolean): string[] {
  const o = ['ro', 'nosuid', 'nodev', 'noexec', 'default_permissions', 'use_ino', 'attr_timeout=0', 'entry_timeout=0', 'negative_timeout=0', 'direct_io', 'fsname=gammaray', 'subtype=gammaray'];
  if (allowOther) o.push('allow_other');
  return o;
}

type Run = <R>(op: string, path: string, work: () => Promise<R>, reply: (r: R) => void, fail: (errno: number) => void) => void;

/**
 * fuse-native with the options it cannot express (zero timeouts, direct_io, use_ino), fgetattr that follows the
 * open handle (the stock one ignores it), and getxattr/listxattr that answer ERANGE when the caller's buffer is
 * too small (the stock ones overrun it).
 */
class ViewFuse extends Fuse {
  readonly #options: readonly string[];
  readonly #fs: ViewFs;
  readonly #run: Run;

  constructor(dir: string, ops: Fuse.Operations, options: readonly string[], fs: ViewFs, run: Run) {
    super(dir, ops, { force: true, mkdir: true, timeout: OP_TIMEOUT_MS });
    this.#options = options;
    this.#fs = fs;
    this.#run = run;
  }

  protected override _fuseOptions(): string {
    return `-o${this.#options.join(',')}`;
  }

  protected override _op_fgetattr(signal: Fuse.Signal, path: string, fd: number): void {
    this.#run('fgetattr', path, () => this.#fs.fgetattr(path, fd), (st) => signal(0, statArray(st)), (errno) => signal(-errno));
  }

  protected override _op_getxattr(signal: Fuse.Signal, path: string, name: string, valueBuf: Buffer, _position: number): void {
    this.#run(
      'getxattr',
      path,
      () => this.#fs.getxattr(path, name),
      (value) => {
        if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer);
        if (value.length > valueBuf.length) return signal(-Errno.ERANGE, valueBuf.buffer);
        value.copy(valueBuf);
        signal(value.length, valueBuf.buffer);
      },
      (errno) => signal(-errno, valueBuf.buffer),
    );
  }

  protected override _op_listxattr(signal: Fuse.Signal, path: string, listBuf: Buffer): void {
    this.#run(
      'listxattr',
      path,
      () => this.#fs.listxattr(path),
      (names) => {
        const list = Buffer.concat(names.map((n) => Buffer.from(`${n}\0`)));
        if (listBuf.length === 0) return signal(list.length, listBuf.buffer);
        if (list.length > listBuf.length) return signal(-Errno.ERANGE, listBuf.buffer);
        list.copy(listBuf);
        signal(list.length, listBuf.buffer);
      },
      (errno) => signal(-errno, listBuf.buffer),
    );
  }
}

/**
 * How fuse-native detaches a mount (on unmount, and before mounting over a stale one a killed view left):
 * `fusermount -uz` as it does, else fuse3's `fusermount3 -uz`, else (root) `umount -l`. Only when one of them
 * worked does fuse-native stop its FUSE thread and let the process exit, so a missing `fusermount` must not
 * be the end of it.
 */
function detach(mnt: string, cb: (err: Error | null) => void): void {
  const tries: [string, string[]][] = [
    ['fusermount', ['-uz', mnt]],
    ['fusermount3', ['-uz', mnt]],
    ['umount', ['-l', mnt]],
  ];
  const errors: string[] = [];
  const next = (i: number): void => {
    const t = tries[i];
    // Already gone (unmounted by hand, say): nothing is left to detach, and fuse-native may stop its thread.
    if (!t) return cb(isMounted(mnt) ? new Error(`cannot unmount ${mnt}: ${errors.join('; ')}`) : null);
    execFile(t[0], t[1], (err, _stdout, stderr) => {
      if (!err) return cb(null);
      errors.push(`${t[0]}: ${String(stderr).trim() || err.message}`);
      next(i + 1);
    });
  };
  next(0);
}
Fuse.unmount = detach;

/** Whether `mnt` is a mount point now (per /proc/self/mounts; mount points there are octal-escaped). */
function isMounted(mnt: string): boolean {
  try {
    const escaped = mnt.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
    return readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === escaped);
  } catch {
    return true;
  }
}

/**
 * Mounts the view of `replicas` at `dir` and resolves once the kernel has it. Requests are answered from the
 * replicas as they are at that moment; failures are logged (I/O failures as warnings) and answered with an
 * errno, never thrown. Call `unmount()` before stopping the replicas.
 */
export async function mountFuse(opts: { replicas: ReplicaSet; dir: string; log: Logger; allowOther?: boolean; metrics?: FuseMetrics }): Promise<FuseMount> {
  const log = opts.log;
  const dir = resolve(opts.dir);
  const fs = new ViewFs(opts.replicas);
  const metrics = opts.metrics;
  const observe = (op: string, errno: number, t0: number): void => {
    if (!metrics) return;
    try {
      metrics.request(op, errno, (performance.now() - t0) / 1000);
    } catch (err) {
      log.warn({ err, op }, 'FUSE metrics callback failed');
    }
  };
  const run: Run = (op, path, work, reply, fail) => {
    const t0 = performance.now();
    let p: ReturnType<typeof work>;
    try {
      p = work();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (r) => {
        observe(op, 0, t0);
        reply(r);
      },
      (err: unknown) => {
        const errno = errnoOf(err);
        observe(op, errno, t0);
        if (isExpected(errno)) log.debug({ op, path, errno, reason: (err as Error)?.message }, 'FUSE request refused');
        else log.warn({ err, op, path, errno }, 'FUSE request failed');
        fail(errno);
      },
    ).catch((err: unknown) => log.error({ err, op, path }, 'FUSE reply failed'));
  };

  type Cb = (code: number, ...values: unknown[]) => void;
  const ops: Fuse.Operations = {
    getattr: (path: string, cb: Cb) => run('getattr', path, () => fs.getattr(path), (st) => cb(0, st), (e) => cb(-e)),
    // Present so fuse-native registers fgetattr; ViewFuse._op_fgetattr answers it.
    fgetattr: () => undefined,
    readdir: (path: string, cb: Cb) => run('readdir', path, () => fs.readdir(path), (r) => cb(0, r.names, r.stats), (e) => cb(-e)),
    readlink: (path: string, cb: Cb) => run('readlink', path, () => fs.readlink(path), (t) => cb(0, t), (e) => cb(-e)),
    open: (path: string, flags: number, cb: Cb) => run('open', path, () => fs.open(path, flags), (fh) => cb(0, fh), (e) => cb(-e)),
    release: (path: string, fh: number, cb: Cb) => {
      fs.release(fh);
      cb(0);
    },
    read: (path: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      run(
        'read',
        path,
        () => fs.read(path, fh, len, pos),
        (data) => {
          buf.set(data.subarray(0, len));
          cb(Math.min(data.length, len));
        },
        (e) => cb(-e),
      ),
    statfs: (path: string, cb: Cb) => run('statfs', path, () => fs.statfs(path), (s) => cb(0, s), (e) => cb(-e)),
    // Present so fuse-native registers them; ViewFuse answers them.
    getxattr: () => undefined,
    listxattr: () => undefined,
  };
  for (const op of MUTATING_OPS) {
    ops[op] = (...args: unknown[]) => {
      const cb = args[args.length - 1] as Cb; // ok: fuse-native passes the callback last
      const path = typeof args[0] === 'string' ? args[0] : '';
      run(op, path, () => Promise.reject(new FsError(Errno.EROFS, `${path}: the view is read-only`)), () => undefined, (e) => cb(-e));
    };
  }

  const options = fuseMountOptions(opts.allowOther ?? false);
  const fuse = new ViewFuse(dir, ops, options, fs, run);
  await new Promise<void>((res, rej) =>
    fuse.mount((err) => {
      if (!err) return res();
      rej(new Error(`cannot mount the FUSE view at ${dir}: ${err.message} (is /dev/fuse there, libfuse2 installed, and ${dir} not already a mount point?)`, { cause: err }));
    }),
  );
  const symlinks = await forbidSymlinkFollowing(dir, log);
  log.info({ dir, options, nosymfollow: symlinks }, 'FUSE view mounted');

  let unmounting: Promise<void> | undefined;
  const unmount = async (): Promise<void> => {
    await new Promise<void>((res, rej) => fuse.unmount((err) => (err ? rej(err) : res())));
    log.info({ dir, openHandles: fs.openHandles }, 'FUSE view unmounted');
  };
  return { unmount: () => (unmounting ??= unmount()) };
}

/**
 * Remounts with nosymfollow (Linux 5.10+, needs CAP_SYS_ADMIN): the host kernel then never follows a guest's
 * symlink inside the mount. Returns whether it is in force; without it, a warning says what that means.
 */
async function forbidSymlinkFollowing(dir: string, log: Logger): Promise<boolean> {
  try {
    await exec('mount', ['-o', 'remount,bind,ro,nosuid,nodev,noexec,nosymfollow', dir]);
    return true;
  } catch (err) {
    log.warn({ err, dir }, 'could not remount the view nosymfollow (needs root and Linux 5.10+): the host kernel follows guest symlinks inside the mount, and an absolute or ../ one leads out of the disk');
    return false;
  }
}

/** The stat layout fuse-native's native side reads: 18 uint32 (64-bit values as low, high). */
function statArray(st: FuseStat): Uint32Array {
  const a = new Uint32Array(18);
  a[0] = st.mode;
  a[1] = st.uid;
  a[2] = st.gid;
  setU64(a, 3, st.size);
  a[5] = 0;
  a[6] = st.nlink;
  a[7] = st.ino;
  a[8] = st.rdev ?? 0;
  a[9] = st.blksize;
  setU64(a, 10, st.blocks);
  setU64(a, 12, st.atime);
  setU64(a, 14, st.mtime);
  setU64(a, 16, st.ctime);
  return a;
}

function setU64(a: Uint32Array, i: number, n: number): void {
  const v = Math.max(0, Math.floor(n));
  a[i] = v % 0x1_0000_0000;
  a[i + 1] = Math.floor(v / 0x1_0000_0000);
}
