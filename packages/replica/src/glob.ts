/**
 * Path globs for event filters (`gammaray follow DISK GLOB`, the view's Watch): compiled to one anchored regular
 * expression, built only from escaped literals and fixed fragments, so a glob can never inject regex syntax.
 */
import { ReplicaError, ReplicaErrorCode } from './errors.js';

/** Longest glob accepted (a path is at most 4096 bytes; a glob about it needs no more). */
export const MAX_GLOB_CHARS = 4096;
/** Deepest nesting of `{...}` alternatives. */
export const MAX_GLOB_BRACE_DEPTH = 8;

/** Tests whether an absolute path matches. */
export type PathMatcher = (path: string) => boolean;

const escapeRe = (c: string): string => c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');

/**
 * Compiles `glob` into a matcher of absolute paths:
 * - `*` matches any run of characters within one name, `?` one character (neither matches `/`);
 * - `**` as a whole component matches any number of components (`/a/**` everything below `/a`, `/a/**\/b`
 *   `/a/b` and `/a/x/y/b`); elsewhere it matches anything, `/` included;
 * - `[abc]`, `[a-z]`, `[!abc]` (or `[^abc]`) one character of (not of) a class, never `/`;
 * - `{a,b,c}` any of the alternatives (nestable);
 * - `\` takes the next character literally;
 * - a glob that does not start with `/` matches at any depth (`*.log` = `/**\/*.log`);
 * - the empty glob matches every path.
 * Names are matched in their printed form (invalid UTF-8 bytes as `\xNN`, so `\\xff` in a glob). A leading
 * dot is not special. Throws ReplicaError(InvalidArgument) for a malformed glob.
 */
export function compileGlob(glob: string): PathMatcher {
  if (typeof glob !== 'string') throw invalid(String(glob), 'it is not a string');
  if (glob === '') return () => true;
  if (glob.length > MAX_GLOB_CHARS) throw invalid(glob.slice(0, 40) + '...', `it is longer than ${MAX_GLOB_CHARS} characters`);
  if (glob.includes('\0')) throw invalid(glob, 'it contains a NUL character');
  const g = glob.startsWith('/') ? glob : `/**/${glob}`;
  let re = '';
  let depth = 0;
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!; // ok: i < length
    switch (c) {
      case '\\': {
        const next = g[i + 1];
        if (next === undefined) throw invalid(glob, 'it ends with a lone "\\"');
        re += escapeRe(next);
        i++;
        break;
      }
      case '*': {
        let j = i;
        while (g[j] === '*') j++;
        if (j - i === 1) {
          re += '[^/]*';
        } else {
          const wholeComponent = g[i - 1] === '/' && (j === g.length || g[j] === '/');
          if (wholeComponent && j < g.length) {
            // "/**/": zero or more whole components; the "/" after it is consumed here.
            re += '(?:[^/]*/)*';
            j++;
          } else {
            re += '.*';
          }
        }
        i = j - 1;
        break;
      }
      case '?':
        re += '[^/]';
        break;
      case '[': {
        const cls = readClass(g, i, glob);
        re += cls.re;
        i = cls.end;
        break;
      }
      case '{':
        if (++depth > MAX_GLOB_BRACE_DEPTH) throw invalid(glob, `it nests "{...}" deeper than ${MAX_GLOB_BRACE_DEPTH}`);
        re += '(?:';
        break;
      case ',':
        re += depth > 0 ? '|' : ',';
        break;
      case '}':
        if (depth > 0) {
          depth--;
          re += ')';
        } else {
          re += '\\}';
        }
        break;
      default:
        re += escapeRe(c);
    }
  }
  if (depth > 0) throw invalid(glob, 'a "{" is not closed by "}"');
  const rx = new RegExp(`^${re}$`, 's');
  return (path) => rx.test(path);
}

/** The regex of the class starting at `g[start] === '['`, and the index of its closing `]`. */
function readClass(g: string, start: number, glob: string): { re: string; end: number } {
  let i = start + 1;
  let negate = false;
  if (g[i] === '!' || g[i] === '^') {
    negate = true;
    i++;
  }
  let body = '';
  let first = true;
  for (; i < g.length; i++) {
    const c = g[i]!; // ok: i < length
    if (c === ']' && !first) return { re: negate ? `[^/${body}]` : `(?!/)[${body}]`, end: i };
    first = false;
    if (c === '\\') {
      const next = g[++i];
      if (next === undefined) break;
      body += next.replace(/[\\\]\[^-]/g, '\\$&');
    } else if (c === '-' && body !== '' && g[i + 1] !== ']') {
      body += '-';
    } else {
      body += c.replace(/[\\\]\[^-]/g, '\\$&');
    }
  }
  throw invalid(glob, 'a "[" is not closed by "]"');
}

function invalid(glob: string, why: string): ReplicaError {
  return new ReplicaError(ReplicaErrorCode.InvalidArgument, `glob ${JSON.stringify(glob)} is malformed: ${why}; quote it in the shell, e.g. '/etc/**'`);
}
