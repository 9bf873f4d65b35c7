/**
 * Static checks of rendered Kubernetes manifests (the output of `kubectl kustomize deploy/overlays/<name>`):
 * Services select workloads and target ports their containers declare, probes ask declared ports, the
 * PodDisruptionBudget selects the inferencer and allows a disruption, the ServiceMonitor selects Services that
 * have its port, images are consistent, and each gammaray container's args and environment (ConfigMaps resolved)
 * go through the real CLI and config parsers (./invocation.ts). Each check returns a list of problems.
 */
import { execFileSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';
import { isServiceName, type Invocation, type InvocationResult } from './invocation.js';

/** A Kubernetes object, loosely typed: the checks read what they need and report what is missing. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // Manifests are free-form; the checks test what they read.
  spec?: any;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

/** The kubectl binary (override with KUBECTL, e.g. an extracted kubectl 1.20 to check the old kustomize). */
export const KUBECTL = process.env['KUBECTL'] ?? 'kubectl';

/** Whether kubectl runs here. */
export function haveKubectl(): boolean {
  try {
    execFileSync(KUBECTL, ['version', '--client'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs `kubectl kustomize DIR` and parses the multi-document YAML it prints. */
export function kustomize(dir: string): K8sObject[] {
  const out = execFileSync(KUBECTL, ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseManifests(out);
}

export function parseManifests(text: string): K8sObject[] {
  const docs = parseAllDocuments(text);
  const out: K8sObject[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`invalid YAML: ${d.errors[0]?.message}`);
    const v = d.toJS() as K8sObject | null;
    if (v) out.push(v);
  }
  return out;
}

const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet']);
const id = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;

interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: any }[];
  envFrom?: { configMapRef?: { name: string; optional?: boolean }; secretRef?: { name: string; optional?: boolean }; prefix?: string }[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string }[];
}

interface Probe {
  httpGet?: { port: number | string; path?: string };
  tcpSocket?: { port: number | string };
  grpc?: { port: number; service?: string };
  exec?: unknown;
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function podLabels(w: K8sObject): Record<string, string> | undefined {
  return w.spec?.template?.metadata?.labels as Record<string, string> | undefined;
}

function containers(w: K8sObject): Container[] {
  return (w.spec?.template?.spec?.containers ?? []) as Container[];
}

function initContainers(w: K8sObject): Container[] {
  return (w.spec?.template?.spec?.initContainers ?? []) as Container[];
}

function hasPort(c: Container, port: number | string): boolean {
  return (c.ports ?? []).some((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port));
}

/** Image name without tag or digest. */
export function imageName(image: string): string {
  return image.replace(/@.*$/, '').replace(/:[^/:]+$/, '');
}

/** Context for {@link checkManifests}. */
export interface K8sCheckContext {
  /** Checks a gammaray invocation (./invocation.ts checkInvocation). */
  readonly check: (inv: Invocation) => Promise<InvocationResult>;
  /** Where the services must find NATS: the Helm release's client Service. */
  readonly nats: { readonly host: string; readonly port: number; readonly nodes: number };
  /** Image names (no tag) of the services as docker-compose.yml builds them, by service; base names must agree. */
  readonly composeImages: ReadonlyMap<string, string>;
  /** Expected image name prefix (e.g. `registry.example.com/`), when the overlay renames images. */
  readonly imagePrefix: string;
}

/** Every check over a rendered overlay; returns the problems found. */
export async function checkManifests(objs: readonly K8sObject[], ctx: K8sCheckContext): Promise<string[]> {
  const problems: string[] = [];
  const byKind = (k: string) => objs.filter((o) => o.kind === k);
  const workloads = objs.filter((o) => WORKLOADS.has(o.kind));
  const services = byKind('Service');
  const configMaps = new Map(byKind('ConfigMap').map((c) => [c.metadata.name, c]));
  const secrets = new Map(byKind('Secret').map((s) => [s.metadata.name, s]));

  const namespaces = new Set(objs.map((o) => o.metadata.namespace ?? ''));
  if (namespaces.size !== 1 || namespaces.has('')) problems.push(`objects should share one namespace, got ${[...namespaces].map((n) => n || '(none)').join(', ')}`);
  const seen = new Set<string>();
  for (const o of objs) {
    if (seen.has(id(o))) problems.push(`${id(o)} is defined twice`);
    seen.add(id(o));
  }

  // Workloads select their own pods; mounts name volumes that exist.
  for (const w of workloads) {
    const sel = w.spec?.selector?.matchLabels as Record<string, string> | undefined;
    if (!matches(sel, podLabels(w))) problems.push(`${id(w)}: selector ${JSON.stringify(sel)} does not match its pod labels ${JSON.stringify(podLabels(w))}`);
    const vols = new Set<string>([
      ...((w.spec?.template?.spec?.volumes ?? []) as { name: string }[]).map((v) => v.name),
      ...((w.spec?.volumeClaimTemplates ?? []) as { metadata: { name: string } }[]).map((v) => v.metadata.name),
    ]);
    for (const c of [...initContainers(w), ...containers(w)]) {
      for (const m of c.volumeMounts ?? []) if (!vols.has(m.name)) problems.push(`${id(w)}: container ${c.name} mounts ${m.name}, which is no volume of the pod`);
    }
    for (const v of (w.spec?.template?.spec?.volumes ?? []) as { name: string; secret?: { secretName: string; optional?: boolean }; configMap?: { name: string; optional?: boolean } }[]) {
      if (v.secret && !v.secret.optional && !secrets.has(v.secret.secretName)) problems.push(`${id(w)}: volume ${v.name} needs Secret ${v.secret.secretName}, which is not defined (mark it optional or create it)`);
      if (v.configMap && !v.configMap.optional && !configMaps.has(v.configMap.name)) problems.push(`${id(w)}: volume ${v.name} needs ConfigMap ${v.configMap.name}, which is not defined`);
    }
  }

  // Services select a workload; their target ports are container ports of it.
  for (const s of services) {
    const sel = s.spec?.selector as Record<string, string> | undefined;
    const selected = workloads.filter((w) => matches(sel, podLabels(w)));
    if (selected.length === 0) {
      problems.push(`${id(s)}: selector ${JSON.stringify(sel)} matches no workload's pods`);
      continue;
    }
    for (const p of (s.spec?.ports ?? []) as { name?: string; port: number; targetPort?: number | string }[]) {
      const target = p.targetPort ?? p.port;
      for (const w of selected) {
        if (!containers(w).some((c) => hasPort(c, target))) problems.push(`${id(s)}: port ${p.name ?? p.port} targets ${target}, which no container of ${id(w)} declares`);
      }
    }
  }
  for (const w of byKind('StatefulSet')) {
    const gov = services.find((s) => s.metadata.name === w.spec?.serviceName);
    if (!gov) problems.push(`${id(w)}: serviceName ${w.spec?.serviceName} is not a Service here`);
    else if (gov.spec?.clusterIP !== 'None') problems.push(`${id(w)}: its governing Service ${gov.metadata.name} is not headless (clusterIP: None)`);
    else if (!matches(gov.spec?.selector, podLabels(w))) problems.push(`${id(w)}: its governing Service ${gov.metadata.name} does not select its pods`);
  }

  // Probes ask declared ports.
  for (const w of workloads) {
    for (const c of containers(w)) {
      for (const [kind, probe] of [['readiness', c.readinessProbe], ['liveness', c.livenessProbe], ['startup', c.startupProbe]] as const) {
        if (!probe) continue;
        const port = probe.httpGet?.port ?? probe.tcpSocket?.port ?? probe.grpc?.port;
        if (port === undefined) continue;
        if (probe.grpc && typeof probe.grpc.port !== 'number') problems.push(`${id(w)}: ${c.name} ${kind} probe: grpc.port must be a number`);
        if (!hasPort(c, port)) problems.push(`${id(w)}: ${c.name} ${kind} probe asks port ${port}, which the container does not declare`);
      }
    }
  }

  // PodDisruptionBudgets: select the inferencer, and let at least one pod go.
  const pdbs = byKind('PodDisruptionBudget');
  const inferencer = workloads.find((w) => containers(w).some((c) => c.args?.[0] === 'inferencer'));
  if (inferencer && !pdbs.some((p) => matches(p.spec?.selector?.matchLabels, podLabels(inferencer)))) problems.push(`no PodDisruptionBudget selects ${id(inferencer)}`);
  for (const p of pdbs) {
    const selected = workloads.filter((w) => matches(p.spec?.selector?.matchLabels, podLabels(w)));
    if (selected.length !== 1) {
      problems.push(`${id(p)}: selects ${selected.length} workloads (${selected.map(id).join(', ') || 'none'}); expected exactly one`);
      continue;
    }
    const replicas = Number(selected[0]!.spec?.replicas ?? 1); // ok: length is 1
    const { minAvailable, maxUnavailable } = p.spec ?? {};
    if (minAvailable !== undefined && typeof minAvailable === 'number' && minAvailable >= replicas) problems.push(`${id(p)}: minAvailable ${minAvailable} with ${replicas} replicas blocks every drain`);
    if (maxUnavailable !== undefined && (maxUnavailable === 0 || maxUnavailable === '0%')) problems.push(`${id(p)}: maxUnavailable 0 blocks every drain`);
  }

  // ServiceMonitors select Services that have the endpoint ports; every metrics Service is scraped.
  const monitors = byKind('ServiceMonitor');
  for (const m of monitors) {
    if (m.apiVersion !== 'monitoring.coreos.com/v1') problems.push(`${id(m)}: apiVersion ${m.apiVersion}; expected monitoring.coreos.com/v1`);
    const selected = services.filter((s) => matches(m.spec?.selector?.matchLabels, s.metadata.labels));
    if (selected.length === 0) problems.push(`${id(m)}: selector ${JSON.stringify(m.spec?.selector?.matchLabels)} matches no Service`);
    for (const ep of (m.spec?.endpoints ?? []) as { port?: string; path?: string }[]) {
      if (!ep.port) problems.push(`${id(m)}: an endpoint without a port name`);
      for (const s of selected) {
        if (!((s.spec?.ports ?? []) as { name?: string }[]).some((p) => p.name === ep.port)) problems.push(`${id(m)}: selects ${id(s)}, which has no port named ${ep.port}`);
      }
      if (ep.path !== undefined && ep.path !== '/metrics') problems.push(`${id(m)}: scrapes ${ep.path}; the services serve /metrics`);
    }
  }
  if (monitors.length > 0) {
    for (const s of services) {
      const hasMetrics = ((s.spec?.ports ?? []) as { name?: string }[]).some((p) => p.name === 'metrics');
      if (hasMetrics && !monitors.some((m) => matches(m.spec?.selector?.matchLabels, s.metadata.labels))) problems.push(`${id(s)} has a metrics port but no ServiceMonitor selects it`);
    }
  }

  // gammaray containers: image, args and environment through the real parsers, endpoints, NATS, disks.
  const tags = new Set<string>();
  for (const w of workloads) {
    const vcts = new Set(((w.spec?.volumeClaimTemplates ?? []) as { metadata: { name: string } }[]).map((v) => v.metadata.name));
    for (const c of [...initContainers(w), ...containers(w)]) {
      const image = c.image ?? '';
      const name = imageName(image);
      const component = /\/([a-z]+)$/.exec(name)?.[1];
      if (!isServiceName(component) || !name.startsWith(ctx.imagePrefix)) {
        if (/gammaray/.test(image)) problems.push(`${id(w)}: container ${c.name} image ${image} is not ${ctx.imagePrefix}gammaray/<service>:TAG`);
        continue;
      }
      if (ctx.imagePrefix === '' && ctx.composeImages.get(component) !== name) {
        problems.push(`${id(w)}: image ${name} differs from docker-compose.yml's ${ctx.composeImages.get(component) ?? '(none)'} for ${component}`);
      }
      tags.add(image.slice(name.length));
      if (c.command !== undefined) continue; // an init job on the image (e.g. creating disk images), not gammaray
      const args = c.args ?? [];
      if (args[0] !== component) {
        problems.push(`${id(w)}: container ${c.name} runs \`gammaray ${args[0] ?? ''}\` on the ${component} image`);
        continue;
      }
      const env: Record<string, string> = {};
      for (const ef of c.envFrom ?? []) {
        if (ef.prefix) problems.push(`${id(w)}: envFrom with a prefix is not checked here`);
        if (ef.configMapRef) {
          const cm = configMaps.get(ef.configMapRef.name);
          if (!cm) {
            if (!ef.configMapRef.optional) problems.push(`${id(w)}: envFrom ConfigMap ${ef.configMapRef.name} is not defined`);
          } else Object.assign(env, cm.data ?? {});
        }
        if (ef.secretRef && !ef.secretRef.optional && !secrets.has(ef.secretRef.name)) problems.push(`${id(w)}: envFrom Secret ${ef.secretRef.name} is not defined`);
      }
      for (const e of c.env ?? []) {
        if (e.value !== undefined) env[e.name] = String(e.value);
        else if (e.valueFrom?.configMapKeyRef) {
          const ref = e.valueFrom.configMapKeyRef as { name: string; key: string };
          const v = configMaps.get(ref.name)?.data?.[ref.key];
          if (v === undefined) problems.push(`${id(w)}: ${e.name} refers to ConfigMap ${ref.name} key ${ref.key}, which is not defined`);
          else env[e.name] = v;
        } else if (e.valueFrom?.secretKeyRef) {
          const ref = e.valueFrom.secretKeyRef as { name: string; key: string; optional?: boolean };
          const sec = secrets.get(ref.name);
          const b64 = sec?.data?.[ref.key];
          const v = sec?.stringData?.[ref.key] ?? (b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString());
          // A Secret the operator creates (not rendered here): the name is still checked, with a stand-in value.
          env[e.name] = v ?? `secret-${ref.name}-${ref.key}`;
        }
      }
      const res = await ctx.check({ service: component, args: args.slice(1), env });
      problems.push(...res.problems.map((p) => `${id(w)}: ${p}`));
      if (res.problems.length > 0) continue;
      for (const [what, ep] of res.endpoints) {
        if (/^(127\.|localhost$|::1$)/.test(ep.host)) problems.push(`${id(w)}: ${what} listens on ${ep.host}:${ep.port}, unreachable from outside the pod; use 0.0.0.0`);
        if (!hasPort(c, ep.port)) problems.push(`${id(w)}: ${c.name} listens for ${what} on ${ep.port}, which is not a declared container port`);
      }
      for (const p of c.ports ?? []) {
        if (![...res.endpoints.values()].some((e) => e.port === p.containerPort)) problems.push(`${id(w)}: ${c.name} declares port ${p.name ?? ''} ${p.containerPort}, where the service does not listen`);
      }
      for (const url of res.natsUrls) {
        const m = /^nats:\/\/([^:/]+)(?::(\d+))?$/.exec(url);
        const host = m?.[1]?.replace(/\.[a-z0-9-]+\.svc(\.cluster\.local)?$/, '');
        if (!m || host !== ctx.nats.host || Number(m[2] ?? 4222) !== ctx.nats.port) problems.push(`${id(w)}: NATS URL ${url} is not the NATS chart's client Service nats://${ctx.nats.host}:${ctx.nats.port}`);
      }
      if (res.replicas !== undefined && res.replicas > ctx.nats.nodes) problems.push(`${id(w)}: asks for ${res.replicas} JetStream replicas, but the NATS cluster has ${ctx.nats.nodes} nodes`);
      // A volume per disk: each image on its own volumeClaimTemplate, also mounted by the init containers.
      const diskVolumes = new Map<string, string>();
      for (const d of res.disks) {
        const mount = (c.volumeMounts ?? []).filter((m) => d.image.startsWith(`${m.mountPath.replace(/\/$/, '')}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
        if (!mount || !vcts.has(mount.name)) {
          problems.push(`${id(w)}: disk ${d.id}'s image ${d.image} is not on a volumeClaimTemplate volume`);
          continue;
        }
        const other = diskVolumes.get(mount.name);
        if (other) problems.push(`${id(w)}: disks ${other} and ${d.id} share volume ${mount.name}; each disk gets its own`);
        diskVolumes.set(mount.name, d.id);
        for (const ic of initContainers(w)) {
          if (!(ic.volumeMounts ?? []).some((m) => m.name === mount.name && m.mountPath === mount.mountPath)) problems.push(`${id(w)}: init container ${ic.name} does not mount ${mount.name} at ${mount.mountPath}`);
        }
      }
      if (res.disks.length > 0 && w.kind !== 'StatefulSet') problems.push(`${id(w)}: serves disks but is a ${w.kind}; capture keeps one volume per disk in a StatefulSet`);
      if (res.disks.length > 0) {
        for (const v of vcts) if (!diskVolumes.has(v)) problems.push(`${id(w)}: volumeClaimTemplate ${v} holds no disk of GAMMARAY_DISK`);
      }
    }
  }
  if (tags.size > 1) problems.push(`gammaray images have different tags: ${[...tags].join(', ')}`);
  return problems;
}
