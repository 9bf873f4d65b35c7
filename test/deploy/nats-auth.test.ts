/**
 * The authorization block of deploy/nats/values.yaml (config.merge), run in a real nats-server: the users log in
 * with the passwords the chart passes as environment variables, connections without credentials are the
 * no_auth_user (the services connect that way today), and the per-disk example user `vm1-reader` reads the events
 * of disk vm1 through a JetStream consumer while every attempt at another disk's events, the writes or the block
 * reads is refused.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { EVENTS_WILDCARD, STREAM_EVENTS, diskEventsFilter, eventsSubject, writesSubject } from '@gammaray/wire';
import { NATS_SERVER_BIN, startNatsServer, type NatsServer } from '../support/nats-server.js';
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

const values = parse(readFileSync(join(ROOT, 'deploy/nats/values.yaml'), 'utf8')) as Values;
const passwords = new Map<string, string>();
let dir: string;
let nats: NatsServer;
const open: NatsConnection[] = [];

async function login(user?: string, pass?: string): Promise<NatsConnection> {
  const nc = await connect({ servers: nats.url, ...(user ? { user, pass } : {}), maxReconnectAttempts: 0 });
  open.push(nc);
  return nc;
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
  nats = await startNatsServer({ args: ['-c', conf] });
});

afterAll(async () => {
  for (const nc of open) await nc.close().catch(() => {});
  await nats?.stop();
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

  it('lets the service users log in with their passwords, and refuses a wrong one', async () => {
    for (const [user, env] of [['capture', 'CAPTURE_PASSWORD'], ['inferencer', 'INFERENCER_PASSWORD'], ['view', 'VIEW_PASSWORD']] as const) {
      const nc = await login(user, passwords.get(env));
      await jetstreamManager(nc).then((m) => m.getAccountInfo());
    }
    await expect(login('capture', 'wrong')).rejects.toThrow(/Authorization/i);
  });

  it('treats a connection without credentials as the no_auth_user, with JetStream', async () => {
    const nc = await login();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: STREAM_EVENTS, subjects: [EVENTS_WILDCARD] });
    const js = jetstream(nc);
    await js.publish(eventsSubject('vm1', 'create'), 'one');
    await js.publish(eventsSubject('vm2', 'create'), 'two');
    expect((await jsm.streams.info(STREAM_EVENTS)).state.messages).toBe(2);
  });

  it("lets vm1-reader read disk vm1's events through a consumer", async () => {
    const nc = await login('vm1-reader', passwords.get('VM1_READER_PASSWORD'));
    const c = await jetstream(nc, { timeout: 3000 }).consumers.get(STREAM_EVENTS, { filter_subjects: diskEventsFilter('vm1') });
    const m = await c.next({ expires: 3000 });
    expect(m?.subject).toBe(eventsSubject('vm1', 'create'));
    expect(m?.string()).toBe('one');
  });

  it("refuses vm1-reader a consumer on vm2's events, a subscription to them, and the writes", async () => {
    const nc = await login('vm1-reader', passwords.get('VM1_READER_PASSWORD'));
    await expect(
      (async () => {
        const c = await jetstream(nc, { timeout: 3000 }).consumers.get(STREAM_EVENTS, { filter_subjects: diskEventsFilter('vm2') });
        return c.next({ expires: 2000 });
      })(),
    ).rejects.toThrow(/permission|timeout/i);
    for (const subject of [diskEventsFilter('vm2'), writesSubject('vm1')]) {
      const sub = nc.subscribe(subject);
      const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r('still open'), 3000))]);
      expect(String(closed), subject).toMatch(/permission/i);
    }
  });
});
