/**
 * Static checks of docker-compose.yml, at the level where a wrong service name, port, volume or setting shows:
 * what `docker compose config` would accept is not enough, so the gammaray services' commands and environments
 * go through the real CLI and config parsers (./invocation.ts), and NATS URLs, routes, ports and volumes are
 * cross-checked between services. Each check returns a list of problems (empty = fine), so tests can feed it
 * mutated documents and see it complain.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { isServiceName, type Invocation, type InvocationResult, type ServiceName } from './invocation.js';
import { parseDockerfile } from './dockerfile-check.js';

// The shapes below are what the checks read; compose allows more, which the checks reject or ignore on purpose.
/** A compose document after interpolation. */
export interface ComposeDoc {
  services?: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  [k: string]: unknown;
}

export interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string; target?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  volumes?: (string | { type?: string; source?: string; target?: string })[];
  ports?: (string | number | { target?: number; published?: number | string; protocol?: string })[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: string | string[]; disable?: boolean };
  restart?: string;
  [k: string]: unknown;
}

/** Reads and parses a compose file, YAML merge keys (`<<: *anchor`) included, then interpolates it. */
export function loadCompose(file: string, env: Readonly<Record<string, string>> = {}): { doc: ComposeDoc; problems: string[] } {
  const raw = parse(readFileSync(file, 'utf8'), { merge: true }) as unknown;
  const problems: string[] = [];
  const doc = interpolate(raw, env, problems, '') as ComposeDoc;
  return { doc, problems };
}

/**
 * Compose variable interpolation: `$$` is a literal `$`; `${VAR}`, `${VAR:-default}`, `${VAR-default}`; a `${VAR}`
 * with neither a value nor a default is a problem (compose would substitute an empty string).
 */
export function interpolate(value: unknown, env: Readonly<Record<string, string>>, problems: string[], where: string): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced?: string, op?: string, def?: string, bare?: string) => {
      if (all === '$$') return '$';
      const name = (braced ?? bare)!; // ok: one of the two matched
      const v = env[name];
      if (op === ':-') return v === undefined || v === '' ? (def ?? '') : v;
      if (op === '-') return v === undefined ? (def ?? '') : v;
      if (v === undefined) problems.push(`${where}: $${name} has no value and no default (compose would put an empty string)`);
      return v ?? '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, problems, `${where}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env, problems, where ? `${where}.${k}` : k)]));
  }
  return value;
}

/** Context for {@link checkCompose}. */
export interface ComposeCheckContext {
  /** Directory of the compose file (build contexts are relative to it). */
  readonly dir: string;
  /** Checks a gammaray invocation (./invocation.ts checkInvocation). */
  readonly check: (inv: Invocation) => Promise<InvocationResult>;
}

const CONDITIONS = new Set(['service_started', 'service_healthy', 'service_completed_successfully']);

function dependsOn(svc: ComposeService): Map<string, string> {
  const d = svc.depends_on;
  if (Array.isArray(d)) return new Map(d.map((n) => [n, 'service_started']));
  return new Map(Object.entries(d ?? {}).map(([n, v]) => [n, v?.condition ?? 'service_started']));
}

function argv(v: string | string[] | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.map(String) : v.trim().split(/\s+/);
}

function environment(svc: ComposeService): Record<string, string> {
  const e = svc.environment;
  if (Array.isArray(e)) {
    return Object.fromEntries(e.map((s) => (s.includes('=') ? [s.slice(0, s.indexOf('=')), s.slice(s.indexOf('=') + 1)] : [s, ''])));
  }
  return Object.fromEntries(Object.entries(e ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

interface Mount {
  readonly source: string | undefined;
  readonly target: string;
  readonly named: boolean;
}

function mounts(svc: ComposeService): Mount[] {
  return (svc.volumes ?? []).map((v) => {
    if (typeof v === 'string') {
      const parts = v.split(':');
      if (parts.length === 1) return { source: undefined, target: parts[0]!, named: false }; // ok: split gives one part at least
      const source = parts[0]!; // ok: as above
      return { source, target: parts[1] ?? '', named: !/^[./~]/.test(source) };
    }
    return { source: v.source, target: v.target ?? '', named: (v.type ?? 'volume') === 'volume' && v.source !== undefined };
  });
}

interface PortMapping {
  readonly published: number | undefined;
  readonly target: number;
  readonly protocol: string;
  readonly text: string;
}

function ports(svc: ComposeService, problems: string[], name: string): PortMapping[] {
  const out: PortMapping[] = [];
  for (const p of svc.ports ?? []) {
    if (typeof p === 'object') {
      const published = p.published === undefined ? undefined : Number(p.published);
      out.push({ published, target: Number(p.target), protocol: p.protocol ?? 'tcp', text: JSON.stringify(p) });
      continue;
    }
    const text = String(p);
    const m = /^(?:(?:[\d.]+|\[[^\]]+\]):)?(?:(\d+):)?(\d+)(?:\/(tcp|udp))?$/.exec(text);
    if (!m) {
      problems.push(`${name}: port ${JSON.stringify(text)} is not [IP:]HOST:CONTAINER[/PROTOCOL] (ranges are not used here)`);
      continue;
    }
    out.push({ published: m[1] === undefined ? undefined : Number(m[1]), target: Number(m[2]), protocol: m[3] ?? 'tcp', text });
  }
  return out;
}

/** The service a gammaray image or build belongs to: services/<name>/Dockerfile or an image gammaray/<name>[:tag]. */
function gammarayServiceOf(svc: ComposeService): ServiceName | undefined {
  const build = typeof svc.build === 'string' ? { context: svc.build } : svc.build;
  const fromBuild = build?.dockerfile ? /^(?:\.\/)?services\/([a-z]+)\/Dockerfile$/.exec(build.dockerfile)?.[1] : undefined;
  const fromImage = svc.image ? /^(?:[^/]+\/)*gammaray\/([a-z]+)(?::[\w.-]+)?$/.exec(svc.image)?.[1] : undefined;
  const n = fromBuild ?? fromImage;
  return isServiceName(n) ? n : undefined;
}

function isNats(svc: ComposeService): boolean {
  return /^(?:[^/]+\/)*nats(?::[\w.-]+)?$/.test(svc.image ?? '');
}

/** nats-server flags from a command list: `--flag value` (or `-flag value`), and bare switches. */
function natsFlags(cmd: readonly string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  const SWITCHES = new Set(['js', 'jetstream', 'D', 'V', 'DV', 'T', 'tls', 'tlsverify']);
  const ALIASES: Record<string, string> = { js: 'jetstream', sd: 'store_dir', m: 'http_port', p: 'port', n: 'name', a: 'addr', c: 'config' };
  const args = [...cmd];
  if (args[0] === 'nats-server') args.shift();
  while (args.length > 0) {
    const a = args.shift()!; // ok: length checked
    const m = /^--?([A-Za-z_]+)(?:=(.*))?$/.exec(a);
    if (!m) continue;
    const key = ALIASES[m[1]!] ?? m[1]!; // ok: group 1 always matches
    if (m[2] !== undefined) out.set(key, m[2]);
    else if (SWITCHES.has(m[1]!)) out.set(key, true);
    else out.set(key, args.shift() ?? '');
  }
  return out;
}

function portOfUrl(url: string, fallback: number): { host: string; port: number } | undefined {
  const m = /^[a-z]+:\/\/(?:[^@/]*@)?([^:/,]+)(?::(\d+))?\/?$/.exec(url.trim());
  return m ? { host: m[1]!, port: m[2] ? Number(m[2]) : fallback } : undefined; // ok: group 1 matched
}

/** Every check over a compose document; returns the problems found. */
export async function checkCompose(doc: ComposeDoc, ctx: ComposeCheckContext): Promise<string[]> {
  const problems: string[] = [];
  const services = doc.services ?? {};
  const names = new Set(Object.keys(services));
  if (names.size === 0) problems.push('no services');
  const declaredVolumes = new Set(Object.keys(doc.volumes ?? {}));
  const usedVolumes = new Set<string>();

  // depends_on
  for (const [name, svc] of Object.entries(services)) {
    for (const [dep, condition] of dependsOn(svc)) {
      if (!names.has(dep)) {
        problems.push(`${name}: depends_on ${JSON.stringify(dep)}, which is not a service`);
        continue;
      }
      if (dep === name) problems.push(`${name}: depends on itself`);
      if (!CONDITIONS.has(condition)) problems.push(`${name}: depends_on ${dep} with unknown condition ${JSON.stringify(condition)}`);
      const target = services[dep]!; // ok: names has dep
      if (condition === 'service_healthy' && (!target.healthcheck || target.healthcheck.disable)) {
        problems.push(`${name}: waits for ${dep} to be healthy, but ${dep} has no healthcheck`);
      }
      if (condition === 'service_completed_successfully' && target.restart !== undefined && target.restart !== 'no') {
        problems.push(`${name}: waits for ${dep} to complete, but ${dep} restarts (${target.restart}) like a long-running service`);
      }
    }
  }

  // volumes
  for (const [name, svc] of Object.entries(services)) {
    for (const m of mounts(svc)) {
      if (!m.target.startsWith('/')) problems.push(`${name}: volume target ${JSON.stringify(m.target)} is not an absolute path`);
      if (m.source === undefined) continue;
      if (m.named) {
        usedVolumes.add(m.source);
        if (!declaredVolumes.has(m.source)) problems.push(`${name}: volume ${JSON.stringify(m.source)} is not declared under the top-level volumes`);
      } else if (!existsSync(join(ctx.dir, m.source))) {
        problems.push(`${name}: bind mount source ${m.source} does not exist`);
      }
    }
  }
  for (const v of declaredVolumes) if (!usedVolumes.has(v)) problems.push(`volume ${v} is declared but no service mounts it`);

  // builds
  for (const [name, svc] of Object.entries(services)) {
    if (svc.build === undefined) {
      if (!svc.image) problems.push(`${name}: neither image nor build`);
      continue;
    }
    const build = typeof svc.build === 'string' ? { context: svc.build } : svc.build;
    const context = join(ctx.dir, build.context ?? '.');
    if (!existsSync(context)) {
      problems.push(`${name}: build context ${build.context} does not exist`);
      continue;
    }
    const dockerfile = join(context, build.dockerfile ?? 'Dockerfile');
    if (!existsSync(dockerfile)) {
      problems.push(`${name}: Dockerfile ${build.dockerfile ?? 'Dockerfile'} does not exist in the build context ${build.context ?? '.'}`);
      continue;
    }
    if (build.target !== undefined && !parseDockerfile(readFileSync(dockerfile, 'utf8')).stages.some((s) => s.name === build.target)) {
      problems.push(`${name}: build target ${build.target} is not a stage of ${build.dockerfile}`);
    }
    const byBuild = build.dockerfile ? /services\/([a-z]+)\/Dockerfile$/.exec(build.dockerfile)?.[1] : undefined;
    const byImage = svc.image ? /gammaray\/([a-z]+)(?::[\w.-]+)?$/.exec(svc.image)?.[1] : undefined;
    if (byBuild && svc.image && byImage !== byBuild) {
      problems.push(`${name}: image ${svc.image} is built from ${build.dockerfile}: name it gammaray/${byBuild}:TAG`);
    }
  }

  // NATS servers: names, cluster, JetStream store, routes
  const natsNodes = new Map<string, { client: number; cluster: number | undefined; http: number | undefined; flags: Map<string, string | true> }>();
  for (const [name, svc] of Object.entries(services)) {
    if (!isNats(svc)) continue;
    const flags = natsFlags(argv(svc.command) ?? []);
    const port = (k: string, d: number | undefined) => {
      const v = flags.get(k);
      return typeof v === 'string' ? Number(v) : d;
    };
    const clusterUrl = flags.get('cluster');
    const cluster = typeof clusterUrl === 'string' ? portOfUrl(clusterUrl, 6222)?.port : undefined;
    natsNodes.set(name, { client: port('port', 4222)!, cluster, http: port('http_port', undefined), flags }); // ok: default given
  }
  const clusterNames = new Set<string>();
  const serverNames = new Map<string, string>();
  for (const [name, node] of natsNodes) {
    const svc = services[name]!; // ok: natsNodes keys are services
    const sn = node.flags.get('name') ?? node.flags.get('server_name');
    if (typeof sn !== 'string' || sn === '') problems.push(`${name}: nats-server needs --name (JetStream in a cluster needs unique server names)`);
    else if (serverNames.has(sn)) problems.push(`${name}: server name ${sn} is also used by ${serverNames.get(sn)}`);
    else serverNames.set(sn, name);
    if (node.flags.get('jetstream') !== true) problems.push(`${name}: nats-server without --jetstream`);
    const sd = node.flags.get('store_dir');
    if (typeof sd !== 'string') problems.push(`${name}: nats-server without --store_dir (JetStream would store in a temporary directory)`);
    else if (!mounts(svc).some((m) => m.named && (sd === m.target || sd.startsWith(`${m.target}/`)))) {
      problems.push(`${name}: the JetStream store ${sd} is not on a named volume (it would not survive the container)`);
    }
    if (natsNodes.size > 1) {
      const cn = node.flags.get('cluster_name');
      clusterNames.add(typeof cn === 'string' ? cn : '');
      if (node.cluster === undefined) problems.push(`${name}: one of ${natsNodes.size} NATS servers but no --cluster listen URL`);
      const routes = node.flags.get('routes');
      const routed = new Set<string>();
      for (const r of typeof routes === 'string' ? routes.split(',') : []) {
        const u = portOfUrl(r, 6222);
        const peer = u ? natsNodes.get(u.host) : undefined;
        if (!u || !peer) problems.push(`${name}: route ${JSON.stringify(r)} does not name a NATS service`);
        else if (u.host === name) problems.push(`${name}: routes to itself`);
        else if (peer.cluster !== u.port) problems.push(`${name}: route ${r} uses port ${u.port}, but ${u.host} listens for routes on ${peer.cluster ?? 'no port'}`);
        else routed.add(u.host);
      }
      for (const other of natsNodes.keys()) if (other !== name && !routed.has(other)) problems.push(`${name}: no route to ${other}`);
    }
    const hc = argv(svc.healthcheck?.test)?.join(' ') ?? '';
    const hcPort = /https?:\/\/(?:127\.0\.0\.1|localhost):(\d+)\//.exec(hc)?.[1];
    if (hcPort !== undefined && Number(hcPort) !== node.http) problems.push(`${name}: healthcheck asks port ${hcPort}, but the monitoring port is ${node.http ?? 'not enabled (--http_port)'}`);
  }
  if (clusterNames.size > 1) problems.push(`NATS servers disagree on --cluster_name: ${[...clusterNames].join(', ')}`);

  // gammaray services: command, environment, endpoints, NATS URLs, disks, healthchecks
  const listening = new Map<string, Set<number>>();
  for (const [name, node] of natsNodes) listening.set(name, new Set([node.client, node.cluster, node.http].filter((p): p is number => p !== undefined)));
  for (const [name, svc] of Object.entries(services)) {
    const service = gammarayServiceOf(svc);
    if (!service) continue;
    if (svc.entrypoint !== undefined) {
      // A one-shot job on a gammaray image (e.g. creating disk images): fine when something waits for it to finish.
      const awaited = Object.values(services).some((s) => dependsOn(s).get(name) === 'service_completed_successfully');
      if (!awaited || (svc.restart !== undefined && svc.restart !== 'no')) {
        problems.push(`${name}: replaces the gammaray entrypoint, which only a one-shot job awaited with service_completed_successfully may do`);
      }
      continue;
    }
    const cmd = argv(svc.command);
    if (!cmd || cmd.length === 0) {
      problems.push(`${name}: no command (the image's default only prints help)`);
      continue;
    }
    if (cmd[0] !== service) {
      problems.push(`${name}: runs \`gammaray ${cmd[0]}\` on the ${service} image; the command must start with ${service}`);
      continue;
    }
    const res = await ctx.check({ service, args: cmd.slice(1), env: environment(svc) });
    problems.push(...res.problems.map((p) => `${name}: ${p}`));
    if (res.problems.length > 0) continue;
    listening.set(name, new Set([...res.endpoints.values()].map((e) => e.port)));
    for (const [what, ep] of res.endpoints) {
      if (/^(127\.|localhost$|::1$)/.test(ep.host)) problems.push(`${name}: ${what} listens on ${ep.host}:${ep.port}, which nothing outside the container reaches; use 0.0.0.0`);
    }
    for (const url of res.natsUrls) {
      const u = portOfUrl(url, 4222);
      const node = u ? natsNodes.get(u.host) : undefined;
      if (!u || !node) problems.push(`${name}: NATS URL ${url} does not name a NATS service (${[...natsNodes.keys()].join(', ') || 'none defined'})`);
      else if (node.client !== u.port) problems.push(`${name}: NATS URL ${url} uses port ${u.port}, but ${u.host} serves clients on ${node.client}`);
      else if (!dependsOn(svc).has(u.host)) problems.push(`${name}: connects to ${u.host} but does not depend_on it`);
    }
    if (res.replicas !== undefined && res.replicas > natsNodes.size) {
      problems.push(`${name}: asks for ${res.replicas} JetStream replicas, but there are ${natsNodes.size} NATS servers`);
    }
    const svcMounts = mounts(svc);
    for (const d of res.disks) {
      const m = svcMounts.find((mt) => mt.named && d.image.startsWith(`${mt.target.replace(/\/$/, '')}/`));
      if (!m) problems.push(`${name}: disk ${d.id}'s image ${d.image} is not on a named volume (it would not survive the container)`);
    }
    const hc = argv(svc.healthcheck?.test)?.join(' ') ?? '';
    if (!hc) problems.push(`${name}: no healthcheck`);
    else {
      const hm = /https?:\/\/(?:127\.0\.0\.1|localhost):(\d+)(\/[a-z]*)/.exec(hc);
      const metrics = res.endpoints.get('metrics');
      if (!hm) problems.push(`${name}: healthcheck does not ask an HTTP endpoint on localhost`);
      else if (!metrics || metrics.port !== Number(hm[1])) problems.push(`${name}: healthcheck asks port ${hm[1]}, but metrics are served on ${metrics ? metrics.port : 'no port (--metrics)'}`);
      else if (hm[2] !== '/healthz' && hm[2] !== '/readyz') problems.push(`${name}: healthcheck asks ${hm[2]}; the metrics endpoint serves /healthz and /readyz`);
    }
  }

  // published ports: each container port is one the service listens on; no host port twice
  const hostPorts = new Map<string, string>();
  for (const [name, svc] of Object.entries(services)) {
    for (const p of ports(svc, problems, name)) {
      const listens = listening.get(name);
      if (listens && !listens.has(p.target)) problems.push(`${name}: publishes container port ${p.target} (${p.text}), where it does not listen (it listens on ${[...listens].join(', ')})`);
      if (p.published === undefined) continue;
      const key = `${p.published}/${p.protocol}`;
      const other = hostPorts.get(key);
      if (other) problems.push(`${name}: host port ${key} is also published by ${other}`);
      else hostPorts.set(key, name);
    }
  }
  return problems;
}
