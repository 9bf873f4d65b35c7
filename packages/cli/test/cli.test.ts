/**
 * The gammaray offline commands run as real processes against real images
 * built here with mkfs.ext4 -d (and sfdisk for a partitioned disk).
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, mkdtemp, open, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { deserialize, type Document } from 'bson';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const BIN = join(REPO, 'packages/cli/bin/gammaray.js');

interface Result {
  readonly code: number;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** Runs the CLI; never rejects on a non-zero exit. */
function gammaray(...args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err }));
  });
}

function lines(r: Result): string[] {
  return r.stdout.toString('utf8').split('\n').filter((l) => l !== '');
}

function jsonLines(r: Result): Record<string, unknown>[] {
  return lines(r).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Exactly one stderr line, starting with "gammaray: ". */
function expectOneLineError(r: Result, code: number, pattern: RegExp): void {
  expect(r.code).toBe(code);
  const errLines = r.stderr.split('\n').filter((l) => l !== '');
  expect(errLines).toHaveLength(1);
  expect(errLines[0]).toMatch(/^gammaray: /);
  expect(errLines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Splits concatenated BSON documents. */
function bsonDocs(buf: Buffer): Document[] {
  const docs: Document[] = [];
  for (let off = 0; off < buf.length; ) {
    const len = buf.readInt32LE(off);
    docs.push(deserialize(buf.subarray(off, off + len), { promoteBuffers: true }));
    off += len;
  }
  return docs;
}

/** A decoded BSON value with binary (promoted to Buffer) as base64, as crawl --json prints it. */
function binaryAsBase64(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (Array.isArray(v)) return v.map(binaryAsBase64);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, binaryAsBase64(x)]));
  return v;
}

const TREE_KEYS = ['path', 'ino', 'type', 'mode', 'uid', 'gid', 'size', 'nlink', 'mtime', 'mtimeNsec', 'atime', 'atimeNsec', 'ctime', 'ctimeNsec'];
const INVALID_NAME = Buffer.from([0x66, 0xff]);
const MANY = 1500;

let work: string;
let src: string;
let img: string;
let disk: string;
let hasXattr = false;
let hasDevice = false;
const big = randomBytes(300_000);
const SPARSE_SIZE = 10 * 1024 * 1024;
const SPARSE_MARK = 5 * 1024 * 1024;

let crawled: Promise<Record<string, unknown>[]> | undefined;

/** `crawl --json` of the main image, run once and shared. */
function crawlJson(): Promise<Record<string, unknown>[]> {
  crawled ??= gammaray('crawl', '--json', img).then((r) => {
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return jsonLines(r);
  });
  return crawled;
}

async function mkfs(dir: string, image: string, size: string, ...extra: string[]): Promise<void> {
  await run('mkfs.ext4', ['-q', '-F', ...extra, '-d', dir, image, size]);
}

beforeAll(async () => {
  const build = run('pnpm', ['-s', 'build'], { cwd: REPO });
  work = await mkdtemp(join(tmpdir(), 'gammaray-cli-'));
  src = join(work, 'src');
  await mkdir(join(src, 'dir/sub'), { recursive: true });
  await mkdir(join(src, 'many'));
  await writeFile(join(src, 'hello.txt'), 'hello\n');
  await writeFile(join(src, 'dir/big'), big);
  await writeFile(join(src, 'a b é'), 'spaces and UTF-8\n');
  await writeFile(Buffer.concat([Buffer.from(`${src}/`), INVALID_NAME]), 'invalid UTF-8 name\n');
  await symlink('hello.txt', join(src, 'link'));
  await symlink('/dir/sub', join(src, 'dirlink'));
  await link(join(src, 'hello.txt'), join(src, 'hard'));
  await run('mkfifo', [join(src, 'fifo')]);
  const fh = await open(join(src, 'sparse'), 'w');
  await fh.write('middle', 0, 'utf8');
  await fh.write('mark', SPARSE_MARK, 'utf8');
  await fh.close();
  await truncate(join(src, 'sparse'), SPARSE_SIZE);
  for (let i = 0; i < MANY; i++) await writeFile(join(src, 'many', `file-${String(i).padStart(5, '0')}`), '');
  // Both are required (setup.sh installs attr; the suite runs as root): a failure here fails the suite.
  await run('setfattr', ['-n', 'user.color', '-v', 'blue', join(src, 'hello.txt')]);
  await run('mknod', [join(src, 'null'), 'c', '1', '3']);
  hasXattr = true;
  hasDevice = true;
  img = join(work, 'fs.img');
  await mkfs(src, img, '32M');

  // A GPT disk with two ext4 partitions: the tree above, and a small labelled one.
  const src2 = join(work, 'src2');
  await mkdir(src2);
  await writeFile(join(src2, 'two.txt'), 'two\n');
  const p1 = join(work, 'p1.img');
  const p2 = join(work, 'p2.img');
  await mkfs(src, p1, '16M');
  await mkfs(src2, p2, '16M', '-L', 'second');
  disk = join(work, 'disk.img');
  await truncate(await open(disk, 'w').then(async (h) => (await h.close(), disk)), 40 * 1024 * 1024);
  await new Promise<void>((resolve, reject) => {
    const p = spawn('sfdisk', ['-q', disk], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`sfdisk failed: ${err}`))));
    p.stdin.end('label: gpt\n,16M\n,16M\n');
  });
  const { stdout } = await run('sfdisk', ['-J', disk]);
  const parts = (JSON.parse(stdout) as { partitiontable: { partitions: { start: number }[] } }).partitiontable.partitions;
  for (const [i, part] of [p1, p2].entries()) {
    await run('dd', [`if=${part}`, `of=${disk}`, 'bs=512', `seek=${parts[i]!.start}`, 'conv=notrunc', 'status=none']);
  }
  await build;
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe.concurrent('ls', () => {
  it('lists the root directory one name per line, invalid UTF-8 escaped', async () => {
    const r = await gammaray('ls', img);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const expected = ['a b é', 'dir', 'dirlink', 'f\\xff', 'fifo', 'hard', 'hello.txt', 'link', 'lost+found', 'many', 'sparse'];
    if (hasDevice) expected.push('null');
    expect(lines(r).sort()).toEqual(expected.sort());
  });

  it('lists a subdirectory by name and a file as itself', async () => {
    expect(lines(await gammaray('ls', img, '/dir'))).toEqual(['big', 'sub']);
    expect(lines(await gammaray('ls', img, 'hello.txt'))).toEqual(['/hello.txt']);
  });

  it('-l shows mode, links, owner, size, mtime, name and symlink targets', async () => {
    const r = await gammaray('ls', '-l', img);
    expect(r.code).toBe(0);
    const byName = new Map(lines(r).map((l) => [l.slice(l.indexOf('Z ') + 2).replace(/ -> .*/, ''), l]));
    expect(lines(r).find((l) => l.endsWith('link -> hello.txt'))).toMatch(/^lrwxrwxrwx +1 +\d+ +\d+ +9 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ link -> hello.txt$/);
    expect(byName.get('dir')).toMatch(/^drwxr-xr-x +3 /);
    expect(byName.get('fifo')).toMatch(/^prw-r--r-- /);
    expect(byName.get('hello.txt')).toMatch(/^-rw-r--r-- +2 +\d+ +\d+ +6 /);
    if (hasDevice) expect(byName.get('null')).toMatch(/^crw-r--r-- +1 +\d+ +\d+ +1, 3 /);
  });

  it('-R --json --hash prints the start first, every path, contract field order, and hashes equal to the source files', async () => {
    const r = await gammaray('ls', '-R', '--json', '--hash', img);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const entries = jsonLines(r);
    expect(entries[0]).toMatchObject({ path: '/', ino: 2, type: 'dir' });
    const byPath = new Map(entries.map((e) => [e.path as string, e]));
    expect(byPath.size).toBe(entries.length);
    expect(entries.length).toBe(1 + 11 + (hasDevice ? 1 : 0) + 2 + MANY); // root, its entries, dir/big, dir/sub, many/*
    for (const e of entries) {
      const keys = Object.keys(e);
      expect(keys.slice(0, TREE_KEYS.length)).toEqual(TREE_KEYS);
      expect(keys.includes('target')).toBe(e.type === 'symlink');
      expect(keys.includes('sha256')).toBe(e.type === 'file');
    }
    const files: [string, Buffer][] = [
      ['/hello.txt', await readFile(join(src, 'hello.txt'))],
      ['/hard', await readFile(join(src, 'hard'))],
      ['/dir/big', big],
      ['/a b é', await readFile(join(src, 'a b é'))],
      ['/f\\xff', await readFile(Buffer.concat([Buffer.from(`${src}/`), INVALID_NAME]))],
      ['/sparse', await readFile(join(src, 'sparse'))],
      ['/many/file-00000', Buffer.alloc(0)],
    ];
    for (const [path, content] of files) {
      expect(byPath.get(path), path).toMatchObject({ type: 'file', size: content.length, sha256: sha256(content) });
    }
    expect(byPath.get('/hello.txt')!.nlink).toBe(2);
    expect(byPath.get('/hello.txt')!.ino).toBe(byPath.get('/hard')!.ino);
    expect(byPath.get('/link')).toMatchObject({ type: 'symlink', target: 'hello.txt', mode: 0o777 });
    expect(byPath.get('/dirlink')).toMatchObject({ type: 'symlink', target: '/dir/sub' });
    expect(byPath.get('/fifo')).toMatchObject({ type: 'fifo', mode: 0o644 });
    expect(byPath.get('/dir/sub')).toMatchObject({ type: 'dir' });
  });

  it('-R without --json prints full paths, the start included', async () => {
    const r = await gammaray('ls', '-R', img, '/dir');
    expect(lines(r)).toEqual(['/dir', '/dir/big', '/dir/sub']);
  });

  it('follows a final symlink only with a trailing slash', async () => {
    expect(lines(await gammaray('ls', img, '/dirlink'))).toEqual(['/dirlink']);
    const r = await gammaray('ls', img, '/dirlink/');
    expect(r.code).toBe(0);
    expect(lines(r)).toEqual([]);
    expect(lines(await gammaray('ls', img, '/f\\xff'))).toEqual(['/f\\xff']);
  });
});

describe.concurrent('stat', () => {
  it('--json describes a symlink itself (lstat)', async () => {
    const r = await gammaray('stat', '--json', img, '/link');
    expect(r.code).toBe(0);
    const [e] = jsonLines(r);
    expect(Object.keys(e!)).toEqual([...TREE_KEYS, 'target']);
    expect(e).toMatchObject({ path: '/link', type: 'symlink', target: 'hello.txt', size: 9 });
  });

  it('prints coreutils-like text with nanosecond times and xattrs', async () => {
    const r = await gammaray('stat', img, '/hello.txt');
    expect(r.code).toBe(0);
    const text = r.stdout.toString();
    expect(text).toMatch(/^ {2}File: \/hello.txt\n/);
    expect(text).toMatch(/Size: 6 +Blocks: \d+ +IO Block: \d+ +regular file/);
    expect(text).toMatch(/Links: 2/);
    expect(text).toMatch(/Access: \(0644\/-rw-r--r--\)/);
    expect(text).toMatch(/Modify: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000/);
    if (hasXattr) expect(text).toContain(' Xattr: user.color="blue"');
  });
});

describe.concurrent('cat', () => {
  it('prints the bytes of a file, following symlinks', async () => {
    const r = await gammaray('cat', img, '/dir/big');
    expect(r.code).toBe(0);
    expect(r.stdout.equals(big)).toBe(true);
    expect((await gammaray('cat', img, '/link')).stdout.toString()).toBe('hello\n');
    expect((await gammaray('cat', img, '/f\\xff')).stdout.toString()).toBe('invalid UTF-8 name\n');
  });

  it('reads holes of a sparse file as zeros', async () => {
    const r = await gammaray('cat', img, '/sparse');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(SPARSE_SIZE);
    expect(r.stdout.subarray(0, 6).toString()).toBe('middle');
    expect(r.stdout.subarray(SPARSE_MARK, SPARSE_MARK + 4).toString()).toBe('mark');
    expect(r.stdout.subarray(6, SPARSE_MARK).every((b) => b === 0)).toBe(true);
    expect(sha256(r.stdout)).toBe(sha256(await readFile(join(src, 'sparse'))));
  });

  it('refuses a directory and a fifo as user errors', async () => {
    expectOneLineError(await gammaray('cat', img, '/dir'), 2, /\/dir: is a directory/);
    expectOneLineError(await gammaray('cat', img, '/fifo'), 2, /\/fifo: is a fifo .*not a regular file/);
  });

  it('says that a symlink whose target is missing is a dangling link, and how to see it', async () => {
    const dir = join(work, 'dangling');
    await mkdir(join(dir, 'etc'), { recursive: true });
    await symlink('/run/motd.dynamic', join(dir, 'etc/motd'));
    const image = join(work, 'dangling.img');
    await mkfs(dir, image, '4M');
    expectOneLineError(
      await gammaray('cat', image, '/etc/motd'),
      2,
      new RegExp(`/etc/motd: is a symbolic link to /run/motd\\.dynamic, which does not exist in .*dangling\\.img \\(a dangling link\\); see the link with: gammaray stat .*dangling\\.img /etc/motd$`),
    );
    expectOneLineError(await gammaray('cat', image, '/etc/none'), 2, /\/etc\/none: no such file or directory/);
  });

  it('refuses an empty path as a user error that asks for an absolute one', async () => {
    expectOneLineError(await gammaray('cat', img, ''), 2, /PATH of gammaray cat is empty: give an absolute path .*\/etc\/hostname$/);
    expectOneLineError(await gammaray('stat', img, ''), 2, /PATH of gammaray stat is empty/);
  });
});

describe.concurrent('crawl', () => {
  let json: Record<string, unknown>[];

  beforeAll(async () => {
    json = await crawlJson();
  });

  it('--json starts with a volume header', () => {
    expect(json[0]).toMatchObject({ record: 'volume', partition: 0, kind: 'ext4', blockSize: expect.any(Number), blocksCount: expect.any(Number) });
    const h = json[0]!;
    expect(h.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(h.features).toContain('extent');
    expect(h.journal).toMatchObject({ version: 2, clean: true });
  });

  it('--json has one entry per path, agreeing with ls -R --json', async () => {
    const entries = json.slice(1);
    expect(entries.every((e) => e.record === 'entry' && e.partition === 0)).toBe(true);
    const ls = jsonLines(await gammaray('ls', '-R', '--json', img));
    expect(entries.map((e) => e.path)).toEqual(ls.map((e) => e.path));
    for (const [i, e] of entries.entries()) {
      const fromLs = ls[i]!;
      for (const k of Object.keys(fromLs)) expect(e[k], `${fromLs.path as string} ${k}`).toEqual(fromLs[k]);
    }
  });

  it('--json carries blocks, xattrs, crtime, flags and rdev', () => {
    const byPath = new Map(json.slice(1).map((e) => [e.path as string, e]));
    const bigEntry = byPath.get('/dir/big')!;
    const blocks = bigEntry.blocks as { logical: number; physical: number; length: number; initialized: boolean }[];
    const blockSize = json[0]!.blockSize as number;
    expect(blocks.reduce((n, b) => n + b.length, 0) * blockSize).toBeGreaterThanOrEqual(big.length);
    expect(bigEntry).toMatchObject({ flags: expect.any(Number), crtime: expect.any(Number), crtimeNsec: expect.any(Number) });
    expect(byPath.get('/link')!.blocks).toBeUndefined();
    expect(byPath.get('/many/file-00000')!.blocks).toBeUndefined();
    const sparseBlocks = byPath.get('/sparse')!.blocks as { logical: number }[];
    expect(sparseBlocks.length).toBeGreaterThanOrEqual(2);
    if (hasXattr) expect(byPath.get('/hello.txt')!.xattrs).toEqual([{ name: 'user.color', value: Buffer.from('blue').toString('base64') }]);
    if (hasDevice) expect(byPath.get('/null')).toMatchObject({ type: 'chr', rdev: { major: 1, minor: 3 } });
  });

  it('--out writes BSON documents equal to the JSON records', async () => {
    const out = join(work, 'crawl.bson');
    const r = await gammaray('crawl', '--out', out, img);
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toMatch(/entries/);
    expect(r.stdout.toString()).toContain(`wrote ${out}`);
    const docs = bsonDocs(await readFile(out));
    expect(docs).toHaveLength(json.length);
    const asJson = docs.map(binaryAsBase64);
    expect(asJson).toEqual(json);
    for (const [i, d] of docs.entries()) expect(Object.keys(d)).toEqual(Object.keys(json[i]!));
    if (hasXattr) {
      const hello = docs.find((d) => d.path === '/hello.txt')!;
      expect(Buffer.from(hello.xattrs[0].value as Uint8Array).toString()).toBe('blue');
    }
  });

  it('--out is readable by an independent BSON decoder (Debian python3-bson, installed by scripts/setup.sh)', async () => {
    const out = join(work, 'crawl-py.bson');
    expect((await gammaray('crawl', '--out', out, img)).code).toBe(0);
    // Debian's interpreter: apt's python3-bson lands in its dist-packages, not in a pyenv or venv python.
    const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
    const { stdout } = await run(python, ['-c', 'import bson,sys; d=bson.decode_all(open(sys.argv[1],"rb").read()); print(len(d), d[0]["record"], d[1]["path"])', out]);
    expect(stdout.trim()).toBe(`${json.length} volume /`);
  });

  it('prints a summary without --json or --out', async () => {
    const r = await gammaray('crawl', img);
    expect(r.code).toBe(0);
    const text = r.stdout.toString();
    expect(text).toContain(`${img}: ext4`);
    expect(text).toMatch(new RegExp(`${json.length - 1} entries: ${MANY + 6} files, 5 directories, 2 symlinks, ${hasDevice ? '1 character device, ' : ''}1 fifo\n`));
    expect(text).toMatch(/total: \d+ entries in 1 file system, 0 with errors/);
  });
});

describe.concurrent('partitions', () => {
  it('asks for --partition when several partitions hold a file system', async () => {
    expectOneLineError(await gammaray('ls', disk), 2, /2 ext2\/3\/4 file systems .*--partition/);
  });

  it('--partition N picks the volume', async () => {
    expect(lines(await gammaray('ls', '--partition', '2', disk))).toEqual(['lost+found', 'two.txt']);
    expect((await gammaray('cat', '--partition', '1', disk, '/hello.txt')).stdout.toString()).toBe('hello\n');
  });

  it('rejects a partition that does not exist, listing the ones that do', async () => {
    expectOneLineError(await gammaray('ls', '--partition', '3', disk), 2, /no partition 3 .*1 \(16 MiB\), 2 \(16 MiB\)/);
    expectOneLineError(await gammaray('ls', '--partition', '0', disk), 2, /no ext2\/3\/4 file system found/);
  });

  it('crawl indexes every partition, each behind its own header', async () => {
    const r = await gammaray('crawl', '--json', disk);
    expect(r.code).toBe(0);
    const recs = jsonLines(r);
    const headers = recs.filter((x) => x.record === 'volume');
    expect(headers.map((h) => [h.partition, h.volumeName])).toEqual([
      [1, ''],
      [2, 'second'],
    ]);
    expect(headers[0]).toMatchObject({ partitionStart: 1024 * 1024, partitionSize: 16 * 1024 * 1024 });
    expect(recs.filter((x) => x.partition === 2 && x.record === 'entry').map((x) => x.path)).toEqual(['/', '/lost+found', '/two.txt']);
  });
});

describe.concurrent('errors', () => {
  it('a missing image is a one-line user error', async () => {
    expectOneLineError(await gammaray('ls', join(work, 'nope.img')), 2, /cannot open image .*nope\.img: no such file/);
  });

  it('an image without ext2/3/4 says so', async () => {
    const junk = join(work, 'junk.img');
    await writeFile(junk, randomBytes(256 * 1024));
    expectOneLineError(await gammaray('ls', junk), 2, /junk\.img: no ext2\/3\/4 file system found \(/);
    expectOneLineError(await gammaray('crawl', junk), 2, /no ext2\/3\/4 file system found/);
  });

  it('a qcow2 or VMDK image says what it is and how to read it; a raw file system with such bytes in its boot sector is read', async () => {
    const qcow = join(work, 'vm.qcow2');
    const vmdk = join(work, 'vm.vmdk');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', qcow, '16M']);
    await run('qemu-img', ['create', '-q', '-f', 'vmdk', vmdk, '16M']);
    expectOneLineError(await gammaray('ls', qcow), 2, /vm\.qcow2 is a qcow2 image \("QFI\\xfb" at byte 0, version 3\), not a raw disk: .*qemu-img convert -f qcow2 -O raw .*vm\.qcow2 DISK\.raw.*qemu-storage-daemon/);
    expectOneLineError(await gammaray('crawl', vmdk), 2, /vm\.vmdk is a vmdk image \("KDMV" at byte 0/);
    // ext4 leaves its first 1024 bytes alone: what a guest wrote there does not hide the file system.
    const bytes = await readFile(img);
    bytes.write('QFI\xfb', 0, 'latin1');
    const marked = join(work, 'marked.img');
    await writeFile(marked, bytes);
    const r = await gammaray('ls', marked);
    expect(r.code).toBe(0);
    expect(lines(r)).toContain('hello.txt');
  });

  it('an unsupported INCOMPAT feature names the feature', async () => {
    const bad = join(work, 'compress.img');
    const bytes = await readFile(img);
    bytes.writeUInt32LE(bytes.readUInt32LE(1024 + 0x60) | 0x1, 1024 + 0x60);
    await writeFile(bad, bytes);
    expectOneLineError(await gammaray('ls', bad), 2, /features gammaray cannot read \(compression\)/);
  });

  it('a missing path says which path and which image', async () => {
    expectOneLineError(await gammaray('ls', img, '/nope/x'), 2, /\/nope\/x: no such file or directory in .*fs\.img/);
    expectOneLineError(await gammaray('stat', img, '/hello.txt/x'), 2, /not a directory/);
  });

  it('usage errors are one line with exit 2; --help exits 0', async () => {
    const [bogus, noImage, badPartition, none, help, lsHelp] = await Promise.all([
      gammaray('ls', img, '--bogus'),
      gammaray('ls'),
      gammaray('ls', '--partition', 'x', img),
      gammaray(),
      gammaray('--help'),
      gammaray('ls', '--help'),
    ]);
    expectOneLineError(bogus, 2, /unknown option '--bogus'/);
    expectOneLineError(noImage, 2, /missing required argument 'image'/);
    expectOneLineError(badPartition, 2, /--partition/);
    expectOneLineError(none, 2, /missing command/);
    expect(help.code).toBe(0);
    expect(help.stdout.toString()).toContain('crawl');
    expect(lsHelp.code).toBe(0);
    expect(lsHelp.stdout.toString()).toContain('--partition');
  });

  it('a damaged directory block still lists the rest, warns once per problem, and exits 1', async () => {
    const crawl = await crawlJson();
    const blockSize = crawl[0]!.blockSize as number;
    const dirBlocks = crawl.find((e) => e.path === '/dir')!.blocks as { physical: number }[];
    const bytes = await readFile(img);
    bytes.fill(0xa5, dirBlocks[0]!.physical * blockSize, (dirBlocks[0]!.physical + 1) * blockSize);
    const damaged = join(work, 'damaged.img');
    await writeFile(damaged, bytes);
    const r = await gammaray('ls', '-R', damaged);
    expect(r.code).toBe(1);
    expect(lines(r)).toContain('/hello.txt');
    expect(lines(r)).toContain('/dir');
    expect(lines(r)).not.toContain('/dir/big');
    const warnings = r.stderr.split('\n').filter((l) => l !== '');
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    for (const w of warnings) expect(w).toMatch(/^gammaray: warning: \/dir: /);
    const c = await gammaray('crawl', '--json', damaged);
    expect(c.code).toBe(1);
    expect(jsonLines(c).find((e) => e.path === '/dir')!.errors).toEqual([expect.objectContaining({ name: 'CorruptError', kind: expect.any(String), message: expect.any(String) })]);
  });

  it('an I/O failure mid-way (truncated image) is a runtime failure, exit 1', async () => {
    const crawl = await crawlJson();
    const blockSize = crawl[0]!.blockSize as number;
    const bigBlocks = crawl.find((e) => e.path === '/dir/big')!.blocks as { physical: number }[];
    const cut = join(work, 'cut.img');
    await writeFile(cut, (await readFile(img)).subarray(0, (bigBlocks[0]!.physical + 1) * blockSize));
    const r = await gammaray('cat', cut, '/dir/big');
    expectOneLineError(r, 1, /\/dir\/big: /);
  });

  it('exits quietly when the reader of stdout goes away (EPIPE)', async () => {
    // The brief's shell pipeline, and a reader that closes after the first chunk.
    const { stdout, stderr } = await run('bash', ['-c', `set -o pipefail; node ${JSON.stringify(BIN)} ls -R --json ${JSON.stringify(img)} | head -1; echo "status=$?"`]);
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^\{"path":"\/".*\nstatus=0\n$/);
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, 'crawl', '--json', img], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.stdout.once('data', () => child.stdout.destroy());
      child.on('close', (code) => resolve({ code, stderr: err }));
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});
