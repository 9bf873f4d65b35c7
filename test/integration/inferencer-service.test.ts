/**
 * `gammaray inferencer` as a process against a real nats-server and a real `gammaray capture` process: the disk is
 * crawled through block reads (one snapshot event), in-place writes by a real NBD client (qemu-io) become `write`
 * events with their bytes, and a restart resumes from the checkpoint in the object store: after a SIGKILL the
 * replayed events are dropped by msg id, after a SIGTERM nothing is replayed, and no snapshot is published twice;
 * an undecodable record becomes a `corrupt` event.
 * Needs `pnpm build` first (the CLI runs from its bundle).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEvent, type FsEvent } from '@gammaray/inferencer';
import { CheckpointStore, ReplicaSet, deltaName } from '@gammaray/replica';
import { pino } from 'pino';
import { HEADER_PATH, OBJ_STATE, STREAM_EVENTS, decodePathHeader, diskEventsFilter, writesSubject } from '@gammaray/wire';
import { startCapture, type CaptureProcess } from '../support/capture-process.js';
import { startInferencer, type InferencerProcess } from '../support/inferencer-process.js';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

const exec = promisify(execFile);
const DISK = 'vm1';
const BLOCK = 4096;
const NOTES = '/docs/café notes.txt';
const BIG = '/big.bin';
const HOSTNAME = '/etc/hostname';

/** One message of GAMMARAY_EVENTS. */
interface StoredEvent {
  readonly subject: string;
  readonly streamSeq: number;
  readonly msgId: string | undefined;
  readonly pathHeader: string | undefined;
  readonly raw: Uint8Array;
  readonly event: FsEvent;
}

let work: string;
let nats: NatsServer;
let capture: CaptureProcess | undefined;
let inferencer: InferencerProcess | undefined;
let nc: NatsConnection;
let image: string;
const blocks: Record<string, number> = {};

/** The physical block of a file's logical block, from debugfs on the starting image. */
async function physicalBlock(img: string, path: string, logical: number): Promise<number> {
  const { stdout } = await exec('debugfs', ['-R', `bmap "${path}" ${logical}`, img]);
  const n = Number(stdout.trim());
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`debugfs bmap ${path} ${logical} said ${JSON.stringify(stdout)}`);
  return n;
}

/** Overwrites one whole file-system block through the capture with a byte pattern (a real NBD client). */
async function writeBlock(block: number, pattern: number): Promise<void> {
  const { stdout } = await exec('qemu-io', ['-f', 'raw', '-c', `write -P 0x${pattern.toString(16)} ${block * BLOCK} ${BLOCK}`, '-c', 'flush', capture!.url(DISK)]); // ok: started in beforeAll
  expect(stdout).not.toMatch(/error/i);
}

/** Every event of the disk in the stream, in stream order. */
async function readEvents(disk = DISK): Promise<StoredEvent[]> {
  const jsm = await jetstreamManager(nc);
  const filter = diskEventsFilter(disk);
  const info = await jsm.streams.info(STREAM_EVENTS, { subjects_filter: filter });
  const want = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  const out: StoredEvent[] = [];
  if (want === 0) return out;
  const c = await jetstream(nc).consumers.get(STREAM_EVENTS, { filter_subjects: filter });
  while (out.length < want) {
    const it = await c.fetch({ max_messages: want - out.length, expires: 2000 });
    for await (const m of it) {
      out.push({
        subject: m.subject,
        streamSeq: m.seq,
        msgId: m.headers?.get('Nats-Msg-Id'),
        pathHeader: m.headers?.has(HEADER_PATH) ? m.headers.get(HEADER_PATH) : undefined,
        raw: m.data,
        event: decodeEvent(m.data),
      });
    }
  }
  return out;
}

/** Polls the stream until an event matches. */
async function waitForEvent(pred: (e: FsEvent) => boolean, what: string, timeoutMs = 15_000, disk = DISK): Promise<StoredEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await readEvents(disk).catch(() => [])).find((s) => pred(s.event));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no ${what} event within ${timeoutMs} ms; inferencer logs:\n${inferencer?.logs() ?? ''}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

const isWriteOf = (path: string) => (e: FsEvent) => e.kind === 'write' && e.path === path;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'gammaray-inferencer-'));
  nats = await startNatsServer({ jetstream: true });
  const src = join(work, 'src');
  mkdirSync(join(src, 'docs'), { recursive: true });
  mkdirSync(join(src, 'etc'), { recursive: true });
  writeFileSync(join(src, 'docs', 'café notes.txt'), Buffer.alloc(BLOCK, 'n'));
  writeFileSync(join(src, 'big.bin'), Buffer.alloc(3 * BLOCK, 'b'));
  writeFileSync(join(src, 'etc', 'hostname'), 'vm1\n');
  // A few thousand files, so that a full checkpoint outweighs the head every delta repeats (see the deltas test).
  mkdirSync(join(src, 'bulk'));
  for (let i = 0; i < 3000; i++) writeFileSync(join(src, 'bulk', `f${i}`), '');
  image = join(work, 'vm1.img');
  await exec('mkfs.ext4', ['-q', '-F', '-b', String(BLOCK), '-d', src, image, '32M']);
  blocks[NOTES] = await physicalBlock(image, NOTES, 0);
  blocks[BIG] = await physicalBlock(image, BIG, 1);
  blocks[HOSTNAME] = await physicalBlock(image, HOSTNAME, 0);
  capture = await startCapture(nats.url, { [DISK]: image });
  nc = await connect({ servers: nats.url });
}, 60_000);

afterAll(async () => {
  await inferencer?.kill9();
  await capture?.stop();
  await nc?.close();
  await nats?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('gammaray inferencer with a real capture and nats-server', () => {
  it('publishes one snapshot and a write event per in-place write, and resumes from its checkpoint after SIGKILL and SIGTERM', async () => {
    // Run 1: crawl, snapshot, checkpoint at once; no interval checkpoint during the test.
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '3600']);
    await inferencer.waitForLog(/disk crawled/);
    const snap = await waitForEvent((e) => e.kind === 'snapshot', 'snapshot');
    expect(snap.subject).toBe(`gammaray.${DISK}.fs.snapshot`);
    expect(snap.event).toMatchObject({ disk: DISK, path: '', ino: 0 });
    expect(snap.event.files).toBeGreaterThanOrEqual(3); // the three files
    expect(snap.event.dirs).toBeGreaterThanOrEqual(4); // /, lost+found, docs, etc
    expect(snap.msgId).toBe(`${DISK}:${snap.event.seq}:${snap.event.idx}`);

    await writeBlock(blocks[NOTES]!, 0x5a); // ok: set in beforeAll
    const w1 = await waitForEvent(isWriteOf(NOTES), `write ${NOTES}`);
    expect(w1.subject).toBe(`gammaray.${DISK}.fs.write`);
    expect(w1.event).toMatchObject({ disk: DISK, type: 'file', offset: 0, length: BLOCK });
    expect(Buffer.from(w1.event.data ?? [])).toEqual(Buffer.alloc(BLOCK, 0x5a));
    expect(w1.msgId).toBe(`${DISK}:${w1.event.seq}:${w1.event.idx}`);
    expect(w1.pathHeader).toBe('/docs/caf%C3%A9%20notes.txt');
    expect(decodePathHeader(w1.pathHeader!)).toBe(NOTES); // ok: just checked

    // The published bytes decode with an independent BSON implementation (Debian python3-bson).
    const script = [
      'import bson, sys, json',
      'd = bson.decode(bytes.fromhex(sys.stdin.read()))',
      'print(json.dumps({"kind": d["kind"], "path": d["path"], "seq": d["seq"], "ts": d["ts"].isoformat(),',
      '  "data": d["data"].hex(), "mode": d["stat"]["mode"], "types": {k: type(v).__name__ for k, v in d.items()}}))',
    ].join('\n');
    const py = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { input: Buffer.from(w1.raw).toString('hex') }).toString()) as {
      kind: string;
      path: string;
      seq: number;
      ts: string;
      data: string;
      mode: number;
      types: Record<string, string>;
    };
    expect(py).toMatchObject({ kind: 'write', path: NOTES, seq: w1.event.seq, data: Buffer.alloc(BLOCK, 0x5a).toString('hex') });
    expect(py.mode & 0o777).toBe(w1.event.stat!.mode & 0o777); // ok: write events carry stat
    expect(py.types).toMatchObject({ seq: 'Int64', ts: 'datetime', data: 'bytes' });

    // Run 2: a crash before any interval checkpoint. The restart restores the post-crawl checkpoint and replays
    // write 1; its event is re-published under the same msg id and dropped by the stream.
    await inferencer.kill9();
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '3600']);
    await inferencer.waitForLog(/restored from checkpoint/);
    await writeBlock(blocks[BIG]!, 0xa5); // ok: set in beforeAll
    const w2 = await waitForEvent(isWriteOf(BIG), `write ${BIG}`);
    expect(w2.event).toMatchObject({ offset: BLOCK, length: BLOCK });
    expect(Buffer.from(w2.event.data ?? [])).toEqual(Buffer.alloc(BLOCK, 0xa5));
    expect(w2.event.seq).toBeGreaterThan(w1.event.seq);

    // A graceful stop flushes and checkpoints at least up to write 2.
    expect(await inferencer.stop()).toBe(0);
    expect(inferencer.logs()).toMatch(/"duplicateEvents":[1-9]/); // write 1's event came back as a duplicate
    const ck = await new CheckpointStore(await new Objm(nc).open(OBJ_STATE)).latest(DISK);
    expect(ck?.appliedSeq).toBeGreaterThanOrEqual(w2.event.seq);

    // Run 3: resumes from the final checkpoint and follows a further write.
    inferencer = await startInferencer(nats.url);
    await inferencer.waitForLog(/restored from checkpoint/);
    // A record that does not decode (published straight into the write stream) becomes a corrupt event, and
    // the disk goes on.
    const junk = (await jetstream(nc).publish(writesSubject(DISK), new Uint8Array([1, 2, 3, 4, 5]))).seq;
    await writeBlock(blocks[HOSTNAME]!, 0x78); // ok: set in beforeAll
    const w3 = await waitForEvent(isWriteOf(HOSTNAME), `write ${HOSTNAME}`);
    expect(w3.event.seq).toBeGreaterThan(junk);
    const bad = await waitForEvent((e) => e.kind === 'corrupt' && e.seq === junk, 'corrupt record');
    expect(bad.event).toMatchObject({ corruptKind: 'record:NotBson', idx: 0, path: '' });
    expect(bad.pathHeader).toBeUndefined();
    expect(await inferencer.stop()).toBe(0);
    expect(inferencer.logs()).toMatch(/"duplicateEvents":0/); // nothing replayed after a graceful stop

    const all = await readEvents();
    expect(all.filter((s) => s.event.kind === 'snapshot')).toHaveLength(1);
    const ids = all.map((s) => s.msgId);
    expect(ids.every((id) => id !== undefined)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const w of [w1, w2, w3]) expect(all.filter((s) => s.msgId === w.msgId)).toHaveLength(1);
    // Events of one disk are stored in (seq, idx) order.
    const order = all.map((s) => [s.event.seq, s.event.idx] as const);
    expect(order).toEqual([...order].sort((a, b) => a[0] - b[0] || a[1] - b[1]));
  }, 60_000);

  it('stores a full checkpoint and then deltas; a restart after SIGKILL restores the full one with its deltas', async () => {
    // Interval checkpoints every 0.1 s: the session's first is full (a restored engine starts a chain of its own),
    // the next ones deltas (each write moves the applied sequence).
    // A short lease, so that the restart after the SIGKILL below takes the disk over soon.
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '0.1', '--lease-ttl', '1.5', '--heartbeat', '0.5']);
    await inferencer.waitForLog(/restored from checkpoint/);
    const os = await new Objm(nc).open(OBJ_STATE);
    const meta = async (name: string) => (await os.info(name))?.metadata ?? {};
    let last: StoredEvent | undefined;
    // The full checkpoint's cost spaces the next one out (CHECKPOINT_COST_FACTOR); deltas then follow each 0.1 s.
    const deadline = Date.now() + 45_000;
    for (let i = 0; ; i++) {
      await writeBlock(blocks[NOTES]!, 0x20 + (i % 64)); // ok: set in beforeAll
      last = await waitForEvent((e) => isWriteOf(NOTES)(e) && e.data?.[0] === 0x20 + (i % 64) && e.seq > (last?.event.seq ?? 0), `write ${i} of ${NOTES}`);
      const d = await meta(deltaName(DISK, 3));
      if (d['chain'] !== undefined && d['chain'] === (await meta(DISK))['chain']) break;
      if (Date.now() > deadline) throw new Error(`no third delta after ${i + 1} writes; inferencer logs:\n${inferencer.logs()}`);
      await new Promise((r) => setTimeout(r, 150));
    }
    const base = await meta(DISK);
    const delta = await meta(deltaName(DISK, 3));
    expect(Number(delta['appliedSeq'])).toBeGreaterThan(Number(base['appliedSeq']));
    expect(delta['epoch']).toBe(base['epoch']);
    // A delta holds what changed and the small parts of the state, not the held blocks and nodes of the whole tree.
    expect((await os.info(deltaName(DISK, 3)))!.size).toBeLessThan((await os.info(DISK))!.size); // ok: stored above

    await inferencer.kill9();
    inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '3600']);
    await inferencer.waitForLog(/restored from checkpoint/);
    const restored = inferencer
      .logs()
      .split('\n')
      .filter((l) => l.includes('restored from checkpoint'))
      .map((l) => JSON.parse(l) as { appliedSeq: number; deltas: number })
      .at(-1)!; // ok: waited for it
    expect(restored.deltas).toBeGreaterThanOrEqual(3);
    expect(restored.appliedSeq).toBeGreaterThanOrEqual(Number(delta['appliedSeq']));
    await writeBlock(blocks[HOSTNAME]!, 0x79); // ok: set in beforeAll
    await waitForEvent((e) => isWriteOf(HOSTNAME)(e) && e.data?.[0] === 0x79, `write ${HOSTNAME} after the restart`);
    expect(await inferencer.stop()).toBe(0);
    const all = await readEvents();
    const ids = all.map((s) => s.msgId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(all.filter((s) => s.event.kind === 'snapshot')).toHaveLength(1);
  }, 90_000);

  it('follows a new file system made over the disk: a resync event, a new snapshot, then the new files', async () => {
    // The guest formats its disk again (mkfs writes a superblock with a new UUID and a new journal, which the
    // state followed so far would never see commit). Here a whole new image is written through the capture.
    const src = join(work, 'src2');
    mkdirSync(join(src, 'srv'), { recursive: true });
    for (let i = 0; i < 5; i++) writeFileSync(join(src, 'srv', `new-${i}.txt`), `new ${i}\n`);
    const next = join(work, 'vm1-next.img');
    await exec('mkfs.ext4', ['-q', '-F', '-b', String(BLOCK), '-d', src, next, '32M']);
    const before = (await readEvents()).length;
    inferencer = await startInferencer(nats.url);
    await inferencer.waitForLog(/restored from checkpoint/);
    // A view's replica follows the write stream with the same engine: it must take the crawl's state too.
    const replicas = new ReplicaSet({ nc, log: pino({ level: process.env['GAMMARAY_TEST_LOG'] ?? 'silent' }), retryMs: 200 });
    await replicas.start();
    const replica = replicas.get(DISK);
    await replica.whenReady(20_000);
    expect((await replica.tree()).entries.map((e) => e.path)).toContain(HOSTNAME);
    await exec('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', next, capture!.url(DISK)]); // ok: started in beforeAll
    const resync = await waitForEvent((e) => e.kind === 'resync', 'resync', 30_000);
    expect(resync.event.reason).toMatch(/new file system/);
    expect(resync.subject).toBe(`gammaray.${DISK}.fs.resync`);
    const snap = await waitForEvent((e) => e.kind === 'snapshot' && e.seq >= resync.event.seq, 'snapshot after the resync', 30_000);
    expect(snap.streamSeq).toBeGreaterThan(resync.streamSeq);
    expect(snap.event.files).toBe(5);
    // The new file system is followed: a write to one of its files is an event with its path.
    const block = await physicalBlock(next, '/srv/new-3.txt', 0);
    await writeBlock(block, 0x33);
    const w = await waitForEvent((e) => isWriteOf('/srv/new-3.txt')(e) && e.data?.[0] === 0x33, 'write /srv/new-3.txt', 30_000);
    expect(w.event.seq).toBeGreaterThan(snap.event.seq);
    expect(Buffer.from(w.event.data ?? [])).toEqual(Buffer.alloc(w.event.length ?? 0, 0x33));
    const paths = async () => (await replica.tree()).entries.map((e) => e.path);
    for (const deadline = Date.now() + 30_000; !(await paths()).includes('/srv/new-3.txt'); ) {
      if (Date.now() > deadline) throw new Error(`the replica never took the new file system: ${JSON.stringify(await paths())}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await paths()).not.toContain(HOSTNAME);
    await replicas.stop();
    expect(await inferencer.stop()).toBe(0);
    const all = await readEvents();
    expect(all.length).toBeGreaterThan(before);
    expect(all.filter((e) => e.event.kind === 'resync')).toHaveLength(1);
    const ids = all.map((e) => e.msgId);
    expect(new Set(ids).size).toBe(ids.length);
  }, 120_000);

  it('a disk id re-attached with an image of another size before any write: a resync and a second snapshot, both stored', async () => {
    const mk = async (name: string, files: number, size: string): Promise<string> => {
      const src = join(work, `src-${name}`);
      mkdirSync(src, { recursive: true });
      for (let i = 0; i < files; i++) writeFileSync(join(src, `f${i}.txt`), `${name} ${i}\n`);
      const img = join(work, `${name}.img`);
      await exec('mkfs.ext4', ['-q', '-F', '-b', String(BLOCK), '-d', src, img, size]);
      return img;
    };
    const first = await mk('reattach-a', 2, '16M');
    const second = await mk('reattach-b', 3, '24M');
    let cap = await startCapture(nats.url, { reattach: first });
    try {
      inferencer = await startInferencer(nats.url);
      await waitForEvent((e) => e.kind === 'snapshot', 'the first snapshot', 30_000, 'reattach');
      expect(await inferencer.stop()).toBe(0);
      await cap.stop();
      // The same disk id now names another image (another VM, or the image was replaced), and nothing was written:
      // the crawl is at the same write-stream seq as the first one.
      cap = await startCapture(nats.url, { reattach: second });
      inferencer = await startInferencer(nats.url);
      await inferencer.waitForLog(/checkpoint is of a disk of another size; crawling the disk again/);
      const snap = await waitForEvent((e) => e.kind === 'snapshot' && e.files === 3, 'the second snapshot', 30_000, 'reattach');
      const all = await readEvents('reattach');
      expect(all.map((e) => e.event.kind)).toEqual(['snapshot', 'resync', 'snapshot']);
      expect(all[1]!.event.reason).toMatch(/another size/); // ok: three events
      expect(all[1]!.event.seq).toBe(snap.event.seq); // ok: three events
      expect(snap.msgId).toMatch(/^reattach:\d+:1:c[0-9a-f]{12}$/);
      // Restarted, it restores the new checkpoint: nothing is published again.
      expect(await inferencer.stop()).toBe(0);
      inferencer = await startInferencer(nats.url);
      await inferencer.waitForLog(/restored from checkpoint/);
      expect(await inferencer.stop()).toBe(0);
      expect((await readEvents('reattach')).length).toBe(3);
    } finally {
      await cap.stop();
    }
  }, 120_000);

  it('waits for a blank disk to be formatted, polling each second, and follows it from the mkfs on', async () => {
    // A new VM's empty disk: no file system until the guest's installer makes one.
    const blankImage = join(work, 'blank.img');
    writeFileSync(blankImage, Buffer.alloc(0));
    execFileSync('truncate', ['-s', '32M', blankImage]);
    const second = await startCapture(nats.url, { blank: blankImage });
    try {
      inferencer = await startInferencer(nats.url);
      await inferencer.waitForLog(/no ext2\/3\/4 file system yet/);
      const src = join(work, 'src-blank');
      mkdirSync(join(src, 'etc'), { recursive: true });
      writeFileSync(join(src, 'etc', 'motd'), 'hello\n');
      const formatted = join(work, 'formatted.img');
      await exec('mkfs.ext4', ['-q', '-F', '-b', String(BLOCK), '-d', src, formatted, '32M']);
      const written = Date.now();
      await exec('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', formatted, second.url('blank')]);
      const snap = await waitForEvent((e) => e.kind === 'snapshot', 'snapshot of the formatted disk', 30_000, 'blank');
      expect(snap.event.files).toBe(1);
      // Looked at again within about a second, not after a backoff grown to 30 s.
      expect(Date.now() - written).toBeLessThan(15_000);
      expect(inferencer.logs()).not.toMatch(/disk worker failed/);
      const block = await physicalBlock(formatted, '/etc/motd', 0);
      await exec('qemu-io', ['-f', 'raw', '-c', `write -P 0x44 ${block * BLOCK} ${BLOCK}`, '-c', 'flush', second.url('blank')]);
      const w = await waitForEvent((e) => e.kind === 'write' && e.path === '/etc/motd' && e.data?.[0] === 0x44, 'write /etc/motd', 30_000, 'blank');
      expect(w.event.seq).toBeGreaterThan(snap.event.seq);
      expect(await inferencer.stop()).toBe(0);
    } finally {
      await second.stop();
    }
  }, 120_000);
});
