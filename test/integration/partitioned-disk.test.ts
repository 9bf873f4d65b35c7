/**
 * A partitioned boot disk, as VM images come: a GPT with an EFI system partition (no file system here), a small
 * ext4 /boot and the ext4 root, with free space after it. Real processes: nats-server, `gammaray capture`,
 * `gammaray inferencer`, `gammaray view`; a real guest (QEMU TCG) mounts /dev/vda3 and works in it; the kernel
 * (a read-only loop mount at the partition's offset) is the oracle.
 *
 * Checked: the inferencer follows the largest ext partition (the root), its crawl and the view's tree equal the
 * kernel's; after the guest's workload the view's tree (with content hashes read through block reads at the
 * partition's offset) and the published events folded over the starting tree equal the kernel's view of the
 * partition, with no `corrupt` event; writes to /boot's partition make no events; growing the root partition in
 * the table (what growpart does at a cloud VM's first boot) gives a `resync` and a new crawl of the new window; `capture --partition ID=N` makes the inferencer and the view
 * switch to that partition (a `resync`, then the crawl's snapshot); `capture --volume VOL=ID:N` follows another
 * partition (/boot here) as a disk of its own, and the guest's changes to it come out as its events.
 * Until 2026-11-28 the inferencer and the view read only file systems at byte 0 of the disk: a partitioned disk
 * stayed "blank" for good.
 * Needs `pnpm build` first (the CLI runs from its bundle), root, loop devices, QEMU, sfdisk.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { foldEvents, type FoldEntry } from '@gammaray/inferencer';
import { runGuest } from '../guest/guest.js';
import { kernelTree } from '../oracle/kernel.js';
import type { TreeEntry } from '../oracle/entry.js';
import { LiveStack, readAt, sortByPath } from '../support/live-stack.js';

const exec = promisify(execFile);
const DISK = 'boot1';
/** Partition 2 (/boot) of the same disk, followed as a volume of its own (capture --volume). */
const BOOT = 'boot1-boot';
const SECTOR = 512;
const MiB = 1024 * 1024;
/** The table: EFI 8 MiB (no file system), boot 16 MiB (ext4), root 80 MiB (ext4), 55 MiB free after it. */
const PARTS = [
  { start: 2048, size: 16384, type: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B', name: 'efi' },
  { start: 18432, size: 32768, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', name: 'boot' },
  { start: 51200, size: 163840, type: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', name: 'root' },
];
const DISK_BYTES = 160 * MiB;
const ROOT = PARTS[2]!; // ok: three entries

let work: string;
let image: string;
let startCopy: string;
let s: LiveStack;

const rootTree = (img: string, hash: boolean, sizeSectors = ROOT.size): Promise<TreeEntry[]> =>
  kernelTree(img, { hash, offsetBytes: ROOT.start * SECTOR, sizelimit: sizeSectors * SECTOR });

async function mkfsIn(img: string, part: (typeof PARTS)[number], src: string): Promise<void> {
  await exec('mkfs.ext4', ['-q', '-F', '-E', `offset=${part.start * SECTOR}`, '-d', src, img, `${(part.size * SECTOR) / 1024}k`]);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-parts-'));
  image = join(work, `${DISK}.img`);
  writeFileSync(image, '');
  await exec('truncate', ['-s', String(DISK_BYTES), image]);
  const script = ['label: gpt', 'label-id: 5A1E2B3C-0000-4000-8000-000000000001', ...PARTS.map((p) => `start=${p.start}, size=${p.size}, type=${p.type}, name=${p.name}`)].join('\n');
  await exec('sh', ['-c', `printf '%s\\n' "$1" | sfdisk -q --no-reread --no-tell-kernel "$2"`, 'sh', script, image]);
  const boot = join(work, 'boot-src');
  mkdirSync(join(boot, 'grub'), { recursive: true });
  writeFileSync(join(boot, 'vmlinuz'), 'not a kernel\n');
  writeFileSync(join(boot, 'grub', 'grub.cfg'), 'set default=0\n');
  await mkfsIn(image, PARTS[1]!, boot); // ok: three entries
  const root = join(work, 'root-src');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'var', 'log'), { recursive: true });
  writeFileSync(join(root, 'etc', 'hostname'), 'boot1\n');
  writeFileSync(join(root, 'etc', 'fstab'), 'LABEL=root / ext4 defaults 0 1\n');
  writeFileSync(join(root, 'var', 'log', 'syslog'), 'booted\n'.repeat(300));
  await mkfsIn(image, ROOT, root);
  startCopy = join(work, 'start.img');
  copyFileSync(image, startCopy);
  s = await LiveStack.start(work, { [DISK]: image }, ['--volume', `${BOOT}=${DISK}:2`]);
  await s.caughtUp(0, DISK);
  await s.caughtUp(0, BOOT);
}, 90_000);

afterAll(async () => {
  await s?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a partitioned disk (GPT: EFI, /boot, root)', () => {
  let startTree: TreeEntry[];

  it('is followed in its largest ext partition: the crawl and the view equal the kernel\'s view of the root partition', async () => {
    startTree = await rootTree(startCopy, true);
    expect(startTree.some((e) => e.path === '/etc/hostname')).toBe(true);
    expect(sortByPath(await s.viewTree(DISK))).toEqual(sortByPath(startTree));
    const es = await s.eventsUntil(DISK, (x) => x.some((e) => e.kind === 'snapshot'));
    expect(es.filter((e) => e.kind === 'snapshot')).toHaveLength(1);
    expect(es[0]).toMatchObject({ kind: 'snapshot', partition: 3, dirs: startTree.filter((e) => e.type === 'dir').length });
    const d = (await s.client.listDisks()).disks.find((x) => x.id === DISK);
    expect(d).toMatchObject({ partition: 3, partitionStart: ROOT.start * SECTOR, size: DISK_BYTES });
    expect(s.inferencer.logs()).not.toMatch(/holds no ext2\/3\/4/); // ok: started in beforeAll
  });

  it('capture --volume follows /boot\'s partition as a disk of its own', async () => {
    const boot = PARTS[1]!; // ok: three entries
    const kernel = sortByPath(await kernelTree(startCopy, { hash: true, offsetBytes: boot.start * SECTOR, sizelimit: boot.size * SECTOR }));
    expect(kernel.some((e) => e.path === '/grub/grub.cfg')).toBe(true);
    expect(sortByPath(await s.viewTree(BOOT))).toEqual(kernel);
    const d = (await s.client.listDisks()).disks.find((x) => x.id === BOOT);
    expect(d).toMatchObject({ source: DISK, partition: 2, partitionStart: boot.start * SECTOR, size: DISK_BYTES });
    const es = await s.eventsUntil(BOOT, (x) => x.some((e) => e.kind === 'snapshot'), 30_000);
    expect(es[0]).toMatchObject({ disk: BOOT, kind: 'snapshot', partition: 2 });
  });

  it('a real guest working in /dev/vda3: the view\'s tree and the folded events equal the kernel\'s; /boot\'s writes come out on its volume, not on the root\'s disk', async () => {
    const workload = [
      'set -e',
      'echo "$(cat /proc/partitions | tr -s " " | tr "\\n" ";")"',
      'echo hello > /mnt/etc/motd',
      'echo more >> /mnt/var/log/syslog',
      'mkdir -p /mnt/home/user/docs',
      'dd if=/dev/urandom of=/mnt/home/user/docs/blob.bin bs=64k count=20 2>/dev/null',
      'sync',
      'mv /mnt/etc/motd /mnt/home/user/motd',
      'ln /mnt/etc/hostname /mnt/home/user/hostname.link',
      'ln -s ../etc/fstab /mnt/home/fstab.link',
      'chmod 600 /mnt/etc/fstab',
      'printf XXXX | dd of=/mnt/home/user/docs/blob.bin bs=1 seek=70000 conv=notrunc 2>/dev/null',
      'truncate -s 5000 /mnt/var/log/syslog',
      'i=0; while [ $i -lt 100 ]; do echo "n $i" > /mnt/home/user/f$i; i=$((i+1)); done',
      'sync',
      'i=0; while [ $i -lt 100 ]; do rm /mnt/home/user/f$i; i=$((i+3)); done',
      'rm /mnt/etc/hostname',
      // The other ext partition, written while the root is followed: its bytes are outside the window.
      'mkdir /boot && mount -t ext4 /dev/vda2 /boot && echo new > /boot/grub/grub.cfg && mkdir /boot/x && umount /boot',
      'sync',
    ].join('\n');
    const res = await runGuest({ nbd: s.capture.url(DISK), workload, append: 'gammaray.dev=vda3', timeoutMs: 120_000 }); // ok: started in beforeAll
    expect(res.status, `${res.console}\n${res.stderr}`).toBe(0);
    const last = await s.lastWriteSeq(DISK);
    await s.caughtUp(last, DISK);
    const kernel = await rootTree(image, true);
    expect(kernel.some((e) => e.path === '/home/user/motd')).toBe(true);
    expect(sortByPath(await s.viewTree(DISK))).toEqual(sortByPath(kernel));

    const es = await s.eventsUntil(DISK, (x) => x.some((e) => e.path === '/etc/hostname' && e.kind === 'unlink') && x.some((e) => e.path === '/home/user/f99' && e.kind === 'delete'));
    expect(es.filter((e) => e.kind === 'corrupt')).toEqual([]);
    expect(es.filter((e) => e.path.startsWith('/grub') || e.path === '/x')).toEqual([]);
    expect(es.some((e) => e.kind === 'rename' && e.from === '/etc/motd' && e.path === '/home/user/motd')).toBe(true);
    const fields = ['path', 'type', 'mode', 'uid', 'gid', 'size', 'nlink', 'target'] as const;
    const pick = (e: Partial<TreeEntry>) => Object.fromEntries(fields.filter((f) => e[f] !== undefined).map((f) => [f, e[f]]));
    const folded = foldEvents(new Map(startTree.map((e) => [e.path, { ...e } as FoldEntry])), es);
    const foldedList = sortByPath([...folded.values()]);
    expect(foldedList.map(pick)).toEqual(sortByPath(kernel).map(pick));

    // What the guest did to /boot came out on the volume: a tampered grub.cfg, a new directory.
    await s.caughtUp(last, BOOT);
    const boot = PARTS[1]!; // ok: three entries
    const bootKernel = sortByPath(await kernelTree(image, { hash: true, offsetBytes: boot.start * SECTOR, sizelimit: boot.size * SECTOR }));
    expect(sortByPath(await s.viewTree(BOOT))).toEqual(bootKernel);
    const bootEvents = await s.eventsUntil(BOOT, (x) => x.some((e) => e.kind === 'create' && e.path === '/x') && x.some((e) => e.kind === 'write' && e.path === '/grub/grub.cfg'), 60_000);
    expect(bootEvents.filter((e) => e.kind === 'corrupt')).toEqual([]);
    expect(Buffer.from(bootEvents.find((e) => e.kind === 'write' && e.path === '/grub/grub.cfg')!.data!).toString()).toBe('new\n'); // ok: found above
  }, 240_000);

  it('growing the root partition in the table (growpart) gives a resync and a crawl of the new window', async () => {
    // The table as growpart leaves it: partition 3 to the end of the disk, written through the capture.
    const grown = join(work, 'grown.img');
    copyFileSync(image, grown);
    await exec('sh', ['-c', `echo ', +' | sfdisk -q --no-reread --no-tell-kernel -N 3 "$1"`, 'sh', grown]);
    const head = readAt(grown, 0, 64 * 1024);
    const tail = readAt(grown, DISK_BYTES - 64 * 1024, 64 * 1024);
    const newSize = Number((await exec('sfdisk', ['-J', grown])).stdout.match(/"size":\s*(\d+)[^}]*"name":\s*"root"/)?.[1]);
    expect(newSize).toBeGreaterThan(ROOT.size);
    const before = (await s.readEvents(DISK)).length;
    await s.nbdWrite(DISK, 0, head);
    await s.nbdWrite(DISK, DISK_BYTES - 64 * 1024, tail);
    const es = await s.eventsUntil(DISK, (x) => x.slice(before).some((e) => e.kind === 'snapshot'));
    const after = es.slice(before);
    expect(after[0]).toMatchObject({ kind: 'resync' });
    expect(String(after[0]!.reason)).toMatch(/partition table changed: partition 3 was 83886080 bytes at byte 26214400, is \d+ bytes/); // ok: some event
    expect(after.filter((e) => e.kind === 'snapshot')).toHaveLength(1);
    await s.caughtUp(await s.lastWriteSeq(DISK), DISK);
    // The file system inside did not change; the kernel reads it the same through the grown window.
    const kernel = await rootTree(image, true, newSize);
    expect(sortByPath(await s.viewTree(DISK))).toEqual(sortByPath(kernel));
  }, 120_000);

  it('a guest flipping its partition table over and over is crawled again 3 times at once, then after waits', async () => {
    // Two valid tables: the grown one (now on the disk) and the original, written alternately every 300 ms.
    const orig = startCopy;
    const tables = [image, orig].map((f) => ({ head: readAt(f, 0, 64 * 1024), tail: readAt(f, DISK_BYTES - 64 * 1024, 64 * 1024) }));
    const before = (await s.readEvents(DISK)).length;
    const t0 = Date.now();
    for (let i = 1; i <= 20; i++) {
      const t = tables[i % 2]!; // ok: two tables
      await s.nbdWrite(DISK, 0, t.head);
      await s.nbdWrite(DISK, DISK_BYTES - 64 * 1024, t.tail);
      await new Promise((r) => setTimeout(r, 300));
    }
    const storm = Date.now() - t0;
    const crawls = (await s.readEvents(DISK)).slice(before).filter((e) => e.kind === 'snapshot').length;
    // Without the limit every flip that a crawl did not already cover is a crawl (15-20 here); with it, 3 at once,
    // then one after 5 s, 10 s, ...
    expect(crawls, `${crawls} crawls in ${storm} ms`).toBeLessThanOrEqual(3 + Math.ceil(storm / 5_000));
    expect(crawls).toBeGreaterThanOrEqual(1);
    expect(s.inferencer.logs()).toContain('the disk keeps asking to be crawled again'); // ok: started in beforeAll
    // The table ends as the grown one (i = 20): once the waits are over the disk is followed in it again.
    const grown = (await exec('sfdisk', ['-J', image])).stdout;
    const newSize = Number(grown.match(/"size":\s*(\d+)[^}]*"name":\s*"root"/)?.[1]);
    expect(newSize).toBeGreaterThan(ROOT.size);
    const deadline = Date.now() + 90_000;
    for (;;) {
      const d = (await s.client.listDisks()).disks.find((x) => x.id === DISK);
      const last = await s.lastWriteSeq(DISK);
      if (d?.ready && d.appliedSeq >= last && (await s.readEvents(DISK)).slice(-1)[0]?.kind === 'snapshot') break;
      if (Date.now() > deadline) throw new Error(`not followed again after the storm: ${JSON.stringify(d)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(sortByPath(await s.viewTree(DISK))).toEqual(sortByPath(await rootTree(image, true, newSize)));
  }, 180_000);

  it('capture --partition ID=N names another partition: the inferencer resyncs to it and the view follows it', async () => {
    const before = (await s.readEvents(DISK)).length;
    await s.restartCapture(['--partition', `${DISK}=2`, '--volume', `${BOOT}=${DISK}:2`]);
    const es = await s.eventsUntil(DISK, (x) => x.slice(before).some((e) => e.kind === 'snapshot'));
    const after = es.slice(before);
    expect(after.map((e) => e.kind)).toEqual(['resync', 'snapshot']);
    expect(after[0]!.reason).toBe('the registry names partition 2 of the disk; partition 3 was followed'); // ok: two events
    expect(after[1]).toMatchObject({ partition: 2 });
    const boot = PARTS[1]!; // ok: three entries
    const kernel = await kernelTree(image, { hash: true, offsetBytes: boot.start * SECTOR, sizelimit: boot.size * SECTOR });
    // What the guest wrote to /boot is there: it was in the image all along, outside the window followed before.
    expect(kernel.find((e) => e.path === '/grub/grub.cfg')).toMatchObject({ size: 4 });
    const deadline = Date.now() + 60_000;
    let ours = await s.viewTree(DISK).catch(() => []);
    while (JSON.stringify(sortByPath(ours)) !== JSON.stringify(sortByPath(kernel)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      ours = await s.viewTree(DISK).catch(() => []);
    }
    expect(sortByPath(ours)).toEqual(sortByPath(kernel));
    const d = (await s.client.listDisks()).disks.find((x) => x.id === DISK);
    expect(d).toMatchObject({ partition: 2, partitionStart: boot.start * SECTOR });
  }, 120_000);
});
