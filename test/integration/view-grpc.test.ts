/**
 * `gammaray view` over gRPC, as processes: a real nats-server, `gammaray capture` serving two disks, `gammaray
 * inferencer` following one of them, and two views. Every RPC is exercised with grpc-js (ViewClient) and with an
 * independent client, `buf curl` (npm @bufbuild/buf), which learns the API through server reflection only.
 * Checked: error codes (unknown disk, bad paths, "..", a disk never bootstrapped -> FAILED_PRECONDITION, a
 * missing or wrong token -> UNAUTHENTICATED), TLS with client certificates; after a real guest workload (QEMU,
 * test/guest) `gammaray tree --json --hash` equals the kernel's view of the final image (loop mount, read-only);
 * a view started after the workload has the same tree; Watch and `gammaray follow` resumed from a sequence
 * deliver each event exactly once.
 * Needs `pnpm build` first (the CLI runs from its bundle), root, loop devices, QEMU.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_REASON_KEY, ViewClient, compileGlob, treeEntryOfMessage, type WatchResponse } from '@gammaray/service-view';
import { CheckpointStore, compileGlobParents } from '@gammaray/replica';
import { OBJ_STATE, STREAM_EVENTS, STREAM_WRITES, writesSubject } from '@gammaray/wire';
import { runGuest } from '../guest/guest.js';
import { kernelTree } from '../oracle/kernel.js';
import type { TreeEntry } from '../oracle/entry.js';
import { CLI, startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startInferencer, type InferencerProcess } from '../support/inferencer-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';
import { startView, type ViewProcess } from '../support/view-process.js';

const exec = promisify(execFile);
const BUF = fileURLToPath(new URL('../../node_modules/.bin/buf', import.meta.url));
const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));
const DISK = 'vm1';
/** Registered by the capture, followed by no inferencer: never bootstrapped. */
const IDLE = 'vm2';
const TOKEN = randomBytes(24).toString('hex');
const SERVICE = 'gammaray.v1.ViewService';
const HAS_SETFATTR = existsSync('/usr/bin/setfattr');

let work: string;
let nats: NatsServer;
let capture: CaptureProcess | undefined;
let inferencer: InferencerProcess | undefined;
let viewA: ViewProcess | undefined;
let viewB: ViewProcess | undefined;
let nc: NatsConnection;
let image: string;
let startCopy: string;
let bigBin: Buffer;
const clients: ViewClient[] = [];
const certs: Record<'ca' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey', string> = { ca: '', serverCert: '', serverKey: '', clientCert: '', clientKey: '' };

const client = (address: string, opts?: ConstructorParameters<typeof ViewClient>[1]): ViewClient => {
  const c = new ViewClient(address, opts);
  clients.push(c);
  return c;
};
const tlsOpts = (withCert: boolean) => ({
  ca: readFileSync(certs.ca),
  cert: withCert ? readFileSync(certs.clientCert) : undefined,
  key: withCert ? readFileSync(certs.clientKey) : undefined,
});
const sortByPath = <T extends { path: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** The grpc status (and gammaray-error reason) a call fails with. */
async function failure(p: Promise<unknown> | AsyncIterable<unknown>): Promise<{ code: number; reason: string; details: string }> {
  try {
    if (Symbol.asyncIterator in p) await collect(p);
    else await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, reason: String(e.metadata?.get(ERROR_REASON_KEY)[0] ?? ''), details: e.details };
  }
  throw new Error('the call succeeded');
}

/** Watch messages until one has `seq >= last` (or `count` arrived); cancels the stream. */
async function watchUntil(stream: AsyncIterable<WatchResponse> & { cancel(): void }, done: (got: WatchResponse[]) => boolean, timeoutMs = 20_000): Promise<WatchResponse[]> {
  const got: WatchResponse[] = [];
  const timer = setTimeout(() => stream.cancel(), timeoutMs);
  try {
    for await (const m of stream) {
      got.push(m);
      if (done(got)) break;
    }
  } catch (err) {
    if ((err as grpc.ServiceError).code !== grpc.status.CANCELLED) throw err;
  } finally {
    clearTimeout(timer);
    stream.cancel();
  }
  return got;
}

/** buf curl arguments for a view: plaintext h2c, or https with our CA, client certificate and token. */
function bufTarget(view: ViewProcess, secure: boolean): { url: string; args: string[] } {
  if (!secure) return { url: `http://${view.address}`, args: ['--protocol', 'grpc', '--http2-prior-knowledge'] };
  return {
    url: `https://localhost:${view.port}`,
    args: ['--protocol', 'grpc', '--cacert', certs.ca, '--cert', certs.clientCert, '--key', certs.clientKey, '-H', `authorization: Bearer ${TOKEN}`],
  };
}

/** One unary call through buf curl: its exit status and stdout parsed as JSON (the error document on failure). */
async function bufCurl(view: ViewProcess, method: string, body: object, o: { secure?: boolean; extra?: string[] } = {}): Promise<{ status: number; json: any }> {
  const t = bufTarget(view, o.secure ?? false);
  const args = ['curl', ...t.args, ...(o.extra ?? []), '-d', JSON.stringify(body), `${t.url}/${method}`];
  try {
    const { stdout } = await exec(BUF, args, { maxBuffer: 64 * 1024 * 1024 });
    return { status: 0, json: stdout.trim() === '' ? {} : JSON.parse(stdout) };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    // buf curl prints the error document on stderr (exit status = the gRPC code... + 0 offset not guaranteed).
    const text = (e.stderr || e.stdout).trim();
    return { status: e.code, json: text.startsWith('{') ? JSON.parse(text) : { raw: text } };
  }
}

/** Splits buf curl's output (pretty-printed JSON documents one after another) into documents. */
function splitDocuments(text: string): { docs: any[]; rest: string } {
  const docs: any[] = [];
  let depth = 0;
  let inString = false;
  let start = -1;
  let last = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{') {
      if (depth++ === 0) start = i;
    } else if (c === '}' && --depth === 0) {
      docs.push(JSON.parse(text.slice(start, i + 1)));
      last = i + 1;
    }
  }
  return { docs, rest: text.slice(last) };
}

/** A server stream through buf curl, read until `done(docs)`; then the process is killed. */
async function bufCurlStream(view: ViewProcess, method: string, body: object, done: (docs: any[]) => boolean, o: { secure?: boolean; timeoutMs?: number } = {}): Promise<any[]> {
  const t = bufTarget(view, o.secure ?? false);
  const child = spawn(BUF, ['curl', ...t.args, '-d', JSON.stringify(body), `${t.url}/${method}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  let stderr = '';
  const docs: any[] = [];
  return new Promise<any[]>((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`buf curl ${method} did not deliver enough within ${o.timeoutMs ?? 20_000} ms: ${JSON.stringify(docs).slice(0, 2000)} ${stderr}`)), o.timeoutMs ?? 20_000);
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      if (err) reject(err);
      else resolve(docs);
    };
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      const r = splitDocuments(text);
      docs.push(...r.docs);
      text = r.rest;
      if (done(docs)) finish();
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', () => {
      const r = splitDocuments(text);
      docs.push(...r.docs);
      if (done(docs)) finish();
      else finish(new Error(`buf curl ${method} ended early: ${stderr}`));
    });
  });
}

/** The last sequence of the disk's records in GAMMARAY_WRITES (0 if none). */
async function lastWriteSeq(): Promise<number> {
  const jsm = await jetstreamManager(nc);
  try {
    return (await jsm.streams.getMessage(STREAM_WRITES, { last_by_subj: writesSubject(DISK) }))?.seq ?? 0;
  } catch {
    return 0;
  }
}

/** Waits until the view's replica of the disk has applied `seq`. */
async function caughtUp(c: ViewClient, seq: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = (await c.listDisks().catch(() => ({ disks: [] }))).disks.find((x) => x.id === DISK);
    if (d?.ready && d.appliedSeq >= seq) return;
    if (Date.now() > deadline) throw new Error(`view did not apply ${seq} within ${timeoutMs} ms: ${JSON.stringify(d)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until the inferencer checkpointed past `seq` (so every event up to it is in GAMMARAY_EVENTS). */
async function inferencerDone(seq: number, timeoutMs = 30_000): Promise<number> {
  const checkpoints = new CheckpointStore(await new Objm(nc).open(OBJ_STATE));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // The full checkpoint or its last delta.
    const latest = await checkpoints.latest(DISK).catch(() => undefined);
    if ((latest?.appliedSeq ?? -1) >= seq) return (await (await jetstreamManager(nc)).streams.info(STREAM_EVENTS)).state.last_seq;
    if (Date.now() > deadline) throw new Error(`inferencer did not checkpoint ${seq} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The tree of a view as CLI tree entries (GetTree with hashes). */
async function treeOf(c: ViewClient): Promise<TreeEntry[]> {
  return (await collect(c.getTree(DISK, { hash: true }))).map((m) => treeEntryOfMessage(m.entry) as TreeEntry);
}

async function makeCerts(dir: string): Promise<void> {
  const ossl = (args: string[]) => exec('openssl', args, { cwd: dir });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await ossl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=gammaray test CA']);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const who of ['server', 'client']) {
    await ossl(['req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who === 'server' ? 'localhost' : 'gammaray test client'}`]);
    await ossl(['x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.crt`, '-days', '2', '-extfile', `${who}.ext`]);
  }
  Object.assign(certs, { ca: join(dir, 'ca.crt'), serverCert: join(dir, 'server.crt'), serverKey: join(dir, 'server.key'), clientCert: join(dir, 'client.crt'), clientKey: join(dir, 'client.key') });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-view-'));
  nats = await startNatsServer({ jetstream: true });
  const src = join(work, 'src');
  mkdirSync(join(src, 'etc'), { recursive: true });
  mkdirSync(join(src, 'docs'), { recursive: true });
  mkdirSync(join(src, 'many'), { recursive: true });
  writeFileSync(join(src, 'etc', 'hostname'), 'vm1\n');
  writeFileSync(join(src, 'docs', 'café notes.txt'), 'notes\n'.repeat(500));
  symlinkSync('../etc/hostname', join(src, 'docs', 'link'));
  linkSync(join(src, 'etc', 'hostname'), join(src, 'docs', 'hard'));
  bigBin = randomBytes(3 * 1024 * 1024 + 123);
  writeFileSync(join(src, 'big.bin'), bigBin);
  for (let i = 0; i < 50; i++) writeFileSync(join(src, 'many', `f${String(i).padStart(3, '0')}`), `file ${i}\n`);
  image = join(work, `${DISK}.img`);
  await exec('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, image, '64M']);
  startCopy = join(work, 'start.img');
  copyFileSync(image, startCopy);
  const idle = join(work, `${IDLE}.img`);
  await exec('mkfs.ext4', ['-q', '-F', idle, '16M']);
  mkdirSync(join(work, 'tls'));
  await makeCerts(join(work, 'tls'));
  capture = await startCapture(nats.url, { [DISK]: image, [IDLE]: idle });
  inferencer = await startInferencer(nats.url, ['--disk', DISK, '--checkpoint-interval', '1']);
  nc = await connect({ servers: nats.url });
  viewA = await startView(nats.url, ['--metrics', '127.0.0.1:0']);
  await caughtUp(client(viewA.address), 0);
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await viewA?.stop();
  await viewB?.stop();
  await inferencer?.stop();
  await capture?.stop();
  await nc?.close();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('gammaray view over gRPC', () => {
  it('answers every RPC through grpc-js, from the replicated state of the starting image', async () => {
    const c = client(viewA!.address); // ok: started in beforeAll
    const { disks } = await c.listDisks();
    expect(disks.map((d) => d.id)).toEqual([DISK, IDLE]);
    expect(disks[0]).toMatchObject({ id: DISK, state: 'attached', phase: 'following', ready: true, size: 64 * 1024 * 1024 });
    expect(disks[0]!.files).toBeGreaterThanOrEqual(55); // ok: two disks listed
    expect(disks[1]).toMatchObject({ id: IDLE, phase: 'waiting', ready: false });

    const st = await c.stat(DISK, '/docs/café notes.txt');
    expect(st.entry).toMatchObject({ path: '/docs/café notes.txt', name: 'café notes.txt', type: 'FILE_TYPE_FILE', size: 3000, nlink: 1, mode: 0o644 });
    expect((await c.stat(DISK, '/')).entry).toMatchObject({ path: '/', name: '/', type: 'FILE_TYPE_DIR', ino: 2 });
    expect((await c.stat(DISK, '/docs/link')).entry).toMatchObject({ type: 'FILE_TYPE_SYMLINK', target: '../etc/hostname', size: 15 });
    expect((await c.stat(DISK, '//docs/./hard')).entry).toMatchObject({ path: '/docs/hard', nlink: 2 });
    expect((await c.readLink(DISK, '/docs/link')).target).toBe('../etc/hostname');

    // ListDir in pages of 7: together exactly the 50 names, sorted, each once.
    const names: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const page = await c.listDir(DISK, '/many', { pageSize: 7, pageToken: token });
      expect(page.dir).toMatchObject({ path: '/many', type: 'FILE_TYPE_DIR' });
      expect(page.entries.length).toBeLessThanOrEqual(7);
      names.push(...page.entries.map((e) => e.name));
      for (const e of page.entries) expect(e.path).toBe(`/many/${e.name}`);
      token = page.nextPageToken;
      pages++;
    } while (token !== '');
    expect(pages).toBe(8);
    expect(names).toEqual(Array.from({ length: 50 }, (_, i) => `f${String(i).padStart(3, '0')}`));
    expect((await c.listDir(DISK, '/')).entries.map((e) => e.name)).toEqual(['big.bin', 'docs', 'etc', 'lost+found', 'many']);

    // ReadFile: the whole 3 MiB file in default chunks, a range across chunk boundaries, past the end.
    const chunks = await collect(c.readFile(DISK, '/big.bin'));
    expect(chunks.length).toBe(Math.ceil(bigBin.length / (256 * 1024)));
    expect(chunks[0]!.size).toBe(bigBin.length); // ok: several chunks
    expect(chunks.map((m) => m.offset)).toEqual(chunks.map((_, i) => i * 256 * 1024));
    expect(sha(Buffer.concat(chunks.map((m) => m.data)))).toBe(sha(bigBin));
    const range = await collect(c.readFile(DISK, '/big.bin', { offset: 1_000_000, length: 300_000, chunkSize: 65_536 }));
    expect(Buffer.concat(range.map((m) => m.data))).toEqual(bigBin.subarray(1_000_000, 1_300_000));
    expect(range.length).toBe(5);
    const past = await collect(c.readFile(DISK, '/big.bin', { offset: bigBin.length + 10 }));
    expect(past).toHaveLength(1);
    expect(past[0]!.data.length).toBe(0); // ok: length 1

    // GetTree with hashes equals the kernel's view of the starting image; a subtree is its slice.
    const tree = await treeOf(c);
    expect(sortByPath(tree)).toEqual(sortByPath(await kernelTree(startCopy, { hash: true })));
    const sub = (await collect(c.getTree(DISK, { path: '/docs' }))).map((m) => m.entry.path);
    expect(sub).toEqual(['/docs', '/docs/café notes.txt', '/docs/hard', '/docs/link']);
  });

  it('answers every RPC through buf curl, which knows the API only from server reflection', async () => {
    const v = viewA!; // ok: started in beforeAll
    // The descriptors reflection serves are exactly what the .proto files compile to.
    const fresh = join(work, 'descriptors.binpb');
    await exec(BUF, ['build', PROTO_DIR, '-o', fresh]);
    expect(readFileSync(fresh).equals(readFileSync(join(PROTO_DIR, 'descriptors.binpb'))), 'proto/descriptors.binpb is stale: run pnpm proto').toBe(true);
    const { stdout: methods } = await exec(BUF, ['curl', ...bufTarget(v, false).args, '--list-methods', `http://${v.address}`]);
    for (const m of ['ListDisks', 'Stat', 'ListDir', 'ReadLink', 'ReadFile', 'GetTree', 'Watch']) expect(methods).toContain(`${SERVICE}/${m}`);
    expect(methods).toContain('grpc.health.v1.Health/Check');

    expect((await bufCurl(v, 'grpc.health.v1.Health/Check', { service: SERVICE })).json).toEqual({ status: 'SERVING' });
    const disks = (await bufCurl(v, `${SERVICE}/ListDisks`, {})).json.disks;
    expect(disks.map((d: { id: string }) => d.id)).toEqual([DISK, IDLE]);
    expect(disks[0]).toMatchObject({ id: DISK, size: String(64 * 1024 * 1024), ready: true });
    expect((await bufCurl(v, `${SERVICE}/Stat`, { disk: DISK, path: '/docs/hard' })).json.entry).toMatchObject({ path: '/docs/hard', type: 'FILE_TYPE_FILE', nlink: 2, size: '4' });
    expect((await bufCurl(v, `${SERVICE}/ReadLink`, { disk: DISK, path: '/docs/link' })).json.target).toBe('../etc/hostname');
    const p1 = (await bufCurl(v, `${SERVICE}/ListDir`, { disk: DISK, path: '/many', page_size: 30 })).json;
    const p2 = (await bufCurl(v, `${SERVICE}/ListDir`, { disk: DISK, path: '/many', page_size: 30, page_token: p1.next_page_token ?? p1.nextPageToken })).json;
    const listed = [...p1.entries, ...p2.entries].map((e: { name: string }) => e.name);
    expect(listed).toHaveLength(50);
    expect(new Set(listed).size).toBe(50);
    expect(p2.nextPageToken ?? '').toBe('');

    const docs = splitDocuments(await exec(BUF, ['curl', ...bufTarget(v, false).args, '-d', JSON.stringify({ disk: DISK, path: '/big.bin', offset: 4096, length: 600_000, chunk_size: 262_144 }), `http://${v.address}/${SERVICE}/ReadFile`], { maxBuffer: 64 << 20 }).then((r) => r.stdout)).docs;
    expect(docs).toHaveLength(3);
    expect(Buffer.concat(docs.map((d: { data: string }) => Buffer.from(d.data, 'base64')))).toEqual(bigBin.subarray(4096, 604_096));

    const { stdout: treeText } = await exec(BUF, ['curl', ...bufTarget(v, false).args, '-d', JSON.stringify({ disk: DISK, hash: true }), `http://${v.address}/${SERVICE}/GetTree`], { maxBuffer: 64 << 20 });
    const viaBuf = splitDocuments(treeText).docs.map((d: { entry: { path: string; sha256?: string } }) => [d.entry.path, d.entry.sha256 ?? ''] as const);
    const viaJs = (await collect(client(v.address).getTree(DISK, { hash: true }))).map((m) => [m.entry.path, m.entry.sha256] as const);
    expect(viaBuf).toEqual(viaJs);

    // Watch from the start: the crawl's snapshot event comes first.
    const events = await bufCurlStream(v, `${SERVICE}/Watch`, { disk: DISK, from_start: true }, (d) => d.length >= 1);
    expect(events[0]).toMatchObject({ seq: '1', event: { disk: DISK, kind: 'snapshot' } });
  });

  it('maps errors to gRPC codes, with the reason in trailing metadata', async () => {
    const c = client(viewA!.address); // ok: started in beforeAll
    const S = grpc.status;
    expect(await failure(c.stat('vm9', '/'))).toMatchObject({ code: S.NOT_FOUND, reason: 'NotFound' });
    expect(await failure(c.stat('VM1!', '/'))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'InvalidArgument' });
    expect(await failure(c.stat(DISK, 'etc/hostname'))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'InvalidArgument' });
    const dotdot = await failure(c.stat(DISK, '/docs/../etc/hostname'));
    expect(dotdot).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'InvalidArgument' });
    expect(dotdot.details).toContain('".."');
    expect(await failure(c.stat(DISK, '/../../etc/shadow'))).toMatchObject({ code: S.INVALID_ARGUMENT });
    expect(await failure(c.stat(DISK, '/nope'))).toMatchObject({ code: S.NOT_FOUND, reason: 'NotFound' });
    expect(await failure(c.stat(DISK, '/etc/hostname/x'))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'NotADirectory' });
    expect(await failure(c.listDir(DISK, '/big.bin'))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'NotADirectory' });
    expect(await failure(c.listDir(DISK, '/many', { pageToken: 'garbage' }))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'BadPageToken' });
    const other = (await c.listDir(DISK, '/many', { pageSize: 5 })).nextPageToken;
    expect(await failure(c.listDir(DISK, '/docs', { pageToken: other }))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'BadPageToken' });
    expect(await failure(c.listDir(DISK, '/', { pageSize: 100_000 }))).toMatchObject({ code: S.INVALID_ARGUMENT });
    expect(await failure(c.readLink(DISK, '/big.bin'))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'NotASymlink' });
    expect(await failure(c.readFile(DISK, '/docs'))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'IsADirectory' });
    expect(await failure(c.readFile(DISK, '/docs/link'))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'InvalidArgument' });
    expect(await failure(c.readFile(DISK, '/big.bin', { chunkSize: 10 }))).toMatchObject({ code: S.INVALID_ARGUMENT });
    // A path ending in a slash names a directory (POSIX): a file named so is not one.
    expect(await failure(c.stat(DISK, '/etc/hostname/'))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'NotADirectory' });
    expect(await failure(c.readFile(DISK, '/big.bin/.'))).toMatchObject({ code: S.INVALID_ARGUMENT, reason: 'NotADirectory' });
    expect((await c.stat(DISK, '/etc/')).entry?.path).toBe('/etc');
    expect(await failure(c.getTree(DISK, { path: '/nope' }))).toMatchObject({ code: S.NOT_FOUND });
    const idle = await failure(c.stat(IDLE, '/'));
    expect(idle).toMatchObject({ code: S.FAILED_PRECONDITION, reason: 'NotReady' });
    expect(idle.details).toMatch(/no state yet.*inferencer/);
    expect(await failure(c.getTree(IDLE))).toMatchObject({ code: S.FAILED_PRECONDITION, reason: 'NotReady' });
    expect(await failure(c.watch(DISK, { kinds: ['write', 'nonsense'] }))).toMatchObject({ code: S.INVALID_ARGUMENT });
    expect(await failure(c.watch(DISK, { glob: '/[abc' }))).toMatchObject({ code: S.INVALID_ARGUMENT });
    expect(await failure(c.watch('vm9'))).toMatchObject({ code: S.NOT_FOUND });

    // The same codes through buf curl (its error document names the code).
    const v = viewA!; // ok: started in beforeAll
    expect((await bufCurl(v, `${SERVICE}/Stat`, { disk: 'vm9', path: '/' })).json.code).toBe('not_found');
    expect((await bufCurl(v, `${SERVICE}/Stat`, { disk: DISK, path: '/etc/../etc' })).json.code).toBe('invalid_argument');
    expect((await bufCurl(v, `${SERVICE}/Stat`, { disk: IDLE, path: '/' })).json.code).toBe('failed_precondition');
    expect((await bufCurl(v, `${SERVICE}/ListDir`, { disk: DISK, path: '/big.bin' })).json.code).toBe('invalid_argument');
    // An offset past 2^53 reaches the server rounded: the message names the field, not the rounded value.
    const huge = await bufCurl(v, `${SERVICE}/ReadFile`, { disk: DISK, path: '/big.bin', offset: '4611686018427387904', length: '5' });
    expect(huge.json.code).toBe('invalid_argument');
    expect(huge.json.message).toBe('offset must be below 2^53 (9007199254740992) bytes');

    // Metrics count calls by method and code; /readyz shows each disk's replica.
    const scrape = await fetch(`http://127.0.0.1:${v.metricsPort}/metrics`).then((r) => r.text());
    expect(scrape).toMatch(/gammaray_view_grpc_requests_total\{method="\/gammaray\.v1\.ViewService\/Stat",code="FAILED_PRECONDITION"\} [1-9]/);
    expect(scrape).toMatch(/gammaray_view_grpc_requests_total\{method="\/gammaray\.v1\.ViewService\/Stat",code="NOT_FOUND"\} [1-9]/);
    expect(scrape).toMatch(/gammaray_view_grpc_request_duration_seconds_count\{method="\/gammaray\.v1\.ViewService\/ListDir"\} [1-9]/);
    expect(scrape).toMatch(new RegExp(`gammaray_view_replica_applied_seq\\{disk="${DISK}"\\} \\d+`));
    expect(scrape).toMatch(new RegExp(`gammaray_view_replica_ready\\{disk="${IDLE}"\\} 0`));
    const ready = await fetch(`http://127.0.0.1:${v.metricsPort}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { detail: { disks: { disk: string; phase: string }[] } }).detail.disks).toContainEqual(expect.objectContaining({ disk: IDLE, phase: 'waiting' }));

    // The CLI turns them into exit statuses: 2 for what the user can fix, 1 for "not yet".
    const cli = async (args: string[]) => exec('node', [CLI, ...args]).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
    const unknown = await cli(['tree', 'vm9', '--grpc', v.address]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect((await cli(['tree', IDLE, '--grpc', v.address])).code).toBe(1);
    expect((await cli(['tree', DISK, '--grpc', 'nonsense'])).code).toBe(2);
  });

  it('after a real guest workload, gammaray tree --json --hash equals the kernel and live Watch saw it happen', async () => {
    const v = viewA!; // ok: started in beforeAll
    const c = client(v.address);
    const before = (await (await jetstreamManager(nc)).streams.info(STREAM_EVENTS)).state.last_seq;
    const live = c.watch(DISK, { from: 'now' });
    const liveDone = watchUntil(live, () => false, 120_000);
    const workload = [
      'set -e',
      'mkdir -p /mnt/root/dir',
      'echo hello > /mnt/root/dir/a.txt',
      'mv /mnt/root/dir/a.txt /mnt/root/dir/b.txt',
      'echo gone > /mnt/root/dir/gone.txt && sync && rm /mnt/root/dir/gone.txt',
      'dd if=/dev/urandom of=/mnt/root/dir/random.bin bs=64k count=8 2>/dev/null',
      'for i in 1 2 3; do echo "line $i" >> /mnt/root/test.txt; sync; done',
      'ln -s dir/b.txt /mnt/root/link && ln /mnt/root/dir/b.txt /mnt/root/hard',
      'rm /mnt/many/f001 && mv /mnt/many/f002 /mnt/root/moved',
      'chmod 600 /mnt/etc/hostname',
      'mkdir /mnt/root/empty && rmdir /mnt/root/empty',
      'echo short > /mnt/big.bin',
      ...(HAS_SETFATTR ? ['setfattr -n user.color -v blue /mnt/root/dir/b.txt'] : []),
      'sync',
    ].join('\n');
    const res = await runGuest({ nbd: capture!.url(DISK), workload, timeoutMs: 90_000 }); // ok: started in beforeAll
    expect(res.status, `${res.console}\n${res.stderr}`).toBe(0);

    const last = await lastWriteSeq();
    await caughtUp(c, last);
    const eventsEnd = await inferencerDone(last);
    const { stdout } = await exec('node', [CLI, 'tree', DISK, '--json', '--hash', '--grpc', v.address], { maxBuffer: 64 << 20 });
    const ours = stdout.trim().split('\n').map((l) => JSON.parse(l) as TreeEntry);
    const kernel = await kernelTree(image, { hash: true });
    expect(sortByPath(ours)).toEqual(sortByPath(kernel));
    expect(ours.find((e) => e.path === '/root/dir/b.txt')).toMatchObject({ nlink: 2, sha256: sha(Buffer.from('hello\n')) });
    expect(ours.some((e) => e.path === '/many/f001' || e.path === '/root/dir/gone.txt')).toBe(false);
    // Plain output: one path per line, with the hash column.
    const { stdout: plain } = await exec('node', [CLI, 'tree', DISK, '--hash', '--grpc', v.address], { maxBuffer: 64 << 20 });
    expect(plain.trim().split('\n')).toEqual(ours.map((e) => `${e.sha256 ?? '-'}  ${e.path}`));
    // Stat carries the extended attributes (the guest has setfattr when the host has Debian's attr package).
    if (HAS_SETFATTR) expect((await c.stat(DISK, '/root/dir/b.txt')).entry.xattrs['user.color']?.toString()).toBe('blue');

    // The live watch delivered exactly the events published during the workload, in order.
    await new Promise((r) => setTimeout(r, 500));
    live.cancel();
    const got = await liveDone;
    expect(got.length).toBe(eventsEnd - before);
    expect(got.map((m) => m.seq)).toEqual(Array.from({ length: eventsEnd - before }, (_, i) => before + 1 + i));
    expect(got.some((m) => m.event.kind === 'rename' && m.event.path === '/root/moved' && m.event.from === '/many/f002')).toBe(true);
    expect(got.some((m) => m.event.kind === 'delete' && m.event.path === '/many/f001')).toBe(true);
  }, 150_000);

  it('a view started after the workload (TLS with client certificates, bearer token) has the identical tree', async () => {
    viewB = await startView(nats.url, ['--tls-cert', certs.serverCert, '--tls-key', certs.serverKey, '--tls-client-ca', certs.ca], { ...process.env, GAMMARAY_TOKEN: TOKEN });
    const b = client(`localhost:${viewB.port}`, { token: TOKEN, tls: tlsOpts(true) });
    const last = await lastWriteSeq();
    await caughtUp(b, last);
    await caughtUp(client(viewA!.address), last); // ok: started in beforeAll
    const treeB = await treeOf(b);
    expect(treeB).toEqual(await treeOf(client(viewA!.address))); // ok: started in beforeAll
    expect(treeB.length).toBeGreaterThan(60);

    // The token: missing or wrong -> UNAUTHENTICATED; health checks need none.
    const S = grpc.status;
    const noToken = client(`localhost:${viewB.port}`, { tls: tlsOpts(true) });
    expect(await failure(noToken.stat(DISK, '/'))).toMatchObject({ code: S.UNAUTHENTICATED, reason: 'Unauthenticated' });
    expect(await failure(noToken.getTree(DISK))).toMatchObject({ code: S.UNAUTHENTICATED });
    const wrong = client(`localhost:${viewB.port}`, { token: 'x'.repeat(48), tls: tlsOpts(true) });
    expect(await failure(wrong.listDisks())).toMatchObject({ code: S.UNAUTHENTICATED });
    // TLS: no client certificate, or plaintext, does not get through the handshake.
    const noCert = client(`localhost:${viewB.port}`, { token: TOKEN, tls: tlsOpts(false) });
    expect((await failure(noCert.listDisks())).code).toBe(S.UNAVAILABLE);
    const plain = client(`127.0.0.1:${viewB.port}`, { token: TOKEN });
    expect((await failure(plain.listDisks())).code).toBe(S.UNAVAILABLE);

    // buf curl over TLS with the client certificate and the token; without the token UNAUTHENTICATED.
    const vb = viewB;
    expect((await bufCurl(vb, `${SERVICE}/Stat`, { disk: DISK, path: '/root/moved' }, { secure: true })).json.entry).toMatchObject({ path: '/root/moved', type: 'FILE_TYPE_FILE' });
    const t = bufTarget(vb, true);
    const unauth = await exec(BUF, ['curl', ...t.args.slice(0, -2), '-d', JSON.stringify({ disk: DISK, path: '/' }), `${t.url}/${SERVICE}/Stat`]).then(
      () => '',
      (e: { stderr: string }) => e.stderr,
    );
    expect(JSON.parse(unauth).code).toBe('unauthenticated');
    expect((await bufCurl(vb, 'grpc.health.v1.Health/Check', {}, { secure: true, extra: [] })).json).toEqual({ status: 'SERVING' });

    // The CLI with the token and TLS flags.
    const { stdout } = await exec('node', [CLI, 'tree', DISK, '--json', '--grpc', `localhost:${viewB.port}`, '--tls-ca', certs.ca, '--tls-cert', certs.clientCert, '--tls-key', certs.clientKey], { env: { ...process.env, GAMMARAY_TOKEN: TOKEN }, maxBuffer: 64 << 20 });
    expect(stdout.trim().split('\n').map((l) => (JSON.parse(l) as TreeEntry).path)).toEqual(treeB.map((e) => e.path));
    const denied = await exec('node', [CLI, 'tree', DISK, '--grpc', `localhost:${viewB.port}`, '--tls-ca', certs.ca, '--tls-cert', certs.clientCert, '--tls-key', certs.clientKey]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(denied.code).toBe(2);
    expect(denied.stderr).toMatch(/bearer token/);

    // SIGTERM: open Watch streams end with UNAVAILABLE (resume elsewhere), the process exits 0.
    const watching = failure(b.watch(DISK, { from: 'now' }));
    await new Promise((r) => setTimeout(r, 300));
    expect(await vb.stop()).toBe(0);
    expect(await watching).toMatchObject({ code: S.UNAVAILABLE, reason: 'Unavailable' });
    expect(vb.logs()).toContain('view stopped');
  }, 60_000);

  it('Watch and gammaray follow resumed from a sequence deliver each event exactly once', async () => {
    const c = client(viewA!.address); // ok: started in beforeAll
    const end = await inferencerDone(await lastWriteSeq());
    const all = await watchUntil(c.watch(DISK, { from: 'start' }), (g) => g[g.length - 1]!.seq >= end); // ok: non-empty when called
    expect(all.map((m) => m.seq)).toEqual(Array.from({ length: end }, (_, i) => i + 1));
    // Resume after the first event, a third of the way, and near the end: the rest is exactly the remainder.
    for (const cut of [1, Math.floor(end / 3), end - 2]) {
      const k = all[cut - 1]!.seq; // ok: 1 <= cut <= end
      const rest = await watchUntil(c.watch(DISK, { from: k + 1 }), (g) => g[g.length - 1]!.seq >= end); // ok: non-empty
      expect(rest.map((m) => m.seq)).toEqual(all.slice(cut).map((m) => m.seq));
      expect(rest).toEqual(all.slice(cut));
    }
    // Filtered by glob and kinds: exactly the matching events, in order; resuming inside keeps them once.
    const glob = '/root/**';
    const kinds = ['create', 'rename', 'delete'];
    const match = compileGlob(glob);
    const parent = compileGlobParents(glob);
    const dirMove = (e: (typeof all)[number]['event']): boolean => e.kind === 'rename' && (e.type === 'dir' || e.exchange) && (parent(e.path) || (e.from !== '' && parent(e.from)));
    const want = all.filter((m) => kinds.includes(m.event.kind) && (match(m.event.path) || (m.event.from !== '' && match(m.event.from)) || dirMove(m.event)));
    expect(want.length).toBeGreaterThan(3);
    expect(want.length).toBeLessThan(all.length);
    const filtered = await watchUntil(c.watch(DISK, { from: 'start', glob, kinds }), (g) => g.length >= want.length);
    expect(filtered).toEqual(want);
    const mid = want[Math.floor(want.length / 2)]!; // ok: length > 3
    const resumed = await watchUntil(c.watch(DISK, { from: mid.seq + 1, glob, kinds }), (g) => g.length >= want.length - want.indexOf(mid) - 1);
    expect(resumed).toEqual(want.slice(want.indexOf(mid) + 1));
    // A single kind is filtered by the server's subject filter.
    const writes = await watchUntil(c.watch(DISK, { from: 'start', kinds: ['write'] }), (g) => g.length >= all.filter((m) => m.event.kind === 'write').length);
    expect(writes).toEqual(all.filter((m) => m.event.kind === 'write'));

    // buf curl, resumed at the same point, sees the same sequence numbers and events.
    const k = all[Math.floor(end / 2)]!.seq; // ok: within range
    const viaBuf = await bufCurlStream(viewA!, `${SERVICE}/Watch`, { disk: DISK, from_seq: k + 1 }, (d) => d.length > 0 && Number(d[d.length - 1].seq) >= end); // ok: started in beforeAll
    expect(viaBuf.map((d) => Number(d.seq))).toEqual(all.filter((m) => m.seq > k).map((m) => m.seq));
    expect(viaBuf.map((d) => [d.event.kind, d.event.path ?? ''])).toEqual(all.filter((m) => m.seq > k).map((m) => [m.event.kind, m.event.path]));

    // gammaray follow: NATS directly, --json lines resumed with --from-seq, text lines with a glob and kinds.
    const follow = async (args: string[], count: number): Promise<string[]> => {
      const child = spawn('node', [CLI, 'follow', DISK, ...args, '--nats', nats.url], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`follow ${args.join(' ')} printed ${out.split('\n').length - 1} of ${count} lines: ${err}`)), 20_000);
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.split('\n').length - 1 >= count) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      await new Promise((r) => setTimeout(r, 300)); // nothing more arrives
      child.kill('SIGINT');
      expect(await exited, err).toBe(0);
      return out.trim().split('\n');
    };
    const fromK = all.filter((m) => m.seq > k);
    const json = (await follow(['--json', '--from-seq', String(k + 1)], fromK.length)).map((l) => JSON.parse(l) as { streamSeq: number; kind: string; path: string; seq: number });
    expect(json.map((e) => [e.streamSeq, e.kind, e.path, e.seq])).toEqual(fromK.map((m) => [m.seq, m.event.kind, m.event.path, m.event.writeSeq]));
    const text = await follow([glob, '--kinds', kinds.join(','), '--from-start'], want.length);
    expect(text).toHaveLength(want.length);
    text.forEach((line, i) => {
      const m = want[i]!; // ok: same length
      expect(line.startsWith(`${m.seq} ${new Date(m.event.tsMs).toISOString()} ${m.event.kind} ${m.event.path}`), line).toBe(true);
    });
    // Past the last event stored, follow says that it waits (before, it printed nothing at all).
    const ahead = spawn('node', [CLI, 'follow', DISK, '--from-seq', '10000000', '--nats', nats.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let aheadErr = '';
    const aheadExited = new Promise<number | null>((r) => ahead.once('exit', (code) => r(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`follow --from-seq 10000000 said: ${aheadErr}`)), 20_000);
      ahead.stderr.on('data', (d: Buffer) => {
        aheadErr += d.toString();
        if (/--from-seq 10000000 is past the last event stored \(sequence \d+ of GAMMARAY_EVENTS\): waiting/.test(aheadErr)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    ahead.kill('SIGINT');
    expect(await aheadExited, aheadErr).toBe(0);
  }, 90_000);
});
