/**
 * Every command the README shows is exercised by a test.
 *
 * Each fenced `sh`/`bash` block of README.md is split into commands the way a shell would (quotes, `\` line
 * continuations, comments, `&&`/`|`/`;`/`&`, redirections, leading `VAR=value` assignments). Then:
 * - a `gammaray ...` command (also `pnpm gammaray ...`, `node packages/cli/bin/gammaray.js ...`) goes through the
 *   real CLI parser (`main` of @gammaray/cli, commander) with nothing started: the services' `run*` functions,
 *   the offline commands and `up` are replaced by recorders, `follow` and `tree` run for real with their NATS and
 *   gRPC clients replaced. The flags a service receives go, with the line's environment, through the service's
 *   own `readConfig` (test/deploy/invocation.ts, the check the compose and Kubernetes tests use); `up`'s go
 *   through its own `planDisks` and the capture's and view's config parsers. Files the line names (images, PEM
 *   files) are replaced by stand-ins. An unknown subcommand, an unknown flag or a bad value fails.
 * - any other command must be of a known form, each mapped to the test (or CI file) that runs it, and that file
 *   must exist and contain what the README shows (the command, its flags, the RPC method). `grpcurl` is not
 *   installed here: each grpcurl line needs a `buf curl` line in the README for the same method, which
 *   test/integration/view-grpc.test.ts runs. A command of no known form fails the test, so a new README command
 *   must be accounted for here.
 * The TypeScript consumer example is run against a real nats-server.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Writable } from 'node:stream';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '@gammaray/cli';
import { encodeEvent, type FsEvent } from '@gammaray/inferencer';
import { EVENTS_WILDCARD, STREAM_EVENTS, eventsSubject } from '@gammaray/wire';
import { checkInvocation, isServiceName, ROOT } from './deploy/invocation.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

/** What the stand-ins saw: the offline commands and `up` (their options), follow's and tree's clients. */
const { calls, recorder } = vi.hoisted(() => {
  const calls = { list: [] as { command: string; args: unknown[] }[] };
  /** Stand-in for a command's run function: records its arguments and succeeds. */
  const recorder =
    (command: string) =>
    async (...args: unknown[]): Promise<number> => {
      calls.list.push({ command, args });
      return 0;
    };
  return { calls, recorder };
});

// Nothing starts: the services' run functions only record the flags the CLI parsed (./deploy/invocation.ts).
vi.mock('../services/capture/src/index.ts', async (orig) => (await import('./deploy/invocation.js')).mockServiceModule('capture', await orig()));
vi.mock('../services/inferencer/src/index.ts', async (orig) => (await import('./deploy/invocation.js')).mockServiceModule('inferencer', await orig()));
// The view module also provides follow's NATS client and tree's gRPC client: replaced by stand-ins that validate
// what the real ones validate before connecting (disk id, kinds, glob) and deliver nothing.
vi.mock('../services/view/src/index.ts', async (orig) => {
  const real = await orig<typeof import('../services/view/src/index.ts')>();
  const { EventKind } = await import('@gammaray/inferencer');
  const { isDiskId } = await import('@gammaray/wire');
  const kinds = new Set<string>(Object.values(EventKind));
  const invalid = (msg: string) => new real.ReplicaError(real.ReplicaErrorCode.InvalidArgument, msg);
  class StandInViewClient {
    constructor(address: string, opts: unknown) {
      calls.list.push({ command: 'ViewClient', args: [address, opts] });
    }
    async *getTree(): AsyncGenerator<never> {}
    close(): void {}
  }
  return {
    ...(await import('./deploy/invocation.js')).mockServiceModule('view', real),
    ViewClient: StandInViewClient,
    openFollow: async (o: import('../services/view/src/index.ts').FollowOptions) => {
      calls.list.push({ command: 'openFollow', args: [o] });
      if (!isDiskId(o.disk)) throw invalid(`${JSON.stringify(o.disk)} is not a disk id`);
      for (const k of o.kinds ?? []) if (!kinds.has(k)) throw invalid(`${JSON.stringify(k)} is not an event kind`);
      real.compileGlob(o.glob ?? '');
      return { watch: (async function* () {})(), close: async () => {} };
    },
  };
});
vi.mock('../packages/cli/src/commands/ls.ts', async (orig) => ({ ...(await orig<object>()), runLs: recorder('ls') }));
vi.mock('../packages/cli/src/commands/stat.ts', async (orig) => ({ ...(await orig<object>()), runStat: recorder('stat') }));
vi.mock('../packages/cli/src/commands/cat.ts', async (orig) => ({ ...(await orig<object>()), runCat: recorder('cat') }));
vi.mock('../packages/cli/src/commands/crawl.ts', async (orig) => ({ ...(await orig<object>()), runCrawl: recorder('crawl') }));
vi.mock('../packages/cli/src/commands/up.ts', async (orig) => ({ ...(await orig<object>()), runUp: recorder('up') }));

const README_PATH = join(ROOT, 'README.md');
const README = readFileSync(README_PATH, 'utf8');

// ---------------------------------------------------------------------------------------------------------------
// README parsing

/** A fenced code block: its info string's language, its first content line (1-based) and its lines. */
interface Block {
  readonly lang: string;
  readonly line: number;
  readonly lines: readonly string[];
}

/** Every fenced code block of a Markdown text (``` or ~~~ fences, at most 3 spaces of indent). */
export function fencedBlocks(markdown: string): Block[] {
  const out: Block[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i]!); // ok: i < length
    if (!open) continue;
    const fence = open[1]!; // ok: group 1 always matches
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !new RegExp(`^ {0,3}${fence[0]}{${fence.length},}\\s*$`).test(lines[j]!)) body.push(lines[j++]!); // ok: j < length
    out.push({ lang: open[2]!.toLowerCase(), line: i + 2, lines: body }); // ok: group 2 always matches (maybe empty)
    i = j;
  }
  return out;
}

const SHELL_LANGS = new Set(['sh', 'bash', 'shell']);

/** One simple command of a README line: its leading assignments and its words (quotes removed). */
interface Command {
  /** Line number in README.md. */
  readonly line: number;
  /** The words as written (for messages). */
  readonly text: string;
  readonly env: Readonly<Record<string, string>>;
  readonly words: readonly string[];
}

/**
 * Splits a shell line into simple commands: quotes ('...', "..."), backslash escapes, `$(...)` kept whole,
 * comments at a word start, the operators `&&`, `||`, `|`, `;` and `&`; redirections are dropped.
 */
export function splitShell(line: string): { words: string[] }[] {
  const segments: string[][] = [[]];
  let word: string | undefined;
  const flush = () => {
    if (word !== undefined) segments[segments.length - 1]!.push(word); // ok: never empty
    word = undefined;
  };
  const next = () => {
    flush();
    if (segments[segments.length - 1]!.length > 0) segments.push([]); // ok: never empty
  };
  const subst = (open: number): number => {
    // `(` of a `$(` at `open`: returns the index after the matching `)`.
    let depth = 0;
    for (let k = open; k < line.length; k++) {
      if (line[k] === '(') depth++;
      else if (line[k] === ')' && --depth === 0) return k + 1;
    }
    throw new Error(`unclosed $( in: ${line}`);
  };
  for (let i = 0; i < line.length; ) {
    const c = line[i]!; // ok: i < length
    if (c === ' ' || c === '\t') {
      flush();
      i++;
    } else if (c === '#' && word === undefined) {
      break;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unclosed ' in: ${line}`);
      word = (word ?? '') + line.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      let k = i + 1;
      let s = '';
      while (k < line.length && line[k] !== '"') {
        if (line[k] === '\\' && k + 1 < line.length && '"\\$`'.includes(line[k + 1]!)) {
          s += line[k + 1];
          k += 2;
        } else if (line.startsWith('$(', k)) {
          const end = subst(k + 1);
          s += line.slice(k, end);
          k = end;
        } else s += line[k++];
      }
      if (k >= line.length) throw new Error(`unclosed " in: ${line}`);
      word = (word ?? '') + s;
      i = k + 1;
    } else if (c === '\\' && i + 1 < line.length) {
      word = (word ?? '') + line[i + 1];
      i += 2;
    } else if (line.startsWith('$(', i)) {
      const end = subst(i + 1);
      word = (word ?? '') + line.slice(i, end);
      i = end;
    } else if (c === '&' && word !== undefined && word.endsWith('>')) {
      word += c; // 2>&1
      i++;
    } else if (c === '&' || c === '|' || c === ';') {
      next();
      i += line[i + 1] === c && c !== ';' ? 2 : 1;
    } else {
      word = (word ?? '') + c;
      i++;
    }
  }
  flush();
  return segments
    .map((ws) => {
      const words: string[] = [];
      for (let k = 0; k < ws.length; k++) {
        if (/^\d*(>>?|<)$/.test(ws[k]!)) k++; // `> file`: the file goes too
        else if (!/^\d*(>>?|<|>&)\S+$/.test(ws[k]!)) words.push(ws[k]!); // ok: k < length
      }
      return { words };
    })
    .filter((s) => s.words.length > 0);
}

/** The commands of the README's shell blocks, one per simple command. */
export function readmeCommands(markdown: string): Command[] {
  const out: Command[] = [];
  for (const b of fencedBlocks(markdown)) {
    if (!SHELL_LANGS.has(b.lang)) continue;
    for (let i = 0; i < b.lines.length; i++) {
      const first = i;
      let text = b.lines[i]!; // ok: i < length
      while (/(^|[^\\])\\$/.test(text) && i + 1 < b.lines.length) text = `${text.slice(0, -1)} ${b.lines[++i]!.trim()}`; // ok: checked
      for (const { words } of splitShell(text)) {
        const env: Record<string, string> = {};
        let k = 0;
        while (k < words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[k]!)) {
          const w = words[k++]!; // ok: k < length
          env[w.slice(0, w.indexOf('='))] = w.slice(w.indexOf('=') + 1);
        }
        if (k === words.length) continue; // assignments only
        out.push({ line: b.line + first, text: words.join(' '), env, words: words.slice(k) });
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// gammaray command lines

const work = mkdtempSync(join(tmpdir(), 'gammaray-readme-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type StandIn = 'image' | 'pem' | 'creds' | 'nkey';
const STAND_IN_CONTENT: Readonly<Record<StandIn, string | Buffer>> = {
  image: Buffer.alloc(64 * 1024),
  pem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  creds: `-----BEGIN NATS USER JWT-----\neyJ0.eyJ1.c2ln\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSU${'A'.repeat(56)}\n------END USER NKEY SEED------\n`,
  nkey: `SU${'A'.repeat(56)}\n`,
};
/** Flags whose value is a file that must exist: the README's names are replaced by stand-ins. */
const FILE_FLAGS: Readonly<Record<string, StandIn>> = {
  '--image': 'image',
  '--tls-cert': 'pem',
  '--tls-key': 'pem',
  '--tls-client-ca': 'pem',
  '--tls-ca': 'pem',
  '--nats-tls-ca': 'pem',
  '--nats-tls-cert': 'pem',
  '--nats-tls-key': 'pem',
  '--nats-creds': 'creds',
  '--nats-nkey': 'nkey',
  '--nbd-tls-cert': 'pem',
  '--nbd-tls-key': 'pem',
  '--nbd-tls-client-ca': 'pem',
};

function standIn(path: string, kind: StandIn): string {
  const p = join(work, `${kind}-${basename(path)}`);
  if (!existsSync(p)) writeFileSync(p, STAND_IN_CONTENT[kind]);
  return p;
}

/** `$(openssl rand -hex N)` as N random bytes in hex; any other expansion is a problem. */
function expand(value: string, problems: string[]): string {
  const out = value.replace(/\$\(openssl rand -hex (\d+)\)/g, (_, n: string) => randomBytes(Number(n)).toString('hex'));
  if (out.includes('$') || out.includes('`')) problems.push(`${JSON.stringify(value)}: a shell expansion this test cannot resolve`);
  return out;
}

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** The argv after `gammaray` when the words run the gammaray CLI, else undefined. */
function gammarayArgv(words: readonly string[]): string[] | undefined {
  if (words[0] === 'gammaray') return words.slice(1);
  if (words[0] === 'pnpm' && words[1] === 'gammaray') return words.slice(2);
  if (words[0] === 'node' && words[1] === 'packages/cli/bin/gammaray.js') return words.slice(2);
  return undefined;
}

/** Runs `gammaray ARGV` through the real CLI with `env` set; nothing starts (see the mocks above). */
async function runMain(argv: readonly string[], env: Readonly<Record<string, string>>): Promise<{ code: number; stderr: string }> {
  const saved = new Map<string, string | undefined>();
  for (const k of Object.keys(process.env)) if (k.startsWith('GAMMARAY_')) saved.set(k, process.env[k]);
  for (const k of saved.keys()) delete process.env[k];
  Object.assign(process.env, env);
  const stdout = new Sink();
  const stderr = new Sink();
  try {
    const code = await main(['node', 'gammaray', ...argv], { stdout, stderr });
    return { code, stderr: stderr.text.trim() };
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
    for (const [k, v] of saved) if (v !== undefined) process.env[k] = v;
  }
}

/** Why `gammaray ARGV` (with the line's environment) would not start as the README says; empty when it would. */
export async function gammarayProblems(rawArgv: readonly string[], rawEnv: Readonly<Record<string, string>>): Promise<string[]> {
  const problems: string[] = [];
  const env = Object.fromEntries(Object.entries(rawEnv).map(([k, v]) => [k, expand(v, problems)]));
  const argv = rawArgv.map((a) => expand(a, problems));
  for (let i = 0; i < argv.length; i++) {
    const eq = /^(--[a-z-]+)=(.*)$/.exec(argv[i]!); // ok: i < length
    if (eq && FILE_FLAGS[eq[1]!]) argv[i] = `${eq[1]}=${standIn(eq[2]!, FILE_FLAGS[eq[1]!]!)}`; // ok: matched
    else if (FILE_FLAGS[argv[i]!] && i + 1 < argv.length) argv[i + 1] = standIn(argv[i + 1]!, FILE_FLAGS[argv[i]!]!); // ok: checked
  }
  if (problems.length > 0) return problems;
  const sub = argv[0];
  if (argv.includes('--help') || argv.includes('-h')) {
    const r = await runMain(argv, env);
    return r.code === 0 ? [] : [`gammaray ${argv.join(' ')}: exit ${r.code}: ${r.stderr}`];
  }
  if (isServiceName(sub)) {
    const r = await checkInvocation({ service: sub, args: argv.slice(1), env });
    if (!r.cliChecked) r.problems.push(`the CLI has no subcommand ${sub}`);
    return r.problems;
  }
  calls.list = [];
  const r = await runMain(argv, env);
  if (r.code !== 0) return [`gammaray ${argv.join(' ')}: the CLI refuses it (exit ${r.code}): ${r.stderr || 'no message'}`];
  const seen = (command: string) => calls.list.find((c) => c.command === command);
  switch (sub) {
    case 'ls':
    case 'stat':
    case 'cat':
    case 'crawl':
      if (!seen(sub)) problems.push(`gammaray ${sub}: the CLI did not call its run function`);
      break;
    case 'up': {
      const o = seen('up')?.args[1] as import('../packages/cli/src/commands/up.ts').UpOptions | undefined;
      if (!o) {
        problems.push('gammaray up: the CLI did not call runUp');
        break;
      }
      // What runUp checks before starting anything, and the settings it hands to the capture and the view.
      const { planDisks, planVolumes, captureVolumeArgs } = await vi.importActual<typeof import('../packages/cli/src/commands/up.ts')>('../packages/cli/src/commands/up.ts');
      const capture = await import('../services/capture/src/index.js');
      const view = await import('../services/view/src/index.js');
      try {
        const disks = planVolumes(planDisks(o.image, o.disk), o.partition, o.volume);
        const nats = o.nats ?? 'nats://127.0.0.1:4222';
        const args = captureVolumeArgs(disks);
        const flagValues = (flag: string) => args.filter((_, i) => args[i - 1] === flag);
        capture.readConfig({ nats, listen: o.listen, disk: disks.map((d) => `${d.id}=${d.image}`), partition: flagValues('--partition'), volume: flagValues('--volume') }, {});
        view.readConfig({ nats, grpc: o.grpc, mount: o.mount }, {});
      } catch (err) {
        problems.push(`gammaray ${argv.join(' ')}: ${(err as Error).message}`);
      }
      break;
    }
    case 'follow':
      if (!seen('openFollow')) problems.push('gammaray follow: the CLI did not open a follow');
      break;
    case 'tree':
      if (!seen('ViewClient')) problems.push('gammaray tree: the CLI did not create a view client');
      break;
    default:
      problems.push(`gammaray ${sub}: a subcommand test/readme.test.ts does not know; add what it must check`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------
// Every other command: which test runs it

const fileText = (rel: string): string | undefined => (existsSync(join(ROOT, rel)) ? readFileSync(join(ROOT, rel), 'utf8') : undefined);

/** Problems unless `rel` exists and contains every one of `texts`. */
function covered(rel: string, texts: readonly string[], what: string): string[] {
  const t = fileText(rel);
  if (t === undefined) return [`${what}: ${rel}, the test that covers it, does not exist`];
  return texts.filter((x) => !t.includes(x)).map((x) => `${what}: ${rel} does not contain ${JSON.stringify(x)}`);
}

/** The flags of a command line (`--x`, `-x`, `--x=y` as `--x`). */
const flagsOf = (words: readonly string[]): string[] => [...new Set(words.filter((w) => /^--?[a-zA-Z]/.test(w)).map((w) => w.replace(/=.*$/, '')))];

/** The `SERVICE/METHOD` a gRPC URL or grpcurl line names, or undefined. */
function grpcMethod(words: readonly string[]): string | undefined {
  for (const w of words) {
    const m = /(?:^|\/)([a-zA-Z_][\w.]*\.[A-Z]\w*\/[A-Z]\w*)$/.exec(w);
    if (m) return m[1];
  }
  return undefined;
}

/** The value of `-d` / `--data`, parsed as JSON. */
function dataProblems(words: readonly string[], what: string): string[] {
  const i = words.findIndex((w) => w === '-d' || w === '--data');
  if (i < 0) return [];
  try {
    JSON.parse(words[i + 1] ?? '');
    return [];
  } catch {
    return [`${what}: the request body ${JSON.stringify(words[i + 1])} is not JSON`];
  }
}

/** One known command form: what it looks like and where it is exercised. */
interface Form {
  readonly form: string;
  /** The file that runs it, for the message and the README's reader. */
  readonly runBy: string;
  /** True when the command cannot run here (no Docker engine, no cluster) and its input is checked statically. */
  readonly staticOnly?: boolean;
  matches(words: readonly string[]): boolean;
  check(words: readonly string[], all: readonly Command[]): string[];
}

const GRPC_TEST = 'test/integration/view-grpc.test.ts';
const KUSTOMIZE_TEST = 'test/deploy/kustomize.test.ts';

/** Problems of a kustomize directory argument: an overlay the kustomize test builds. */
function overlayProblems(dir: string | undefined, what: string): string[] {
  const m = /^deploy\/overlays\/([a-z0-9-]+)\/?$/.exec(dir ?? '');
  if (!m || !existsSync(join(ROOT, dir!, 'kustomization.yaml'))) return [`${what}: ${JSON.stringify(dir)} is not an overlay under deploy/overlays/`]; // ok: m implies dir
  return [...covered(KUSTOMIZE_TEST, [`'${m[1]}'`], what), ...covered('test/deploy/k8s-check.ts', ["'kustomize'"], what)];
}

export const FORMS: readonly Form[] = [
  {
    form: 'bash scripts/demo.sh',
    runBy: 'test/integration/demo.test.ts',
    matches: (w) => w[0] === 'bash' && w[1] === 'scripts/demo.sh' && w.length === 2,
    check: (_w) => covered('test/integration/demo.test.ts', ['scripts/demo.sh'], 'bash scripts/demo.sh'),
  },
  {
    form: 'bash scripts/test.sh',
    runBy: '.ci/run (CI runs the whole suite through it)',
    matches: (w) => w[0] === 'bash' && w[1] === 'scripts/test.sh' && w.length === 2,
    check: () => covered('.ci/run', ['scripts/test.sh'], 'bash scripts/test.sh'),
  },
  {
    form: 'qemu-system-x86_64 ... -object tls-creds-x509,id=ID,endpoint=client,dir=DIR -drive file=nbd://HOST:PORT/DISK,file.tls-creds=ID,format=raw,if=virtio',
    runBy: 'test/integration/capture-tls.test.ts (a real guest over NBD with TLS, through test/guest/guest.ts)',
    matches: (w) => w[0] === 'qemu-system-x86_64' && w.includes('-object'),
    check: (w) => {
      const obj = w[w.indexOf('-object') + 1] ?? '';
      const drive = w[w.indexOf('-drive') + 1] ?? '';
      const m = /^tls-creds-x509,id=([a-z0-9]+),endpoint=client,dir=\S+$/.exec(obj);
      const problems: string[] = [];
      if (!m) problems.push(`qemu-system-x86_64: expected -object tls-creds-x509,id=ID,endpoint=client,dir=DIR, got ${JSON.stringify(obj)}`);
      else if (!new RegExp(`^file=nbd://[^/\\s]+:\\d+/[a-z0-9_-]{1,64},file\\.tls-creds=${m[1]},format=raw,if=virtio$`).test(drive)) {
        problems.push(`qemu-system-x86_64: expected -drive file=nbd://HOST:PORT/DISK,file.tls-creds=${m[1]},format=raw,if=virtio, got ${JSON.stringify(drive)}`);
      }
      return [...problems, ...covered('test/integration/capture-tls.test.ts', ["'-object'", 'tls-creds-x509,id=tls0,endpoint=client,dir=', "driveOpts: 'file.tls-creds=tls0'", 'runGuest'], 'qemu-system-x86_64 with TLS')];
    },
  },
  {
    form: 'qemu-storage-daemon --blockdev driver=file,... --blockdev driver=qcow2,... --export type=fuse,...,writable=on',
    runBy: 'test/integration/capture-formats.test.ts',
    matches: (w) => w[0] === 'qemu-storage-daemon',
    check: (w) => {
      const texts = ["'qemu-storage-daemon'", ...flagsOf(w.slice(1)).map((f) => `'${f}'`)];
      for (const v of w.slice(1).filter((x) => !x.startsWith('-'))) {
        for (const part of v.split(',')) if (!/=\//.test(part)) texts.push(part.replace(/=.*$/, '=')); // option names, not the README's paths
      }
      return covered('test/integration/capture-formats.test.ts', [...new Set(texts)], 'qemu-storage-daemon');
    },
  },
  {
    form: 'touch FILE',
    runBy: 'test/integration/capture-formats.test.ts (the FUSE export\'s mount point)',
    matches: (w) => w[0] === 'touch' && w.length === 2,
    check: () => covered('test/integration/capture-formats.test.ts', ["exec('touch', [view])"], 'touch'),
  },
  {
    form: 'qemu-system-x86_64 ... -drive file=nbd://HOST:PORT/DISK,format=raw,if=virtio',
    runBy: 'test/guest/guest.ts (run-guest, used by the real-guest tests)',
    matches: (w) => w[0] === 'qemu-system-x86_64',
    check: (w) => {
      const problems: string[] = [];
      const i = w.indexOf('-drive');
      if (i < 0 || !/^file=nbd:\/\/[^/\s]+:\d+\/[a-z0-9_-]{1,64},format=raw,if=virtio$/.test(w[i + 1] ?? '')) {
        problems.push(`qemu-system-x86_64: expected -drive file=nbd://HOST:PORT/DISK,format=raw,if=virtio, got ${JSON.stringify(w[i + 1])}`);
      }
      const rest = w.slice(1).filter((x) => x !== '...');
      const flags = rest.filter((x) => x.startsWith('-'));
      return [...problems, ...covered('test/guest/guest.ts', ["'qemu-system-x86_64'", 'format=raw', 'if=virtio', 'file=', ...flags.map((f) => `'${f}'`)], 'qemu-system-x86_64')];
    },
  },
  {
    form: 'buf curl ...',
    runBy: GRPC_TEST,
    matches: (w) => w[0] === 'buf' && w[1] === 'curl',
    check: (w) => {
      const what = `buf curl ${grpcMethod(w) ?? ''}`.trim();
      const method = grpcMethod(w);
      const texts = ["'curl'", ...flagsOf(w.slice(2)).map((f) => `'${f}'`)];
      if (method) {
        const [service, name] = method.split('/') as [string, string];
        texts.push(service.includes('Health') ? method : service, ...(service.includes('Health') ? [] : [`/${name}`]));
      } else if (!w.includes('--list-methods')) return [`${what}: names no method and is not --list-methods`];
      return [...dataProblems(w, what), ...covered(GRPC_TEST, texts, what)];
    },
  },
  {
    form: 'grpcurl ... (equivalent of a buf curl line)',
    runBy: `${GRPC_TEST}, through the README's buf curl equivalent`,
    matches: (w) => w[0] === 'grpcurl',
    check: (w, all) => {
      const bufs = all.filter((c) => c.words[0] === 'buf' && c.words[1] === 'curl');
      const method = grpcMethod(w);
      const what = `grpcurl ${method ?? w.slice(-1)[0] ?? ''}`;
      if (w[w.length - 1] === 'list') {
        return bufs.some((c) => c.words.includes('--list-methods')) ? [] : [`${what}: no buf curl --list-methods line in the README`];
      }
      if (!method) return [`${what}: names no SERVICE/METHOD`];
      const twin = bufs.find((c) => grpcMethod(c.words) === method);
      return [...dataProblems(w, what), ...(twin ? [] : [`${what}: no buf curl line for ${method} in the README (grpcurl is not installed here; buf curl is what the tests run)`])];
    },
  },
  {
    form: 'kubectl kustomize deploy/overlays/NAME',
    runBy: KUSTOMIZE_TEST,
    matches: (w) => w[0] === 'kubectl' && w[1] === 'kustomize',
    check: (w) => overlayProblems(w[2], 'kubectl kustomize'),
  },
  {
    form: 'kubectl apply -k deploy/overlays/NAME',
    runBy: `${KUSTOMIZE_TEST} (builds what apply -k applies; no cluster here)`,
    staticOnly: true,
    matches: (w) => w[0] === 'kubectl' && w[1] === 'apply' && w[2] === '-k',
    check: (w) => overlayProblems(w[3], 'kubectl apply -k'),
  },
  {
    form: 'docker compose ...',
    runBy: 'test/deploy/compose.test.ts (static: no Docker engine here)',
    staticOnly: true,
    matches: (w) => w[0] === 'docker' && w[1] === 'compose',
    check: (w) => {
      const problems = covered('test/deploy/compose.test.ts', ['docker-compose.yml'], 'docker compose');
      const compose = fileText('docker-compose.yml') ?? '';
      const sub = w[2];
      if (sub === 'exec' && !new RegExp(`^  ${w[3]}:$`, 'm').test(compose)) problems.push(`docker compose exec: docker-compose.yml has no service ${w[3]}`);
      if (!['up', 'down', 'exec', 'logs', 'ps', 'build'].includes(sub ?? '')) problems.push(`docker compose ${sub}: a subcommand this test does not know`);
      return problems;
    },
  },
  {
    form: 'mkfs.ext4 ... IMAGE SIZE',
    runBy: 'scripts/demo.sh (which test/integration/demo.test.ts runs) and the integration tests',
    matches: (w) => w[0] === 'mkfs.ext4',
    check: (w) => [...covered('scripts/demo.sh', ['mkfs.ext4 ', ...flagsOf(w.slice(1)).map((f) => ` ${f} `)], 'mkfs.ext4'), ...covered('test/integration/demo.test.ts', ['scripts/demo.sh'], 'mkfs.ext4')],
  },
  {
    form: 'nats-server ...',
    runBy: 'test/support/nats-server.ts (every integration test starts nats-server with these flags)',
    matches: (w) => w[0] === 'nats-server',
    check: (w) => covered('test/support/nats-server.ts', flagsOf(w.slice(1)).map((f) => `'${f}'`), 'nats-server'),
  },
  {
    form: 'curl http://HOST:PORT/metrics|healthz|readyz',
    runBy: 'test/integration/ops.test.ts',
    matches: (w) => w[0] === 'curl',
    check: (w) => {
      const url = w.find((x) => /^https?:\/\//.test(x));
      const path = url ? new URL(url).pathname : '';
      if (!['/metrics', '/healthz', '/readyz'].includes(path)) return [`curl ${url}: not an operations endpoint this test knows`];
      return covered('test/integration/ops.test.ts', [`'${path}'`], `curl ${path}`);
    },
  },
  {
    form: 'tail -f MOUNT/DISK/PATH',
    runBy: 'test/integration/view-fuse.test.ts',
    matches: (w) => w[0] === 'tail',
    check: (w) => (w.includes('-f') || w.includes('-F') ? covered('test/integration/view-fuse.test.ts', ["'tail'", "'-f'"], 'tail -f') : [`tail: only tail -f is covered`]),
  },
  {
    form: 'npx vitest run PATH',
    runBy: 'itself (it runs the tests under PATH)',
    matches: (w) => w[0] === 'npx' && w[1] === 'vitest' && w[2] === 'run',
    check: (w) => {
      const dir = w[3] ?? '';
      return existsSync(join(ROOT, dir)) && readdirSync(join(ROOT, dir)).some((f) => f.endsWith('.test.ts')) ? [] : [`npx vitest run ${dir}: no tests there`];
    },
  },
];

/** Why the README command is not known to be exercised by a test; empty when it is. */
export async function commandProblems(c: Command, all: readonly Command[]): Promise<string[]> {
  const argv = gammarayArgv(c.words);
  if (argv) {
    const via = c.words[0] === 'gammaray' ? [] : c.words[0] === 'pnpm' ? covered('package.json', ['"@gammaray/cli"'], 'pnpm gammaray') : existsSync(join(ROOT, 'packages/cli/bin/gammaray.js')) ? [] : ['packages/cli/bin/gammaray.js does not exist'];
    return [...via, ...(await gammarayProblems(argv, c.env))];
  }
  const form = FORMS.find((f) => f.matches(c.words));
  if (!form) return [`README.md:${c.line}: \`${c.text}\` is a command no test is known to run: add its form and the test that runs it to FORMS in test/readme.test.ts`];
  return form.check(c.words, all);
}

// ---------------------------------------------------------------------------------------------------------------

const COMMANDS = readmeCommands(README);

describe('README.md', () => {
  it('labels every fenced code block with its language', () => {
    expect(fencedBlocks(README).filter((b) => b.lang === '').map((b) => `README.md:${b.line - 1}`)).toEqual([]);
  });

  it('shows the two commands, gammaray up, QEMU, grpcurl and buf curl, compose and kustomize in its shell blocks', () => {
    const has = (pred: (w: readonly string[]) => boolean) => COMMANDS.some((c) => pred(c.words));
    expect(has((w) => w.join(' ') === 'bash scripts/demo.sh')).toBe(true);
    expect(has((w) => w.join(' ') === 'bash scripts/test.sh')).toBe(true);
    expect(has((w) => gammarayArgv(w)?.[0] === 'up')).toBe(true);
    for (const tool of ['qemu-system-x86_64', 'grpcurl', 'buf', 'docker', 'kubectl']) expect(has((w) => w[0] === tool), tool).toBe(true);
    expect(COMMANDS.length).toBeGreaterThan(30);
  });

  for (const c of COMMANDS) {
    it(`README.md:${c.line}: ${c.text.length > 110 ? `${c.text.slice(0, 107)}...` : c.text}`, async () => {
      expect(await commandProblems(c, COMMANDS)).toEqual([]);
    });
  }
});

describe('the checks of this file', () => {
  const line = (text: string): Command => {
    const [c] = readmeCommands(`\`\`\`sh\n${text}\n\`\`\``);
    if (!c) throw new Error(`test bug: no command in ${text}`);
    return c;
  };
  const problems = (text: string) => commandProblems(line(text), COMMANDS);

  it('reads shell lines as a shell would: quotes, continuations, comments, operators, redirections, assignments', () => {
    const [c, d] = readmeCommands(
      "```bash\nGAMMARAY_TOKEN=$(openssl rand -hex 32) gammaray follow vm1 '/etc/**' \\\n  --kinds create,delete # a comment\nnats-server -js & echo \"a b\" 2>&1 > /dev/null | grep x\n```",
    ).slice(0, 2);
    expect(c).toMatchObject({ line: 2, env: { GAMMARAY_TOKEN: '$(openssl rand -hex 32)' }, words: ['gammaray', 'follow', 'vm1', '/etc/**', '--kinds', 'create,delete'] });
    expect(d?.words).toEqual(['nats-server', '-js']);
    expect(readmeCommands('```sh\necho "a b" 2>&1 > /dev/null | grep x\n```').map((x) => x.words)).toEqual([['echo', 'a b'], ['grep', 'x']]);
  });

  it('catches a mistyped flag, whichever subcommand it is given to', async () => {
    expect(await problems('gammaray view --nats nats://127.0.0.1:4222 --grcp 127.0.0.1:50051')).toEqual([expect.stringMatching(/unknown option '--grcp'/)]);
    expect(await problems('gammaray up --image vm1.img --mnt /mnt/gammaray')).toEqual([expect.stringMatching(/unknown option '--mnt'/)]);
    expect(await problems('gammaray tree vm1 --jsno')).toEqual([expect.stringMatching(/unknown option '--jsno'/)]);
    expect(await problems('gammaray ls disk.img /etc --long --recursiv')).toEqual([expect.stringMatching(/unknown option '--recursiv'/)]);
  });

  it('catches an unknown subcommand and bad values', async () => {
    expect(await problems('gammaray folow vm1')).toEqual([expect.stringMatching(/unknown command 'folow'/)]);
    expect(await problems('gammaray inferencer --lease-ttl 2 --heartbeat 1')).toEqual([expect.stringMatching(/--heartbeat .* at most a third of --lease-ttl/)]);
    expect(await problems('gammaray capture --nats nats://127.0.0.1:4222 --disk vm1')).toEqual([expect.stringMatching(/--disk must be ID=IMAGE/)]);
    expect(await problems('gammaray inferencer --nats-user inferencer')).toEqual([expect.stringMatching(/needs its password in GAMMARAY_NATS_PASSWORD/)]);
    expect(await problems('gammaray view --tls-cert srv.crt')).toEqual([expect.stringMatching(/--tls-cert .* and --tls-key .* go together/)]);
    expect(await problems('gammaray follow vm1 --kinds create,creat')).toEqual([expect.stringMatching(/"creat" is not an event kind/)]);
    expect(await problems("gammaray follow vm1 '/etc/[abc'")).toEqual([expect.stringMatching(/exit 2/)]);
    expect(await problems('gammaray up --image vm1.img --disk VM1')).toEqual([expect.stringMatching(/disk id "VM1" is not valid/)]);
    expect(await problems('gammaray up --image vm1.img --listen 127.0.0.1')).toEqual([expect.stringMatching(/--listen .* must be HOST:PORT/)]);
    expect(await problems('gammaray ls disk.img --partition one')).toEqual([expect.stringMatching(/expected a partition number/)]);
    expect(await problems('GAMMARAY_TOKEN=short gammaray view')).toEqual([expect.stringMatching(/at least 16 characters/)]);
    expect(await problems('GAMMARAY_GRCP=127.0.0.1:50051 gammaray view')).toEqual([expect.stringMatching(/GAMMARAY_GRCP is not a setting/)]);
  });

  it('refuses a command of no known form, and grpcurl or buf curl lines no test covers', async () => {
    expect(await problems('rsync -a vm1.img backup/')).toEqual([expect.stringMatching(/no test is known to run/)]);
    expect(await problems('grpcurl -plaintext -d \'{"disk":"vm1","path":"/x"}\' 127.0.0.1:50051 gammaray.v1.ViewService/ReadLink')).toEqual([
      expect.stringMatching(/no buf curl line for gammaray.v1.ViewService\/ReadLink/),
    ]);
    expect(await problems('buf curl --protocol grpc --http2-prior-knowledge --insecure -d \'{}\' http://127.0.0.1:50051/gammaray.v1.ViewService/ListDisks')).toEqual([
      expect.stringMatching(/does not contain "'--insecure'"/),
    ]);
    expect(await problems('buf curl --protocol grpc -d \'{"disk":}\' http://127.0.0.1:50051/gammaray.v1.ViewService/Stat')).toEqual([expect.stringMatching(/not JSON/)]);
    expect(await problems('qemu-system-x86_64 -drive file=/var/lib/vm1.img,format=raw,if=virtio')).toEqual([expect.stringMatching(/expected -drive file=nbd/)]);
    expect(await problems('kubectl kustomize deploy/overlays/staging')).toEqual([expect.stringMatching(/not an overlay/)]);
    expect(await problems('docker compose exec viewer ls /mnt/gammaray/vm1')).toEqual([expect.stringMatching(/no service viewer/)]);
  });
});

describe('the TypeScript consumer example', () => {
  let nats: NatsServer | undefined;
  let nc: NatsConnection | undefined;
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('prints the events of disk vm1, and only those, from a real nats-server', async () => {
    const blocks = fencedBlocks(README).filter((b) => (b.lang === 'ts' || b.lang === 'typescript') && b.lines.join('\n').includes('GAMMARAY_EVENTS'));
    expect(blocks).toHaveLength(1);
    const { transform } = await import('esbuild');
    const code = (await transform(blocks[0]!.lines.join('\n'), { loader: 'ts', format: 'esm', target: 'node20' })).code; // ok: length 1

    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    await (await jetstreamManager(nc)).streams.add({ name: STREAM_EVENTS, subjects: [EVENTS_WILDCARD] });
    const js = jetstream(nc);
    const stat = { mode: 0o644, uid: 0, gid: 0, size: 5, nlink: 1, flags: 0, atime: { sec: 1_700_000_000, nsec: 0 }, mtime: { sec: 1_700_000_000, nsec: 0 }, ctime: { sec: 1_700_000_000, nsec: 0 } };
    const base = { v: 1, ino: 12, type: 'file', idx: 0, ts: new Date('2026-01-02T03:04:05.678Z'), stat } as const;
    const events: FsEvent[] = [
      { ...base, disk: 'vm1', kind: 'create', path: '/root/notes.txt', seq: 7 },
      { ...base, disk: 'vm2', kind: 'create', path: '/other-disk.txt', seq: 3 },
      { ...base, disk: 'vm1', kind: 'write', path: '/root/notes.txt', seq: 9, offset: 0, length: 5, data: new TextEncoder().encode('hello') },
      { ...base, disk: 'vm1', kind: 'rename', path: '/root/renamed.txt', from: '/root/notes.txt', seq: 11, idx: 1 },
    ];
    for (const e of events) await js.publish(eventsSubject(e.disk, e.kind), encodeEvent(e));

    // node -e resolves the example's imports from the repository root (its node_modules), as a user's project would.
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: ROOT, env: { ...process.env, GAMMARAY_NATS: nats.url }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      const deadline = Date.now() + 30_000;
      while (out.trim().split('\n').length < 3 && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 500)); // nothing else arrives
    } finally {
      child.kill('SIGTERM');
    }
    expect(err).toBe('');
    expect(out.trim().split('\n')).toEqual([
      '1 2026-01-02T03:04:05.678Z create /root/notes.txt ',
      '3 2026-01-02T03:04:05.678Z write /root/notes.txt 5 bytes at 0',
      '4 2026-01-02T03:04:05.678Z rename /root/renamed.txt from /root/notes.txt',
    ]);
  }, 60_000);
});
