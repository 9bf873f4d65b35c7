/**
 * Event watches (`gammaray follow`, the view's Watch) against a real nats-server.
 *
 * A path glob filters a watch: a directory's rename moves every path below it without events of their own, so it must reach a consumer whose
 * glob matches paths below its old or its new name, or that consumer keeps files that moved away (and never
 * learns of the ones that moved in).
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_VERSION, encodeEvent, eventMsgId, type FsEvent, type FsStat } from '@gammaray/inferencer';
import { EventWatch } from '@gammaray/replica';
import { EVENTS_WILDCARD, STREAM_EVENTS, eventsSubject } from '@gammaray/wire';
import { startNatsServer, type NatsServer } from '../support/nats-server.js';

const DISK = 'vm1';
let nats: NatsServer;
let nc: NatsConnection;

const t = { sec: 1_700_000_000, nsec: 0 };
const stat = (mode: number): FsStat => ({ mode, uid: 0, gid: 0, size: 0, nlink: 1, flags: 0, atime: t, mtime: t, ctime: t });

/** An event of disk DISK (the watch reads nothing but kind, path, from and type). */
const ev = (seq: number, kind: FsEvent['kind'], path: string, type: FsEvent['type'], extra: Partial<FsEvent> = {}): FsEvent => ({
  v: EVENT_VERSION,
  disk: DISK,
  kind,
  path,
  ino: 100 + seq,
  type,
  seq,
  idx: 0,
  ts: new Date(),
  stat: stat(type === 'dir' ? 0o40755 : 0o100644),
  parent: { ino: 2, stat: stat(0o40755) },
  ...extra,
});

beforeAll(async () => {
  nats = await startNatsServer({ jetstream: true });
  nc = await connect({ servers: nats.url });
  await (await jetstreamManager(nc)).streams.add({ name: STREAM_EVENTS, subjects: [EVENTS_WILDCARD] });
}, 30_000);

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

describe('a watch filtered by a glob', () => {
  it('passes the rename of a directory that matching paths lie below, before or after it', async () => {
    const events = [
      ev(1, 'create', '/work/d3', 'dir'),
      ev(2, 'create', '/work/d3/f3', 'file'),
      ev(3, 'rename', '/work/d3x', 'dir', { from: '/work/d3' }), // /work/d3/f3 is /work/d3x/f3 now
      ev(4, 'create', '/work/other', 'file'),
      ev(5, 'rename', '/work/d3', 'dir', { from: '/tmp/new' }), // whatever /tmp/new held is under /work/d3 now
      ev(6, 'rename', '/work/f9', 'file', { from: '/tmp/f9' }),
      ev(7, 'rename', '/srv', 'dir', { from: '/work' }), // /work/d3 itself moved away
      ev(8, 'create', '/work/d3/last', 'file'),
    ];
    const js = jetstream(nc);
    for (const e of events) await js.publish(eventsSubject(DISK, e.kind), encodeEvent(e), { msgID: eventMsgId(e) });

    const watch = await EventWatch.open({ js, jsm: await jetstreamManager(nc), disk: DISK, glob: '/work/d3/**', from: { at: 'first' } });
    const got: number[] = [];
    for await (const w of watch) {
      got.push(w.event.seq);
      if (w.event.seq === 8) watch.stop();
    }
    expect(got).toEqual([2, 3, 5, 7, 8]);
  }, 30_000);
});

describe('a watch from a time', () => {
  it('starts at the first event of the disk stored at or after it, or at the next one when there is none', async () => {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const publish = async (e: FsEvent): Promise<number> => (await js.publish(eventsSubject(DISK, e.kind), encodeEvent(e), { msgID: eventMsgId(e) })).seq;
    await publish(ev(100, 'create', '/t/before', 'file'));
    await new Promise((r) => setTimeout(r, 1_100));
    const since = new Date();
    await new Promise((r) => setTimeout(r, 50));
    const first = await publish(ev(101, 'create', '/t/after', 'file'));
    await publish(ev(102, 'create', '/t/after2', 'file'));
    const watch = await EventWatch.open({ js, jsm, disk: DISK, from: { at: 'time', time: since } });
    const got: { seq: number; path: string }[] = [];
    for await (const w of watch) {
      got.push({ seq: w.seq, path: w.event.path });
      if (w.event.seq === 102) watch.stop();
    }
    expect(got).toEqual([
      { seq: first, path: '/t/after' },
      { seq: first + 1, path: '/t/after2' },
    ]);

    // Nothing stored since: the events published from now on.
    await new Promise((r) => setTimeout(r, 50));
    const later = await EventWatch.open({ js, jsm, disk: DISK, from: { at: 'time', time: new Date() } });
    const next = await publish(ev(103, 'create', '/t/next', 'file'));
    for await (const w of later) {
      expect({ seq: w.seq, path: w.event.path }).toEqual({ seq: next, path: '/t/next' });
      later.stop();
    }
  }, 30_000);
});

