/**
 * Security defaults that pass through to NATS: a nats-server requiring TLS with client certificates and a user
 * and password; `gammaray capture`, `inferencer` and `view` processes (and `gammaray follow`) connect with
 * `--nats-tls-*` / `GAMMARAY_NATS_*` settings and do their jobs; a wrong password stops a service with a message
 * that says so, and contradictory settings are a user error (exit 2) naming the setting.
 * Needs `pnpm build` first (the CLI runs from its bundle).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startInferencer, type InferencerProcess } from '../support/inferencer-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { startView } from '../support/view-process.js';

const exec = promisify(execFile);
const PASSWORD = 'p4ss-word-for-tests';
let work: string;
let nats: NatsServer;
let capture: CaptureProcess | undefined;
let inferencer: InferencerProcess | undefined;
let url: string;
const saved = { ...process.env };

async function openssl(...args: string[]): Promise<void> {
  await exec('openssl', args, { cwd: work });
}

/** Runs the CLI to completion (or until `timeoutMs`, then SIGTERM) and returns its exit status and output. */
function runCli(args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('node', [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-nats-auth-'));
  // A CA, a server certificate for 127.0.0.1 and a client certificate.
  await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=gammaray test CA', '-keyout', 'ca.key', '-out', 'ca.pem');
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    await openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    writeFileSync(join(work, `${name}.ext`), `${ext}\n`);
    await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
  }
  const conf = join(work, 'nats.conf');
  writeFileSync(
    conf,
    [
      `tls { cert_file: "${join(work, 'server.pem')}", key_file: "${join(work, 'server.key')}", ca_file: "${join(work, 'ca.pem')}", verify: true }`,
      `authorization { users = [ { user: "gammaray", password: "${PASSWORD}" } ] }`,
    ].join('\n'),
  );
  nats = await startNatsServer({ jetstream: true, args: ['-c', conf] });
  url = `tls://127.0.0.1:${nats.port}`;
  const src = join(work, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'secret.txt'), 'shh\n');
  const image = join(work, 'sec.img');
  await exec('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, image, '16M']);
  // Every child process started from here on inherits these.
  Object.assign(process.env, {
    GAMMARAY_NATS_USER: 'gammaray',
    GAMMARAY_NATS_PASSWORD: PASSWORD,
    GAMMARAY_NATS_TLS_CA: join(work, 'ca.pem'),
    GAMMARAY_NATS_TLS_CERT: join(work, 'client.pem'),
    GAMMARAY_NATS_TLS_KEY: join(work, 'client.key'),
  });
  capture = await startCapture(url, { sec: image });
}, 90_000);

afterAll(async () => {
  process.env = saved;
  await inferencer?.stop();
  await capture?.stop();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('NATS with TLS client certificates and a password', () => {
  it('capture, inferencer, view and follow work through it', async () => {
    inferencer = await startInferencer(url);
    await inferencer.waitForLog(/disk crawled/, 30_000);
    const env = { ...process.env };
    delete env['GAMMARAY_NATS_USER']; // given as a flag instead
    const follow = await runCli(['follow', 'sec', '--from-start', '--json', '--nats', url, '--nats-user', 'gammaray'], env, 4_000);
    expect(follow.out).toMatch(/"kind":"snapshot"/);
    const view = await startView(url);
    try {
      // The view answers FAILED_PRECONDITION until its replica restored the checkpoint: ask until it has.
      let tree = await runCli(['tree', 'sec', '--grpc', `127.0.0.1:${view.port}`], process.env, 20_000);
      for (let i = 0; i < 30 && tree.code !== 0; i++) {
        await new Promise((r) => setTimeout(r, 500));
        tree = await runCli(['tree', 'sec', '--grpc', `127.0.0.1:${view.port}`], process.env, 20_000);
      }
      expect(tree.code, tree.out).toBe(0);
      expect(tree.out.split('\n')).toContain('/secret.txt');
    } finally {
      expect(await view.stop()).toBe(0);
    }
  });

  it('a wrong password stops the service with a message that says why', async () => {
    const r = await runCli(['inferencer', '--nats', url], { ...process.env, GAMMARAY_NATS_PASSWORD: 'wrong' }, 20_000);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/authoriz|authentic/i);
  });

  it('contradictory or incomplete settings are a user error naming the setting', async () => {
    const noPassword = { ...process.env };
    delete noPassword['GAMMARAY_NATS_PASSWORD'];
    const a = await runCli(['inferencer', '--nats', url], noPassword, 10_000);
    expect(a.code).toBe(2);
    expect(a.out).toMatch(/--nats-user \(GAMMARAY_NATS_USER\) needs its password in GAMMARAY_NATS_PASSWORD/);
    const b = await runCli(['view', '--nats', url, '--nats-creds', join(work, 'missing.creds')], process.env, 10_000);
    expect(b.code).toBe(2);
    expect(b.out).toMatch(/--nats-creds \(GAMMARAY_NATS_CREDS\): cannot read/);
    const c = await runCli(['capture', '--nats', url, '--disk', `x=${join(work, 'sec.img')}`, '--nats-tls-cert', join(work, 'client.pem')], { ...process.env, GAMMARAY_NATS_TLS_KEY: '' }, 10_000);
    expect(c.code).toBe(2);
    expect(c.out).toMatch(/--nats-tls-cert and --nats-tls-key go together/);
  });
});
