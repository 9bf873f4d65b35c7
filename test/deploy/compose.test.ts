/**
 * docker-compose.yml and the services' Dockerfiles, checked statically (no Docker engine runs here or in CI): the
 * gammaray services' commands and environments through the real CLI and config parsers, NATS routes and URLs,
 * ports, volumes, dependencies, Dockerfile stages and build-context files; nats-server flags through the real
 * nats-server (`-t`). Each check also has a test that breaks one thing and sees the check complain.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseDocument } from 'yaml';
import { checkCompose, interpolate, loadCompose, type ComposeDoc, type ComposeService } from './compose-check.js';
import { checkDockerfile, dockerignore, ignored, parseDockerfile, type RuntimeExpectation } from './dockerfile-check.js';
import { NATS_SERVER_BIN as NATS_SERVER } from '../support/nats-server.js';
import { checkInvocation, checkWithCliMd, ROOT, SERVICES, type Invocation, type InvocationResult } from './invocation.js';

// The services never start: their run functions only record the flags the CLI parsed (./invocation.ts).
vi.mock('../../services/capture/src/index.ts', async (orig) => (await import('./invocation.js')).mockServiceModule('capture', await orig()));
vi.mock('../../services/inferencer/src/index.ts', async (orig) => (await import('./invocation.js')).mockServiceModule('inferencer', await orig()));
vi.mock('../../services/view/src/index.ts', async (orig) => (await import('./invocation.js')).mockServiceModule('view', await orig()));

const COMPOSE = join(ROOT, 'docker-compose.yml');

let base: ComposeDoc;
const ctx = { dir: ROOT, check: checkInvocation };

function mutated(edit: (doc: ComposeDoc, svc: (name: string) => ComposeService) => void): ComposeDoc {
  const doc = structuredClone(base);
  edit(doc, (name) => {
    const s = doc.services?.[name];
    if (!s) throw new Error(`test bug: no service ${name}`);
    return s;
  });
  return doc;
}

async function problemsOf(edit: (doc: ComposeDoc, svc: (name: string) => ComposeService) => void): Promise<string[]> {
  return checkCompose(mutated(edit), ctx);
}

function replaceArg(cmd: unknown, from: string, to: string): string[] {
  const list = cmd as string[];
  const i = list.indexOf(from);
  if (i < 0) throw new Error(`test bug: ${from} not in ${list.join(' ')}`);
  return [...list.slice(0, i), to, ...list.slice(i + 1)];
}

beforeAll(() => {
  const { doc, problems } = loadCompose(COMPOSE);
  expect(problems).toEqual([]);
  base = doc;
});

describe('docker-compose.yml', () => {
  it('has a 3-node NATS cluster, capture, two inferencers and a view', () => {
    const s = base.services ?? {};
    expect(Object.keys(s).filter((n) => /^nats:/.test(s[n]?.image ?? ''))).toHaveLength(3);
    const runs = (sub: string) => Object.keys(s).filter((n) => (s[n]?.command as string[] | undefined)?.[0] === sub && s[n]?.entrypoint === undefined);
    expect(runs('capture')).toHaveLength(1);
    expect(runs('inferencer')).toHaveLength(2);
    expect(runs('view')).toHaveLength(1);
    const view = s[runs('view')[0]!]!; // ok: length checked
    expect(view.devices).toContain('/dev/fuse:/dev/fuse');
    expect(view.cap_add).toContain('SYS_ADMIN');
    expect(view.security_opt).toContain('apparmor:unconfined');
  });

  it('passes every check (commands and env through the real CLI and config parsers, ports, volumes, NATS)', async () => {
    expect(await checkCompose(base, ctx)).toEqual([]);
  });

  it('checks capture and the inferencer with their own config parsers, the view with its own or with CLI.md', async () => {
    const seen = new Map<string, InvocationResult>();
    await checkCompose(base, {
      dir: ROOT,
      check: async (inv: Invocation) => {
        const r = await checkInvocation(inv);
        seen.set(inv.service, r);
        return r;
      },
    });
    expect(seen.get('capture')?.checkedBy).toBe('config');
    expect(seen.get('capture')?.cliChecked).toBe(true);
    expect(seen.get('inferencer')?.cliChecked).toBe(true);
    expect(seen.get('capture')?.disks.map((d) => d.id)).toEqual(['vm1']);
    expect(seen.get('inferencer')?.checkedBy).toBe('config');
    expect(seen.get('inferencer')?.natsUrls).toHaveLength(3);
    expect(seen.get('capture')?.natsUrls).toHaveLength(3);
    const viewHasConfig = existsSync(join(ROOT, 'services/view/src/config.ts'));
    expect(seen.get('view')?.checkedBy).toBe(viewHasConfig ? 'config' : 'cli-md');
    expect(seen.get('view')?.endpoints.get('grpc')?.port).toBe(50051);
  });

  it("checks a service that has no config module yet against CLI.md's line for it", () => {
    const ok = checkWithCliMd({ service: 'view', args: ['--nats', 'nats://a:4222,nats://b:4222', '--grpc', '0.0.0.0:50051'], env: { GAMMARAY_MOUNT: '/mnt/g' } });
    expect(ok.problems).toEqual([]);
    expect(ok.endpoints.get('grpc')).toEqual({ host: '0.0.0.0', port: 50051 });
    expect(ok.natsUrls).toEqual(['nats://a:4222', 'nats://b:4222']);
    const bad = checkWithCliMd({ service: 'view', args: ['--grpc', 'x', '--listen', '1:2'], env: { GAMMARAY_NATS: 'nats://a:4222', GAMMARAY_LISTEN: 'x', GAMMARAY_GRPC: 'y' } });
    expect(bad.problems).toEqual([
      'gammaray view: "--listen" is not a flag of `gammaray view --nats URL [--grpc HOST:PORT] [--mount DIR] [--metrics HOST:PORT]` (CLI.md)',
      'gammaray view: "1:2" is not a flag of `gammaray view --nats URL [--grpc HOST:PORT] [--mount DIR] [--metrics HOST:PORT]` (CLI.md)',
      'GAMMARAY_LISTEN is not a setting of gammaray view (CLI.md: gammaray view --nats URL [--grpc HOST:PORT] [--mount DIR] [--metrics HOST:PORT])',
      'GAMMARAY_GRPC is overridden by --grpc in the command',
      'gammaray view: --grpc must be HOST:PORT, got "x"',
    ]);
  });

  it('interpolates ${VAR:-default}, $$ and reports a variable with neither value nor default', () => {
    const problems: string[] = [];
    expect(interpolate('a=${X:-d} $$x ${Y}', { Y: 'y' }, problems, 'w')).toBe('a=d $x y');
    expect(problems).toEqual([]);
    interpolate('${NOPE}', {}, problems, 'services.capture.command');
    expect(problems).toEqual(['services.capture.command: $NOPE has no value and no default (compose would put an empty string)']);
    const withDisk = loadCompose(COMPOSE, { GAMMARAY_DISK: 'a=/var/lib/gammaray/disks/a.img' }).doc;
    expect((withDisk.services?.capture?.environment as Record<string, string>).GAMMARAY_DISK).toBe('a=/var/lib/gammaray/disks/a.img');
  });

  describe('reports a broken file', () => {
    it('depends_on a service that does not exist', async () => {
      const p = await problemsOf((_, s) => {
        s('view').depends_on = { 'nats-4': { condition: 'service_healthy' } };
      });
      expect(p).toContain('view: depends_on "nats-4", which is not a service');
    });

    it('waits for a service without a healthcheck to be healthy', async () => {
      const p = await problemsOf((_, s) => {
        delete s('nats-2').healthcheck;
      });
      expect(p).toContain('capture: waits for nats-2 to be healthy, but nats-2 has no healthcheck');
    });

    it('mounts an undeclared volume, and declares one nobody mounts', async () => {
      const p = await problemsOf((_, s) => {
        s('capture').volumes = ['disk-imgs:/var/lib/gammaray/disks'];
      });
      expect(p).toContain('capture: volume "disk-imgs" is not declared under the top-level volumes');
    });

    it('keeps a disk image outside any volume', async () => {
      const p = await problemsOf((_, s) => {
        (s('capture').environment as Record<string, string>).GAMMARAY_DISK = 'vm1=/tmp/vm1.img';
      });
      expect(p).toContain("capture: disk vm1's image /tmp/vm1.img is not on a named volume (it would not survive the container)");
    });

    it('gives capture a flag the CLI does not know', async () => {
      const p = await problemsOf((_, s) => {
        s('capture').command = replaceArg(s('capture').command, '--listen', '--listen-addr');
      });
      expect(p.some((x) => /^capture: gammaray capture .*the CLI refuses it \(exit 2\): gammaray: unknown option '--listen-addr'/.test(x))).toBe(true);
    });

    it('gives the inferencer a flag value its config refuses', async () => {
      const p = await problemsOf((_, s) => {
        s('inferencer-1').command = replaceArg(s('inferencer-1').command, '3', '7');
      });
      expect(p).toContain('inferencer-1: gammaray inferencer: --replicas (GAMMARAY_REPLICAS) must be 1 to 5 (1 on one machine, 3 in a cluster), got "7"');
    });

    it('sets a GAMMARAY_ variable the service does not read, or one a flag overrides', async () => {
      const p = await problemsOf((_, s) => {
        s('inferencer-2').environment = { GAMMARAY_LISTEN: '0.0.0.0:10809', GAMMARAY_METRICS: '0.0.0.0:9999' };
      });
      expect(p).toContain('inferencer-2: GAMMARAY_LISTEN is not a setting of gammaray inferencer (or a flag given in the command overrides it)');
      expect(p).toContain('inferencer-2: GAMMARAY_METRICS is not a setting of gammaray inferencer (or a flag given in the command overrides it)');
    });

    it('points a NATS URL at a service that does not exist, or at the wrong port', async () => {
      const p = await problemsOf((_, s) => {
        s('capture').command = replaceArg(s('capture').command, 'nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222', 'nats://nats:4222');
        s('inferencer-1').command = replaceArg(s('inferencer-1').command, 'nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222', 'nats://nats-1:4222,nats://nats-2:6222');
      });
      expect(p).toContain('capture: NATS URL nats://nats:4222 does not name a NATS service (nats-1, nats-2, nats-3)');
      expect(p).toContain('inferencer-1: NATS URL nats://nats-2:6222 uses port 6222, but nats-2 serves clients on 4222');
    });

    it('gives a service a NATS user without its password (readConfig refuses it)', async () => {
      const p = await problemsOf((_, s) => {
        delete (s('capture').environment as Record<string, string>)['GAMMARAY_NATS_PASSWORD'];
      });
      expect(p).toContain('capture: gammaray capture: --nats-user (GAMMARAY_NATS_USER) needs its password in GAMMARAY_NATS_PASSWORD (the environment keeps it out of process listings)');
    });

    it('asks for more JetStream replicas than NATS servers', async () => {
      const p = await problemsOf((_, s) => {
        s('capture').command = replaceArg(s('capture').command, '3', '5');
      });
      expect(p).toContain('capture: asks for 5 JetStream replicas, but there are 3 NATS servers');
    });

    it('publishes a port twice, or a container port nothing listens on', async () => {
      const p = await problemsOf((_, s) => {
        s('inferencer-2').ports = ['127.0.0.1:9102:9100'];
        s('view').ports = ['127.0.0.1:50051:50052', '127.0.0.1:9104:9100'];
      });
      expect(p).toContain('inferencer-2: host port 9102/tcp is also published by inferencer-1');
      expect(p).toContain('view: publishes container port 50052 (127.0.0.1:50051:50052), where it does not listen (it listens on 50051, 9100)');
    });

    it('listens on loopback inside the container', async () => {
      const p = await problemsOf((_, s) => {
        s('capture').command = replaceArg(s('capture').command, '0.0.0.0:10809', '127.0.0.1:10809');
      });
      expect(p).toContain('capture: listen listens on 127.0.0.1:10809, which nothing outside the container reaches; use 0.0.0.0');
    });

    it('health-checks a port that is not the metrics port', async () => {
      const p = await problemsOf((_, s) => {
        s('view').healthcheck = { test: ['CMD', 'node', '-e', "fetch('http://127.0.0.1:9200/readyz')"] };
      });
      expect(p).toContain('view: healthcheck asks port 9200, but metrics are served on 9100');
    });

    it('routes a NATS node to a node that does not exist, and leaves one unrouted', async () => {
      const p = await problemsOf((_, s) => {
        s('nats-2').command = replaceArg(s('nats-2').command, 'nats://nats-1:6222,nats://nats-3:6222', 'nats://nats-1:6222,nats://nats-4:6222');
      });
      expect(p).toContain('nats-2: route "nats://nats-4:6222" does not name a NATS service');
      expect(p).toContain('nats-2: no route to nats-3');
    });

    it('keeps a JetStream store outside a volume, or reuses a server name', async () => {
      const p = await problemsOf((_, s) => {
        s('nats-3').volumes = [];
        s('nats-3').command = replaceArg(s('nats-3').command, 'nats-3', 'nats-1');
      });
      expect(p).toContain('nats-3: the JetStream store /data is not on a named volume (it would not survive the container)');
      expect(p).toContain('nats-3: server name nats-1 is also used by nats-1');
    });

    it('builds from a Dockerfile that does not exist, or names the image after another service', async () => {
      const p = await problemsOf((_, s) => {
        s('inferencer-1').build = { context: '.', dockerfile: 'services/inferencer/Dockerfil' };
        s('view').image = 'gammaray/capture:dev';
      });
      expect(p).toContain('inferencer-1: Dockerfile services/inferencer/Dockerfil does not exist in the build context .');
      expect(p).toContain('view: image gammaray/capture:dev is built from services/view/Dockerfile: name it gammaray/view:TAG');
    });

    it('runs the wrong subcommand on an image, or replaces the entrypoint of a long-running service', async () => {
      const p = await problemsOf((_, s) => {
        s('inferencer-1').command = replaceArg(s('inferencer-1').command, 'inferencer', 'capture');
        s('disk-images-init').restart = 'unless-stopped';
      });
      expect(p).toContain('inferencer-1: runs `gammaray capture` on the inferencer image; the command must start with inferencer');
      expect(p).toContain('disk-images-init: replaces the gammaray entrypoint, which only a one-shot job awaited with service_completed_successfully may do');
    });

    it('gives the view a flag it does not have', async () => {
      const p = await problemsOf((_, s) => {
        s('view').command = [...(s('view').command as string[]), '--listen', '0.0.0.0:1'];
      });
      // The CLI's own message once it has the view command; the config parser's reads until then.
      expect(p.filter((x) => x.startsWith('view: ') && /--listen/.test(x))).toEqual([
        expect.stringMatching(/^view: (--listen is not a setting of gammaray view|gammaray view .*unknown option '--listen')/),
      ]);
    });
  });
});

describe('nats-server flags of the compose NATS services', () => {
  let dir: string;
  const have = existsSync(NATS_SERVER);
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'gammaray-compose-nats-'));
    writeFileSync(join(dir, 'empty.conf'), '');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** `nats-server -c empty.conf FLAGS -t`: it exits 0 even on a bad flag, so the verdict is on stderr. */
  function natsTest(flags: readonly string[], env: NodeJS.ProcessEnv = {}): string {
    const r = spawnSync(NATS_SERVER, ['-c', join(dir, 'empty.conf'), ...flags, '-t'], { encoding: 'utf8', env });
    return `${r.stderr}${r.stdout}`;
  }

  it.runIf(have)('are accepted by nats-server', () => {
    for (const [name, svc] of Object.entries(base.services ?? {})) {
      if (!/^nats:/.test(svc.image ?? '')) continue;
      // The auth block is mounted from the repository; its password variables come from the node's environment.
      const paths: Record<string, string> = { '/data': join(dir, name), '/etc/nats/gammaray-auth.conf': join(ROOT, 'deploy/nats/compose-auth.conf') };
      const out = natsTest((svc.command as string[]).map((a) => paths[a] ?? a), { CAPTURE_PASSWORD: 'pa', INFERENCER_PASSWORD: 'pb', VIEW_PASSWORD: 'pc', VM1_READER_PASSWORD: 'pd' });
      expect(out, name).toMatch(/configuration file .* is valid/);
    }
  });

  it.runIf(have)('and a misspelt one is not', () => {
    expect(natsTest(['--name', 'x', '--jetstream', '--stor_dir', '/tmp/x'])).toMatch(/flag provided but not defined: -stor_dir/);
  });

  it.runIf(!have)('need nats-server to be checked (scripts/setup.sh installs it)', () => {
    throw new Error(`${NATS_SERVER} is missing: run scripts/setup.sh`);
  });
});

describe('Dockerfiles', () => {
  const ignore = dockerignore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
  const EXPECT: Record<string, RuntimeExpectation> = {
    capture: { service: 'capture', user: 'node' },
    inferencer: { service: 'inferencer', user: 'node' },
    // The view mounts FUSE: root in its container (services/view/Dockerfile says why).
    view: { service: 'view', user: 'root' },
  };
  const read = (s: string) => parseDockerfile(readFileSync(join(ROOT, 'services', s, 'Dockerfile'), 'utf8'));

  it.each(SERVICES)('services/%s/Dockerfile passes every check', (s) => {
    expect(checkDockerfile(read(s), ROOT, ignore, EXPECT[s]!)).toEqual([]); // ok: every service has an entry
  });

  it('are multi-stage: built with pnpm on node:20-bookworm, run on node:20-bookworm-slim', () => {
    for (const s of SERVICES) {
      const df = read(s);
      expect(df.stages.map((st) => st.base.replace('${NODE_VERSION}', '20'))).toEqual(['node:20-bookworm', 'node:20-bookworm-slim']);
      expect(df.stages[0]?.instructions.some((i) => i.op === 'RUN' && /pnpm build/.test(i.rest))).toBe(true);
    }
  });

  it('run node with flags node accepts; the inferencer with a small young generation (what bench/infer measures)', () => {
    for (const s of SERVICES) {
      const entry = read(s).stages.at(-1)!.instructions.filter((i) => i.op === 'ENTRYPOINT').pop()!; // ok: checked above
      const args = JSON.parse(entry.rest) as string[];
      const flags = args.slice(1).filter((a) => a.startsWith('--'));
      const r = spawnSync(process.execPath, [...flags, '-e', '0'], { encoding: 'utf8' });
      expect(r.stderr, `services/${s}/Dockerfile: node ${flags.join(' ')}`).toBe('');
      expect(r.status).toBe(0);
      if (s === 'inferencer') expect(flags).toContain('--max-semi-space-size=2');
    }
    expect(spawnSync(process.execPath, ['--max-semi-space-sise=2', '-e', '0'], { encoding: 'utf8' }).status).not.toBe(0);
  });

  it('.dockerignore keeps host node_modules and dist out of the context', () => {
    expect(ignored('node_modules', ignore)).toBe(true);
    expect(ignored('packages/ext4/node_modules/x', ignore)).toBe(true);
    expect(ignored('packages/cli/dist/gammaray.cjs', ignore)).toBe(true);
    expect(ignored('packages/cli/src/main.ts', ignore)).toBe(false);
    expect(ignored('pnpm-lock.yaml', ignore)).toBe(false);
  });

  it('joins continuation lines and skips comments', () => {
    const df = parseDockerfile('ARG V=1\nFROM node:${V} AS a\nRUN echo 1 \\\n  # a comment\n  && echo 2\nFROM a\n');
    expect(df.stages.map((s) => [s.base, s.name])).toEqual([['node:${V}', 'a'], ['a', undefined]]);
    expect(df.stages[0]?.instructions[0]).toEqual({ op: 'RUN', rest: 'echo 1    && echo 2', line: 3 });
  });

  describe('reports a broken Dockerfile', () => {
    const text = readFileSync(join(ROOT, 'services/capture/Dockerfile'), 'utf8');
    const check = (t: string, expect_: RuntimeExpectation = EXPECT.capture!) => checkDockerfile(parseDockerfile(t), ROOT, ignore, expect_); // ok: defined above

    it('copies from a stage that does not exist or comes later', () => {
      expect(check(text.replace('COPY --from=build', 'COPY --from=buidl'))).toEqual([expect.stringMatching(/COPY --from=buidl: no stage is named buidl/)]);
      expect(check(text.replace('FROM node:${NODE_VERSION}-bookworm AS build', 'FROM node:${NODE_VERSION}-bookworm AS build\nCOPY --from=runtime / /x'))).toEqual([
        expect.stringMatching(/COPY --from=runtime: that stage is not built before this one/),
      ]);
    });

    it('uses an ARG in FROM that is not declared first', () => {
      expect(check(text.replace('ARG NODE_VERSION=20\n', ''))).toContain('FROM node:${NODE_VERSION}-bookworm: ARG NODE_VERSION is not declared before the first FROM');
    });

    it('copies a file that is not in the context, or that .dockerignore excludes', () => {
      expect(check(text.replace('COPY package.json', 'COPY package.jsn'))).toEqual([expect.stringMatching(/COPY package\.jsn: not in the build context/)]);
      expect(check(text.replace('COPY package.json', 'COPY bench package.json'))).toEqual([expect.stringMatching(/COPY bench: excluded from the build context by \.dockerignore/)]);
    });

    it('runs capture as root, uses a shell-form entrypoint, or a default command for another service', () => {
      expect(check(text.replace('USER node\n', ''))).toContain('the runtime stage runs as root; expected node');
      expect(check(text.replace('ENTRYPOINT ["node", "/opt/gammaray/bin/gammaray.js"]', 'ENTRYPOINT node /opt/gammaray/bin/gammaray.js'))).toContain(
        'the runtime stage needs an exec-form ENTRYPOINT (signals reach node only then)',
      );
      expect(check(text.replace('CMD ["capture"', 'CMD ["view"'))).toContain('CMD should start with the capture subcommand, got ["view", "--help"]');
    });

    it('runs a binary no COPY put there', () => {
      expect(check(text.replace('COPY --from=build /out /opt/gammaray', 'COPY --from=build /out /opt/gr'))).toContain(
        'ENTRYPOINT runs /opt/gammaray/bin/gammaray.js, which no COPY --from=... of the runtime stage puts there',
      );
    });
  });
});

describe('the compose file as YAML', () => {
  it('has no duplicate keys, errors or warnings (anchors and merge keys resolve)', () => {
    const d = parseDocument(readFileSync(COMPOSE, 'utf8'), { merge: true, uniqueKeys: true });
    expect([...d.errors, ...d.warnings].map((e) => e.message)).toEqual([]);
  });
});
