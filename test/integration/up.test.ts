/**
 * `gammaray up` as a user runs it: two images, the embedded nats-server, capture, inferencer and view as its
 * children. Real NBD writes (qemu-io) to both disks become events; the view serves both trees; Ctrl-C (SIGINT)
 * stops everything cleanly (exit 0, no child left); started again on the same data dir, nothing is lost or
 * repeated: the events stream still holds every event once and no disk is crawled a second time. Without
 * nats-server it says how to install it (exit 2).
 * Needs `pnpm build` first (the CLI runs from its bundle).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, freeTcpPort } from '../support/capture-process.js';

const exec = promisify(execFile);
let work: string;
let data: string;
let nbdPort: number;
let grpcPort: number;
const children: ChildProcess[] = [];

interface Up {
  readonly child: ChildProcess;
  readonly nats: string;
  output(): string;
  exited: Promise<number | null>;
}

async function startUp(env: NodeJS.ProcessEnv = process.env): Promise<Up> {
  // In a process group of its own, as a shell runs a command: a terminal's Ctrl-C signals the whole group.
  const child = spawn('node', [CLI, 'up', '--image', join(work, 'alpha.img'), '--image', join(work, 'beta.img'), '--image', join(work, 'gamma.img'), '--data-dir', data, '--listen', `127.0.0.1:${nbdPort}`, '--grpc', `127.0.0.1:${grpcPort}`], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString())); // ok: piped
  child.stderr!.on('data', (b: Buffer) => (out += b.toString())); // ok: piped
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 60_000;
  while (!out.includes('Press Ctrl-C')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`gammaray up did not come up: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const nats = /NATS: +(nats:\/\/\S+)/.exec(out)?.[1];
  if (!nats) throw new Error(`no NATS line: ${out}`);
  return { child, nats, output: () => out, exited };
}

/** `gammaray follow DISK --from-start --json` for a moment: the events the stream holds. */
async function events(nats: string, disk: string): Promise<{ streamSeq: number; kind: string; path: string }[]> {
  const child = spawn('node', [CLI, 'follow', disk, '--from-start', '--json', '--nats', nats], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  await new Promise((r) => setTimeout(r, 2_500));
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  return out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { streamSeq: number; kind: string; path: string });
}

async function until<T>(f: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** The physical block of a file's first block, from debugfs. */
async function blockOf(img: string, path: string): Promise<number> {
  const { stdout } = await exec('debugfs', ['-R', `bmap "${path}" 0`, img]);
  return Number(stdout.trim());
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-up-'));
  data = join(work, 'data');
  for (const name of ['alpha', 'beta']) {
    const src = join(work, `src-${name}`);
    mkdirSync(src);
    writeFileSync(join(src, `${name}.txt`), `${name}\n`.repeat(500));
    await exec('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, join(work, `${name}.img`), '16M']);
  }
  // A new VM's disk: blank until its guest formats it.
  writeFileSync(join(work, 'gamma.img'), Buffer.alloc(16 * 1024 * 1024));
  nbdPort = await freeTcpPort();
  grpcPort = await freeTcpPort();
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('gammaray up', () => {
  it('runs the pipeline for two disks, stops cleanly on Ctrl-C, and restarts on the same data dir without loss or repeats', async () => {
    const up = await startUp();
    expect(up.output()).toContain(`-drive file=nbd://127.0.0.1:${nbdPort}/alpha,format=raw,if=virtio`);
    expect(up.output()).toContain(`-drive file=nbd://127.0.0.1:${nbdPort}/beta,format=raw,if=virtio`);
    expect(up.output()).toContain('events: gammaray.beta.fs.>');
    for (const name of ['alpha', 'beta']) {
      const block = await blockOf(join(work, `${name}.img`), `/${name}.txt`);
      await exec('qemu-io', ['-f', 'raw', '-c', `write -P 0x58 ${block * 4096} 4096`, '-c', 'flush', `nbd://127.0.0.1:${nbdPort}/${name}`]);
    }
    const before = new Map<string, { streamSeq: number; kind: string; path: string }[]>();
    for (const name of ['alpha', 'beta']) {
      before.set(name, await until(async () => {
        const evs = await events(up.nats, name);
        return evs.some((e) => e.kind === 'write' && e.path === `/${name}.txt`) ? evs : undefined;
      }, `a write event of ${name}`));
      expect(before.get(name)!.filter((e) => e.kind === 'snapshot')).toHaveLength(1); // ok: set above
    }
    const tree = await until(async () => {
      const { stdout } = await exec('node', [CLI, 'tree', 'beta', '--grpc', `127.0.0.1:${grpcPort}`]);
      return stdout.includes('/beta.txt') ? stdout : undefined;
    }, 'the view to serve beta');
    expect(tree.split('\n')).toContain('/beta.txt');
    // The blank disk is served, and followed from the moment the guest formats it.
    expect(up.output()).toContain(`${join(work, 'gamma.img')} is blank`);
    const src = join(work, 'src-gamma');
    mkdirSync(src);
    writeFileSync(join(src, 'gamma.txt'), 'gamma\n');
    await exec('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, join(work, 'gamma-formatted.img'), '16M']);
    await exec('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', join(work, 'gamma-formatted.img'), `nbd://127.0.0.1:${nbdPort}/gamma`]);
    const gamma = await until(async () => {
      const evs = await events(up.nats, 'gamma');
      return evs.some((e) => e.kind === 'snapshot') ? evs : undefined;
    }, 'the snapshot of the formatted blank disk');
    expect(gamma.filter((e) => e.kind === 'snapshot')).toHaveLength(1);

    up.child.kill('SIGINT');
    expect(await up.exited).toBe(0);
    expect(up.output()).toContain('stopped cleanly');
    const { stdout: ps } = await exec('ps', ['-eo', 'args']);
    expect(ps).not.toContain(data);

    // Meanwhile the guest of alpha garbled its superblock. `up` still starts it, as this data dir served it before:
    // refusing would let a guest keep its monitoring from coming back.
    const alphaImg = readFileSync(join(work, 'alpha.img'));
    const alphaSuper = Buffer.from(alphaImg.subarray(1024, 2048));
    alphaImg.fill(0x55, 1024, 2048);
    writeFileSync(join(work, 'alpha.img'), alphaImg);
    // Again on the same data dir: the stream kept everything, the disks are restored (no second snapshot).
    const again = await startUp();
    expect(again.output()).toContain('serving disk alpha anyway');
    try {
      for (const name of ['alpha', 'beta']) {
        const evs = await events(again.nats, name);
        expect(evs.map((e) => e.streamSeq)).toEqual(before.get(name)!.map((e) => e.streamSeq)); // ok: set above
      }
      const logs = readFileSync(join(data, 'logs', 'inferencer.log'), 'utf8');
      expect(logs.match(/restored from checkpoint/g)?.length).toBeGreaterThanOrEqual(2);
    } finally {
      // Ctrl-C in a terminal: SIGINT to the whole process group. Every service still stops cleanly, in order.
      process.kill(-again.child.pid!, 'SIGINT'); // ok: spawned
      expect(await again.exited).toBe(0);
      // The guest repairs it (the later tests use the image).
      const repaired = readFileSync(join(work, 'alpha.img'));
      alphaSuper.copy(repaired, 1024);
      writeFileSync(join(work, 'alpha.img'), repaired);
    }
    // The children are stopped by `up` alone (SIGTERM, in order), never by the terminal's SIGINT to the group,
    // which had stopped nats-server before the inferencer's final checkpoint and killed the view's unmount.
    for (const svc of ['capture', 'inferencer', 'view']) {
      const log = readFileSync(join(data, 'logs', `${svc}.log`), 'utf8');
      expect(log.match(new RegExp(`"msg":"${svc} stopped"`, 'g'))?.length, svc).toBe(2);
      expect(log, svc).not.toContain('"signal":"SIGINT"');
    }
  }, 240_000);

  it('a closed terminal (SIGHUP, its pipes gone) stops every service: none is left behind', async () => {
    const up = await startUp();
    // What a terminal's hangup does: SIGHUP to the foreground process group, and nothing reads the output any more.
    up.child.stdout!.destroy(); // ok: piped
    up.child.stderr!.destroy(); // ok: piped
    process.kill(-up.child.pid!, 'SIGHUP'); // ok: spawned
    expect(await up.exited).toBe(0);
    const { stdout: ps } = await exec('ps', ['-eo', 'args']);
    expect(ps).not.toContain(data);
    for (const svc of ['capture', 'inferencer', 'view']) {
      const log = readFileSync(join(data, 'logs', `${svc}.log`), 'utf8');
      expect(log.match(new RegExp(`"msg":"${svc} stopped"`, 'g'))?.length, svc).toBe(3);
    }
  }, 120_000);

  it('killed with SIGKILL, it leaves no gammaray service behind: each stops once its up is gone', async () => {
    const up = await startUp();
    const kids = (await exec('pgrep', ['-P', String(up.child.pid)]).catch(() => ({ stdout: '' }))).stdout.trim().split('\n').filter(Boolean).map(Number);
    const args = async (pid: number) => (await exec('ps', ['-o', 'args=', '-p', String(pid)]).catch(() => ({ stdout: '' }))).stdout.trim();
    const services: number[] = [];
    let natsPid: number | undefined;
    for (const pid of kids) {
      const a = await args(pid);
      if (a.includes('nats-server')) natsPid = pid;
      else if (/gammaray\.js (capture|inferencer|view) /.test(a)) services.push(pid);
      // The inferencer runs with the node flags of its image (a small young generation).
      if (/gammaray\.js inferencer /.test(a)) expect(a).toMatch(/ --max-semi-space-size=2 .*gammaray\.js inferencer /);
    }
    expect(services).toHaveLength(3);
    up.child.kill('SIGKILL');
    await up.exited;
    const deadline = Date.now() + 20_000;
    let alive = services;
    while (alive.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      alive = alive.filter((pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      });
    }
    expect(alive, 'services still running 20 s after their up was killed').toEqual([]);
    // nats-server cannot watch its parent: it stays, until the next up on this data dir stops it (a second
    // nats-server on the same store would corrupt it).
    expect(natsPid).toBeDefined();
    process.kill(natsPid!, 0); // ok: checked; throws if it is gone
    const again = await startUp();
    try {
      expect(again.output()).toContain(`stopping the nats-server (process ${natsPid}) a killed gammaray up left running on ${join(data, 'nats')}`);
      // The same NATS URL (4222, or the port this data dir had when 4222 is taken: it took a new free port each
      // time, and a `follow --nats URL` retrying the old one never reconnected).
      expect(again.nats).toBe(up.nats);
      // Gone, or a zombie its new parent has not reaped yet.
      const state = (await exec('ps', ['-o', 'stat=', '-p', String(natsPid)]).catch(() => ({ stdout: '' }))).stdout.trim();
      expect(state === '' || state.startsWith('Z'), `nats-server ${natsPid} state ${state}`).toBe(true);
      const { stdout: ps } = await exec('ps', ['-eo', 'args']);
      expect(ps.split('\n').filter((l) => l.includes('nats-server') && l.includes(join(data, 'nats')))).toHaveLength(1);
      // While it runs, a second up on the same data dir is refused before it starts anything.
      const second = await exec('node', [CLI, 'up', '--image', join(work, 'beta.img'), '--data-dir', data, '--listen', `127.0.0.1:${await freeTcpPort()}`, '--grpc', `127.0.0.1:${await freeTcpPort()}`]).catch((e: { code: number; stderr: string }) => e);
      expect(second).toMatchObject({ code: 2 });
      expect((second as { stderr: string }).stderr).toContain(`data directory ${data} is in use by another gammaray up (process ${again.child.pid})`);
      // With a data dir of its own, its image is refused: the other up's capture serves it (holds its lock).
      const other = join(work, 'd-other');
      const third = await exec('node', [CLI, 'up', '--image', join(work, 'beta.img'), '--data-dir', other, '--listen', `127.0.0.1:${await freeTcpPort()}`, '--grpc', `127.0.0.1:${await freeTcpPort()}`]).catch((e: { code: number; stderr: string }) => e);
      expect(third).toMatchObject({ code: 2 });
      expect((third as { stderr: string }).stderr.trim()).toMatch(new RegExp(`^gammaray: image ${join(work, 'beta.img')} is already served on this machine by process \\d+ as disk beta \\(a gammaray capture or up\\): two writers would corrupt it; stop that one first, or serve a copy of the image$`));
      expect(existsSync(other)).toBe(false);
      // A service killed under it: up says which and how it ended, shows its last whole lines, stops the rest.
      const ps2 = (await exec('pgrep', ['-P', String(again.child.pid)])).stdout.trim().split('\n').map(Number);
      const inferencer = (await Promise.all(ps2.map(async (pid) => ((await args(pid)).includes(' inferencer ') ? pid : undefined)))).find((p) => p !== undefined);
      expect(inferencer).toBeDefined();
      process.kill(inferencer!, 'SIGKILL'); // ok: checked
      expect(await again.exited).toBe(1);
      const out = again.output();
      expect(out).toContain(`gammaray: inferencer stopped unexpectedly (killed by signal SIGKILL); stopping the others (its log: ${join(data, 'logs', 'inferencer.log')}); its last output:\n{`);
    } finally {
      if (again.child.exitCode === null) {
        again.child.kill('SIGINT');
        await again.exited;
      }
    }
  }, 180_000);

  it('says how to install nats-server when there is none (exit 2)', async () => {
    const r = await exec('node', [CLI, 'up', '--image', join(work, 'alpha.img'), '--data-dir', join(work, 'd2')], { env: { ...process.env, GAMMARAY_NATS_SERVER: '/nonexistent/nats-server' } }).catch((e: { code: number; stderr: string }) => e);
    expect(r).toMatchObject({ code: 2 });
    expect((r as { stderr: string }).stderr).toMatch(/not an executable nats-server: install it \(Debian\/Ubuntu: apt-get install nats-server/);
  });

  it('refuses an NBD or gRPC port in use in one line, before starting anything (exit 2)', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as { port: number }).port;
    try {
      for (const flag of ['--listen', '--grpc']) {
        const r = await exec('node', [CLI, 'up', '--image', join(work, 'alpha.img'), flag, `127.0.0.1:${port}`, '--data-dir', join(work, 'd5')]).catch((e: { code: number; stderr: string }) => e);
        expect(r, flag).toMatchObject({ code: 2 });
        expect((r as { stderr: string }).stderr.trim(), flag).toBe(`gammaray: 127.0.0.1:${port} (${flag === '--listen' ? 'the NBD port' : 'the gRPC port'}) is already in use: stop what listens there, or pass another ${flag} HOST:PORT`);
      }
      expect(existsSync(join(work, 'd5'))).toBe(false);
    } finally {
      busy.close();
    }
  });

  it('refuses a --mount that is a mount point already or a file, before starting anything (exit 2)', async () => {
    const file = join(work, 'mnt-file');
    writeFileSync(file, '');
    for (const [mount, want] of [
      ['/proc', 'gammaray: mount point /proc is already in use: proc proc is mounted there; unmount it first (fusermount -u /proc, or umount /proc), or pass another --mount DIR'],
      [file, `gammaray: mount point ${file} is not a directory: pass --mount DIR, an empty directory (or a new path, created for you)`],
    ] as const) {
      const r = await exec('node', [CLI, 'up', '--image', join(work, 'alpha.img'), '--mount', mount, '--data-dir', join(work, 'd6'), '--listen', `127.0.0.1:${await freeTcpPort()}`, '--grpc', `127.0.0.1:${await freeTcpPort()}`]).catch((e: { code: number; stderr: string }) => e);
      expect(r, mount).toMatchObject({ code: 2 });
      expect((r as { stderr: string }).stderr.trim(), mount).toBe(want);
    }
    expect(existsSync(join(work, 'd6'))).toBe(false);
  });

  it('follows a chosen partition and another partition as a volume of its own (--partition, --volume)', async () => {
    // A VM's disk: GPT with /boot (1) and the root (2).
    const img = join(work, 'vm.img');
    writeFileSync(img, '');
    await exec('truncate', ['-s', '64M', img]);
    await exec('sh', ['-c', `printf 'label: gpt\\nstart=2048, size=20480, name=boot\\nstart=22528, size=100000, name=root\\n' | sfdisk -q --no-reread --no-tell-kernel "$1"`, 'sh', img]);
    for (const [name, start, sectors, file] of [['boot', 2048, 20480, 'grub.cfg'], ['root', 22528, 100000, 'hostname']] as const) {
      const src = join(work, `src-vm-${name}`);
      mkdirSync(src);
      writeFileSync(join(src, file), `${name}\n`);
      await exec('mkfs.ext4', ['-q', '-F', '-E', `offset=${start * 512}`, '-d', src, img, `${sectors / 2}k`]);
    }
    const vmData = join(work, 'd-vm');
    const bad = await exec('node', [CLI, 'up', '--image', img, '--partition', 'vm=9', '--data-dir', vmData]).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 2 });
    expect((bad as { stderr: string }).stderr).toContain('--partition vm=9: ');
    expect((bad as { stderr: string }).stderr).toContain('no partition 9');
    const child = spawn('node', [CLI, 'up', '--image', img, '--partition', 'vm=2', '--volume', 'vm-boot=vm:1', '--data-dir', vmData, '--listen', `127.0.0.1:${nbdPort}`, '--grpc', `127.0.0.1:${grpcPort}`], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.push(child);
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await until(async () => (out.includes('Press Ctrl-C') ? true : undefined), `gammaray up: ${out}`, 60_000);
      expect(out).toContain(`${img}: following the file system in its partition 2 (ext4)`);
      expect(out).toContain(`${img}: volume vm-boot follows the file system in its partition 1 (ext4)`);
      expect(out).toContain('volume vm-boot: partition 1 of disk vm');
      expect(out).toContain('events: gammaray.vm-boot.fs.>');
      for (const [disk, file] of [['vm', '/hostname'], ['vm-boot', '/grub.cfg']] as const) {
        const tree = await until(async () => {
          const { stdout } = await exec('node', [CLI, 'tree', disk, '--grpc', `127.0.0.1:${grpcPort}`]);
          return stdout.includes(file) ? stdout : undefined;
        }, `the view to serve ${disk}`);
        expect(tree.split('\n').filter(Boolean).sort(), disk).toEqual(['/', file, '/lost+found'].sort());
      }
      const nats = /NATS: +(nats:\/\/\S+)/.exec(out)?.[1] ?? '';
      const snaps = await Promise.all(['vm', 'vm-boot'].map(async (d) => (await events(nats, d)).find((e) => e.kind === 'snapshot') as unknown as { partition?: number } | undefined));
      expect(snaps.map((e) => e?.partition)).toEqual([2, 1]);
    } finally {
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    }
  }, 120_000);

  it('refuses one image file under two names (a symlink, a hard link), before starting anything (exit 2)', async () => {
    symlinkSync(join(work, 'alpha.img'), join(work, 'alpha-link.img'));
    linkSync(join(work, 'alpha.img'), join(work, 'alpha-hard.img'));
    for (const alias of ['alpha-link.img', 'alpha-hard.img']) {
      const r = await exec('node', [CLI, 'up', '--image', join(work, 'alpha.img'), '--image', join(work, alias), '--data-dir', join(work, 'd4')]).catch((e: { code: number; stderr: string }) => e);
      expect(r, alias).toMatchObject({ code: 2 });
      expect((r as { stderr: string }).stderr, alias).toContain(`images ${join(work, 'alpha.img')} and ${join(work, alias)} are the same file`);
    }
  });

  it('refuses a --volume or --partition naming a partition a whole-disk file system does not have, even on a data dir that served the disk (exit 2)', async () => {
    // This data dir has followed alpha (as `up` records it): a damaged alpha would be served anyway, but a volume
    // never followed was too, and the message said alpha held no file system at all.
    const d5 = join(work, 'd5');
    mkdirSync(d5);
    writeFileSync(join(d5, 'disks.json'), JSON.stringify({ disks: { alpha: realpathSync(join(work, 'alpha.img')) } }));
    const ports = ['--listen', `127.0.0.1:${nbdPort}`, '--grpc', `127.0.0.1:${grpcPort}`, '--data-dir', d5];
    // A bounded wait: an `up` that is not refused runs until stopped (the timeout's SIGTERM stops it cleanly).
    const vol = await exec('node', [CLI, 'up', '--image', join(work, 'alpha.img'), '--volume', 'alpha-boot=alpha:1', ...ports], { timeout: 20_000 }).catch((e: { code: number; stderr: string }) => e);
    expect(vol).toMatchObject({ code: 2 });
    const why = 'the disk has no partition table, so no partition 1: its ext2/3/4 file system is the whole disk (partition 0): name a partition holding an ext2/3/4 file system (or an LVM PV with one)';
    expect((vol as { stderr: string }).stderr.trim()).toBe(`gammaray: --volume alpha-boot=alpha:1: ${join(work, 'alpha.img')}: ${why}`);
    const part = await exec('node', [CLI, 'up', '--image', join(work, 'alpha.img'), '--partition', 'alpha=1', ...ports], { timeout: 20_000 }).catch((e: { code: number; stderr: string }) => e);
    expect(part).toMatchObject({ code: 2 });
    expect((part as { stderr: string }).stderr.trim()).toBe(`gammaray: --partition alpha=1: ${join(work, 'alpha.img')}: ${why}`);
  }, 60_000);

  it('refuses an image without an ext2/3/4 file system and a data directory it cannot write, before starting anything (exit 2)', async () => {
    const notFs = join(work, 'not-a-fs.img');
    writeFileSync(notFs, Buffer.alloc(1024 * 1024, 0x41));
    const r = await exec('node', [CLI, 'up', '--image', notFs, '--data-dir', join(work, 'd3')]).catch((e: { code: number; stderr: string }) => e);
    expect(r).toMatchObject({ code: 2 });
    expect((r as { stderr: string }).stderr).toContain(`${notFs}: no ext2/3/4 file system found`);
    expect(existsSync(join(work, 'd3'))).toBe(false);
    const file = join(work, 'a-file');
    writeFileSync(file, '');
    const d = await exec('node', [CLI, 'up', '--image', join(work, 'alpha.img'), '--data-dir', file]).catch((e: { code: number; stderr: string }) => e);
    expect(d).toMatchObject({ code: 2 });
    expect((d as { stderr: string }).stderr.trim()).toBe(`gammaray: cannot use ${file} as the data directory (ENOTDIR): pass --data-dir DIR, a directory this user can write`);
  });
});
