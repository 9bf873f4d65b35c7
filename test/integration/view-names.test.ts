/**
 * Names a guest may give its files, through the live view and through the offline commands: names that are not
 * UTF-8 (printed `\xNN`, up to four characters a byte), names with control bytes, a path whose printed form is
 * far longer than PATH_MAX, and names that sort differently as bytes than as printed strings. Real processes: a
 * nats-server, `gammaray capture` serving an image made by `mkfs.ext4 -d`, an inferencer and a view with its FUSE
 * mount. Checked: `gammaray tree --json --hash` equals `gammaray ls IMAGE -R --json --hash` line for line, ListDir
 * lists in `gammaray ls`'s order, such files read through gRPC and FUSE, and the spelling `gammaray stat` prints
 * for a control byte (`\x0a`) names the file again, offline and in the view; the FUSE mount's directory holds the
 * names `gammaray ls --json` prints (lowercase `\xNN`, a literal `\xff` as `\x5cxff`); `ls` and `tree` text into
 * a pipe is one line per entry (control characters as `\xNN`).
 * Needs `pnpm build` first (the CLI runs from its bundle), root and /dev/fuse.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ViewClient } from '@gammaray/service-view';
import { CLI, startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startInferencer, type InferencerProcess } from '../support/inferencer-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { startView, type ViewProcess } from '../support/view-process.js';

const exec = promisify(execFile);
const DISK = 'names';
/** 64 bytes that are not UTF-8: printed as 256 characters, over the 255 a name may have. */
const LONG_BAD = Buffer.alloc(64, 0xfe);
/** Twelve directories of 250 non-UTF-8 bytes: 3,012 bytes on the disk, over 12,000 characters printed. */
const DEEP = Array.from({ length: 12 }, (_, i) => Buffer.alloc(250, 0x80 + i));
const escaped = (b: Buffer): string => [...b].map((x) => `\\x${x.toString(16)}`).join('');
const DEEP_FILE = `/${DEEP.map(escaped).join('/')}/deepfile`;

let work: string;
let image: string;
let mount: string;
let nats: NatsServer;
let capture: CaptureProcess | undefined;
let inferencer: InferencerProcess | undefined;
let view: ViewProcess | undefined;
let client: ViewClient | undefined;

const gammaray = async (args: string[]): Promise<string> => (await exec('node', [CLI, ...args], { maxBuffer: 64 << 20 })).stdout;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-view-names-'));
  const src = join(work, 'src');
  mkdirSync(join(src, 'a'), { recursive: true });
  // "/a/x" comes before "/a.conf" and "/a-b" depth first, after them as whole strings ('-' and '.' sort before '/').
  writeFileSync(join(src, 'a', 'x'), 'x\n');
  writeFileSync(join(src, 'a.conf'), 'conf\n');
  writeFileSync(join(src, 'a-b'), 'ab\n');
  const raw = Buffer.from(src);
  const at = (...names: Buffer[]): Buffer => Buffer.concat([raw, ...names.flatMap((n) => [Buffer.from('/'), n])]);
  writeFileSync(at(LONG_BAD), 'sixty-four bad bytes\n');
  // 0xff sorts after 'z' as a byte; printed, "\xff" sorts before 'a'.
  writeFileSync(at(Buffer.from([0xff, 0x61])), 'ff\n');
  writeFileSync(at(Buffer.from('zz')), 'zz\n');
  // Spelled as the escape of 0xff, in plain ASCII: must not show as the byte's name.
  writeFileSync(at(Buffer.from('lit\\xffa')), 'literal\n');
  writeFileSync(at(Buffer.from('nl\nname')), 'newline\n');
  // A name that would forge a line of its own, and one with a terminal escape, in a script's pipeline.
  writeFileSync(at(Buffer.from('x\nforged-line')), 'forged\n');
  writeFileSync(at(Buffer.from('esc\x1b[2Jx\x7f')), 'escape\n');
  mkdirSync(at(...DEEP), { recursive: true });
  writeFileSync(at(...DEEP, Buffer.from('deepfile')), 'deep\n');
  image = join(work, 'disk.img');
  await exec('truncate', ['-s', '64M', image]);
  await exec('mkfs.ext4', ['-q', '-d', src, image]);
  mount = join(work, 'mnt');

  nats = await startNatsServer();
  capture = await startCapture(nats.url, { [DISK]: image });
  inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '0.5']);
  view = await startView(nats.url, ['--mount', mount]);
  client = new ViewClient(view.address);
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await client.stat(DISK, '/');
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}, 60_000);

afterAll(async () => {
  client?.close();
  await view?.stop();
  await inferencer?.stop();
  await capture?.stop();
  await nats?.stop();
  rmSync(work, { recursive: true, force: true });
}, 60_000);

describe('guest names through the view and the offline commands', () => {
  it('gammaray tree --json --hash equals gammaray ls -R --json --hash of the image, line for line', async () => {
    const tree = await gammaray(['tree', DISK, '--json', '--hash', '--grpc', view!.address]); // ok: started in beforeAll
    const ls = await gammaray(['ls', image, '-R', '--json', '--hash']);
    const paths = ls.trim().split('\n').map((l) => (JSON.parse(l) as { path: string }).path);
    expect(paths.indexOf('/a/x')).toBeLessThan(paths.indexOf('/a-b'));
    expect(paths.indexOf('/zz')).toBeLessThan(paths.indexOf('/\\xffa'));
    expect(paths).toContain(DEEP_FILE);
    expect(tree).toEqual(ls);
  });

  it('ListDir lists a directory in the order gammaray ls does', async () => {
    const ls = (await gammaray(['ls', image, '/', '--json'])).trim().split('\n').map((l) => (JSON.parse(l) as { path: string }).path.slice(1));
    const listed = await client!.listDir(DISK, '/'); // ok: started in beforeAll
    expect(listed.entries.map((e) => e.name)).toEqual(ls);
    // Paged: each page goes on after the last name of the one before.
    const paged: string[] = [];
    let token = '';
    do {
      const page = await client!.listDir(DISK, '/', { pageSize: 2, pageToken: token }); // ok: as above
      paged.push(...page.entries.map((e) => e.name));
      token = page.nextPageToken;
    } while (token !== '');
    expect(paged).toEqual(ls);
  });

  it('reads a file whose printed name is over 255 characters, and one whose printed path is over 4096, through gRPC and FUSE', async () => {
    const read = async (path: string): Promise<string> => {
      const chunks: Buffer[] = [];
      for await (const c of client!.readFile(DISK, path)) chunks.push(Buffer.from(c.data)); // ok: started in beforeAll
      return Buffer.concat(chunks).toString();
    };
    expect(await read(`/${escaped(LONG_BAD)}`)).toBe('sixty-four bad bytes\n');
    expect(await read(DEEP_FILE)).toBe('deep\n');
    expect(readFileSync(join(mount, DISK, escaped(LONG_BAD)), 'utf8')).toBe('sixty-four bad bytes\n');
  });

  it('the FUSE mount names entries as gammaray ls --json does: bytes that are not UTF-8 as lowercase \\xNN', async () => {
    const ls = (await gammaray(['ls', image, '/', '--json'])).trim().split('\n').map((l) => (JSON.parse(l) as { path: string }).path.slice(1));
    // As bytes: what a program reading the directory gets, before any decoding of its own.
    const fuse = readdirSync(join(mount, DISK), { encoding: 'buffer' }).map((b) => b.toString('utf8'));
    expect(fuse.sort()).toEqual([...ls].sort());
    expect(fuse).toContain('\\xffa');
    expect(fuse).toContain('lit\\x5cxffa');
    expect(fuse.filter((n) => /\\X[0-9A-F]{2}/.test(n))).toEqual([]);
    expect(readFileSync(join(mount, DISK, '\\xffa'), 'utf8')).toBe('ff\n');
    expect(readFileSync(join(mount, DISK, 'lit\\x5cxffa'), 'utf8')).toBe('literal\n');
    expect(readdirSync(join(mount, DISK, ...DEEP.slice(0, 1).map(escaped)))).toEqual([escaped(DEEP[1]!)]); // ok: twelve
  });

  it('gammaray ls and tree print one line per entry into a pipe, control bytes as \\xNN; --json keeps them exact', async () => {
    // What follow prints too: C0 controls and DEL as \xNN, lowercase.
    const escape = (s: string): string => s.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
    const lines = (text: string): string[] => text.split('\n').slice(0, -1);
    const jsonPaths = (text: string): string[] => lines(text).map((l) => (JSON.parse(l) as { path: string }).path);
    const lsJson = jsonPaths(await gammaray(['ls', image, '-R', '--json']));
    expect(lsJson).toContain('/x\nforged-line');
    expect(lsJson).toContain('/esc\x1b[2Jx\x7f');
    expect(lines(await gammaray(['ls', image, '-R']))).toEqual(lsJson.map(escape));
    const top = lines(await gammaray(['ls', image, '/']));
    expect(top).toContain('x\\x0aforged-line');
    expect(top).toContain('esc\\x1b[2Jx\\x7f');
    expect(top).not.toContain('forged-line');
    const long = lines(await gammaray(['ls', image, '/', '-l']));
    expect(long.filter((l) => l.endsWith(' x\\x0aforged-line'))).toHaveLength(1);
    expect(long).toHaveLength(top.length);
    const treeJson = jsonPaths(await gammaray(['tree', DISK, '--json', '--grpc', view!.address])); // ok: started in beforeAll
    expect(treeJson).toEqual(lsJson);
    expect(lines(await gammaray(['tree', DISK, '--grpc', view!.address]))).toEqual(treeJson.map(escape)); // ok: as above
    expect(lines(await gammaray(['tree', DISK, '--hash', '--grpc', view!.address])).map((l) => l.slice(l.indexOf('  ') + 2))).toEqual(treeJson.map(escape)); // ok: as above
  });

  it('names a file by the spelling gammaray stat prints for its control byte, offline and in the view', async () => {
    expect(await gammaray(['stat', image, '/nl\nname'])).toContain('File: /nl\\x0aname');
    expect(await gammaray(['cat', image, '/nl\\x0aname'])).toBe('newline\n');
    const st = await client!.stat(DISK, '/nl\\x0aname'); // ok: started in beforeAll
    expect(st.entry?.path).toBe('/nl\nname');
    await expect(client!.stat(DISK, '/\\x2e\\x2e/a')).rejects.toThrow(/contains ".."/); // ok: as above
  });
});
