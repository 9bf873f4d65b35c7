/** Paths typed by the user, as the tree prints them. */
import { decodeName, encodeName } from '@gammaray/ext4';
import { UserError } from './errors.js';

/** Refuses an empty PATH argument (`gammaray cat IMAGE ''`), which names no file. */
export function requirePath(path: string, command: string): void {
  if (path === '') throw new UserError(`the PATH of gammaray ${command} is empty: give an absolute path inside the file system, e.g. gammaray ${command} IMAGE /etc/hostname`);
}

/**
 * The absolute form of a user path as `walk` would print it: "/" joined,
 * empty and "." components dropped, ".." resolved lexically, each name
 * round-tripped through the `\xNN` escaping so it matches the tree's
 * spelling.
 */
export function normalizePath(path: string): string {
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      out.pop();
      continue;
    }
    out.push(decodeName(encodeName(part)));
  }
  return `/${out.join('/')}`;
}

/** The last component of an absolute path ("/" for the root). */
export function baseName(path: string): string {
  if (path === '/') return '/';
  return path.slice(path.lastIndexOf('/') + 1);
}
