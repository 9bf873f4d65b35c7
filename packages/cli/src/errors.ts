import { CorruptError as Ext4CorruptError, Ext4Error, IncompatibleError, LookupError } from '@gammaray/ext4';
import { DiskError } from '@gammaray/disk';
import { shellWord } from './format.js';

/** Exit statuses of every command (see CLI.md). */
export const ExitCode = {
  /** Everything was read and printed. */
  ok: 0,
  /** A runtime failure, or some entries could not be read (what could be read was printed). */
  failure: 1,
  /** The user asked for something impossible: bad usage, missing image, no file system, bad path. */
  usage: 2,
} as const;
/** See {@link ExitCode}. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * Something the user can fix: printed as one line (no stack) and exit status 2.
 * The message says what was wrong and what to do.
 */
export class UserError extends Error {
  override name = 'UserError';
}

/**
 * A failure at run time that is not the user's doing (an I/O error, a
 * damaged structure that stops the command): one line, exit status 1.
 */
export class RuntimeFailure extends Error {
  override name = 'RuntimeFailure';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** True for the errors the readers throw for bad or unreadable disk data. */
export function isReaderError(err: unknown): err is Ext4Error | DiskError {
  return err instanceof Ext4Error || err instanceof DiskError;
}

/**
 * The one-word kind of a reader error for records and messages: the
 * CorruptError kind, the LookupError code, else the class name without
 * "Error" (`Io`, `Incompatible`).
 */
export function errorKind(err: Error): string {
  if (err instanceof Ext4CorruptError) return err.kind;
  if (err instanceof LookupError) return err.code;
  if ('kind' in err && typeof err.kind === 'string') return err.kind;
  return err.name.replace(/Error$/, '') || 'Error';
}

/** Where a path was looked up, for messages. */
export interface PathContext {
  /** `disk.img` or `disk.img partition 2`. */
  readonly label: string;
  /** Shell arguments selecting the volume again: `disk.img --partition 2`. */
  readonly selector: string;
}

/**
 * Turns an error met while resolving `path` into a UserError (does not
 * exist, wrong type) or a RuntimeFailure (damage, I/O).
 */
export function pathError(err: unknown, where: PathContext, path: string): Error {
  const image = where.label;
  if (err instanceof LookupError) {
    switch (err.code) {
      case 'ENOENT':
        return new UserError(`${path}: no such file or directory in ${image}; list its parent directory with: gammaray ls ${where.selector} ${shellWord(parentOf(path))}`);
      case 'ENOTDIR':
        return new UserError(`${path}: a component of the path is not a directory in ${image}; list the directories on the way with: gammaray ls ${where.selector} DIR`);
      case 'ELOOP':
        return new UserError(`${path}: too many levels of symbolic links in ${image}`);
      default:
        return new UserError(`${path}: ${err.message}`);
    }
  }
  if (err instanceof IncompatibleError) return new UserError(`${path}: ${err.message}`);
  if (isReaderError(err)) return new RuntimeFailure(`${path}: cannot be read in ${image}: ${err.message}`, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}

function parentOf(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  const i = trimmed.lastIndexOf('/');
  return i <= 0 ? '/' : trimmed.slice(0, i);
}
