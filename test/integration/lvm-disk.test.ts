/**
 * A disk laid out as Debian's and Ubuntu's installers do with LVM: a GPT with an ext4 /boot partition and an LVM2
 * PV partition holding a volume group whose linear logical volumes hold the root (the larger) and /home. The
 * image is made with the real lvm2 tools (pvcreate, vgcreate, lvcreate on a loop device; no device-mapper needed)
 * and mkfs.ext4 at the logical volumes' offsets as lvm2 reports them. Real processes: nats-server, capture,
 * inferencer, view; a real guest (QEMU TCG) mounts the root logical volume through a loop device at its offset in
 * /dev/vda2 (what dm-linear maps) and works in it; the kernel is the oracle (a loop mount at the LV's offset).
 *
 * Checked: the inferencer follows the root LV (snapshot `lv`, ListDisks `lv`), the view's tree and the folded
 * events equal the kernel's after the guest's workload; `lvextend` (the VG metadata rewritten through the capture)
 * gives a resync and a crawl of the grown LV. Until 2026-11-28 such a disk was followed as "no file system".
 * Needs `pnpm build` first, root, loop devices, QEMU, sfdisk, lvm2.
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
import { CLI } from '../support/capture-process.js';
import { LiveStack, readAt, sortByPath } from '../support/live-stack.js';

const exec = promisify(execFile);
const DISK = 'lvm1';
const SECTOR = 512;
const MiB = 1024 * 1024;
const DISK_BYTES = 160 * MiB;
const BOOT = { start: 2048, size: 32768 };
const PV = { start: 34816, size: 280000 };
const VG = `gtest${process.pid}`;

let work: string;
let image: string;
let startCopy: string;
let s: LiveStack;
/** The root and home LVs as lvm2 places them: byte offset on the disk, and size. */
let root: { start: number; size: number };
let home: { start: number; size: number };

/** lvm2 on loop device `dev` only, without udev, device-mapper, or backups under /etc/lvm. */
async function lvm(dev: string, args: string[]): Promise<string> {
  const config = `devices { obtain_device_list_from_udev=0 filter=["a|^${dev}$|","r|.*|"] } backup { backup=0 archive=0 }`;
  const [cmd, ...rest] = args;
  const { stdout } = await exec(cmd!, ['--config', config, ...rest]); // ok: a command is given
  return stdout;
}

/** Runs `fn` with the PV partition of `img` on a loop device. */
async function withPvLoop<T>(img: string, fn: (dev: string) => Promise<T>): Promise<T> {
  const dev = (await exec('losetup', ['-o', String(PV.start * SECTOR), '--sizelimit', String(PV.size * SECTOR), '-f', '--show', img])).stdout.trim();
  try {
    return await fn(dev);
  } finally {
    await exec('losetup', ['-d', dev]);
  }
}

/** Where lvm2 put logical volume `lv`: bytes from the disk's start, and its size. */
async function lvPlace(dev: string, lv: string): Promise<{ start: number; size: number }> {
  const peStart = Number((await lvm(dev, ['pvs', '--noheadings', '--units', 'b', '--nosuffix', '-o', 'pe_start', dev])).trim());
  const out = (await lvm(dev, ['lvs', '--driverloaded', 'n', '--noheadings', '--units', 'b', '--nosuffix', '-o', 'seg_pe_ranges,vg_extent_size,lv_size', `${VG}/${lv}`])).trim();
  const m = /:(\d+)-(\d+)\s+(\d+)\s+(\d+)/.exec(out);
  if (!m) throw new Error(`unexpected lvs output: ${out}`);
  return { start: PV.start * SECTOR + peStart + Number(m[1]) * Number(m[3]), size: Number(m[4]) };
}

const rootTree = (img: string, hash: boolean, place = root): Promise<TreeEntry[]> => kernelTree(img, { hash, offsetBytes: place.start, sizelimit: place.size });

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-lvm-'));
  image = join(work, `${DISK}.img`);
  writeFileSync(image, '');
  await exec('truncate', ['-s', String(DISK_BYTES), image]);
  const script = ['label: gpt', `start=${BOOT.start}, size=${BOOT.size}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=boot`, `start=${PV.start}, size=${PV.size}, type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=lvm`].join('\n');
  await exec('sh', ['-c', `printf '%s\\n' "$1" | sfdisk -q --no-reread --no-tell-kernel "$2"`, 'sh', script, image]);
  await withPvLoop(image, async (dev) => {
    await lvm(dev, ['pvcreate', '-q', dev]);
    await lvm(dev, ['vgcreate', '-q', '-s', '4m', VG, dev]);
    await lvm(dev, ['lvcreate', '-q', '--driverloaded', 'n', '-an', '-Zn', '-L', '24m', '-n', 'home', VG]);
    await lvm(dev, ['lvcreate', '-q', '--driverloaded', 'n', '-an', '-Zn', '-L', '64m', '-n', 'root', VG]);
    home = await lvPlace(dev, 'home');
    root = await lvPlace(dev, 'root');
  });
  const src = (name: string, files: Record<string, string>) => {
    const dir = join(work, name);
    for (const [p, content] of Object.entries(files)) {
      mkdirSync(join(dir, p, '..'), { recursive: true });
      writeFileSync(join(dir, p), content);
    }
    return dir;
  };
  const mkfsAt = (place: { start: number; size: number }, dir: string) => exec('mkfs.ext4', ['-q', '-F', '-E', `offset=${place.start}`, '-d', dir, image, `${place.size / 1024}k`]);
  await exec('mkfs.ext4', ['-q', '-F', '-E', `offset=${BOOT.start * SECTOR}`, '-d', src('boot', { 'vmlinuz': 'kernel\n' }), image, `${(BOOT.size * SECTOR) / 1024}k`]);
  await mkfsAt(home, src('home', { 'user/notes.txt': 'notes\n' }));
  await mkfsAt(root, src('root', { 'etc/hostname': 'lvm1\n', 'etc/fstab': '/dev/mapper/vg-root / ext4 defaults 0 1\n', 'var/log/syslog': 'booted\n'.repeat(200) }));
  startCopy = join(work, 'start.img');
  copyFileSync(image, startCopy);
  s = await LiveStack.start(work, { [DISK]: image });
  await s.caughtUp(0, DISK);
}, 120_000);

afterAll(async () => {
  await s?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('a disk with LVM (GPT: /boot, an LVM2 PV with root and home logical volumes)', () => {
  let startTree: TreeEntry[];

  it('is followed in its largest logical volume holding ext4: the crawl and the view equal the kernel\'s view of it', async () => {
    startTree = await rootTree(startCopy, true);
    expect(startTree.some((e) => e.path === '/etc/hostname')).toBe(true);
    expect(sortByPath(await s.viewTree(DISK))).toEqual(sortByPath(startTree));
    const es = await s.eventsUntil(DISK, (x) => x.some((e) => e.kind === 'snapshot'));
    expect(es[0]).toMatchObject({ kind: 'snapshot', partition: 2, lv: `${VG}/root` });
    const d = (await s.client.listDisks()).disks.find((x) => x.id === DISK);
    expect(d).toMatchObject({ partition: 2, partitionStart: root.start, lv: `${VG}/root` });
  });

  it('offline: ls and crawl read the logical volumes (--lv), against the kernel', async () => {
    const ls = (args: string[]) => exec('node', [CLI, 'ls', startCopy, '/', '-R', '--json', '--hash', ...args], { maxBuffer: 64 << 20 });
    const refused = await ls([]).catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 2 });
    expect((refused as { stderr: string }).stderr).toContain(`holds 3 ext2/3/4 file systems (partitions 1 (ext4), 2 LV ${VG}/home (ext4), 2 LV ${VG}/root (ext4)); choose one with --partition N (and --lv VG/LV for a logical volume)`);
    const parse = (out: string) => sortByPath(out.trim().split('\n').map((l) => JSON.parse(l) as TreeEntry));
    expect(parse((await ls(['--lv', `${VG}/root`])).stdout)).toEqual(sortByPath(startTree));
    expect(parse((await ls(['--partition', '2', '--lv', `${VG}/home`])).stdout)).toEqual(sortByPath(await kernelTree(startCopy, { hash: true, offsetBytes: home.start, sizelimit: home.size })));
    const nope = await ls(['--lv', `${VG}/nope`]).catch((e: { code: number; stderr: string }) => e);
    expect((nope as { stderr: string }).stderr).toContain(`has no LVM logical volume ${VG}/nope (its logical volumes: 2 LV ${VG}/home (24 MiB`);
    const { stdout } = await exec('node', [CLI, 'crawl', startCopy, '--json'], { maxBuffer: 64 << 20 });
    const heads = stdout.trim().split('\n').map((l) => JSON.parse(l) as { record: string; partition: number; lv?: string; lvStart?: number; partitionStart?: number }).filter((r) => r.record === 'volume');
    expect(heads.map((h) => [h.partition, h.lv ?? null, h.lv ? h.partitionStart! + h.lvStart! : null])).toEqual([
      [1, null, null],
      [2, `${VG}/home`, home.start],
      [2, `${VG}/root`, root.start],
    ]);
  });

  it('a real guest working in the root LV: the view\'s tree and the folded events equal the kernel\'s', async () => {
    const workload = [
      'set -e',
      'echo hello > /mnt/etc/motd',
      'echo more >> /mnt/var/log/syslog',
      'mkdir -p /mnt/srv/data',
      'dd if=/dev/urandom of=/mnt/srv/data/blob.bin bs=64k count=10 2>/dev/null',
      'sync',
      'mv /mnt/etc/motd /mnt/srv/motd',
      'chmod 600 /mnt/etc/fstab',
      'i=0; while [ $i -lt 50 ]; do echo "n $i" > /mnt/srv/f$i; i=$((i+1)); done',
      'sync',
      'rm /mnt/srv/f3 /mnt/srv/f7',
      'sync',
    ].join('\n');
    const offset = root.start - PV.start * SECTOR;
    const res = await runGuest({ nbd: s.capture.url(DISK), workload, append: `gammaray.dev=vda2@${offset}`, timeoutMs: 120_000 }); // ok: started in beforeAll
    expect(res.status, `${res.console}\n${res.stderr}`).toBe(0);
    await s.caughtUp(await s.lastWriteSeq(DISK), DISK);
    const kernel = sortByPath(await rootTree(image, true));
    expect(kernel.some((e) => e.path === '/srv/motd')).toBe(true);
    expect(sortByPath(await s.viewTree(DISK))).toEqual(kernel);
    const es = await s.eventsUntil(DISK, (x) => x.some((e) => e.kind === 'delete' && e.path === '/srv/f7'));
    expect(es.filter((e) => e.kind === 'corrupt')).toEqual([]);
    expect(es.some((e) => e.kind === 'rename' && e.from === '/etc/motd' && e.path === '/srv/motd')).toBe(true);
    const fields = ['path', 'type', 'mode', 'uid', 'gid', 'size', 'nlink', 'target'] as const;
    const pick = (e: Partial<TreeEntry>) => Object.fromEntries(fields.filter((f) => e[f] !== undefined).map((f) => [f, e[f]]));
    const folded = sortByPath([...foldEvents(new Map(startTree.map((e) => [e.path, { ...e } as FoldEntry])), es).values()]);
    expect(folded.map(pick)).toEqual(kernel.map(pick));
  }, 240_000);

  it('lvextend (the VG metadata rewritten through the capture) gives a resync and a crawl of the grown LV', async () => {
    // lvextend on a copy, then its PV label and metadata area (the PV's first MiB) written through the capture.
    const grownImg = join(work, 'grown.img');
    copyFileSync(image, grownImg);
    const grown = await withPvLoop(grownImg, async (dev) => {
      await lvm(dev, ['lvextend', '-q', '--driverloaded', 'n', '-L', '+16m', `${VG}/root`]);
      return lvPlace(dev, 'root');
    });
    expect(grown.start).toBe(root.start);
    expect(grown.size).toBe(root.size + 16 * MiB);
    const before = (await s.readEvents(DISK)).length;
    const head = readAt(grownImg, PV.start * SECTOR, MiB);
    await s.nbdWrite(DISK, PV.start * SECTOR, head);
    const es = await s.eventsUntil(DISK, (x) => x.slice(before).some((e) => e.kind === 'snapshot'));
    const after = es.slice(before);
    expect(after[0]).toMatchObject({ kind: 'resync' });
    expect(String(after[0]!.reason)).toMatch(new RegExp(`was ${root.size} bytes at byte ${root.start}, is ${grown.size} bytes`)); // ok: some event
    await s.caughtUp(await s.lastWriteSeq(DISK), DISK);
    expect(sortByPath(await s.viewTree(DISK))).toEqual(sortByPath(await rootTree(image, true, grown)));
  }, 120_000);
});
