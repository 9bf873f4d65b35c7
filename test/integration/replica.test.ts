/**
 * @gammaray/replica against the real pieces: a nats-server, a `gammaray capture` process, a `gammaray inferencer`
 * process. A ReplicaSet rebuilds each disk's state from what NATS replicates (the inferencer's checkpoint plus
 * the write stream after it) and must equal the kernel's view of the final image, content included, whether it
 * started before the writes, after them from an old checkpoint (the capture's image then is ahead of the
 * checkpoint), or after the inferencer stopped. The writes: an ext2 image changed offline with debugfs, then
 * copied onto the capture's export by nbdcopy (a real NBD client) and flushed (without a journal the flushes are
 * the consistency points).
 * Needs `pnpm build` first (the CLI runs from its bundle).
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicaError, ReplicaErrorCode, ReplicaSet, type DiskReplica } from '@gammaray/replica';
import { startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startInferencer, type InferencerProcess } from '../support/inferencer-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { kernelTree } from '../oracle/kernel.js';
import type { TreeEntry } from '../oracle/entry.js';

const exec = promisify(execFile);
const DISK = 'rep1';
const log = pino({ level: process.env['GAMMARAY_TEST_LOG'] ?? 'silent' });

let work: string;
let nats: NatsServer;
let capture: CaptureProcess | undefined;
let inferencer: InferencerProcess | undefined;
let nc: NatsConnection;
let image: string;
let changed: string;
const sets: ReplicaSet[] = [];

/** Applies debugfs commands to an image (writable). */
async function debugfs(img: string, cmds: string[]): Promise<void> {
  const file = join(work, 'cmds.txt');
  writeFileSync(file, cmds.join('\n') + '\n');
  await exec('debugfs', ['-w', '-f', file, img]);
}

async function newSet(): Promise<ReplicaSet> {
  const s = new ReplicaSet({ nc, log, retryMs: 200 });
  sets.push(s);
  await s.start();
  return s;
}

/** Waits until the replica has applied every record of the disk up to `seq`. */
async function caughtUp(r: DiskReplica, seq: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await r.whenReady(timeoutMs);
  while (r.status().appliedSeq < seq) {
    if (Date.now() > deadline) throw new Error(`replica at ${r.status().appliedSeq}, want ${seq}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** The replica's tree with content hashes, in the oracle's shape. */
async function replicaTree(r: DiskReplica): Promise<TreeEntry[]> {
  const { entries } = await r.tree();
  const out: TreeEntry[] = [];
  for (const e of entries) {
    const t = { ...e } as TreeEntry;
    if (e.type === 'file') {
      const { node } = await r.resolve(e.path);
      const h = createHash('sha256');
      for (let at = 0; at < node.size; at += 1 << 20) h.update((await r.read(node, at, 1 << 20)).data);
      (t as { sha256?: string }).sha256 = h.digest('hex');
    }
    out.push(t);
  }
  return out;
}

const FIELDS = ['path', 'ino', 'type', 'mode', 'uid', 'gid', 'size', 'nlink', 'mtime', 'mtimeNsec', 'ctime', 'ctimeNsec', 'target', 'sha256'] as const;
const comparable = (es: readonly TreeEntry[]): Record<string, unknown>[] =>
  es.map((e) => {
    const r = e as unknown as Record<string, unknown>; // ok: read-only field lookup by name
    return Object.fromEntries(FIELDS.filter((f) => r[f] !== undefined).map((f) => [f, r[f]]));
  });

/** The last stream sequence of the disk's writes. */
async function lastWriteSeq(): Promise<number> {
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const jsm = await jetstreamManager(nc);
  const m = await jsm.streams.getMessage('GAMMARAY_WRITES', { last_by_subj: `gammaray.${DISK}.writes` });
  return m?.seq ?? 0;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-replica-'));
  nats = await startNatsServer({ jetstream: true });
  const src = join(work, 'src');
  mkdirSync(join(src, 'etc'), { recursive: true });
  mkdirSync(join(src, 'home', 'user'), { recursive: true });
  writeFileSync(join(src, 'etc', 'hostname'), 'rep1\n');
  writeFileSync(join(src, 'home', 'user', 'notes.txt'), 'first line\n'.repeat(500));
  writeFileSync(join(src, 'home', 'user', 'doomed.bin'), Buffer.alloc(20_000, 7));
  writeFileSync(join(src, 'big.bin'), Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) & 0xff)));
  image = join(work, 'rep1.img');
  await exec('mkfs.ext2', ['-q', '-F', '-b', '4096', '-d', src, image, '32M']);
  // The final image: the same file system changed offline.
  changed = join(work, 'changed.img');
  copyFileSync(image, changed);
  const payload = join(work, 'payload.bin');
  writeFileSync(payload, Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7 + 3) & 0xff)));
  await debugfs(changed, [
    'mkdir /srv',
    `write ${payload} /srv/payload.bin`,
    'rm /home/user/doomed.bin',
    'ln /home/user/notes.txt /srv/notes-link.txt',
    'set_inode_field /srv/notes-link.txt links_count 2',
    'unlink /etc/hostname',
    'symlink /srv/to-etc /etc',
    'set_inode_field /big.bin mode 0100600',
  ]);
  capture = await startCapture(nats.url, { [DISK]: image });
  nc = await connect({ servers: nats.url });
}, 60_000);

afterAll(async () => {
  for (const s of sets) await s.stop().catch(() => undefined);
  await inferencer?.kill9();
  await capture?.stop();
  await nc?.close();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('ReplicaSet over a real capture and inferencer', () => {
  it('has no state before the inferencer crawled: NotReady, then the crawled tree', async () => {
    const early = await newSet();
    const r = early.get(DISK);
    await expect(r.resolve('/')).rejects.toMatchObject({ code: ReplicaErrorCode.NotReady });
    expect(() => early.get('nope')).toThrow(ReplicaError);
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '3600']);
    await inferencer.waitForLog(/disk crawled/);
    await r.whenReady(20_000);
    expect(comparable(await replicaTree(r))).toEqual(comparable(await kernelTree(image, { hash: true })));
    await expect(r.resolve('/etc/../etc')).rejects.toMatchObject({ code: ReplicaErrorCode.InvalidArgument });
    await expect(r.resolve('/missing')).rejects.toMatchObject({ code: ReplicaErrorCode.NotFound });
    await expect(r.resolve('/etc/hostname/x')).rejects.toMatchObject({ code: ReplicaErrorCode.NotADirectory });
    await expect(r.list('/big.bin')).rejects.toMatchObject({ code: ReplicaErrorCode.NotADirectory });
  });

  it('follows the writes: live, from an old checkpoint while the image is ahead, and after the inferencer stopped', async () => {
    const live = sets[0]!.get(DISK); // ok: the first test made it
    await exec('nbdcopy', ['--flush', changed, capture!.url(DISK)]); // ok: started in beforeAll
    await exec('qemu-io', ['-f', 'raw', '-c', 'flush', capture!.url(DISK)]);
    const last = await lastWriteSeq();
    const want = comparable(await kernelTree(changed, { hash: true }));
    await caughtUp(live, last);
    expect(comparable(await replicaTree(live))).toEqual(want);
    // A replica started now restores the crawl's checkpoint (interval 3600 s: no newer one) and applies every
    // record on top, while its block reads see the final image.
    const late = (await newSet()).get(DISK);
    await caughtUp(late, last);
    expect(late.status().restores).toBe(1);
    expect(comparable(await replicaTree(late))).toEqual(want);
    // After a clean stop (final checkpoint at `last`), a third one starts from that checkpoint.
    await inferencer!.stop();
    const after = (await newSet()).get(DISK);
    await caughtUp(after, last);
    expect(comparable(await replicaTree(after))).toEqual(want);
    const link = await after.resolve('/srv/to-etc');
    expect(link.node.target).toBe('/etc');
  });
});
