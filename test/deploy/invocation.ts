/**
 * Checks one `gammaray <service> ARGS...` invocation with its environment the way the real binary would take it:
 * the argv goes through the CLI's own parser (`main` of @gammaray/cli, commander), and the flags it hands to the
 * service go, with the environment, through the service's own `readConfig`. The service itself never starts: the
 * test files mock each service module's `run*` functions with {@link recordRun} (see MOCKED_SERVICES).
 *
 * For a service whose module does not exist yet (the view, while it is being written) the check falls back to
 * the flags of its line in CLI.md (VIEW_CLI_LINE, kept equal to ../shared/CLI.md when that file is present).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { main } from '@gammaray/cli';

/** Repository root. */
export const ROOT = resolve(import.meta.dirname, '../..');

/** The service subcommands of the `gammaray` binary and the directory of each under services/. */
export const SERVICES = ['capture', 'inferencer', 'view'] as const;
export type ServiceName = (typeof SERVICES)[number];

export function isServiceName(s: unknown): s is ServiceName {
  return typeof s === 'string' && (SERVICES as readonly string[]).includes(s);
}

/**
 * Whether the service reads `--nats` as a comma-separated list of seed URLs (every service does since the NATS
 * credential flags came: packages/ops natsConnectOptions) or as one URL.
 */
const NATS_URL_LIST: Record<ServiceName, boolean> = { capture: true, inferencer: true, view: true };

/** The view's line of CLI.md, used while services/view has no config module. */
export const VIEW_CLI_LINE = 'gammaray view --nats URL [--grpc HOST:PORT] [--mount DIR] [--metrics HOST:PORT]';

/** One invocation to check. */
export interface Invocation {
  readonly service: ServiceName;
  /** Arguments after `gammaray <service>`. */
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

/** What the service would do with an invocation, or why it would refuse it. */
export interface InvocationResult {
  /** Empty when the service would start. */
  readonly problems: string[];
  /** Addresses it listens on, by setting name (`listen`, `metrics`, `grpc`, ...). */
  readonly endpoints: ReadonlyMap<string, { host: string; port: number }>;
  /** NATS server URLs it connects to. */
  readonly natsUrls: readonly string[];
  /** JetStream replicas it asks for, when it has that setting. */
  readonly replicas: number | undefined;
  /** Disks it serves (capture). */
  readonly disks: readonly { id: string; image: string }[];
  /** How the result was obtained: the service's own config parser, or CLI.md's flag list. */
  readonly checkedBy: 'config' | 'cli-md';
  /**
   * Whether the argv went through the CLI's parser. False while the CLI has no such subcommand yet (a service
   * being written): the flags are then read as `--name value` pairs (`--disk` repeatable) for its config parser.
   */
  readonly cliChecked: boolean;
}

let recorded: { service: string; flags: Record<string, unknown> } | undefined;

/** Stand-in for a service's `run*` function: remembers the flags the CLI parsed and reports success. */
export function recordRun(service: string, flags: unknown): Promise<number> {
  recorded = { service, flags: { ...(flags as Record<string, unknown>) } };
  return Promise.resolve(0);
}

/** The flags the last mocked run saw (a function: the compiler would take `recorded` for still undefined). */
function lastRecorded(): typeof recorded {
  return recorded;
}

/** Replaces every exported `run*` function of a service module with {@link recordRun}. */
export function mockServiceModule(service: ServiceName, real: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...real };
  for (const [k, v] of Object.entries(real)) {
    if (typeof v === 'function' && /^run[A-Z]/.test(k)) out[k] = (flags: unknown) => recordRun(service, flags);
  }
  return out;
}

interface ServiceModule {
  readConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv): unknown;
  ConfigError: new (...a: never[]) => Error;
}

/** The service's module, when it exists and has a config parser. */
async function serviceModule(service: ServiceName): Promise<ServiceModule | undefined> {
  const entry = join(ROOT, 'services', service, 'src', 'index.ts');
  if (!existsSync(join(ROOT, 'services', service, 'src', 'config.ts')) || !existsSync(entry)) return undefined;
  const mod = (await import(/* @vite-ignore */ entry)) as Partial<ServiceModule>;
  return typeof mod.readConfig === 'function' && typeof mod.ConfigError === 'function' ? (mod as ServiceModule) : undefined;
}

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** Runs `gammaray <argv>` through the real CLI; the service's run function is mocked, so it returns at once. */
async function runCli(argv: readonly string[]): Promise<{ code: number; stderr: string; flags: Record<string, unknown> | undefined }> {
  recorded = undefined;
  const stdout = new Sink();
  const stderr = new Sink();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<number>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gammaray ${argv.join(' ')} did not return: the real service ran instead of the test's mock`)), 15_000);
  });
  try {
    const code = await Promise.race([main(['node', 'gammaray', ...argv], { stdout, stderr }), timeout]);
    return { code, stderr: stderr.text.trim(), flags: lastRecorded()?.flags };
  } finally {
    clearTimeout(timer);
  }
}

/** A read-only environment that records which variables were read. */
function trackedEnv(env: Readonly<Record<string, string>>): { env: NodeJS.ProcessEnv; read: Set<string> } {
  const read = new Set<string>();
  const proxy = new Proxy({ ...env } as NodeJS.ProcessEnv, {
    get(target, key) {
      if (typeof key === 'string') read.add(key);
      return Reflect.get(target, key) as unknown;
    },
  });
  return { env: proxy, read };
}

/** Every `{host, port}` value of a config object, by key. */
function endpointsOf(cfg: unknown): Map<string, { host: string; port: number }> {
  const out = new Map<string, { host: string; port: number }>();
  if (cfg && typeof cfg === 'object') {
    for (const [k, v] of Object.entries(cfg)) {
      if (v && typeof v === 'object' && typeof (v as { port?: unknown }).port === 'number' && typeof (v as { host?: unknown }).host === 'string') {
        out.set(k, v as { host: string; port: number });
      }
    }
  }
  return out;
}

function natsUrlsOf(service: ServiceName, nats: string, problems: string[]): string[] {
  if (NATS_URL_LIST[service]) return nats.split(',');
  if (nats.includes(',')) problems.push(`gammaray ${service} takes one NATS URL (it does not split --nats on commas), got ${JSON.stringify(nats)}`);
  return [nats];
}

/** Checks an invocation through the CLI and the service's config parser (or CLI.md for a service not written yet). */
export async function checkInvocation(inv: Invocation): Promise<InvocationResult> {
  const mod = await serviceModule(inv.service);
  return mod ? checkWithConfig(inv, mod) : checkWithCliMd(inv);
}

async function checkWithConfig(inv: Invocation, mod: ServiceModule): Promise<InvocationResult> {
  const problems: string[] = [];
  const cli = await runCli([inv.service, ...inv.args]);
  const cliChecked = !cli.stderr.includes(`unknown command '${inv.service}'`);
  const empty: InvocationResult = { problems, endpoints: new Map(), natsUrls: [], replicas: undefined, disks: [], checkedBy: 'config', cliChecked };
  let parsed: Record<string, unknown>;
  if (!cliChecked) parsed = plainFlags(inv.args, problems);
  else if (cli.code !== 0 || !cli.flags) {
    problems.push(`gammaray ${inv.service} ${inv.args.join(' ')}: the CLI refuses it (exit ${cli.code}): ${cli.stderr || 'no message'}`);
    return empty;
  } else parsed = cli.flags;
  // The CLI passes the flags it parsed; undefined values are flags that were not given.
  const flags = Object.fromEntries(Object.entries(parsed).filter(([, v]) => v !== undefined));
  const tracked = trackedEnv(inv.env);
  const readFlags = new Set<string>();
  const flagsProxy = new Proxy(flags, {
    get(target, key) {
      if (typeof key === 'string') readFlags.add(key);
      return Reflect.get(target, key) as unknown;
    },
  });
  let cfg: Record<string, unknown>;
  try {
    cfg = mod.readConfig(flagsProxy, tracked.env) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof mod.ConfigError) {
      problems.push(`gammaray ${inv.service}: ${err.message}`);
      return empty;
    }
    throw err;
  }
  for (const key of Object.keys(flags)) {
    if (!readFlags.has(key)) problems.push(`--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is not a setting of gammaray ${inv.service}`);
  }
  for (const name of Object.keys(inv.env)) {
    if (name.startsWith('GAMMARAY_') && !tracked.read.has(name)) {
      problems.push(`${name} is not a setting of gammaray ${inv.service} (or a flag given in the command overrides it)`);
    }
  }
  const natsUrls = typeof cfg.nats === 'string' ? natsUrlsOf(inv.service, cfg.nats, problems) : [];
  const disks = Array.isArray(cfg.disks) ? (cfg.disks as unknown[]).filter((d): d is { id: string; image: string } => typeof (d as { image?: unknown })?.image === 'string') : [];
  return {
    problems,
    endpoints: endpointsOf(cfg),
    natsUrls,
    replicas: typeof cfg.replicas === 'number' ? cfg.replicas : undefined,
    disks,
    checkedBy: 'config',
    cliChecked,
  };
}

/** `--name value` / `--name=value` / `--switch` as camelCase flags, `--disk` collected into a list. */
function plainFlags(args: readonly string[], problems: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const rest = [...args];
  while (rest.length > 0) {
    const a = rest.shift()!; // ok: length checked
    const m = /^--([a-z][a-z-]*)(?:=(.*))?$/.exec(a);
    if (!m) {
      problems.push(`unexpected argument ${JSON.stringify(a)}`);
      continue;
    }
    const key = m[1]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()); // ok: group 1 always matches
    const value = m[2] ?? (rest[0] !== undefined && !rest[0].startsWith('--') ? rest.shift() : true);
    if (key === 'disk') out.disk = [...((out.disk as string[] | undefined) ?? []), value];
    else out[key] = value;
  }
  return out;
}

/** Flags of a CLI.md command line: `--name VALUE` or `[--name VALUE]`. */
export function cliMdFlags(line: string): Map<string, { required: boolean; value: string }> {
  const out = new Map<string, { required: boolean; value: string }>();
  for (const m of line.matchAll(/(\[)?--([a-z][a-z-]*) ([A-Z][A-Z:_|-]*)/g)) {
    out.set(m[2]!, { required: m[1] === undefined, value: m[3]! }); // ok: groups 2 and 3 always match
  }
  return out;
}

/** The view's flags as CLI.md gives them; throws when ../shared/CLI.md exists and says something else. */
export function viewCliMdFlags(): Map<string, { required: boolean; value: string }> {
  const cliMd = join(ROOT, '..', 'shared', 'CLI.md');
  if (existsSync(cliMd) && !readFileSync(cliMd, 'utf8').includes(VIEW_CLI_LINE)) {
    throw new Error(`CLI.md no longer has the line \`${VIEW_CLI_LINE}\`: update VIEW_CLI_LINE in test/deploy/invocation.ts`);
  }
  return cliMdFlags(VIEW_CLI_LINE);
}

const HOST_PORT = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/;
const NATS_URL = /^(nats|tls|ws|wss):\/\/[^\s,]+$/;

/** The CLI.md-only check (used for a service whose config module does not exist yet; exported for its tests). */
export function checkWithCliMd(inv: Invocation): InvocationResult {
  const problems: string[] = [];
  const spec = viewCliMdFlags();
  const given = new Map<string, string>();
  const args = [...inv.args];
  while (args.length > 0) {
    const a = args.shift()!; // ok: length checked
    const m = /^--([a-z][a-z-]*)(?:=(.*))?$/.exec(a);
    if (!m || !spec.has(m[1]!)) {
      problems.push(`gammaray ${inv.service}: ${JSON.stringify(a)} is not a flag of \`${VIEW_CLI_LINE}\` (CLI.md)`);
      continue;
    }
    const value = m[2] ?? args.shift();
    if (value === undefined) problems.push(`gammaray ${inv.service}: --${m[1]} needs a value`);
    else given.set(m[1]!, value);
  }
  for (const [name, value] of Object.entries(inv.env)) {
    if (!name.startsWith('GAMMARAY_')) continue;
    const flag = name.slice('GAMMARAY_'.length).toLowerCase().replace(/_/g, '-');
    if (!spec.has(flag)) problems.push(`${name} is not a setting of gammaray ${inv.service} (CLI.md: ${VIEW_CLI_LINE})`);
    else if (given.has(flag)) problems.push(`${name} is overridden by --${flag} in the command`);
    else given.set(flag, value);
  }
  for (const [flag, s] of spec) {
    if (s.required && !given.has(flag)) problems.push(`gammaray ${inv.service}: --${flag} (GAMMARAY_${flag.toUpperCase()}) is required`);
  }
  const endpoints = new Map<string, { host: string; port: number }>();
  for (const [flag, value] of given) {
    const kind = spec.get(flag)?.value;
    if (kind === 'HOST:PORT') {
      const m = HOST_PORT.exec(value);
      const port = m ? Number(m[3]) : NaN;
      if (!m || !(port >= 1 && port <= 65535)) problems.push(`gammaray ${inv.service}: --${flag} must be HOST:PORT, got ${JSON.stringify(value)}`);
      else endpoints.set(flag, { host: (m[1] ?? m[2])!, port }); // ok: one alternative matched
    } else if (kind === 'URL' && (NATS_URL_LIST[inv.service] ? value.split(',') : [value]).some((u) => !NATS_URL.test(u))) {
      problems.push(`gammaray ${inv.service}: --${flag} must be a NATS URL such as nats://127.0.0.1:4222, got ${JSON.stringify(value)}`);
    } else if (kind === 'DIR' && !value.startsWith('/')) {
      problems.push(`gammaray ${inv.service}: --${flag} must be an absolute directory, got ${JSON.stringify(value)}`);
    }
  }
  const nats = given.get('nats');
  const natsUrls = nats === undefined ? [] : natsUrlsOf(inv.service, nats, problems);
  return { problems, endpoints, natsUrls, replicas: undefined, disks: [], checkedBy: 'cli-md', cliChecked: false };
}
