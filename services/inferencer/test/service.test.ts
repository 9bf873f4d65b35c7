/**
 * The service around the engine, against a real nats-server, with the engine replaced by a scripted fake (the
 * engine has its own tests): one disk's engine failures do not stop another disk, a record that keeps failing is
 * skipped with a `corrupt` event and a fresh crawl, an undecodable record becomes a `corrupt` event, and stop()
 * leaves a checkpoint per disk.
 */
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { BlockFetcher, FsEvent, InferencerOptions } from '@gammaray/inferencer';
import {
  DiskState,
  KV_DISKS,
  OBJ_STATE,
  STREAM_EVENTS,
  STREAM_WRITES,
  WRITES_WILDCARD,
  encodeDiskEntry,
  encodeWriteRecord,
  writesSubject,
  type WriteRecord,
} from '@gammaray/wire';
import { startNatsServer, type NatsServer } from '../../../test/support/nats-server.js';
import { decodeEvent } from '@gammaray/inferencer';
import { create, readConfig, type InferencerService } from '../src/index.js';

/** A fake engine: one `write` event per write op; a write whose data starts with "BOOM" makes apply() throw. */
vi.mock('@gammaray/inferencer', async (importOriginal) => {
  const real = await importOriginal<typeof import('@gammaray/inferencer')>();
  class FakeInferencer {
    crawls = 0;
    /** The whole disk (the worker logs where the followed file system lies). */
    readonly window = { partition: 0, start: 0, size: 1 << 20 };
    constructor(
      readonly disk: string,
      private applied: number,
    ) {}
    get appliedSeq(): number {
      return this.applied;
    }
    static async bootstrap(_f: BlockFetcher, opts: InferencerOptions, fromSeq: number, ts: Date): Promise<{ inferencer: FakeInferencer; events: FsEvent[] }> {
      const snapshot: FsEvent = { v: 1, disk: opts.disk, kind: 'snapshot', path: '', ino: 0, type: '', seq: fromSeq, idx: 0, ts, files: 1, dirs: 1 };
      return { inferencer: new FakeInferencer(opts.disk, fromSeq), events: [snapshot] };
    }
    static async restore(bytes: Uint8Array, _f: BlockFetcher, opts: InferencerOptions): Promise<FakeInferencer> {
      const s = JSON.parse(Buffer.from(bytes).toString()) as { disk: string; applied: number };
      if (s.disk !== opts.disk) throw new Error('checkpoint of another disk');
      return new FakeInferencer(s.disk, s.applied);
    }
    async apply(seq: number, rec: WriteRecord): Promise<FsEvent[]> {
      if (seq <= this.applied) return [];
      const out: FsEvent[] = [];
      for (const op of rec.ops) {
        if (op.op !== 'write') continue;
        if (Buffer.from(op.data.subarray(0, 4)).toString() === 'BOOM') throw new Error('engine bug');
        out.push({ v: 1, disk: this.disk, kind: 'write', path: '/f', ino: 12, type: 'file', seq, idx: out.length, ts: rec.ts, offset: op.offset, length: op.length, data: op.data });
      }
      this.applied = seq;
      return out;
    }
    checkpoint(): Uint8Array {
      // Disk 'slow': a state that takes 120 ms to checkpoint, as a few hundred thousand inodes do.
      if (this.disk === 'slow') for (const end = performance.now() + 120; performance.now() < end; );
      return Buffer.from(JSON.stringify({ disk: this.disk, applied: this.applied }));
    }
    /** No deltas: every checkpoint of the fake is a full one. */
    deltaCheckpointParts(): Uint8Array[] | undefined {
      return undefined;
    }
    checkpointFailed(): void {}
    readonly trackedInodes = 1;
    heldBlocks(): { blocks: number; bytes: number } {
      return { blocks: 0, bytes: 0 };
    }
    checkpointParts(): Uint8Array[] {
      // Two parts, as the real engine gives documents: the store writes them one after the other.
      const all = this.checkpoint();
      return [all.subarray(0, 5), all.subarray(5)];
    }
  }
  return { ...real, DiskInferencer: FakeInferencer };
});

let server: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
let service: InferencerService | undefined;

async function register(disk: string): Promise<void> {
  const kv = await new Kvm(nc).create(KV_DISKS, { history: 5 });
  await kv.put(disk, encodeDiskEntry({ disk, size: 1 << 20, blockSize: 512, image: `/tmp/${disk}.img`, capture: 'test', firstSeq: 1, state: DiskState.Attached }));
}

async function writeRecord(disk: string, data: string | Uint8Array): Promise<number> {
  const bytes = typeof data === 'string' ? encodeWriteRecord({ v: 1, disk, ts: new Date(), ops: [{ op: 'write', offset: 4096, length: data.length, data: Buffer.from(data), fua: false }] }) : data;
  return (await js.publish(writesSubject(disk), bytes)).seq;
}

async function events(): Promise<FsEvent[]> {
  const jsm = await jetstreamManager(nc);
  const n = (await jsm.streams.info(STREAM_EVENTS)).state.messages;
  const out: FsEvent[] = [];
  if (n === 0) return out;
  const c = await js.consumers.get(STREAM_EVENTS);
  while (out.length < n) for await (const m of await c.fetch({ max_messages: n - out.length, expires: 2000 })) out.push(decodeEvent(m.data));
  return out;
}

async function waitFor(pred: (all: FsEvent[]) => boolean, what: string): Promise<FsEvent[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const all = await events().catch(() => []);
    if (pred(all)) return all;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(all.map((e) => [e.disk, e.kind, e.seq, e.idx]))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  server = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: server.url });
  js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: STREAM_WRITES, subjects: [WRITES_WILDCARD] });
}, 30_000);

afterAll(async () => {
  await service?.stop();
  await nc?.close();
  await server?.stop();
});

describe('inferencer service', () => {
  it('isolates engine failures per disk, skips a poison record after retries, turns bad records into corrupt events, checkpoints on stop', async () => {
    await writeRecord('good', 'before');
    await register('good');
    await register('bad');
    const cfg = readConfig({ nats: server.url, checkpointInterval: '0.2' }, {});
    service = create(cfg, pino({ level: process.env['LOGLEVEL'] ?? 'silent' }), { restartBackoffMs: { min: 50, max: 200 }, poisonAttempts: 3 });
    await service.start();
    await waitFor((all) => all.filter((e) => e.kind === 'snapshot').length === 2, 'two snapshots');

    const poison = await writeRecord('bad', 'BOOM');
    const corruptSeq = await writeRecord('good', new Uint8Array([1, 2, 3, 4, 5]));
    const goodSeq = await writeRecord('good', 'after');

    // The good disk goes on while the bad one fails: the bad record becomes a corrupt event there.
    let all = await waitFor((a) => a.some((e) => e.disk === 'good' && e.kind === 'write' && e.seq === goodSeq), 'the good disk to go on');
    expect(all.find((e) => e.disk === 'good' && e.seq === corruptSeq)).toMatchObject({ kind: 'corrupt', corruptKind: 'record:NotBson', idx: 0 });
    expect(all.some((e) => e.disk === 'good' && e.seq <= 1 && e.kind === 'write')).toBe(false); // 'before' is in the snapshot

    // After poisonAttempts failures on the same record the bad disk publishes a corrupt event and crawls again.
    all = await waitFor((a) => a.some((e) => e.disk === 'bad' && e.kind === 'corrupt' && e.seq === poison), 'the poison record to be skipped');
    expect(all.find((e) => e.disk === 'bad' && e.seq === poison && e.kind === 'corrupt')).toMatchObject({ corruptKind: 'EngineFailure', idx: 1 }); // idx 0: the crawl's snapshot
    await waitFor((a) => a.filter((e) => e.disk === 'bad' && e.kind === 'snapshot').length === 2, 'a fresh crawl of the bad disk');
    expect(service.workers.get('bad')!.stats.restarts).toBeGreaterThanOrEqual(3); // ok: registered above
    expect(service.workers.get('good')!.stats.restarts).toBe(0); // ok: registered above
    const later = await writeRecord('bad', 'fine');
    await waitFor((a) => a.some((e) => e.disk === 'bad' && e.kind === 'write' && e.seq === later), 'the bad disk to go on');

    await service.stop();
    service = undefined;
    const os = await new Objm(nc).open(OBJ_STATE);
    for (const [disk, seq] of [['good', goodSeq], ['bad', later]] as const) {
      const st = JSON.parse(Buffer.from((await os.getBlob(disk))!).toString()) as { applied: number }; // ok: stop() checkpoints
      expect(st.applied).toBe(seq);
    }
  }, 60_000);

  it('spaces out the checkpoints of a disk whose checkpoints take long (CHECKPOINT_COST_FACTOR), and still checkpoints on stop', async () => {
    await register('slow');
    const cfg = readConfig({ nats: server.url, checkpointInterval: '0.1', disk: ['slow'] }, {});
    service = create(cfg, pino({ level: process.env['LOGLEVEL'] ?? 'silent' }), { restartBackoffMs: { min: 50, max: 200 }, poisonAttempts: 3 });
    await service.start();
    await waitFor((all) => all.some((e) => e.disk === 'slow' && e.kind === 'snapshot'), 'the snapshot of disk slow');
    // 3 s of records, one every 20 ms: a checkpoint every 0.1 s would take most of the worker's time (120 ms each).
    let last = 0;
    for (const end = Date.now() + 3000; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) last = await writeRecord('slow', 'tick');
    await waitFor((a) => a.some((e) => e.disk === 'slow' && e.seq === last), 'the last record of disk slow');
    const worker = service.workers.get('slow')!; // ok: registered above
    // At least 1.2 s apart (10 x 120 ms): 3 in 3 s at most, where 0.1 s apart made ~12.
    expect(worker.stats.checkpoints).toBeGreaterThanOrEqual(1);
    expect(worker.stats.checkpoints).toBeLessThanOrEqual(4);
    await service.stop();
    service = undefined;
    const os = await new Objm(nc).open(OBJ_STATE);
    expect((JSON.parse(Buffer.from((await os.getBlob('slow'))!).toString()) as { applied: number }).applied).toBe(last); // ok: stop() checkpoints
  }, 60_000);
});
