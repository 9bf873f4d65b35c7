/**
 * `gammaray up --nats URL` with a NATS server its services cannot use: one line on stderr that says what is wrong
 * and what to do, a non-zero exit within a bounded time, no service started (no log lines of theirs, no data
 * directory). Before, the capture was started and failed, and its pino JSON lines were printed as the error.
 * Real nats-servers (without JetStream, with a password), a port nothing listens on, and a TCP server that accepts
 * and says nothing. Needs `pnpm build` first (the CLI runs from its bundle).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, freeTcpPort } from '../support/capture-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

const exec = promisify(execFile);
let work: string;
let image: string;
const servers: NatsServer[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-up-nats-'));
  const src = join(work, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a.txt'), 'a\n');
  image = join(work, 'vm.img');
  await exec('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, image, '16M']);
}, 30_000);

afterAll(async () => {
  for (const s of servers) await s.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs `gammaray up --nats URL` (env without NATS credentials) to its end: exit status, stderr, stdout, seconds. */
async function up(url: string, dataDir: string): Promise<{ code: number; stderr: string; stdout: string; seconds: number }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GAMMARAY_')));
  const t0 = Date.now();
  const args = [CLI, 'up', '--image', image, '--nats', url, '--data-dir', dataDir, '--listen', `127.0.0.1:${await freeTcpPort()}`, '--grpc', `127.0.0.1:${await freeTcpPort()}`];
  const r = await exec('node', args, { env, timeout: 60_000 }).then(
    (ok) => ({ code: 0, stderr: ok.stderr, stdout: ok.stdout }),
    (e: { code: number; stderr: string; stdout: string }) => ({ code: e.code, stderr: e.stderr, stdout: e.stdout }),
  );
  return { ...r, seconds: (Date.now() - t0) / 1000 };
}

describe('gammaray up --nats URL that cannot serve the services', () => {
  it('a port nothing listens on: one line, exit 1, nothing started', async () => {
    const port = await freeTcpPort();
    const data = join(work, 'd-refused');
    const r = await up(`nats://127.0.0.1:${port}`, data);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toBe(`gammaray: cannot reach NATS at nats://127.0.0.1:${port} (connection refused): check the address and that nats-server runs there with JetStream (nats-server -js), or leave out --nats to let up start its own\n`);
    expect(r.stdout).toBe('');
    expect(existsSync(data)).toBe(false);
  }, 60_000);

  it('a server that accepts and never answers: the same within seconds', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as { port: number }).port;
    try {
      const r = await up(`nats://127.0.0.1:${port}`, join(work, 'd-silent'));
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^gammaray: cannot reach NATS at nats://127\\.0\\.0\\.1:${port} \\([^\\n]+\\): check the address and that nats-server runs there with JetStream \\(nats-server -js\\), or leave out --nats to let up start its own\\n$`));
      expect(r.seconds).toBeLessThan(15);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  }, 60_000);

  it('a NATS server without JetStream: one line naming -js, exit 2', async () => {
    const nats = await startNatsServer({ jetstream: false });
    servers.push(nats);
    const r = await up(nats.url, join(work, 'd-nojs'));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toBe(`gammaray: NATS at ${nats.url} answers but JetStream does not (jetstream is not enabled): start that server with JetStream (nats-server -js, or jetstream {} in its config), or leave out --nats to let up start its own\n`);
    expect(existsSync(join(work, 'd-nojs'))).toBe(false);
  }, 60_000);

  it('a NATS server that wants credentials none were given for: one line naming the variables, exit 2', async () => {
    const nats = await startNatsServer({ jetstream: true, args: ['--user', 'ops', '--pass', 'not-given-here'] });
    servers.push(nats);
    const r = await up(nats.url, join(work, 'd-auth'));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`^gammaray: NATS at ${nats.url.replace(/[.]/g, '\\.')} refused the connection's credentials \\([^\\n]*\\): set GAMMARAY_NATS_USER and GAMMARAY_NATS_PASSWORD [^\\n]*, or leave out --nats to let up start its own\\n$`));
  }, 60_000);
});
