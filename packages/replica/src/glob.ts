/**
 * Path globs for event filters (`gammaray follow DISK GLOB`, the view's Watch): compiled to one anchored regular
 * expression, built only from escaped literals and fixed fragments, so a glob can never inject regex syntax.
 */
import { ReplicaError, ReplicaErrorCode } from './errors.js';

/** Longest glob accepted (a path is at most 4096 bytes; a glob about it needs no more). */
export const MAX_GLOB_CHARS = 4096;
/** Deepest nesting of `{...}` alternatives. */
export const MAX_GLOB_BRACE_DEPTH = 8;
/** Most globs a `{...}` glob may expand to (`{a,b}{c,d}` is 4). */
export const MAX_GLOB_ALTERNATIVES = 1024;
/** Most characters of all those globs together: bounds the regex a Watch call can make the view compile. */
export const MAX_GLOB_EXPANDED_CHARS = 64 * 1024;

/** Tests whether an absolute path matches. */
export type PathMatcher = (path: string) => boolean;

const escapeRe = (c: string): string => c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');

/**
 * Compiles `glob` into a matcher of absolute paths:
 * - `*` matches any run of characters within one name, `?` one character (neither matches `/`);
 * - `**` as a whole component matches any number of components (`/a/**` everything below `/a`, `/a/**\/b`
 *   `/a/b` and `/a/x/y/b`); elsewhere it matches anything, `/` included;
 * - `[abc]`, `[a-z]`, `[!abc]` (or `[^abc]`) one character of (not of) a class, never `/`;
 * - `{a,b,c}` any of the alternatives (nestable), expanded first as a shell does: `{/a,/b}/**` is `/a/**` or
 *   `/b/**`, so an alternative may hold `/` and `**` and decide on its own whether it starts with `/`;
 * - `\` takes the next character literally;
 * - a glob (or expanded alternative) that does not start with `/` matches at any depth (`*.log` = `/**\/*.log`);
 * - `//` is one `/` (`/a/{b,/c}` is `/a/b` or `/a/c`);
 * - the empty glob matches every path.
 * Names are matched in their printed form (invalid UTF-8 bytes as `\xNN`, so `\\xff` in a glob). A leading
 * dot is not special. Throws ReplicaError(InvalidArgument) for a malformed glob.
 */
export function compileGlob(glob: string): PathMatcher {
  if (typeof glob !== 'string') throw invalid(String(glob), 'it is not a string');
  if (glob === '') return () => true;
  if (glob.length > MAX_GLOB_CHARS) throw invalid(glob.slice(0, 40) + '...', `it is longer than ${MAX_GLOB_CHARS} characters`);
  if (glob.includes('\0')) throw invalid(glob, 'it contains a NUL character');
  const alternatives = [...new Set(expandBraces(glob))];
  if (alternatives.reduce((n, a) => n + a.length, 0) > MAX_GLOB_EXPANDED_CHARS) {
    throw invalid(glob, `its "{...}" expand to more than ${MAX_GLOB_EXPANDED_CHARS} characters`);
  }
  const rx = new RegExp(`^(?:${alternatives.map((a) => globRegex(a, glob)).join('|')})$`, 's');
  return (path) => rx.test(path);
}

/**
 * Compiles `glob` into a matcher of directories that some path matching `glob` could lie below: `/etc` and `/etc/x`
 * for `/etc/x/**`, every directory for a glob that matches at any depth (`*.log`) or for a `**` right after the
 * root. A directory's rename moves every path below it without an event of its own, so a filter of events
 * (EventWatch) passes it when this matches its old or new path. Throws ReplicaError(InvalidArgument) as compileGlob.
 */
export function compileGlobParents(glob: string): PathMatcher {
  compileGlob(glob); // validates, with its messages
  if (glob === '') return () => true;
  const parents: string[] = [];
  for (const alternative of new Set(expandBraces(glob))) {
    const g = alternative.startsWith('/') ? alternative : `/**/${alternative}`;
    const names = splitNames(g, glob).filter((n) => n !== '');
    let prefix = '';
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!; // ok: i < length
      if (name.includes('**')) {
        // Anything from here down may be a parent of a match; the prefix itself too.
        if (prefix !== '') parents.push(prefix);
        parents.push(`${prefix}/**`);
        break;
      }
      if (i === names.length - 1) break; // the name of a match itself, not a parent
      prefix += `/${name}`;
      parents.push(prefix);
    }
  }
  if (parents.length === 0) return () => false;
  const rx = new RegExp(`^(?:${[...new Set(parents)].map((a) => globRegex(a, glob)).join('|')})$`, 's');
  return (path) => rx.test(path);
}

/** The names of a brace-free glob: split at each "/" that is neither escaped nor inside a class. */
function splitNames(g: string, whole: string): string[] {
  const names: string[] = [];
  let name = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!; // ok: i < length
    if (c === '/') {
      names.push(name);
      name = '';
    } else if (c === '\\') {
      name += g.slice(i, i + 2);
      i++;
    } else if (c === '[') {
      const end = classEnd(g, i, whole);
      name += g.slice(i, end + 1);
      i = end;
    } else {
      name += c;
    }
  }
  names.push(name);
  return names;
}

/** A parsed glob: literal runs (glob syntax but braces, kept as written) and `{...}` groups of alternatives. */
type Part = string | Part[][];

/**
 * The brace-free globs `glob` stands for, in order: `{a,b}` gives one glob per alternative. Escapes and classes
 * are kept as written (a `{` or `,` in them is not a brace); a `}` or `,` outside braces is a literal.
 */
function expandBraces(glob: string): string[] {
  let i = 0;
  const readSeq = (depth: number): Part[] => {
    const seq: Part[] = [];
    let lit = '';
    for (; i < glob.length; i++) {
      const c = glob[i]!; // ok: i < length
      if (c === '\\') {
        if (i + 1 >= glob.length) throw invalid(glob, 'it ends with a lone "\\"');
        lit += glob.slice(i, i + 2);
        i++;
      } else if (c === '[') {
        const end = classEnd(glob, i);
        lit += glob.slice(i, end + 1);
        i = end;
      } else if (c === '{') {
        if (depth + 1 > MAX_GLOB_BRACE_DEPTH) throw invalid(glob, `it nests "{...}" deeper than ${MAX_GLOB_BRACE_DEPTH}`);
        const open = i;
        i++;
        const alts: Part[][] = [readSeq(depth + 1)];
        while (glob[i] === ',') {
          i++;
          alts.push(readSeq(depth + 1));
        }
        if (glob[i] !== '}') throw invalid(glob, `the "{" at ${open + 1} is not closed by "}"`);
        if (lit !== '') seq.push(lit);
        lit = '';
        seq.push(alts);
      } else if ((c === ',' || c === '}') && depth > 0) {
        break;
      } else {
        lit += c;
      }
    }
    if (lit !== '') seq.push(lit);
    return seq;
  };
  const expand = (seq: readonly Part[]): string[] => {
    let out = [''];
    for (const part of seq) {
      const tails = typeof part === 'string' ? [part] : part.flatMap(expand);
      if (out.length * tails.length > MAX_GLOB_ALTERNATIVES) throw invalid(glob, `its "{...}" stand for more than ${MAX_GLOB_ALTERNATIVES} alternatives`);
      out = out.flatMap((head) => tails.map((tail) => head + tail));
    }
    return out;
  };
  return expand(readSeq(0));
}

/** The regex of one brace-free glob (see compileGlob); `whole` is the glob as given, for messages. */
function globRegex(alternative: string, whole: string): string {
  const g = alternative.startsWith('/') ? alternative : `/**/${alternative}`;
  let re = '';
  // Whether the last thing matched is a "/" of the glob itself (not an escaped one): a second is dropped.
  let afterSlash = false;
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!; // ok: i < length
    const wasAfterSlash = afterSlash;
    afterSlash = false;
    switch (c) {
      case '\\':
        re += escapeRe(g[i + 1]!); // ok: expandBraces refused a lone trailing "\"
        i++;
        break;
      case '/':
        if (!wasAfterSlash) re += '\\/';
        afterSlash = true;
        break;
      case '*': {
        let j = i;
        while (g[j] === '*') j++;
        if (j - i === 1) {
          re += '[^/]*';
        } else {
          const wholeComponent = wasAfterSlash && (j === g.length || g[j] === '/');
          if (wholeComponent && j < g.length) {
            // "/**/": zero or more whole components; the "/" (or "//"...) after it is consumed here.
            re += '(?:[^/]*/)*';
            while (g[j] === '/') j++;
            afterSlash = true;
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
        const end = classEnd(g, i, whole);
        re += classRegex(g.slice(i, end + 1));
        i = end;
        break;
      }
      default:
        re += escapeRe(c);
    }
  }
  return re;
}

/** The index of the `]` closing the class that starts at `g[start] === '['`. */
function classEnd(g: string, start: number, whole: string = g): number {
  let i = start + 1;
  if (g[i] === '!' || g[i] === '^') i++;
  for (let first = true; i < g.length; i++, first = false) {
    if (g[i] === ']' && !first) return i;
    if (g[i] === '\\') i++;
  }
  throw invalid(whole, 'a "[" is not closed by "]"');
}

/** The regex of a whole class `[...]` (as classEnd delimits it): one character of (not of) it, never `/`. */
function classRegex(cls: string): string {
  let i = 1;
  let negate = false;
  if (cls[i] === '!' || cls[i] === '^') {
    negate = true;
    i++;
  }
  let body = '';
  for (; i < cls.length - 1; i++) {
    const c = cls[i]!; // ok: i < length
    if (c === '\\') {
      body += cls[++i]!.replace(/[\\\]\[^-]/g, '\\$&'); // ok: classEnd skipped an escaped character before the "]"
    } else if (c === '-' && body !== '' && i + 1 < cls.length - 1) {
      body += '-';
    } else {
      body += c.replace(/[\\\]\[^-]/g, '\\$&');
    }
  }
  return negate ? `[^/${body}]` : `(?!/)[${body}]`;
}

function invalid(glob: string, why: string): ReplicaError {
  return new ReplicaError(ReplicaErrorCode.InvalidArgument, `glob ${JSON.stringify(glob)} is malformed: ${why}; quote it in the shell, e.g. '/etc/**'`);
}
