/**
 * The authorization block of deploy/nats/values.yaml (config.merge), run in a real nats-server: each gammaray
 * service logs in as its own user (GAMMARAY_NATS_USER + GAMMARAY_NATS_PASSWORD through the service's readConfig)
 * and runs its real code (capture serving an ext4 image, an inferencer crawling it, a view replicating it) without
 * a single permission violation in the server's log; what a service must not do is refused (the view publishing
 * writes, the inferencer publishing writes or taking block requests, capture publishing events); no connection
 * gets in without credentials; the per-disk example user `vm1-reader` reads the events of disk vm1 and nothing
 * else. docker-compose.yml's NATS nodes load the same block from deploy/nats/compose-auth.conf.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { KV_LEASES, OBJ_STATE, STREAM_EVENTS, STREAM_WRITES, blocksSubject, diskEventsFilter, eventsSubject, writesSubject } from '@gammaray/wire';
import * as captureService from '../../services/capture/src/index.js';
import * as inferencerService from '../../services/inferencer/src/index.js';
import * as viewService from '../../services/view/src/index.js';
import { NATS_SERVER_BIN } from '../support/nats-server.js';
import { ROOT } from './invocation.js';

interface Values {
  config: { merge: Record<string, unknown> };
  container: { env: Record<string, { valueFrom?: { secretKeyRef?: { key: string } } }> };
}

/**
 * nats.conf text of the chart's `config.merge`: each top-level key as `key: <JSON>` (NATS config reads JSON
 * values), and the chart's `<< $X >>` (an unquoted value) as the bare variable `$X`.
 */
export function natsConf(merge: Record<string, unknown>): string {
  return Object.entries(merge)
    .map(([k, v]) => `${k}: ${JSON.stringify(v).replace(/"<< (\$[A-Za-z0-9_]+) >>"/g, '$1')}`)
    .join('\n');
}

/** The service users and the variable that holds each one's password (container.env of values.yaml). */
const SERVICE_USERS = { capture: 'CAPTURE_PASSWORD', inferencer: 'INFERENCER_PASSWORD', view: 'VIEW_PASSWORD' } as const;

const values = parse(readFileSync(join(ROOT, 'deploy/nats/values.yaml'), 'utf8')) as Values;
const passwords = new Map<string, string>();
let dir: string;
let server: ChildProcess;
let serverLog = '';
let url: string;
const open: NatsConnection[] = [];
const running: { stop(): Promise<void> }[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** Starts nats-server with the config and keeps its whole log (permission violations are logged as errors). */
async function startServer(conf: string, port: number): Promise<void> {
  server = spawn(NATS_SERVER_BIN, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'js'), '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'], env: process.env });
  server.stderr?.on('data', (d: Buffer) => (serverLog += d.toString()));
  const deadline = Date.now() + 15_000;
  while (!/Server is ready/.test(serverLog)) {
    if (server.exitCode !== null || Date.now() > deadline) throw new Error(`nats-server did not start: ${serverLog}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The permission violations the server logged since `from` (an offset in its log): `Publish Violation` and
 * `Subscription Violation` lines (nats-server 2.10 logs each refusal as an error with the user and subject).
 */
function violations(from = 0): string[] {
  return serverLog.slice(from).split('\n').filter((l) => /Violation/.test(l));
}

async function login(user?: string, pass?: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url, ...(user ? { user, pass } : {}), maxReconnectAttempts: 0, name: user ?? 'anonymous' });
  open.push(nc);
  return nc;
}

/** A service user's connection, with the password the chart would give it. */
function loginAs(user: keyof typeof SERVICE_USERS): Promise<NatsConnection> {
  return login(user, passwords.get(SERVICE_USERS[user]));
}

/** The environment a service container gets: its user, and its password from the Secret. */
function serviceEnv(user: keyof typeof SERVICE_USERS): NodeJS.ProcessEnv {
  return { GAMMARAY_NATS_USER: user, GAMMARAY_NATS_PASSWORD: passwords.get(SERVICE_USERS[user]) };
}

/** Whether the server refuses `nc` a publish to `subject` (it answers -ERR Permissions Violation). */
async function publishRefused(nc: NatsConnection, subject: string): Promise<boolean> {
  const from = serverLog.length;
  nc.publish(subject, 'x');
  await nc.flush();
  const refused = () => violations(from).some((l) => /Publish/.test(l) && l.includes(`"${subject}"`));
  for (let i = 0; i < 50 && !refused(); i++) await new Promise((r) => setTimeout(r, 20));
  return refused();
}

/** Whether the server refuses `nc` a subscription to `subject`. */
async function subscribeRefused(nc: NatsConnection, subject: string, queue?: string): Promise<boolean> {
  const sub = nc.subscribe(subject, queue ? { queue } : {});
  const closed = await Promise.race([sub.closed.then((e) => String(e), (e: unknown) => String(e)), new Promise<string>((r) => setTimeout(() => r('still open'), 2000))]);
  sub.unsubscribe();
  return /permission/i.test(closed);
}

async function until(what: string, f: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await f().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; server log:\n${violations().join('\n')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gammaray-nats-auth-'));
  // The chart sets these from the Secret gammaray-nats-auth; here each gets a fresh random password, starting
  // with a letter as deploy/README.md asks (nats-server reads a variable's value as a config value: 1e3f... is a
  // number, and a parse error).
  for (const name of Object.keys(values.container.env)) {
    const pw = `p${randomBytes(12).toString('hex')}`;
    passwords.set(name, pw);
    process.env[name] = pw;
  }
  const conf = join(dir, 'auth.conf');
  writeFileSync(conf, natsConf(values.config.merge));
  const port = await freePort();
  url = `nats://127.0.0.1:${port}`;
  await startServer(conf, port);
}, 30_000);

afterAll(async () => {
  for (const s of running.reverse()) await s.stop().catch(() => {});
  for (const nc of open) await nc.close().catch(() => {});
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  for (const name of passwords.keys()) delete process.env[name];
  rmSync(dir, { recursive: true, force: true });
});

describe('NATS authorization from deploy/nats/values.yaml', () => {
  it('needs passwords that do not read as numbers (deploy/README.md says to start them with a letter)', () => {
    const conf = join(dir, 'pw.conf');
    writeFileSync(conf, natsConf({ authorization: { user: 'a', password: '<< $PW >>' } }));
    const test = (pw: string) => spawnSync(NATS_SERVER_BIN, ['-c', conf, '-t'], { encoding: 'utf8', env: { PW: pw } }).stderr;
    expect(test('p1e3f00')).toMatch(/is valid/);
    expect(test('1e3f00')).toMatch(/could not be parsed/);
  });

  it('renders the chart variables as NATS variables', () => {
    expect(natsConf({ a: { password: '<< $X_1 >>' }, b: 'c' })).toBe('a: {"password":$X_1}\nb: "c"');
  });

  it('is the block docker-compose.yml gives its NATS nodes (deploy/nats/compose-auth.conf)', () => {
    const file = join(ROOT, 'deploy/nats/compose-auth.conf');
    const text = readFileSync(file, 'utf8');
    const header = text.split('\n').filter((l) => l.startsWith('#')).join('\n');
    if (process.env['GAMMARAY_REGEN_COMPOSE_AUTH']) writeFileSync(file, `${header}\n${natsConf(values.config.merge)}\n`);
    const body = text.split('\n').filter((l) => !l.startsWith('#')).join('\n').trim();
    expect(body, 'regenerate deploy/nats/compose-auth.conf from values.yaml (see its header)').toBe(natsConf(values.config.merge));
  });

  it('has no no_auth_user: a connection without credentials is refused', async () => {
    expect(values.config.merge).not.toHaveProperty('no_auth_user');
    await expect(login()).rejects.toThrow(/Authorization/i);
  });

  it('lets the service users log in with their passwords, and refuses a wrong one', async () => {
    for (const user of Object.keys(SERVICE_USERS) as (keyof typeof SERVICE_USERS)[]) {
      const nc = await loginAs(user);
      await jetstreamManager(nc).then((m) => m.getAccountInfo());
    }
    await expect(login('capture', 'wrong')).rejects.toThrow(/Authorization/i);
  });

  it('runs capture, the inferencer and the view, each as its own user, without a permission violation', async () => {
    // An ext4 image with one file, served by capture, crawled by the inferencer (block reads from capture,
    // events, leases, checkpoints), replicated by the view (registry, checkpoints, writes, block reads).
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'hello.txt'), 'hello\n');
    const image = join(dir, 'vm1.img');
    execFileSync('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, image, '16M']);
    const log = pino({ level: 'silent' });
    const from = serverLog.length;

    const capture = captureService.create(
      captureService.readConfig({ nats: url, listen: `127.0.0.1:${await freePort()}`, disk: [`vm1=${image}`] }, serviceEnv('capture')),
      log,
    );
    await capture.start();
    running.push(capture);
    const inferencer = inferencerService.create(inferencerService.readConfig({ nats: url }, serviceEnv('inferencer')), log);
    await inferencer.start();
    running.push(inferencer);

    const nc = await loginAs('view');
    const jsm = await jetstreamManager(nc);
    await until('the inferencer to publish vm1 events', async () => (await jsm.streams.info(STREAM_EVENTS)).state.messages > 0);
    await until('a checkpoint of vm1', async () => (await jsm.streams.info(`OBJ_${OBJ_STATE}`)).state.messages > 0);

    const view = viewService.create(viewService.readConfig({ nats: url, grpc: `127.0.0.1:${await freePort()}` }, serviceEnv('view')), log);
    await view.start();
    running.push(view);
    // The view's follow (what `gammaray follow` does) reads vm1's events as the view user.
    const c = await jetstream(nc, { timeout: 3000 }).consumers.get(STREAM_EVENTS, { filter_subjects: diskEventsFilter('vm1') });
    const m = await c.next({ expires: 3000 });
    expect(m?.subject).toMatch(/^gammaray\.vm1\.fs\./);
    await new Promise((r) => setTimeout(r, 1000));
    expect(violations(from)).toEqual([]);
  }, 90_000);

  it('refuses the view every publish of writes, events, KV entries and objects', async () => {
    const nc = await loginAs('view');
    for (const subject of [writesSubject('x'), eventsSubject('x', 'create'), `$KV.${KV_LEASES}.vm1`, `$O.${OBJ_STATE}.M.x`, `$JS.API.STREAM.DELETE.${STREAM_WRITES}`, `$JS.API.STREAM.PURGE.${STREAM_EVENTS}`]) {
      expect(await publishRefused(nc, subject), subject).toBe(true);
    }
    await expect(new Kvm(nc).open(KV_LEASES).then((kv) => kv.put('vm1', 'stolen'))).rejects.toThrow(/permission|timeout/i);
    expect(await subscribeRefused(nc, blocksSubject('vm1'))).toBe(true);
  });

  it('refuses the inferencer writes and block requests, and capture events', async () => {
    const inf = await loginAs('inferencer');
    expect(await publishRefused(inf, writesSubject('x'))).toBe(true);
    expect(await publishRefused(inf, `$JS.API.STREAM.DELETE.${STREAM_WRITES}`)).toBe(true);
    expect(await subscribeRefused(inf, blocksSubject('vm1'), 'gammaray-blocks')).toBe(true);
    const cap = await loginAs('capture');
    expect(await publishRefused(cap, eventsSubject('x', 'create'))).toBe(true);
    expect(await publishRefused(cap, `$KV.${KV_LEASES}.vm1`)).toBe(true);
    expect(await publishRefused(cap, `$O.${OBJ_STATE}.M.x`)).toBe(true);
  });

  it("lets vm1-reader read disk vm1's events through a consumer", async () => {
    const nc = await login('vm1-reader', passwords.get('VM1_READER_PASSWORD'));
    const c = await jetstream(nc, { timeout: 3000 }).consumers.get(STREAM_EVENTS, { filter_subjects: diskEventsFilter('vm1') });
    const m = await c.next({ expires: 3000 });
    expect(m?.subject).toMatch(/^gammaray\.vm1\.fs\./);
  });

  it("refuses vm1-reader a consumer on vm2's events, a subscription to them, and the writes", async () => {
    const nc = await login('vm1-reader', passwords.get('VM1_READER_PASSWORD'));
    await expect(
      (async () => {
        const c = await jetstream(nc, { timeout: 3000 }).consumers.get(STREAM_EVENTS, { filter_subjects: diskEventsFilter('vm2') });
        return c.next({ expires: 2000 });
      })(),
    ).rejects.toThrow(/permission|timeout/i);
    for (const subject of [diskEventsFilter('vm2'), writesSubject('vm1')]) expect(await subscribeRefused(nc, subject), subject).toBe(true);
  });
});
