/**
 * Offline commands on an image whose guest crashed: a real guest (QEMU TCG, over qemu-nbd) changes files,
 * commits them to the journal with `sync` and reboots at once (sysrq), so the metadata of the last transactions is
 * in the journal only and the superblock asks for recovery. The kernel replays the journal when it mounts such
 * a file system; `gammaray ls/cat/crawl` replay it in memory the same way (the image is not changed), and
 * `--noload` reads without it, as `mount -o noload`.
 * Oracle: the kernel's mount of a copy (replaying), and of the image with noload. And a crafted journal (a block
 * logged, then revoked by a later transaction) replays as the kernel's recovery does: the revoked block keeps its
 * home bytes.
 * Until 2026-11-28 the offline commands always read as noload: files a crashed guest had committed were missing.
 * Needs `pnpm build` first (the CLI runs from its bundle), root, loop devices, QEMU.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ext4Volume, JOURNAL_INO, crc32c, decodeJournalSuperblock } from '@gammaray/ext4';
import { FileBlockSource } from '@gammaray/disk';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { Jbd2Writer } from '../support/jbd2-writer.js';
import { replayJournal } from '@gammaray/inferencer';
import { runGuest } from '../guest/guest.js';
import { serveImage } from '../guest/qemu-nbd.js';
import { kernelTree } from '../oracle/kernel.js';
import type { TreeEntry } from '../oracle/entry.js';
import { CLI } from '../support/capture-process.js';

const exec = promisify(execFile);
let work: string;
let image: string;

const sortByPath = (xs: TreeEntry[]): TreeEntry[] => [...xs].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
const lsTree = async (args: string[] = []): Promise<{ tree: TreeEntry[]; stderr: string }> => {
  const { stdout, stderr } = await exec('node', [CLI, 'ls', image, '/', '-R', '--json', '--hash', ...args], { maxBuffer: 64 << 20 });
  return { tree: stdout.trim().split('\n').map((l) => JSON.parse(l) as TreeEntry), stderr };
};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-replay-'));
  const src = join(work, 'src');
  mkdirSync(join(src, 'etc'), { recursive: true });
  writeFileSync(join(src, 'etc', 'hostname'), 'crashy\n');
  writeFileSync(join(src, 'old.txt'), 'old\n'.repeat(100));
  image = join(work, 'crash.img');
  await exec('mkfs.ext4', ['-q', '-F', '-d', src, image, '64M']);
  const nbd = await serveImage(image);
  try {
    const workload = [
      'set -e',
      'mkdir -p /mnt/var/log /mnt/home/u',
      'echo "first line" > /mnt/var/log/app.log',
      'dd if=/dev/urandom of=/mnt/home/u/blob.bin bs=4k count=40 2>/dev/null',
      'i=0; while [ $i -lt 60 ]; do echo "n $i" > /mnt/home/u/f$i; i=$((i+1)); done',
      'sync',
      'mv /mnt/old.txt /mnt/home/u/renamed.txt',
      'rm /mnt/home/u/f1 /mnt/home/u/f2',
      'chmod 600 /mnt/etc/hostname',
      'ln -s ../../etc/hostname /mnt/home/u/host.link',
      // fsync commits the running transaction (all of the above) to the journal, and writes nothing home: an
      // application's fsync just before the crash. (`sync` would also write the metadata home.)
      'echo "second line" | dd of=/mnt/var/log/app.log bs=1 seek=11 conv=notrunc,fsync 2>/dev/null',
      // A crash: no unmount, no checkpoint. The superblock keeps asking for recovery.
      'echo b > /proc/sysrq-trigger',
      'sleep 30',
    ].join('\n');
    const res = await runGuest({ nbd: nbd.url, workload, timeoutMs: 120_000 });
    // No exit marker (the guest never got to report): that is the crash.
    expect(res.status, `${res.console}\n${res.stderr}`).toBe(125);
  } finally {
    await nbd.stop();
  }
}, 180_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('offline commands on a crashed guest\'s image', () => {
  it('the image asks for recovery, and its journal holds what the kernel would replay', async () => {
    const { stdout } = await exec('dumpe2fs', ['-h', image]);
    expect(stdout).toMatch(/Filesystem features:.*needs_recovery/);
    const src = await FileBlockSource.open(image);
    try {
      const r = await replayJournal(src);
      expect(r?.transactions).toBeGreaterThanOrEqual(1);
      expect(r?.blocks).toBeGreaterThan(0);
    } finally {
      await src.close();
    }
  });

  it('ls -R --json --hash replays the journal in memory: equal to the kernel\'s mount (which replays), the image unchanged', async () => {
    const before = createHash('sha256').update(readFileSync(image)).digest('hex');
    const copy = join(work, 'copy.img');
    copyFileSync(image, copy);
    const kernel = sortByPath(await kernelTree(copy, { hash: true, replay: true }));
    const { tree, stderr } = await lsTree();
    expect(sortByPath(tree)).toEqual(kernel);
    expect(kernel.find((e) => e.path === '/home/u/renamed.txt')).toBeDefined();
    expect(stderr).toMatch(/the journal holds \d+ committed transactions? not yet written home .* replayed in memory/);
    expect(createHash('sha256').update(readFileSync(image)).digest('hex')).toBe(before);
    // cat and crawl read the same replayed state.
    const { stdout: log } = await exec('node', [CLI, 'cat', image, '/var/log/app.log']);
    expect(log).toBe('first line\nsecond line\n');
    const { stdout: crawl } = await exec('node', [CLI, 'crawl', image, '--json'], { maxBuffer: 64 << 20 });
    const records = crawl.trim().split('\n').map((l) => JSON.parse(l) as { record: string; path?: string; journal?: { clean: boolean; replayed?: { transactions: number } } });
    const paths = records.filter((r) => r.record === 'entry').map((r) => r.path);
    expect(paths.sort()).toEqual(kernel.map((e) => e.path).sort());
    // The volume header says the journal was replayed to read it; with --noload it was not.
    expect(records[0]).toMatchObject({ record: 'volume', journal: { clean: false, replayed: { transactions: expect.any(Number) } } });
    const { stdout: raw } = await exec('node', [CLI, 'crawl', image, '--json', '--noload'], { maxBuffer: 64 << 20 });
    expect((JSON.parse(raw.split('\n')[0]!) as { journal: object }).journal).not.toHaveProperty('replayed');
  });

  it('--noload reads the metadata as written home: equal to the kernel\'s noload mount, and not the replayed tree', async () => {
    const kernel = sortByPath(await kernelTree(image, { hash: true }));
    const { tree, stderr } = await lsTree(['--noload']);
    expect(sortByPath(tree)).toEqual(kernel);
    expect(stderr).toBe('');
    // The crash left something in the journal only: the two reads differ.
    const replayed = (await lsTree()).tree;
    expect(JSON.stringify(sortByPath(replayed))).not.toBe(JSON.stringify(kernel));
    // What the crash left in the journal only: the rename, the removals, the symlink.
    const paths = (t: TreeEntry[]) => t.map((e) => e.path);
    expect(paths(kernel)).toEqual(expect.arrayContaining(['/old.txt', '/home/u/f1', '/home/u/f2']));
    expect(paths(kernel)).not.toContain('/home/u/host.link');
    expect(paths(replayed)).toEqual(expect.arrayContaining(['/home/u/renamed.txt', '/home/u/host.link']));
    expect(paths(replayed)).not.toContain('/old.txt');
  });

  it('the Ext4Volume over the replayed source opens as the kernel reads it (the journal inode, the superblock)', async () => {
    const src = await FileBlockSource.open(image);
    try {
      const r = await replayJournal(src);
      const vol = await Ext4Volume.open(r!.source); // ok: a journal to replay, checked above
      expect(vol.superblock.has.journal).toBe(true);
    } finally {
      await src.close();
    }
  });
});

describe('journal recovery and revoke records', () => {
  it('a block logged by one transaction and revoked by a later one is not replayed, as the kernel\'s recovery', async () => {
    const img = join(work, 'revoke.img');
    await exec('mkfs.ext4', ['-q', '-F', '-b', '4096', img, '32M']);
    const bs = 4096;
    const free = (await exec('debugfs', ['-R', 'ffb 2 4000', img])).stdout.match(/Free blocks found: (\d+) (\d+)/);
    const [x, y] = [Number(free![1]), Number(free![2])]; // ok: debugfs found two
    const fd = openSync(img, 'r+');
    const put = (block: number, bytes: Uint8Array) => writeSync(fd, bytes, 0, bytes.length, block * bs);
    const get = (file: string, block: number): Buffer => {
      const f = openSync(file, 'r');
      const b = Buffer.alloc(bs);
      readSync(f, b, 0, bs, block * bs);
      closeSync(f);
      return b;
    };
    const fill = (c: string) => Buffer.alloc(bs, c);
    try {
      put(x, fill('x'));
      put(y, fill('y'));
      // The journal: tx1 logs X, tx2 logs Y and revokes X (X was freed: its home may hold newer, unlogged data).
      const src = await FileBlockSource.open(img);
      const vol = await Ext4Volume.open(src);
      const blocks: number[] = [];
      for (const e of await vol.blockMap(await vol.readInode(JOURNAL_INO))) for (let i = 0; i < e.length; i++) blocks.push(e.physical + i);
      await src.close();
      const jsbBytes = get(img, blocks[0]!); // ok: a journal has block 0
      const jsb = decodeJournalSuperblock(jsbBytes);
      const jw = new Jbd2Writer({ sb: jsb, blocks });
      for (const [j, bytes] of [...jw.transaction([[x, fill('A')]]), ...jw.transaction([[y, fill('B')]], [x])]) put(blocks[j]!, bytes); // ok: in the journal
      // The log starts at the first block with the superblock's sequence (s_start, then the checksum).
      jsbBytes.writeUInt32BE(jsb.first, 0x1c);
      if (jsb.has.csumV2 || jsb.has.csumV3) {
        let c = crc32c(0xffffffff, jsbBytes, 0, 0xfc);
        c = crc32c(c, new Uint8Array(4));
        c = crc32c(c, jsbBytes, 0x100, 1024);
        jsbBytes.writeUInt32BE(c >>> 0, 0xfc);
      }
      put(blocks[0]!, jsbBytes.subarray(0, bs)); // ok: as above
    } finally {
      closeSync(fd);
    }
    await exec('debugfs', ['-w', '-R', 'feature needs_recovery', img]);

    const src = await FileBlockSource.open(img);
    try {
      const r = await replayJournal(src);
      expect(r).toMatchObject({ transactions: 2, blocks: 1 });
      expect(Buffer.from(await r!.source.read(x * bs, bs)).equals(fill('x'))).toBe(true); // ok: replayed above
      expect(Buffer.from(await r!.source.read(y * bs, bs)).equals(fill('B'))).toBe(true); // ok: replayed above
    } finally {
      await src.close();
    }
    // The kernel agrees: mount a copy (it replays), then read the two blocks.
    const copy = join(work, 'revoke-copy.img');
    copyFileSync(img, copy);
    await kernelTree(copy, { hash: false, replay: true });
    expect(get(copy, x).equals(fill('x'))).toBe(true);
    expect(get(copy, y).equals(fill('B'))).toBe(true);
  });
});
