/**
 * Disk image formats at the capture, with real tools: a qcow2 image given as `--disk ID=IMAGE` is refused with a
 * message that says how to serve it (the VM would otherwise see the container's bytes as its disk, and its first
 * write would corrupt the container); `--assume-raw` overrides; a raw disk whose guest writes a qcow2 signature
 * over its first sector is still served after a restart (a guest cannot switch its disk off); and a qcow2 image
 * served through qemu-storage-daemon's FUSE export (the README's recipe) is captured exactly: the stream replayed
 * onto the starting content equals what `qemu-img convert` reads out of the qcow2 afterwards.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KV_DISKS } from '@gammaray/wire';
import { CLI, startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { readRecords, replay, sha256 } from '../support/writes-stream.js';

const exec = promisify(execFile);
const SIZE_MIB = 32;

let work: string;
let nats: NatsServer;
const captures: CaptureProcess[] = [];
let qsd: ChildProcess | undefined;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-formats-'));
  nats = await startNatsServer({ jetstream: true });
}, 60_000);

afterAll(async () => {
  for (const c of captures) await c.stop();
  await stopQsd();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs `gammaray capture` expecting it to fail at start: its exit status and what it printed. */
async function captureFails(args: readonly string[]): Promise<{ code: number | null; out: string }> {
  const child = spawn('node', [CLI, 'capture', '--nats', nats.url, '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { GAMMARAY_PARENT_PID: String(process.pid), ...process.env } });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString())); // ok: piped
  child.stderr!.on('data', (b: Buffer) => (out += b.toString())); // ok: piped
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(timer);
  return { code, out };
}

async function registered(disk: string): Promise<boolean> {
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await new Kvm(nc).open(KV_DISKS);
    return (await kv.get(disk)) !== null;
  } catch {
    return false; // no bucket yet
  } finally {
    await nc.close();
  }
}

async function stopQsd(): Promise<void> {
  const q = qsd;
  qsd = undefined;
  if (!q || q.exitCode !== null || q.signalCode !== null) return;
  const done = new Promise((r) => q.once('exit', r));
  q.kill('SIGTERM');
  await done;
}

/** A raw ext4 image with a few files (mkfs.ext4 -d: no mount). */
async function ext4Image(path: string): Promise<void> {
  const src = join(work, `src-${statSafe(path)}`);
  await exec('mkdir', ['-p', join(src, 'etc')]);
  writeFileSync(join(src, 'etc', 'hostname'), 'formats\n');
  writeFileSync(join(src, 'data.bin'), Buffer.alloc(300_000, 7));
  await exec('mkfs.ext4', ['-q', '-F', '-d', src, path, `${SIZE_MIB}M`]);
}

const statSafe = (p: string): string => p.replace(/[^a-z0-9]/gi, '_');

describe('image formats at the capture', () => {
  it('refuses a qcow2 image given as raw, saying how to serve it; --assume-raw overrides', async () => {
    const img = join(work, 'vm.qcow2');
    await exec('qemu-img', ['create', '-q', '-f', 'qcow2', img, `${SIZE_MIB}M`]);
    const before = readFileSync(img);
    const r = await captureFails(['--disk', `q1=${img}`]);
    expect(r.code, r.out).toBe(2);
    expect(r.out).toContain(`${img} is a qcow2 image ("QFI\\xfb" at byte 0, version 3), not a raw disk`);
    expect(r.out).toContain(`qemu-img convert -f qcow2 -O raw ${img}`);
    expect(r.out).toContain('qemu-storage-daemon');
    expect(r.out).toContain('--assume-raw q1');
    expect(r.out).not.toMatch(/\n\s+at /); // a user error: no stack trace
    expect(await registered('q1')).toBe(false);
    expect(sha256(readFileSync(img))).toBe(sha256(before));

    const c = await startCapture(nats.url, { q1: img }, ['--assume-raw', 'q1']);
    captures.push(c);
    const info = await exec('nbdinfo', ['--json', c.url('q1')]);
    expect(JSON.parse(info.stdout).exports[0]['export-size']).toBe(statSync(img).size);
    await c.stop();

    const bad = await captureFails(['--disk', `q1=${img}`, '--assume-raw', 'nope']);
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('--assume-raw "nope" names no disk that --disk serves');
  }, 60_000);

  it('keeps serving a raw disk whose guest wrote a qcow2 signature over its first sector', async () => {
    const img = join(work, 'raw.img');
    await ext4Image(img);
    let c = await startCapture(nats.url, { r1: img });
    captures.push(c);
    // What a hostile guest can do: write the signature where the disk's boot sector is (ext4 starts at 1024).
    const sig = join(work, 'sig.bin');
    const head = Buffer.alloc(512);
    head.write('QFI\xfb', 0, 'latin1');
    head.writeUInt32BE(3, 4);
    writeFileSync(sig, head);
    await exec('qemu-io', ['-f', 'raw', '-c', `write -s ${sig} 0 512`, c.url('r1')]);
    await c.stop();
    expect(readFileSync(img).subarray(0, 4).toString('latin1')).toBe('QFI\xfb');
    // Registered with this image: served again, whatever its first bytes are now.
    c = await startCapture(nats.url, { r1: img });
    captures.push(c);
    const back = await exec('qemu-io', ['-f', 'raw', '-c', 'read -v 0 16', c.url('r1')]);
    expect(back.stdout).toContain('51 46 49 fb 00 00 00 03'); // the guest's bytes are served back
    await c.stop();
  }, 60_000);

  it('serves a block device (a loop device here; an LVM volume or qemu-nbd --connect\'s /dev/nbd0 alike) at its size, and captures it exactly', async () => {
    const backing = join(work, 'loop.raw');
    await ext4Image(backing);
    const start = join(work, 'loop-start.raw');
    copyFileSync(backing, start);
    const dev = (await exec('losetup', ['--find', '--show', backing])).stdout.trim();
    try {
      const c = await startCapture(nats.url, { b1: dev });
      captures.push(c);
      const info = JSON.parse((await exec('nbdinfo', ['--json', c.url('b1')])).stdout);
      expect(info.exports[0]['export-size']).toBe(SIZE_MIB << 20); // stat says 0 for a block device
      await exec('qemu-io', ['-f', 'raw', '-c', 'write -P 0x6d 2M 192k', '-c', `write -P 0x6e ${(SIZE_MIB << 20) - 4096} 4096`, '-c', 'flush', c.url('b1')]);
      await c.stop();
    } finally {
      await exec('losetup', ['-d', dev]);
    }
    const records = await readRecords(nats.url, 'b1');
    expect(sha256(replay(start, records))).toBe(sha256(readFileSync(backing)));
    expect(readFileSync(backing).subarray((SIZE_MIB << 20) - 4096).every((b) => b === 0x6e)).toBe(true);
  }, 60_000);

  it('captures a qcow2 image served through qemu-storage-daemon\'s FUSE export exactly', async () => {
    const base = join(work, 'base.raw');
    await ext4Image(base);
    const qcow = join(work, 'guest.qcow2');
    await exec('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', base, qcow]);
    const start = join(work, 'start.raw');
    copyFileSync(base, start);
    const view = join(work, 'guest.raw');
    await exec('touch', [view]); // the FUSE export's mount point: an existing file
    qsd = spawn('qemu-storage-daemon', [
      '--blockdev', `driver=file,node-name=file0,filename=${qcow}`,
      '--blockdev', 'driver=qcow2,node-name=disk0,file=file0',
      '--export', `type=fuse,id=exp0,node-name=disk0,mountpoint=${view},writable=on`,
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let qsdOut = '';
    qsd.stdout!.on('data', (b: Buffer) => (qsdOut += b.toString())); // ok: piped
    qsd.stderr!.on('data', (b: Buffer) => (qsdOut += b.toString())); // ok: piped
    for (let i = 0; statSync(view).size !== SIZE_MIB << 20; i++) {
      if (i > 100 || qsd.exitCode !== null) throw new Error(`qemu-storage-daemon did not export ${qcow}: ${qsdOut}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const c = await startCapture(nats.url, { g1: view });
    captures.push(c);
    const url = c.url('g1');
    await exec('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 1M 256k', '-c', 'write -z 3M 128k', '-c', 'write -P 0x5c 7340032 4096', '-c', 'discard 12M 64k', '-c', 'flush', url]);
    // A second client, a different tool: a whole other file system image copied over the disk.
    const other = join(work, 'other.raw');
    await ext4Image(other);
    await exec('nbdcopy', [other, url]);
    await c.stop();
    await stopQsd();
    expect(existsSync(qcow)).toBe(true);
    await exec('qemu-img', ['check', '-q', qcow]); // the container is intact
    const out = join(work, 'out.raw');
    await exec('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', qcow, out]);
    const records = await readRecords(nats.url, 'g1');
    expect(records.length).toBeGreaterThan(0);
    // Trimmed ranges are unspecified after a discard, but this replay and the qcow2 hold the same bytes there
    // only if the capture left them alone, as it does (see CaptureDisk.trim): so the whole disk is compared.
    expect(sha256(replay(start, records))).toBe(sha256(readFileSync(out)));
    expect(sha256(readFileSync(out))).toBe(sha256(readFileSync(other)));
  }, 120_000);
});
