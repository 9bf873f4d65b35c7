/**
 * A small Dockerfile reader (instructions, line continuations, comments, stages) and static checks of the
 * services' Dockerfiles: stages referenced by `COPY --from` and `FROM` exist and come earlier, `ARG`s used in
 * `FROM` are declared, files copied from the build context exist and are not excluded by .dockerignore, the
 * runtime stage's user and entrypoint are the ones the service needs.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** One instruction, continuation lines joined. */
export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  readonly op: string;
  /** The rest of the instruction. */
  readonly rest: string;
  /** 1-based line of the keyword. */
  readonly line: number;
}

/** A build stage: from its FROM to the next. */
export interface Stage {
  readonly index: number;
  readonly base: string;
  readonly name: string | undefined;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  /** ARGs before the first FROM (usable in FROM lines). */
  readonly globalArgs: ReadonlySet<string>;
  readonly stages: readonly Stage[];
  /** Everything, in order. */
  readonly instructions: readonly Instruction[];
}

/** Parses a Dockerfile (backslash continuations; comment lines, also inside continuations, are dropped). */
export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  let buf: string[] = [];
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!; // ok: i < length
    const trimmed = raw.trim();
    if (trimmed.startsWith('#') || (trimmed === '' && buf.length === 0)) continue;
    if (buf.length === 0) start = i + 1;
    const continued = /\\\s*$/.test(raw);
    buf.push(continued ? raw.replace(/\\\s*$/, '') : raw);
    if (continued) continue;
    const joined = buf.join(' ').trim();
    buf = [];
    const m = /^([A-Za-z]+)\s*(.*)$/s.exec(joined);
    if (m) instructions.push({ op: m[1]!.toUpperCase(), rest: m[2]!.trim(), line: start }); // ok: both groups match
  }
  const globalArgs = new Set<string>();
  const stages: Stage[] = [];
  let current: { index: number; base: string; name: string | undefined; instructions: Instruction[] } | undefined;
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.rest);
      current = { index: stages.length, base: m?.[1] ?? ins.rest, name: m?.[2], instructions: [] };
      stages.push(current);
    } else if (!current) {
      if (ins.op === 'ARG') globalArgs.add(ins.rest.split('=')[0]!.trim()); // ok: split gives one part at least
    } else current.instructions.push(ins);
  }
  return { globalArgs, stages, instructions };
}

/** Options of a COPY/ADD instruction and its sources and destination (JSON or shell form). */
export function copyParts(rest: string): { options: Map<string, string>; sources: string[]; dest: string } {
  const options = new Map<string, string>();
  let s = rest;
  for (let m = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(s); m; m = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(s)) {
    options.set(m[1]!, m[2] ?? ''); // ok: group 1 always matches
    s = s.slice(m[0].length);
  }
  const parts = s.startsWith('[') ? (JSON.parse(s) as string[]) : s.split(/\s+/);
  return { options, sources: parts.slice(0, -1), dest: parts[parts.length - 1] ?? '' };
}

/** Exec-form (JSON array) arguments of ENTRYPOINT/CMD, or undefined for the shell form. */
export function execForm(rest: string): string[] | undefined {
  if (!rest.startsWith('[')) return undefined;
  try {
    const v = JSON.parse(rest) as unknown;
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Top-level .dockerignore patterns (a subset of the syntax: the ones this repository uses). */
export function dockerignore(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** Whether a context-relative path is excluded by the patterns (`name`, `dir/name`, `**\/name`, `*.ext`, `**\/*.ext`). */
export function ignored(path: string, patterns: readonly string[]): boolean {
  const p = path.replace(/^\.\//, '').replace(/\/$/, '');
  let out = false;
  for (const pat of patterns) {
    const negate = pat.startsWith('!');
    const body = (negate ? pat.slice(1) : pat).replace(/^\//, '');
    const re = new RegExp(
      `^${body
        .split('/')
        .map((seg) => (seg === '**' ? '(?:.*/)?' : `${seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}/`))
        .join('')
        .replace(/\/$/, '')}(?:/.*)?$`,
    );
    if (re.test(p)) out = !negate;
  }
  return out;
}

/** What a service's runtime stage must look like. */
export interface RuntimeExpectation {
  /** The subcommand the image runs by default (first CMD argument). */
  readonly service: string;
  /** The user of the final stage: a name or uid, or `root` for a stage that must not drop privileges. */
  readonly user: string;
}

/** Checks a Dockerfile; `context` is the build context directory; returns the problems found. */
export function checkDockerfile(df: Dockerfile, context: string, ignore: readonly string[], expect: RuntimeExpectation): string[] {
  const problems: string[] = [];
  if (df.stages.length === 0) return ['no FROM'];
  const names = new Map<string, number>();
  for (const st of df.stages) {
    if (st.name !== undefined) {
      if (names.has(st.name.toLowerCase())) problems.push(`stage name ${st.name} is used twice`);
      names.set(st.name.toLowerCase(), st.index);
    }
    for (const v of st.base.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
      if (!df.globalArgs.has(v[1]!)) problems.push(`FROM ${st.base}: ARG ${v[1]} is not declared before the first FROM`); // ok: group matched
    }
    const baseStage = names.get(st.base.toLowerCase());
    if (baseStage !== undefined && baseStage >= st.index) problems.push(`FROM ${st.base}: a stage cannot build on itself`);
  }
  for (const st of df.stages) {
    for (const ins of st.instructions) {
      if (ins.op !== 'COPY' && ins.op !== 'ADD') continue;
      const { options, sources } = copyParts(ins.rest);
      const from = options.get('from');
      if (from !== undefined) {
        const idx = /^\d+$/.test(from) ? Number(from) : names.get(from.toLowerCase());
        const image = /[:/]/.test(from);
        if (idx === undefined && !image) problems.push(`line ${ins.line}: COPY --from=${from}: no stage is named ${from}`);
        else if (idx !== undefined && idx >= st.index) problems.push(`line ${ins.line}: COPY --from=${from}: that stage is not built before this one`);
        continue;
      }
      for (const src of sources) {
        if (/[*?[]/.test(src) || /^https?:\/\//.test(src)) continue;
        if (src !== '.' && ignored(src, ignore)) problems.push(`line ${ins.line}: ${ins.op} ${src}: excluded from the build context by .dockerignore`);
        else if (!existsSync(join(context, src))) problems.push(`line ${ins.line}: ${ins.op} ${src}: not in the build context`);
      }
    }
  }
  const last = df.stages[df.stages.length - 1]!; // ok: length checked above
  const users = last.instructions.filter((i) => i.op === 'USER').map((i) => i.rest.split(':')[0]!.trim()); // ok: split gives one part
  const user = users[users.length - 1] ?? 'root';
  const isRoot = (u: string) => u === 'root' || u === '0';
  if (isRoot(expect.user) ? !isRoot(user) : user !== expect.user) {
    problems.push(`the runtime stage runs as ${user}; expected ${expect.user}`);
  }
  const entry = last.instructions.filter((i) => i.op === 'ENTRYPOINT').pop();
  const entryArgs = entry ? execForm(entry.rest) : undefined;
  if (!entryArgs) problems.push('the runtime stage needs an exec-form ENTRYPOINT (signals reach node only then)');
  else if (!entryArgs.some((a) => /(^|\/)gammaray(\.js)?$/.test(a))) problems.push(`ENTRYPOINT ${entry?.rest} does not run gammaray`);
  else {
    const bin = entryArgs.find((a) => a.startsWith('/') && /gammaray(\.js)?$/.test(a));
    if (bin) {
      const provided = last.instructions.some((i) => {
        if (i.op !== 'COPY') return false;
        const { options, dest } = copyParts(i.rest);
        return options.has('from') && bin.startsWith(`${dest.replace(/\/$/, '')}/`);
      });
      if (!provided) problems.push(`ENTRYPOINT runs ${bin}, which no COPY --from=... of the runtime stage puts there`);
    }
  }
  const cmd = last.instructions.filter((i) => i.op === 'CMD').pop();
  const cmdArgs = cmd ? execForm(cmd.rest) : undefined;
  if (cmdArgs?.[0] !== expect.service) problems.push(`CMD should start with the ${expect.service} subcommand, got ${cmd?.rest ?? 'none'}`);
  return problems;
}
