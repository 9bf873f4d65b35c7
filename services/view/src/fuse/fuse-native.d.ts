/**
 * The part of fuse-native 2.2.6 (CommonJS, untyped) the view uses. Callbacks take the operation's result code
 * first: 0 or a byte count on success, a negative errno on failure (read/getxattr/listxattr return the count as
 * that code).
 */
declare module 'fuse-native' {
  namespace Fuse {
    /** What getattr/fgetattr/readdir report; times in milliseconds since the epoch. */
    interface Stat {
      mode: number;
      uid: number;
      gid: number;
      size: number;
      nlink: number;
      ino: number;
      dev?: number;
      rdev?: number;
      blksize: number;
      blocks: number;
      atime: number;
      mtime: number;
      ctime: number;
    }
    /** What statfs reports (each field is sent as an unsigned 32-bit integer). */
    interface Statfs {
      bsize: number;
      frsize: number;
      blocks: number;
      bfree: number;
      bavail: number;
      files: number;
      ffree: number;
      favail: number;
      fsid: number;
      flag: number;
      namemax: number;
    }
    /** Operation name -> handler; an operation without a handler is answered by libfuse (ENOSYS mostly). */
    type Operations = Record<string, ((...args: never[]) => void) | undefined>;
    /** Constructor options (only those the view passes). */
    interface Options {
      /** Unmount a stale (ENOTCONN) mount at the mount point first. */
      force?: boolean;
      /** Create the mount point if missing. */
      mkdir?: boolean;
      /** Per-operation timeout in ms after which the kernel gets ETIMEDOUT; false for none. Default 15 s. */
      timeout?: number | false;
      debug?: boolean;
    }
    /** Replies to the kernel: result code, then the operation's values. */
    type Signal = (code: number, ...values: unknown[]) => void;
  }

  class Fuse {
    constructor(mnt: string, ops: Fuse.Operations, opts?: Fuse.Options);
    readonly mnt: string;
    /** Mounts; the callback runs once the kernel's INIT arrived. */
    mount(cb: (err: Error | null) => void): void;
    /** `fusermount -uz` then stops the FUSE thread. */
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    /** The `-o` argument handed to libfuse (overridable: the stock one cannot pass zero timeouts or direct_io). */
    protected _fuseOptions(): string;
    protected _op_fgetattr(signal: Fuse.Signal, path: string, fd: number): void;
    protected _op_getxattr(signal: Fuse.Signal, path: string, name: string, valueBuf: Buffer, position: number): void;
    protected _op_listxattr(signal: Fuse.Signal, path: string, listBuf: Buffer): void;
  }

  export = Fuse;
}
