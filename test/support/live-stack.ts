/**
 * The whole pipeline as processes for tests that follow disks live: a real nats-server, `gammaray capture`
 * serving image files, `gammaray inferencer` and `gammaray view`, with the helpers those tests share (wait for the
 * view to catch up, read a disk's events, the view's tree, write through NBD with qemu-io).
 */
import { execFile } from 'node:child_process';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { decodeEvent, type FsEvent } from '@gammaray/inferencer';
import { ViewClient } from '@gammaray/service-view';
import { STREAM_EVENTS, STREAM_WRITES, writesSubject } from '@gammaray/wire';
import type { TreeEntry } from '../oracle/entry.js';
import { CLI, startCapture, type CaptureProcess } from './capture-process.js';
import { startInferencer, type InferencerProcess } from './inferencer-process.js';
import { startNatsServer, type NatsServer } from './nats-server.js';
import { startView, type ViewProcess } from './view-process.js';

const exec = promisify(execFile);

export const sortByPath = <T extends { path: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

/** `length` bytes of file `path` at `offset`. */
export function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

/** A running pipeline; see {@link startLiveStack}. */
export class LiveStack {
  capture: CaptureProcess;

  private constructor(
    readonly nats: NatsServer,
    capture: CaptureProcess,
    readonly inferencer: InferencerProcess,
    readonly view: ViewProcess,
    readonly nc: NatsConnection,
    readonly client: ViewClient,
    private readonly disks: Record<string, string>,
    private readonly work: string,
  ) {
    this.capture = capture;
  }

  /** Starts nats-server, capture (serving `disks`: id -> image, with `captureArgs`), inferencer and view (with `viewArgs`). */
  static async start(work: string, disks: Record<string, string>, captureArgs: readonly string[] = [], viewArgs: readonly string[] = []): Promise<LiveStack> {
    const nats = await startNatsServer({ jetstream: true });
    const capture = await startCapture(nats.url, disks, captureArgs);
    const inferencer = await startInferencer(nats.url, ['--checkpoint-interval', '1']);
    const nc = await connect({ servers: nats.url });
    const view = await startView(nats.url, viewArgs);
    return new LiveStack(nats, capture, inferencer, view, nc, new ViewClient(view.address), disks, work);
  }

  /** Stops the capture and starts it again with `captureArgs` (the same disks). */
  async restartCapture(captureArgs: readonly string[]): Promise<void> {
    await this.capture.stop();
    this.capture = await startCapture(this.nats.url, this.disks, captureArgs);
  }

  /** The disk's last record in GAMMARAY_WRITES (0 when none). */
  async lastWriteSeq(disk: string): Promise<number> {
    const jsm = await jetstreamManager(this.nc);
    return (await jsm.streams.getMessage(STREAM_WRITES, { last_by_subj: writesSubject(disk) }))?.seq ?? 0;
  }

  /** Waits until the view's replica of `disk` (or volume) is ready and has applied `seq`. */
  async caughtUp(seq: number, disk: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const d = (await this.client.listDisks().catch(() => ({ disks: [] }))).disks.find((x) => x.id === disk);
      if (d?.ready && d.appliedSeq >= seq) return;
      if (Date.now() > deadline) throw new Error(`view did not apply ${seq} within ${timeoutMs} ms: ${JSON.stringify(d)}\n${this.inferencer.logs().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Every event of `disk` (or volume) stored so far, in order. */
  async readEvents(disk: string): Promise<FsEvent[]> {
    const want = (await (await jetstreamManager(this.nc)).streams.info(STREAM_EVENTS)).state.messages;
    const out: FsEvent[] = [];
    if (want === 0) return [];
    const cons = await jetstream(this.nc).consumers.get(STREAM_EVENTS);
    while (out.length < want) {
      const it = await cons.fetch({ max_messages: Math.min(256, want - out.length), expires: 2000 });
      for await (const m of it) out.push(decodeEvent(m.data));
    }
    return out.filter((e) => e.disk === disk);
  }

  /** The events of `disk` once `done` holds for them (the inferencer publishes after it applied). */
  async eventsUntil(disk: string, done: (es: FsEvent[]) => boolean, timeoutMs = 60_000): Promise<FsEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const es = await this.readEvents(disk);
      if (done(es)) return es;
      if (Date.now() > deadline) throw new Error(`events not complete within ${timeoutMs} ms: ${es.map((e) => `${e.kind} ${e.path}`).join('; ')}\n${this.inferencer.logs().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  /** `gammaray tree DISK --json --hash` against the view. */
  async viewTree(disk: string): Promise<TreeEntry[]> {
    const { stdout } = await exec('node', [CLI, 'tree', disk, '--json', '--hash', '--grpc', this.view.address], { maxBuffer: 64 << 20 });
    return stdout.trim().split('\n').map((l) => JSON.parse(l) as TreeEntry);
  }

  /** Writes `bytes` at `offset` of `disk` through the capture with qemu-io (a real NBD client). */
  async nbdWrite(disk: string, offset: number, bytes: Uint8Array): Promise<void> {
    const file = join(this.work, `piece-${disk}-${offset}`);
    writeFileSync(file, bytes);
    await exec('qemu-io', ['-f', 'raw', '-c', `write -s ${file} ${offset} ${bytes.length}`, this.capture.url(disk)]);
  }

  async stop(): Promise<void> {
    this.client.close();
    await this.view.stop();
    await this.inferencer.stop();
    await this.capture.stop();
    await this.nc.close();
    await this.nats.stop();
  }
}
