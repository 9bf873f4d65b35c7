/**
 * Device numbers of character and block devices end to end, with the kernel as the oracle. An ext4 image is made
 * by mkfs.ext4 -d from a directory of devices made with mknod(1) (majors and minors up to 255 land in the old
 * 8:8 encoding of i_block[0], larger ones in the new 12:20 encoding of i_block[1]; 259:65536 is an NVMe
 * partition's kind of number), loop-mounted read-only, and `stat -c '%t %T'` (hex major and minor) and `%r`
 * (st_rdev) of each device are what gammaray must report:
 * - offline: `ls -l` (the "major, minor" column), `ls -R --json` and `stat --json` (`rdev: {major, minor}`);
 * - the inference engine: its tree, its nodes' `rdev` (the Linux dev_t), after a checkpoint, and after a
 *   checkpoint written before nodes had device numbers; `create` events of devices debugfs makes, an `attr` event
 *   when debugfs repoints a device's i_block in place, and the events folded over the starting tree;
 * - a live view (nats-server, capture, inferencer, view processes): gRPC Stat (grpc-js, and buf curl through
 *   server reflection), `gammaray tree --json`, and `stat -c '%t %T'` on the FUSE mount, also for a device created
 *   through NBD after the crawl.
 * Needs `pnpm build` first (the CLI runs from its bundle), root, loop devices, /dev/fuse, debugfs, qemu-io.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BSON } from 'bson';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makedev } from '@gammaray/ext4';
import { DiskInferencer, EventKind, decodeEvent, encodeCheckpoint, encodeEvent, foldEvents, type FoldEntry, type FsEvent } from '@gammaray/inferencer';
import { kernelTree } from '../oracle/kernel.js';
import { run } from '../oracle/exec.js';
import { CLI } from '../support/capture-process.js';
import { EditedDisk } from '../support/edited-disk.js';
import { fileFetcher } from '../support/guest-replay.js';
import { LiveStack } from '../support/live-stack.js';

const exec = promisify(execFile);
const BUF = fileURLToPath(new URL('../../node_modules/.bin/buf', import.meta.url));
const BS = 4096;
const DISK = 'devs';

/** [name, mknod type, major, minor]. */
const DEVICES: readonly [string, 'c' | 'b', number, number][] = [
  ['mem', 'c', 1, 1], // the classic: a raw /dev/mem hidden in the tree
  ['null', 'c', 1, 3],
  ['whiteout', 'c', 0, 0], // what overlayfs leaves for a deleted name
  ['loop0', 'b', 7, 0],
  ['sdb1', 'b', 8, 17],
  ['last-old', 'c', 255, 255], // the largest number the old encoding holds
  ['major-256', 'c', 256, 0],
  ['minor-256', 'b', 0, 256],
  ['nvme', 'b', 259, 65536],
  ['max', 'c', 4095, 1048575], // the largest ext4 stores: 12-bit major, 20-bit minor
];

/** Made by debugfs after the crawl: old encoding, new encoding, a minor past 16 bits. */
const LATER: readonly [string, 'c' | 'b', number, number][] = [
  ['tty', 'c', 4, 64],
  ['sdz', 'b', 65, 300],
  ['nvme-later', 'b', 259, 70000],
];

interface KernelDevice {
  readonly type: 'chr' | 'blk';
  readonly major: number;
  readonly minor: number;
  /** st_rdev. */
  readonly rdev: number;
}

let work: string;
let image: string;

/** `stat -c '%F|%t %T|%r'` of every device under `dir` (named in `names`), as the kernel reports it. */
async function statDevices(dir: string, names: readonly string[]): Promise<Map<string, KernelDevice>> {
  const { stdout } = await exec('stat', ['-c', '%F|%t %T|%r', ...names.map((n) => join(dir, n))]);
  const out = new Map<string, KernelDevice>();
  stdout.trim().split('\n').forEach((line, i) => {
    const [kind, hex, dec] = line.split('|') as [string, string, string];
    const [major, minor] = hex.split(' ').map((h) => parseInt(h, 16)) as [number, number];
    out.set(names[i]!, { type: kind === 'character special file' ? 'chr' : 'blk', major, minor, rdev: Number(dec) }); // ok: one line per name
  });
  return out;
}

/** The kernel's view of the devices in `img`: loop-mounted read-only, then `stat`. */
async function kernelDevices(img: string, names: readonly string[]): Promise<Map<string, KernelDevice>> {
  const mnt = mkdtempSync(join(work, 'mnt-'));
  await run('mount', ['-t', 'ext4', '-o', 'ro,loop,noload', img, mnt]);
  try {
    return await statDevices(mnt, names);
  } finally {
    await run('umount', ['-d', mnt]);
    rmSync(mnt, { recursive: true });
  }
}

/**
 * debugfs commands making device `name` in the root (debugfs takes a name there, not a path: "/x" would be a name
 * with a slash). Its mknod refuses numbers past 65535, so those are made 0:0 and given their number in i_block[1]
 * in the same change, as the kernel writes it.
 */
function debugfsMknod(name: string, t: 'c' | 'b', major: number, minor: number): string[] {
  if (major <= 65535 && minor <= 65535) return [`mknod ${name} ${t} ${major} ${minor}`];
  return [`mknod ${name} ${t} 0 0`, `sif ${name} block[1] ${makedev({ major, minor })}`];
}

/** {major, minor} per name, in `names` order. */
const numbers = (m: Map<string, KernelDevice>, names: readonly string[]) => names.map((n) => [n, { major: m.get(n)?.major, minor: m.get(n)?.minor }]);

const ALL = DEVICES.map(([n]) => n);
let kernel: Map<string, KernelDevice>;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-devices-'));
  const src = join(work, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'plain.txt'), 'not a device\n');
  for (const [name, t, major, minor] of DEVICES) await exec('mknod', [join(src, name), t, String(major), String(minor)]);
  image = join(work, 'devs.img');
  // No journal: each flush is a consistency point, so a change written through NBD shows at its flush.
  await exec('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-b', String(BS), '-N', '128', '-d', src, image, '16M']);
  // i_generation past 2^31 on two of them (mkfs -d leaves 0; a kernel draws it at random): nodes keep it signed.
  for (const n of ['mem', 'max']) await exec('debugfs', ['-w', '-R', `sif /${n} generation 0x90000001`, image]);
  kernel = await kernelDevices(image, ALL);
}, 60_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the oracle', () => {
  it('has every device as mknod made it (mkfs -d kept the numbers), st_rdev = makedev(major, minor)', () => {
    expect(numbers(kernel, ALL)).toEqual(DEVICES.map(([n, , major, minor]) => [n, { major, minor }]));
    for (const [n, d] of kernel) expect(d.rdev, n).toBe(makedev(d));
  });

  it('agrees with the kernel tree oracle (lstat st_rdev)', async () => {
    const tree = await kernelTree(image, { hash: false });
    expect(ALL.map((n) => [n, tree.find((e) => e.path === `/${n}`)?.rdev])).toEqual(numbers(kernel, ALL));
    expect(tree.find((e) => e.path === '/plain.txt')?.rdev).toBeUndefined();
  });
});

describe('offline commands', () => {
  it('ls -R --json and stat --json give rdev {major, minor} of each device, and none for other types', async () => {
    const { stdout } = await exec('node', [CLI, 'ls', image, '/', '-R', '--json']);
    const entries = stdout.trim().split('\n').map((l) => JSON.parse(l) as { path: string; type: string; rdev?: unknown });
    expect(ALL.map((n) => [n, entries.find((e) => e.path === `/${n}`)?.rdev])).toEqual(numbers(kernel, ALL));
    expect(ALL.map((n) => entries.find((e) => e.path === `/${n}`)?.type)).toEqual(ALL.map((n) => kernel.get(n)?.type));
    for (const e of entries) if (e.type !== 'chr' && e.type !== 'blk') expect(e.rdev, e.path).toBeUndefined();
    for (const n of ['mem', 'nvme', 'max']) {
      const one = JSON.parse((await exec('node', [CLI, 'stat', image, `/${n}`, '--json'])).stdout) as { rdev?: unknown };
      expect(one.rdev, n).toEqual({ major: kernel.get(n)?.major, minor: kernel.get(n)?.minor });
    }
  });

  it('ls -l shows "major, minor" where a file shows its size', async () => {
    const { stdout } = await exec('node', [CLI, 'ls', image, '/', '-l']);
    for (const n of ALL) {
      const line = stdout.split('\n').find((l) => l.endsWith(` ${n}`));
      const d = kernel.get(n)!; // ok: every device is stat'ed
      expect(line, n).toMatch(new RegExp(`^${d.type === 'chr' ? 'c' : 'b'}\\S+\\s+\\d+\\s+\\d+\\s+\\d+\\s+${d.major}, ${d.minor} `));
    }
  });
});

/** The entries of `img`'s devices in an engine's tree, by name. */
function engineNumbers(inf: DiskInferencer, names: readonly string[]) {
  const tree = inf.tree();
  return names.map((n) => [n, tree.find((e) => e.path === `/${n}`)?.rdev]);
}

/** Version 2 checkpoint bytes as a checkpoint from before nodes had device numbers: the nodes' `rd` removed. */
function withoutDeviceNumbers(ck: Uint8Array): Uint8Array {
  const docs: Uint8Array[] = [];
  const buf = Buffer.from(ck.buffer, ck.byteOffset, ck.byteLength);
  let removed = 0;
  for (let off = 0; off < buf.length; ) {
    const len = buf.readInt32LE(off);
    const d = BSON.deserialize(buf.subarray(off, off + len), { promoteBuffers: true });
    if (d.k === 'nodes') {
      for (const item of d.items as Record<string, unknown>[]) {
        if ('rd' in item) removed++;
        delete item.rd;
      }
    }
    docs.push(BSON.serialize(d));
    off += len;
  }
  expect(removed, 'device nodes in the checkpoint').toBeGreaterThan(0);
  return Buffer.concat(docs);
}

describe('the inference engine', () => {
  it('has each device\'s number in its tree and nodes (rdev: the kernel\'s st_rdev), also after checkpoints old and new', async () => {
    const { inferencer: inf } = await DiskInferencer.bootstrap(fileFetcher(image, 0), { disk: DISK }, 0, new Date());
    expect(engineNumbers(inf, ALL)).toEqual(numbers(kernel, ALL));
    const byPath = new Map(inf.tree().map((e) => [e.path, e.ino]));
    const rdevs = ALL.map((n) => inf.nodes.get(byPath.get(`/${n}`)!)!.rdev); // ok: listed
    expect(rdevs.map((r, i) => [ALL[i], r >>> 0])).toEqual(ALL.map((n) => [n, kernel.get(n)?.rdev]));
    // Kept as int32 (4095:0xfffff is -1): a small integer to V8 whatever the number, see nodeRdev.
    for (const r of rdevs) expect(r | 0).toBe(r);
    expect(inf.nodes.get(byPath.get('/plain.txt')!)?.rdev).toBe(0); // ok: listed
    expect(inf.tree().find((e) => e.path === '/plain.txt')).not.toHaveProperty('rdev');
    const ck = inf.checkpoint();
    const restored = await DiskInferencer.restore(ck, fileFetcher(image, 0), { disk: DISK });
    expect(engineNumbers(restored, ALL)).toEqual(numbers(kernel, ALL));
    // A checkpoint from before: the numbers come back from the inode tables it holds, with no block read.
    let reads = 0;
    const counting = fileFetcher(image, 0);
    const old = await DiskInferencer.restore(withoutDeviceNumbers(encodeCheckpoint(inf.exportState(), 2)), { size: counting.size, read: (o, l) => (reads++, counting.read(o, l)) }, { disk: DISK });
    expect(engineNumbers(old, ALL)).toEqual(numbers(kernel, ALL));
    expect(reads).toBe(0);
  });

  it('reports created devices with rdev, a device repointed in place as an attr change, and the folded tree equals the kernel\'s', async () => {
    const copy = join(work, 'edited.img');
    copyFileSync(image, copy);
    const disk = new EditedDisk(copy);
    const { inferencer: inf } = await DiskInferencer.bootstrap(disk.fetcher(), { disk: DISK }, 0, new Date());
    const start = await kernelTree(copy, { hash: false });
    const events: FsEvent[] = [];
    events.push(
      ...(await disk.change(inf, async () => {
        for (const [name, t, major, minor] of LATER) for (const cmd of debugfsMknod(name, t, major, minor)) await disk.debugfs(cmd);
      })),
    );
    const created = events.filter((e) => e.kind === EventKind.Create);
    const byName = <T extends [string, ...unknown[]]>(xs: T[]): T[] => xs.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    expect(byName(created.map((e) => [e.path, e.type, e.rdev]))).toEqual(byName(LATER.map(([n, t, major, minor]) => [`/${n}`, t === 'c' ? 'chr' : 'blk', { major, minor }])));
    // A raw write to i_block (no syscall repoints a device node): /dev/null-like becomes /dev/mem-like, and the
    // NVMe node another partition (new encoding).
    const repointed = await disk.change(inf, async () => {
      await disk.debugfs('sif /null block[0] 0x0101');
      await disk.debugfs(`sif /nvme block[1] ${makedev({ major: 259, minor: 65537 })}`);
    });
    events.push(...repointed);
    expect(repointed.filter((e) => e.kind === EventKind.Attr).map((e) => [e.path, e.changes?.['rdev']])).toEqual([
      ['/null', { old: { major: 1, minor: 3 }, new: { major: 1, minor: 1 } }],
      ['/nvme', { old: { major: 259, minor: 65536 }, new: { major: 259, minor: 65537 } }],
    ]);
    const names = [...ALL, ...LATER.map(([n]) => n)];
    const now = await kernelDevices(copy, names);
    expect(now.get('null')).toMatchObject({ major: 1, minor: 1 });
    expect(engineNumbers(inf, names)).toEqual(numbers(now, names));
    // What a consumer of the events alone knows.
    const folded = foldEvents(new Map(start.map((e) => [e.path, { ...e } as FoldEntry])), events);
    expect(names.map((n) => [n, folded.get(`/${n}`)?.rdev])).toEqual(numbers(now, names));
    // Events survive their BSON form.
    for (const e of [...created, ...repointed]) expect(decodeEvent(encodeEvent(e))).toEqual(e);
  });
});

describe('a live view', () => {
  let stack: LiveStack;
  let liveImage: string;
  let mnt: string;

  beforeAll(async () => {
    liveImage = join(work, 'live.img');
    copyFileSync(image, liveImage);
    mnt = join(work, 'view-mnt');
    stack = await LiveStack.start(work, { [DISK]: liveImage }, [], ['--mount', mnt]);
    await stack.caughtUp(0, DISK);
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('gRPC Stat, `gammaray tree --json` and stat on the FUSE mount give each device\'s number', async () => {
    for (const n of ALL) {
      const { entry } = await stack.client.stat(DISK, `/${n}`);
      expect([n, entry.rdev], n).toEqual([n, { major: kernel.get(n)?.major, minor: kernel.get(n)?.minor }]);
    }
    expect((await stack.client.stat(DISK, '/plain.txt')).entry.rdev).toBeNull();
    const tree = await stack.viewTree(DISK);
    expect(ALL.map((n) => [n, tree.find((e) => e.path === `/${n}`)?.rdev])).toEqual(numbers(kernel, ALL));
    expect(tree.find((e) => e.path === '/plain.txt')).not.toHaveProperty('rdev');
    const fuse = await statDevices(join(mnt, DISK), ALL);
    expect([...fuse]).toEqual([...kernel]);
    // A client that knows the API only from server reflection (proto/descriptors.binpb) sees the field too.
    const { stdout } = await exec(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '-d', JSON.stringify({ disk: DISK, path: '/nvme' }), `http://${stack.view.address}/gammaray.v1.ViewService/Stat`]);
    expect((JSON.parse(stdout) as { entry: { rdev?: unknown } }).entry.rdev).toEqual({ major: 259, minor: 65536 });
  });

  it('a device created after the crawl (written through NBD) has its number in the create event, Stat and the mount', async () => {
    // The change as debugfs makes it on a copy, written to the capture block by block with qemu-io, then a flush.
    const next = join(work, 'live-next.img');
    copyFileSync(liveImage, next);
    for (const cmd of [...debugfsMknod('mem2', 'c', 1, 1), ...debugfsMknod('nvme2', 'b', 259, 65536)]) await exec('debugfs', ['-w', '-R', cmd, next]);
    const before = readFileSync(liveImage);
    const after = readFileSync(next);
    const cmds: string[] = [];
    for (let off = 0; off < after.length; off += BS) {
      if (after.subarray(off, off + BS).equals(before.subarray(off, off + BS))) continue;
      const piece = join(work, `piece-${off}`);
      writeFileSync(piece, after.subarray(off, off + BS));
      cmds.push('-c', `write -s ${piece} ${off} ${BS}`);
    }
    expect(cmds.length).toBeGreaterThan(0);
    await exec('qemu-io', ['-f', 'raw', ...cmds, '-c', 'flush', stack.capture.url(DISK)]);
    const events = await stack.eventsUntil(DISK, (es) => es.filter((e) => e.kind === EventKind.Create).length >= 2);
    expect(events.filter((e) => e.kind === EventKind.Create).map((e) => [e.path, e.type, e.rdev])).toEqual([
      ['/mem2', 'chr', { major: 1, minor: 1 }],
      ['/nvme2', 'blk', { major: 259, minor: 65536 }],
    ]);
    await stack.caughtUp(await stack.lastWriteSeq(DISK), DISK);
    expect((await stack.client.stat(DISK, '/nvme2')).entry.rdev).toEqual({ major: 259, minor: 65536 });
    const fuse = await statDevices(join(mnt, DISK), ['mem2', 'nvme2']);
    expect(numbers(fuse, ['mem2', 'nvme2'])).toEqual([
      ['mem2', { major: 1, minor: 1 }],
      ['nvme2', { major: 259, minor: 65536 }],
    ]);
    expect(fuse.get('nvme2')?.rdev).toBe(makedev({ major: 259, minor: 65536 }));
  });
});
