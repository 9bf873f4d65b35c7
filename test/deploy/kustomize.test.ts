/**
 * deploy/: every overlay is built with `kubectl kustomize` and the result checked statically (./k8s-check.ts):
 * selectors, ports, probes, the PodDisruptionBudget, the ServiceMonitor, images, and each gammaray container's
 * args and environment through the real CLI and config parsers. deploy/nats/values.yaml (the NATS Helm chart's
 * values) is checked against what the manifests expect of NATS. Each check also has a test that breaks one thing.
 *
 * kubectl comes from scripts/setup.sh (Debian's kubernetes-client when no kubectl is installed); KUBECTL=/path
 * picks another one, e.g. kubectl 1.20 whose embedded kustomize is the oldest these manifests support.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { loadCompose } from './compose-check.js';
import { checkInvocation, ROOT } from './invocation.js';
import { checkManifests, haveKubectl, imageName, KUBECTL, kustomize, type K8sCheckContext, type K8sObject } from './k8s-check.js';

vi.mock('../../services/capture/src/index.ts', async (orig) => (await import('./invocation.js')).mockServiceModule('capture', await orig()));
vi.mock('../../services/inferencer/src/index.ts', async (orig) => (await import('./invocation.js')).mockServiceModule('inferencer', await orig()));
vi.mock('../../services/view/src/index.ts', async (orig) => (await import('./invocation.js')).mockServiceModule('view', await orig()));

const OVERLAYS = ['dev', 'production'] as const;
type Overlay = (typeof OVERLAYS)[number];

interface NatsValues {
  config: {
    cluster: { enabled: boolean; replicas: number };
    jetstream: { enabled: boolean; fileStore: { enabled: boolean; dir: string; pvc: { enabled: boolean; size: string } }; memoryStore?: { enabled: boolean } };
    nats?: { port?: number };
    merge: { accounts: Record<string, { jetstream?: string; users: { user: string; password: string; permissions?: unknown }[] }>; no_auth_user?: string };
  };
  container: { env: Record<string, string | { valueFrom: { secretKeyRef: { name: string; key: string } } }> };
}

const values = parse(readFileSync(join(ROOT, 'deploy/nats/values.yaml'), 'utf8')) as NatsValues;
/** The Helm release name deploy/README.md installs the chart as: its client Service has the same name. */
const NATS_RELEASE = 'nats';

const composeImages = new Map<string, string>();
for (const svc of Object.values(loadCompose(join(ROOT, 'docker-compose.yml')).doc.services ?? {})) {
  const m = /^(.*gammaray\/([a-z]+))(?::[\w.-]+)?$/.exec(svc.image ?? '');
  if (m) composeImages.set(m[2]!, m[1]!); // ok: both groups match
}

function context(overlay: Overlay): K8sCheckContext {
  return {
    check: checkInvocation,
    nats: { host: NATS_RELEASE, port: values.config.nats?.port ?? 4222, nodes: values.config.cluster.replicas },
    composeImages,
    imagePrefix: overlay === 'production' ? 'registry.example.com/' : '',
  };
}

const rendered = new Map<Overlay, K8sObject[]>();
const kubectlOk = haveKubectl();

beforeAll(() => {
  if (!kubectlOk) return;
  for (const o of OVERLAYS) rendered.set(o, kustomize(join(ROOT, 'deploy/overlays', o)));
});

function objs(overlay: Overlay): K8sObject[] {
  const r = rendered.get(overlay);
  if (!r) throw new Error(`${KUBECTL} is not installed: run scripts/setup.sh (it installs Debian's kubernetes-client)`);
  return r;
}

function find(list: K8sObject[], kind: string, name: string): K8sObject {
  const o = list.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`test bug: no ${kind}/${name}`);
  return o;
}

/** The overlay's objects, deep-copied and edited. */
function mutated(overlay: Overlay, edit: (list: K8sObject[], get: (kind: string, name: string) => K8sObject) => void): K8sObject[] {
  const list = structuredClone(objs(overlay));
  edit(list, (kind, name) => find(list, kind, name));
  return list;
}

describe('kubectl', () => {
  it(`is installed (${KUBECTL})`, () => {
    expect(kubectlOk, `${KUBECTL} is missing: run scripts/setup.sh`).toBe(true);
  });
});

describe.each(OVERLAYS)('deploy/overlays/%s', (overlay) => {
  it('builds with kubectl kustomize and passes every check', async () => {
    expect(await checkManifests(objs(overlay), context(overlay))).toEqual([]);
  });

  it('has the pieces: capture StatefulSet with a claim per disk, inferencer Deployment and PDB, view Deployment with gRPC probes', () => {
    const list = objs(overlay);
    const capture = find(list, 'StatefulSet', 'gammaray-capture');
    expect(capture.spec.volumeClaimTemplates.length).toBeGreaterThanOrEqual(1);
    expect(find(list, 'Service', 'gammaray-capture').spec.ports.map((p: { port: number }) => p.port)).toContain(10809);
    const inferencer = find(list, 'Deployment', 'gammaray-inferencer');
    expect(inferencer.spec.replicas).toBe(overlay === 'production' ? 2 : 1);
    find(list, 'PodDisruptionBudget', 'gammaray-inferencer');
    const view = find(list, 'Deployment', 'gammaray-view');
    const c = view.spec.template.spec.containers[0];
    expect(c.readinessProbe.grpc.port).toBe(50051);
    expect(c.livenessProbe.grpc.port).toBe(50051);
    expect(find(list, 'Service', 'gammaray-view').spec.ports.map((p: { port: number }) => p.port)).toContain(50051);
    expect(list.every((o) => o.metadata.namespace === (overlay === 'production' ? 'gammaray' : 'gammaray-dev'))).toBe(true);
  });

  if (overlay === 'production') {
    it('has a ServiceMonitor for every metrics Service, two disks on their own volumes, released images', () => {
      const list = objs(overlay);
      const sm = find(list, 'ServiceMonitor', 'gammaray');
      expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
      const capture = find(list, 'StatefulSet', 'gammaray-capture');
      expect(capture.spec.volumeClaimTemplates.map((v: { metadata: { name: string } }) => v.metadata.name)).toEqual(['disk-vm1', 'disk-vm2']);
      const images = list.flatMap((o) => (o.spec?.template?.spec?.containers ?? []).map((c: { image: string }) => c.image));
      expect(images.every((i: string) => /^registry\.example\.com\/gammaray\/[a-z]+:0\.1\.0$/.test(i))).toBe(true);
      const view = find(list, 'Deployment', 'gammaray-view').spec.template.spec.containers[0];
      expect(view.env).toContainEqual({ name: 'GAMMARAY_TOKEN', valueFrom: { secretKeyRef: { name: 'gammaray-view-auth', key: 'token' } } });
    });
  } else {
    it('mounts the view with FUSE and generates the NATS credentials Secret', () => {
      const list = objs(overlay);
      const c = find(list, 'Deployment', 'gammaray-view').spec.template.spec.containers[0];
      expect(c.env).toContainEqual({ name: 'GAMMARAY_MOUNT', value: '/mnt/gammaray' });
      expect(c.securityContext.privileged).toBe(true);
      find(list, 'Secret', 'gammaray-nats-auth');
    });
  }
});

describe('reports broken manifests', () => {
  const check = (list: K8sObject[], overlay: Overlay = 'production') => checkManifests(list, context(overlay));

  it('a Service whose selector matches no pods, or whose target port no container declares', async () => {
    const p = await check(
      mutated('production', (_, get) => {
        get('Service', 'gammaray-view').spec.selector['app.kubernetes.io/component'] = 'viewer';
        get('Service', 'gammaray-capture').spec.ports[0].targetPort = 'nbd-port';
      }),
    );
    expect(p).toContainEqual(expect.stringMatching(/^Service\/gammaray-view: selector \{.*"app.kubernetes.io\/component":"viewer".*\} matches no workload's pods$/));
    expect(p).toContain('Service/gammaray-capture: port nbd targets nbd-port, which no container of StatefulSet/gammaray-capture declares');
  });

  it('a probe on a port the container does not declare', async () => {
    const p = await check(
      mutated('production', (_, get) => {
        get('Deployment', 'gammaray-view').spec.template.spec.containers[0].readinessProbe.grpc.port = 50052;
        get('Deployment', 'gammaray-inferencer').spec.template.spec.containers[0].livenessProbe.httpGet.port = 'http';
      }),
    );
    expect(p).toContain('Deployment/gammaray-view: view readiness probe asks port 50052, which the container does not declare');
    expect(p).toContain('Deployment/gammaray-inferencer: inferencer liveness probe asks port http, which the container does not declare');
  });

  it('a PodDisruptionBudget that misses the inferencer or blocks drains', async () => {
    const p = await check(
      mutated('production', (_, get) => {
        get('PodDisruptionBudget', 'gammaray-inferencer').spec.selector.matchLabels['app.kubernetes.io/component'] = 'capture';
      }),
    );
    expect(p).toContain('no PodDisruptionBudget selects Deployment/gammaray-inferencer');
    const q = await check(
      mutated('production', (_, get) => {
        const pdb = get('PodDisruptionBudget', 'gammaray-inferencer');
        delete pdb.spec.maxUnavailable;
        pdb.spec.minAvailable = 2;
      }),
    );
    expect(q).toContain('PodDisruptionBudget/gammaray-inferencer: minAvailable 2 with 2 replicas blocks every drain');
  });

  it('a ServiceMonitor whose port the selected Services do not have, or that misses a metrics Service', async () => {
    const p = await check(
      mutated('production', (_, get) => {
        get('ServiceMonitor', 'gammaray').spec.endpoints[0].port = 'prometheus';
        delete get('Service', 'gammaray-view').metadata.labels?.['gammaray.io/metrics'];
      }),
    );
    expect(p).toContain('ServiceMonitor/gammaray: selects Service/gammaray-capture, which has no port named prometheus');
    expect(p).toContain('Service/gammaray-view has a metrics port but no ServiceMonitor selects it');
  });

  it('images of different tags, or a service run on another service\'s image', async () => {
    const p = await check(
      mutated('production', (_, get) => {
        get('Deployment', 'gammaray-view').spec.template.spec.containers[0].image = 'registry.example.com/gammaray/view:0.2.0';
        get('Deployment', 'gammaray-inferencer').spec.template.spec.containers[0].image = 'registry.example.com/gammaray/capture:0.1.0';
      }),
    );
    expect(p).toContain('gammaray images have different tags: :0.1.0, :0.2.0');
    expect(p).toContain('Deployment/gammaray-inferencer: container inferencer runs `gammaray inferencer` on the capture image');
    const q = await check(
      mutated('dev', (_, get) => {
        get('Deployment', 'gammaray-view').spec.template.spec.containers[0].image = 'gammaray-view:dev';
      }),
      'dev',
    );
    expect(q).toContain('Deployment/gammaray-view: container view image gammaray-view:dev is not gammaray/<service>:TAG');
  });

  it('an env var the service does not read, a bad value, or a ConfigMap that is not there', async () => {
    const p = await check(
      mutated('production', (list, get) => {
        get('Deployment', 'gammaray-inferencer').spec.template.spec.containers[0].env.push({ name: 'GAMMARAY_LISTEN', value: '0.0.0.0:10809' });
        get('Deployment', 'gammaray-view').spec.template.spec.containers[0].env.push({ name: 'GAMMARAY_TOKEN', value: 'short' });
        const cm = list.find((o) => o.kind === 'ConfigMap')!; // ok: the base generates one
        get('StatefulSet', 'gammaray-capture').spec.template.spec.containers[0].envFrom[0].configMapRef.name = `${cm.metadata.name}x`;
      }),
    );
    expect(p).toContain('Deployment/gammaray-inferencer: GAMMARAY_LISTEN is not a setting of gammaray inferencer (or a flag given in the command overrides it)');
    expect(p).toContain('Deployment/gammaray-view: gammaray view: --token (GAMMARAY_TOKEN) must be at least 16 characters (e.g. the output of: openssl rand -hex 32)');
    expect(p.some((x) => /^StatefulSet\/gammaray-capture: envFrom ConfigMap gammaray-config-\w+x is not defined$/.test(x))).toBe(true);
  });

  it('a NATS user without its password (readConfig refuses it), or a password without a user', async () => {
    const p = await check(
      mutated('production', (_, get) => {
        const inf = get('Deployment', 'gammaray-inferencer').spec.template.spec.containers[0];
        inf.env = inf.env.filter((e: { name: string }) => e.name !== 'GAMMARAY_NATS_PASSWORD');
        const view = get('Deployment', 'gammaray-view').spec.template.spec.containers[0];
        view.env = view.env.filter((e: { name: string }) => e.name !== 'GAMMARAY_NATS_USER');
      }),
    );
    expect(p).toContain('Deployment/gammaray-inferencer: gammaray inferencer: --nats-user (GAMMARAY_NATS_USER) needs its password in GAMMARAY_NATS_PASSWORD (the environment keeps it out of process listings)');
    expect(p).toContain('Deployment/gammaray-view: gammaray view: GAMMARAY_NATS_PASSWORD is set without a user: give --nats-user (GAMMARAY_NATS_USER) too');
  });

  it('a NATS URL that is not the chart\'s Service, or more replicas than NATS nodes', async () => {
    const p = await check(
      mutated('production', (list) => {
        const cm = list.find((o) => o.kind === 'ConfigMap')!; // ok: the base generates one
        cm.data = { ...cm.data, GAMMARAY_NATS: 'nats://nats-headless:4222', GAMMARAY_REPLICAS: '5' };
      }),
    );
    expect(p).toContain('Deployment/gammaray-inferencer: NATS URL nats://nats-headless:4222 is not the NATS chart\'s client Service nats://nats:4222');
    expect(p).toContain('Deployment/gammaray-inferencer: asks for 5 JetStream replicas, but the NATS cluster has 3 nodes');
  });

  it('a disk image off its own volume, two disks on one volume, or an init container without the disk', async () => {
    const p = await check(
      mutated('production', (_, get) => {
        const c = get('StatefulSet', 'gammaray-capture').spec.template.spec.containers[0];
        c.env.find((e: { name: string }) => e.name === 'GAMMARAY_DISK').value = 'vm1=/var/lib/gammaray/disks/vm1/disk.img,vm2=/var/lib/gammaray/disks/vm1/vm2.img,vm3=/tmp/vm3.img';
      }),
    );
    expect(p).toContain('StatefulSet/gammaray-capture: disks vm1 and vm2 share volume disk-vm1; each disk gets its own');
    expect(p).toContain("StatefulSet/gammaray-capture: disk vm3's image /tmp/vm3.img is not on a volumeClaimTemplate volume");
    expect(p).toContain('StatefulSet/gammaray-capture: volumeClaimTemplate disk-vm2 holds no disk of GAMMARAY_DISK');
    const q = await check(
      mutated('production', (_, get) => {
        const init = get('StatefulSet', 'gammaray-capture').spec.template.spec.initContainers[0];
        init.volumeMounts = init.volumeMounts.filter((m: { name: string }) => m.name !== 'disk-vm2');
      }),
    );
    expect(q).toContain('StatefulSet/gammaray-capture: init container disk-images does not mount disk-vm2 at /var/lib/gammaray/disks/vm2');
  });

  it('a StatefulSet whose governing Service is missing, a mount of no volume, a container port nothing listens on', async () => {
    const p = await check(
      mutated('production', (list, get) => {
        list.splice(list.indexOf(get('Service', 'gammaray-capture-headless')), 1);
        const view = get('Deployment', 'gammaray-view').spec.template.spec.containers[0];
        view.volumeMounts = [...(view.volumeMounts ?? []), { name: 'cache', mountPath: '/cache' }];
        get('Deployment', 'gammaray-inferencer').spec.template.spec.containers[0].ports.push({ name: 'debug', containerPort: 9229 });
      }),
    );
    expect(p).toContain('StatefulSet/gammaray-capture: serviceName gammaray-capture-headless is not a Service here');
    expect(p).toContain('Deployment/gammaray-view: container view mounts cache, which is no volume of the pod');
    expect(p).toContain('Deployment/gammaray-inferencer: inferencer declares port debug 9229, where the service does not listen');
  });

  it('image names that differ from docker-compose.yml', () => {
    expect(imageName('registry.example.com:5000/gammaray/view:0.1.0@sha256:abc')).toBe('registry.example.com:5000/gammaray/view');
    expect(composeImages).toEqual(new Map([['capture', 'gammaray/capture'], ['inferencer', 'gammaray/inferencer'], ['view', 'gammaray/view']]));
  });
});

describe('deploy/nats/values.yaml (NATS Helm chart)', () => {
  it('asks for a 3-node cluster with JetStream on file storage in a PersistentVolume per node', () => {
    expect(values.config.cluster).toMatchObject({ enabled: true, replicas: 3 });
    expect(values.config.jetstream).toMatchObject({ enabled: true, fileStore: { enabled: true, pvc: { enabled: true } } });
  });

  it('gives every password variable of the auth block an env var from the Secret the dev overlay generates', () => {
    const text = JSON.stringify(values.config.merge);
    const vars = [...text.matchAll(/<< \$([A-Z0-9_]+) >>/g)].map((m) => m[1]!); // ok: group matched
    expect(vars.length).toBeGreaterThan(0);
    const secret = find(objs('dev'), 'Secret', 'gammaray-nats-auth');
    for (const v of vars) {
      const env = values.container.env[v];
      expect(env, v).toBeTypeOf('object');
      const ref = (env as { valueFrom: { secretKeyRef: { name: string; key: string } } }).valueFrom.secretKeyRef;
      expect(ref.name).toBe('gammaray-nats-auth');
      expect(Object.keys(secret.data ?? {}), `${v}: key ${ref.key}`).toContain(ref.key);
    }
  });

  it('has no no_auth_user (nothing connects without credentials), and gives every user a password', () => {
    expect(values.config.merge.no_auth_user).toBeUndefined();
    const users = Object.values(values.config.merge.accounts).flatMap((a) => a.users);
    for (const u of users) expect(u.password, u.user).toMatch(/^<< \$[A-Z0-9_]+ >>$/);
  });

  for (const overlay of OVERLAYS) {
    it(`logs each service in as its own NATS user with its password from the Secret (${overlay})`, () => {
      const users = new Set(Object.values(values.config.merge.accounts).flatMap((a) => a.users.map((u) => u.user)));
      const workloads: [string, string, string][] = [['StatefulSet', 'gammaray-capture', 'capture'], ['Deployment', 'gammaray-inferencer', 'inferencer'], ['Deployment', 'gammaray-view', 'view']];
      for (const [kind, name, user] of workloads) {
        const c = find(objs(overlay), kind, name).spec.template.spec.containers[0];
        expect(users.has(user), user).toBe(true);
        expect(c.env).toContainEqual({ name: 'GAMMARAY_NATS_USER', value: user });
        expect(c.env).toContainEqual({ name: 'GAMMARAY_NATS_PASSWORD', valueFrom: { secretKeyRef: { name: 'gammaray-nats-auth', key: `${user}-password` } } });
      }
    });
  }
});
