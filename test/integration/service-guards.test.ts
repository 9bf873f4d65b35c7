/**
 * What guards the services' users. One capture per disk id: a second `gammaray capture` for a disk id that a live
 * capture serves is refused (two writers would interleave two disks' writes in one stream, and the registry would
 * name the wrong image), the same image under two disk ids of one capture is refused, and a disk whose capture
 * died is taken over. Start-up errors a user can fix say how in one line. `gammaray follow` says when NATS is
 * lost and back. Needs `pnpm build` first (the CLI runs from its bundle).
 */
import { execFile, spawn } from 'node:child_process';
import { linkSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KV_DISKS, decodeDiskEntry, type DiskRegistryEntry } from '@gammaray/wire';
import { CLI, freeTcpPort, startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startInferencer } from '../support/inferencer-process.js';
import { spawnService } from '../support/service-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

const exec = promisify(execFile);
let work: string;
let nats: NatsServer;
let nc: NatsConnection;
const running: CaptureProcess[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-capture-owner-'));
  for (const name of ['a.img', 'b.img', 'c.img']) {
    writeFileSync(join(work, name), '');
    truncateSync(join(work, name), 8 * 1024 * 1024);
  }
  nats = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: nats.url });
}, 60_000);

afterAll(async () => {
  for (const c of running) await c.stop();
  await nc?.close();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function entry(disk: string): Promise<DiskRegistryEntry> {
  const kv = await new Kvm(nc).open(KV_DISKS);
  const e = await kv.get(disk);
  if (!e) throw new Error(`no registry entry for ${disk}`);
  return decodeDiskEntry(e.value);
}

/** Runs a capture that is expected to stop at once; its exit status and stderr. */
async function failingCapture(args: string[]): Promise<{ code: number; stderr: string }> {
  const port = await freeTcpPort();
  return exec('node', [CLI, 'capture', '--nats', nats.url, '--listen', `127.0.0.1:${port}`, ...args], { timeout: 30_000 }).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
}

describe('one capture per disk', () => {
  it('refuses a disk id a live capture serves, keeps the registry, and takes over from a dead one', async () => {
    const first = await startCapture(nats.url, { vm1: join(work, 'a.img') });
    running.push(first);
    const owner = (await entry('vm1')).capture;

    const second = await failingCapture(['--disk', `vm1=${join(work, 'b.img')}`]);
    expect(second.code).not.toBe(0);
    expect(second.stderr).toContain(`disk vm1 is attached by capture ${owner}`);
    expect(second.stderr).toContain('stop that capture first');
    expect(await entry('vm1')).toMatchObject({ capture: owner, image: join(work, 'a.img'), state: 'attached' });

    // Killed without detaching: its entry still says attached, but nothing answers for the disk any more.
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    const next = await startCapture(nats.url, { vm1: join(work, 'b.img') });
    running.push(next);
    const taken = await entry('vm1');
    expect(taken.capture).not.toBe(owner);
    expect(taken).toMatchObject({ image: join(work, 'b.img'), state: 'attached' });
  }, 90_000);

  it('refuses one image under two disk ids', async () => {
    const r = await failingCapture(['--disk', `d1=${join(work, 'a.img')}`, '--disk', `d2=${join(work, '.', 'a.img')}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is given for disks d1 and d2');
    // The same file under another name: a symlink, a hard link.
    symlinkSync(join(work, 'a.img'), join(work, 'a-sym.img'));
    linkSync(join(work, 'a.img'), join(work, 'a-hard.img'));
    for (const alias of ['a-sym.img', 'a-hard.img']) {
      const s = await failingCapture(['--disk', `d1=${join(work, 'a.img')}`, '--disk', `d2=${join(work, alias)}`]);
      expect(s.code, alias).toBe(2);
      expect(s.stderr, alias).toContain('is given for disks d1 and d2');
    }
    // Another capture process on this machine, under another disk id (its own NATS would not tell): refused.
    const first = await startCapture(nats.url, { d10: join(work, 'a.img') });
    running.push(first);
    const second = await failingCapture(['--disk', `d11=${join(work, 'a-sym.img')}`]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/image \S*a-sym\.img is already served on this machine by process \d+ \(disk d10/);
    await first.stop();
    // Stopped: the image is free again.
    const again = await startCapture(nats.url, { d11: join(work, 'a-sym.img') });
    await again.stop();
  });
});

describe('service start-up errors a user can fix', () => {
  it('say what was wrong and what to do, one line, exit 2', async () => {
    const missing = await failingCapture(['--disk', `d9=${join(work, 'missing.img')}`]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split('\n').filter((l) => !l.startsWith('{'))).toEqual([`gammaray: capture: ${join(work, 'missing.img')} does not exist: give an existing raw disk image (--disk ID=IMAGE)`]);
    const dir = await failingCapture(['--disk', `d9=${work}`]);
    expect(dir.code).toBe(2);
    expect(dir.stderr).toContain(`gammaray: capture: ${work} is a directory`);
    const busy = await startCapture(nats.url, { d8: join(work, 'c.img') });
    running.push(busy);
    const port = await failingCapture(['--disk', `d7=${join(work, 'a.img')}`, '--listen', `127.0.0.1:${busy.port}`]);
    expect(port.code).toBe(2);
    expect(port.stderr).toContain(`127.0.0.1:${busy.port} is already in use by another process`);
    // It failed before attaching: the registry does not name d7 attached by a capture that never served it.
    await expect(entry('d7')).rejects.toThrow(/no registry entry for d7/);
    const { code, stderr } = await exec('node', [CLI, 'inferencer', '--nats', 'nats://127.0.0.1:1'], { timeout: 30_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    expect(code).toBe(1);
    expect(stderr).toContain('gammaray: inferencer: cannot connect to NATS at nats://127.0.0.1:1: connection refused; start nats-server or pass --nats URL');
  }, 60_000);

  it('view: a --mount (or GAMMARAY_MOUNT) FUSE cannot use is refused in one line before anything starts, exit 2', async () => {
    // It failed after connecting, with libfuse's two lines and 'view failed: cannot mount ...', exit 1.
    const view = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      exec('node', [CLI, 'view', '--nats', nats.url, '--grpc', '127.0.0.1:0', ...args], { timeout: 30_000, env: { ...process.env, ...env } }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
    const full = mkdtempSync(join(work, 'full-'));
    writeFileSync(join(full, 'x'), '');
    const notEmpty = await view(['--mount', full]);
    expect(notEmpty).toEqual({ code: 2, stderr: `gammaray: mount point ${full} is not empty (FUSE mounts only on an empty directory): pass --mount DIR, an empty directory (or a new path, created for you)\n` });
    const file = join(work, 'a.img');
    const notDir = await view([], { GAMMARAY_MOUNT: file });
    expect(notDir).toEqual({ code: 2, stderr: `gammaray: mount point ${file} is not a directory: pass --mount DIR, an empty directory (or a new path, created for you)\n` });
  }, 60_000);
});

describe('--replicas on a single nats-server', () => {
  it('is refused by capture, inferencer and view in one line that says to pass --replicas 1 or use a cluster, exit 2', async () => {
    // A server of its own: the streams and buckets must not exist yet (each service creates them with --replicas).
    const single = await startNatsServer({ jetstream: true });
    try {
      const port = await freeTcpPort();
      const runs = await Promise.all(
        [
          ['capture', '--listen', `127.0.0.1:${port}`, '--disk', `r3=${join(work, 'c.img')}`],
          ['inferencer'],
          ['view', '--grpc', '127.0.0.1:0'],
        ].map(([service, ...args]) =>
          exec('node', [CLI, service!, '--nats', single.url, '--replicas', '3', ...args], { timeout: 30_000 }).then(
            () => ({ service, code: 0, stderr: '' }),
            (e: { code: number; stderr: string }) => ({ service, code: e.code, stderr: e.stderr }),
          ),
        ),
      );
      for (const r of runs) {
        expect(r.code, r.service).toBe(2);
        expect(r.stderr.trim().split('\n').filter((l) => !l.startsWith('{')), r.service).toEqual([
          `gammaray: ${r.service}: --replicas 3 needs a NATS cluster, but ${single.url} is a single server (not clustered): pass --replicas 1 (GAMMARAY_REPLICAS=1) on a single server, or use a NATS cluster of at least 3 servers`,
        ]);
      }
    } finally {
      await single.stop();
    }
  }, 60_000);
});

describe('gammaray follow', () => {
  it('says on stderr when the connection to NATS is lost and when it is back', async () => {
    // The inferencer makes the events stream follow reads (the test's blank images give it nothing to crawl).
    const inferencer = await startInferencer(nats.url);
    try {
      const follow = spawn('node', [CLI, 'follow', 'd8', '--nats', nats.url], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      follow.stderr.on('data', (b: Buffer) => (err += b.toString()));
      const until = async (text: string) => {
        for (const deadline = Date.now() + 20_000; !err.includes(text); await new Promise((r) => setTimeout(r, 100))) {
          if (Date.now() > deadline || follow.exitCode !== null) throw new Error(`no ${JSON.stringify(text)} from follow: ${err}`);
        }
      };
      await new Promise((r) => setTimeout(r, 1_000));
      await nats.restart();
      await until(`lost the connection to NATS at ${nats.url}; retrying`);
      await until(`connected to NATS at ${nats.url} again`);
      follow.kill('SIGTERM');
      expect(await new Promise((r) => follow.once('exit', r))).toBe(0);
    } finally {
      await inferencer.stop();
    }
  }, 90_000);

  it('with NATS gone, SIGTERM still ends capture, inferencer and view (each waited for its NATS for good before)', async () => {
    const own = await startNatsServer({ jetstream: true });
    const image = join(work, 'gone.img');
    writeFileSync(image, '');
    truncateSync(image, 16 << 20);
    await exec('mkfs.ext4', ['-q', '-F', image]);
    const capture = await startCapture(own.url, { gone: image });
    const inferencer = await startInferencer(own.url);
    const view = spawnService(['view', '--nats', own.url, '--grpc', `127.0.0.1:${await freeTcpPort()}`]);
    await view.waitForLog(/view started/);
    await own.stop();
    await new Promise((r) => setTimeout(r, 1_000));
    const t0 = Date.now();
    const ended = await Promise.all(
      [capture.child, inferencer.child, view.child].map(
        (child) =>
          new Promise<number>((resolve) => {
            child.once('exit', () => resolve(Date.now() - t0));
            child.kill('SIGTERM');
          }),
      ),
    );
    // The stop deadline is 50 s; without NATS the inferencer's stop fails after its timeouts (~15 s here).
    for (const ms of ended) expect(ms).toBeLessThan(55_000);
  }, 120_000);
});
